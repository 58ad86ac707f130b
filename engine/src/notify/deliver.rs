//! Delivery: one worker per receiver takes its pending outbox rows in id order
//! (so the resolve of an alert never overtakes its trigger), sends each with a
//! timeout, and marks it delivered only after the receiver accepted it. A failed
//! attempt is retried with exponential backoff and jitter, no sooner than the
//! receiver's `Retry-After`; a permanent refusal ends the row as `failed`; a row
//! not delivered within `dead_after` ends as `dead`. Failed and dead rows raise
//! the `warden_notifications_undelivered` series, which the built-in
//! `WardenNotificationFailed` rule turns into an alert for the fallback receivers.
//!
//! Delivery is at least once: a crash after the receiver accepted a notification
//! and before the row is marked can send it again. Receivers are chosen so this is
//! harmless (PagerDuty deduplicates on `dedup_key`, Slack messages are updated by
//! their stored `ts`, webhook receivers are told to be idempotent on `groupKey`).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::NotifyHandle;
use super::config::DeliveryPolicy;
use super::outbox::{self, Due, RowState};
use crate::model::{Labels, MetricName, Sample, Timestamp, now_ms};
use crate::ports::{BoxFuture, DeliveryMemo, Notifier, NotifyError};
use crate::store::{Batch, Store};
use crate::telemetry::{ReceiverLabels, Telemetry};

/// How far back failed deliveries count towards `warden_notifications_undelivered`.
pub const UNDELIVERED_WINDOW: Duration = Duration::from_secs(3600);

/// A receiver's memo, kept in the store.
pub struct StoreMemo {
    store: Store,
    receiver: String,
}

impl StoreMemo {
    /// The memo of `receiver`.
    pub fn new(store: Store, receiver: impl Into<String>) -> Self {
        Self {
            store,
            receiver: receiver.into(),
        }
    }
}

impl DeliveryMemo for StoreMemo {
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            self.store
                .read(|c| outbox::memo_get(c, &self.receiver, key))
                .ok()
                .flatten()
        })
    }

    fn put<'a>(&'a self, key: &'a str, value: &'a str) -> BoxFuture<'a, Result<(), String>> {
        let (receiver, key, value) = (self.receiver.clone(), key.to_string(), value.to_string());
        Box::pin(async move {
            self.store
                .write(move |tx| outbox::memo_put(tx, &receiver, &key, &value, now_ms()))
                .await
                .map_err(|e| e.to_string())
        })
    }
}

/// The delay before attempt `attempts + 1`: `initial` doubled per attempt, capped at
/// `max`, with "equal jitter" (between half and all of it), and never sooner than
/// `retry_after`.
pub fn backoff(
    policy: &DeliveryPolicy,
    attempts: u32,
    retry_after: Option<Duration>,
    seed: u64,
) -> Duration {
    let base = policy
        .retry_initial
        .saturating_mul(1u32 << attempts.min(20))
        .min(policy.retry_max);
    let r = (splitmix(seed) % 1_000) as f64 / 1_000.0;
    let jittered = base.mul_f64(0.5 + 0.5 * r);
    retry_after.map_or(jittered, |ra| ra.max(jittered))
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Starts one delivery worker per notifier and the timer task.
pub fn spawn(
    handle: &NotifyHandle,
    notifiers: &[Arc<dyn Notifier>],
    policy: DeliveryPolicy,
    telemetry: &Telemetry,
    history: Duration,
    tracker: &TaskTracker,
    stop: &CancellationToken,
) {
    for n in notifiers {
        tracker.spawn(worker(
            handle.clone(),
            n.clone(),
            policy.clone(),
            telemetry.clone(),
            stop.clone(),
        ));
    }
    let names: Vec<String> = notifiers.iter().map(|n| n.name().to_string()).collect();
    tracker.spawn(timers(
        handle.clone(),
        names,
        telemetry.clone(),
        history,
        stop.clone(),
    ));
}

/// Runs the dispatcher's timers, publishes `warden_notifications_undelivered` and
/// purges old history.
async fn timers(
    handle: NotifyHandle,
    receivers: Vec<String>,
    telemetry: Telemetry,
    history: Duration,
    stop: CancellationToken,
) {
    let ticker = handle.ticker();
    let mut next_report: Timestamp = 0;
    let mut next_purge: Timestamp = now_ms() + 60_000;
    loop {
        let now = now_ms();
        if now >= next_report {
            next_report = now + 15_000;
            report(&handle, &receivers, &telemetry, now).await;
        }
        if now >= next_purge {
            next_purge = now + 3_600_000;
            let cutoff = now - history.as_millis() as i64;
            let _ = handle
                .write(move |d, tx| {
                    d.purge(tx, cutoff)
                        .map_err(|e| super::dispatch::OpError::Invalid(e.to_string()))
                })
                .await;
        }
        let due = handle.next_due().unwrap_or(now + 60_000).min(next_report);
        let wait = Duration::from_millis((due - now).clamp(0, 60_000) as u64);
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = ticker.notified() => {}
            _ = tokio::time::sleep(wait) => {
                if let Err(e) = handle.tick().await {
                    tracing::error!(error = %e, "notification timers failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn report(
    handle: &NotifyHandle,
    receivers: &[String],
    telemetry: &Telemetry,
    now: Timestamp,
) {
    let since = now - UNDELIVERED_WINDOW.as_millis() as i64;
    let store = handle.store().clone();
    let Ok((undelivered, pending)) = store.read(|c| {
        Ok((
            outbox::undelivered_since(c, since)?,
            outbox::pending_counts(c)?,
        ))
    }) else {
        return;
    };
    let Ok(name) = MetricName::new("warden_notifications_undelivered") else {
        return;
    };
    let mut samples = Vec::new();
    for r in receivers {
        let n = undelivered
            .iter()
            .find(|(x, _)| x == r)
            .map_or(0, |(_, n)| *n);
        let p = pending.iter().find(|(x, _)| x == r).map_or(0, |(_, n)| *n);
        telemetry
            .outbox_pending
            .get_or_create(&ReceiverLabels {
                receiver: r.clone(),
            })
            .set(p);
        if let Ok(labels) = Labels::new([("receiver", r.as_str())]) {
            samples.push(Sample::new(name.clone(), labels, n as f64, now));
        }
    }
    if !samples.is_empty() {
        let _ = store.ingest().try_send(Batch {
            samples,
            fresh_ms: 60_000,
        });
    }
}

async fn worker(
    handle: NotifyHandle,
    notifier: Arc<dyn Notifier>,
    policy: DeliveryPolicy,
    telemetry: Telemetry,
    stop: CancellationToken,
) {
    let name = notifier.name().to_string();
    let waker = handle.waker(&name);
    let store = handle.store().clone();
    let memo = StoreMemo::new(store.clone(), name.clone());
    let labels = ReceiverLabels {
        receiver: name.clone(),
    };
    'outer: loop {
        if stop.is_cancelled() {
            break;
        }
        let rows = match store.read(|c| outbox::pending(c, &name, 64)) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(receiver = %name, error = %e, "cannot read the outbox");
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                }
            }
        };
        if rows.is_empty() {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = waker.notified() => continue,
                _ = tokio::time::sleep(Duration::from_secs(60)) => continue,
            }
        }
        for due in rows {
            let now = now_ms();
            if due.next_attempt_at > now {
                let wait = Duration::from_millis((due.next_attempt_at - now) as u64);
                tokio::select! {
                    _ = stop.cancelled() => break 'outer,
                    _ = tokio::time::sleep(wait) => {}
                    // New rows queue behind this one; re-read in order.
                    _ = waker.notified() => {}
                }
                continue 'outer;
            }
            if !deliver_one(
                &store,
                notifier.as_ref(),
                &memo,
                &policy,
                &telemetry,
                &labels,
                due,
            )
            .await
            {
                // Keep order: nothing after a failed row goes before it.
                continue 'outer;
            }
        }
    }
}

/// How a delivery attempt is recorded.
type Outcome = Box<dyn FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<()> + Send>;

/// Sends one row and records the outcome; true when the row is finished.
async fn deliver_one(
    store: &Store,
    notifier: &dyn Notifier,
    memo: &StoreMemo,
    policy: &DeliveryPolicy,
    telemetry: &Telemetry,
    labels: &ReceiverLabels,
    due: Due,
) -> bool {
    let id = due.notification.id;
    let created = due.notification.created_at;
    let result = if created == 0 && due.notification.alerts.is_empty() {
        Err(NotifyError::Permanent {
            reason: "the stored notification is unreadable".into(),
        })
    } else {
        match tokio::time::timeout(policy.timeout, notifier.notify(&due.notification, memo)).await {
            Ok(r) => r,
            Err(_) => Err(NotifyError::Retryable {
                reason: format!(
                    "no answer within {}",
                    crate::duration::format(policy.timeout)
                ),
                retry_after: None,
            }),
        }
    };
    let now = now_ms();
    let (outcome, finished): (Outcome, bool) = match result {
        Ok(()) => {
            telemetry.notifications_sent.get_or_create(labels).inc();
            (
                Box::new(move |tx| outbox::mark_delivered(tx, id, now)),
                true,
            )
        }
        Err(NotifyError::Permanent { reason }) => {
            telemetry.notification_failures.inc();
            telemetry
                .notifications_undelivered
                .get_or_create(labels)
                .inc();
            tracing::error!(receiver = %labels.receiver, id, error = %reason, "notification refused for good; not retried");
            (
                Box::new(move |tx| {
                    outbox::mark_failed(tx, id, &reason, None, RowState::Failed, now)
                }),
                true,
            )
        }
        Err(NotifyError::Retryable {
            reason,
            retry_after,
        }) => {
            telemetry.notification_failures.inc();
            if now - created >= policy.dead_after.as_millis() as i64 {
                telemetry
                    .notifications_undelivered
                    .get_or_create(labels)
                    .inc();
                tracing::error!(receiver = %labels.receiver, id, error = %reason, attempts = due.attempts + 1, "notification not delivered in time; dead-lettered");
                (
                    Box::new(move |tx| {
                        outbox::mark_failed(tx, id, &reason, None, RowState::Dead, now)
                    }),
                    true,
                )
            } else {
                let delay = backoff(policy, due.attempts, retry_after, id as u64 ^ now as u64);
                let next = now + delay.as_millis() as i64;
                tracing::warn!(receiver = %labels.receiver, id, error = %reason, retry_in = %crate::duration::format(delay), "notification failed; will retry");
                (
                    Box::new(move |tx| {
                        outbox::mark_failed(tx, id, &reason, Some(next), RowState::Pending, now)
                    }),
                    false,
                )
            }
        }
    };
    if let Err(e) = store.write(outcome).await {
        tracing::error!(receiver = %labels.receiver, id, error = %e, "cannot record a delivery outcome");
        tokio::time::sleep(Duration::from_millis(200)).await;
        return false;
    }
    finished
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_honours_retry_after() {
        let p = DeliveryPolicy {
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        };
        for seed in 0..100 {
            let d0 = backoff(&p, 0, None, seed);
            assert!(
                d0 >= Duration::from_millis(500) && d0 <= Duration::from_secs(1),
                "{d0:?}"
            );
            let d3 = backoff(&p, 3, None, seed);
            assert!(
                d3 >= Duration::from_secs(4) && d3 <= Duration::from_secs(8),
                "{d3:?}"
            );
            let big = backoff(&p, 30, None, seed);
            assert!(big <= Duration::from_secs(60));
            assert_eq!(
                backoff(&p, 0, Some(Duration::from_secs(30)), seed),
                Duration::from_secs(30)
            );
        }
        let spread: std::collections::BTreeSet<Duration> =
            (0..50).map(|s| backoff(&p, 2, None, s)).collect();
        assert!(spread.len() > 10, "jitter spreads retries");
    }
}
