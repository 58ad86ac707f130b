//! The notification pipeline (the Alertmanager model, with durable state).
//!
//! # Layout
//! - [`config`]: `[notify]`, `[[route]]`, `[[inhibit]]`, `[[dependency]]`,
//!   `[[maintenance]]`, validated into a [`config::NotifyPlan`].
//! - [`matchers`]: label matchers as users write them.
//! - [`route`]: the routing tree (`continue`, nesting, a default route).
//! - [`group`]: groups of alerts and their per-receiver notification log.
//! - [`stages`]: what happens at each flush, in order: maintenance → silence →
//!   inhibition/dependency → flapping (mute stages), escalation, dedup/repeat.
//! - [`dispatch`]: the [`dispatch::Dispatcher`] holding the state and making every
//!   decision inside the store's write transaction.
//! - [`outbox`]: the durable outbox and delivery history.
//! - [`deliver`]: one delivery worker per receiver: timeouts, backoff with jitter,
//!   `Retry-After`, dead letters.
//! - [`silence`], [`ack`], [`maintenance`]: the operator-facing pieces.
//!
//! State lives in SQLite: an alert's state change, the group it joins and any
//! outbox row it causes commit in one transaction; the group timers resume after a
//! restart, and the notification log keeps a restart from re-sending anything.

pub mod ack;
pub mod config;
pub mod deliver;
pub mod dispatch;
pub mod group;
pub mod maintenance;
pub mod matchers;
pub mod outbox;
pub mod route;
pub mod silence;
pub mod stages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Transaction;
use tokio::sync::{Notify, broadcast};

use crate::api::ApiEvent;
use crate::lifecycle::{AlertBook, Applied, Change};
use crate::model::{Alert, AlertState, Fingerprint, Timestamp, now_ms};
use crate::store::{Store, StoreError};
use config::NotifyPlan;
use dispatch::{AlertStatus, Dispatcher, NewSilence, NotifyEvent, OpError, ReceiverInfo};
use silence::SilenceView;

/// Why a pipeline operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyOpError {
    /// Refused (bad request, unknown alert or silence).
    #[error(transparent)]
    Refused(#[from] OpError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A handle on the pipeline; cheap to clone.
#[derive(Clone)]
pub struct NotifyHandle {
    // std Mutex: held only inside synchronous SQLite work on the store's writer
    // thread or for in-memory reads, never across an await.
    inner: Arc<Mutex<Dispatcher>>,
    store: Store,
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
    ticker: Arc<Notify>,
    events: Option<broadcast::Sender<ApiEvent>>,
}

impl std::fmt::Debug for NotifyHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyHandle").finish_non_exhaustive()
    }
}

impl NotifyHandle {
    /// Loads the pipeline's state from `store` and reconciles it with the routes
    /// and the alerts active in the store.
    pub async fn open(
        store: Store,
        plan: NotifyPlan,
        receivers: Vec<ReceiverInfo>,
        events: Option<broadcast::Sender<ApiEvent>>,
    ) -> Result<Self, StoreError> {
        let now = now_ms();
        let d = store.read(|c| Dispatcher::load(c, plan, receivers, now))?;
        let h = NotifyHandle {
            inner: Arc::new(Mutex::new(d)),
            store,
            wakers: Arc::new(Mutex::new(HashMap::new())),
            ticker: Arc::new(Notify::new()),
            events,
        };
        h.reconcile().await?;
        Ok(h)
    }

    async fn reconcile(&self) -> Result<(), StoreError> {
        let inner = self.inner.clone();
        let now = now_ms();
        self.store
            .write(move |tx| {
                let active: Vec<Alert> = AlertBook::load(tx, now)?
                    .alerts()
                    .into_iter()
                    .filter(|a| a.state == AlertState::Firing)
                    .collect();
                lock(&inner).reconcile(tx, &active, now)
            })
            .await?;
        self.wake();
        Ok(())
    }

    /// The dispatcher, locked.
    pub fn lock(&self) -> MutexGuard<'_, Dispatcher> {
        lock(&self.inner)
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Takes in one round of evaluations inside the caller's transaction (the one
    /// that persists the alert state). Call [`NotifyHandle::after_write`] after it
    /// commits or fails.
    pub fn apply_tx(
        &self,
        tx: &Transaction<'_>,
        applied: &[Applied],
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        self.lock().apply(tx, applied, now)
    }

    /// Takes in state changes from outside the rules (e.g. webhooks) inside the
    /// caller's transaction.
    pub fn ingest_tx(
        &self,
        tx: &Transaction<'_>,
        changes: &[Change],
        now: Timestamp,
    ) -> rusqlite::Result<()> {
        self.lock().ingest(tx, changes, now)
    }

    /// True when `rule`'s evaluations matter even without state changes (its
    /// alerts' flap state is being tracked).
    pub fn tracks(&self, rule: &str) -> bool {
        self.lock().tracks_rule(rule)
    }

    /// After a transaction that used [`NotifyHandle::apply_tx`]: wakes delivery on
    /// success; on failure the in-memory state may be ahead of the store, so it is
    /// loaded again.
    pub async fn after_write(&self, committed: bool) {
        if committed {
            self.wake();
        } else if let Err(e) = self.reload().await {
            tracing::error!(error = %e, "could not reload the notification state");
        }
    }

    async fn reload(&self) -> Result<(), StoreError> {
        let (plan, receivers) = {
            let d = self.lock();
            (d.plan().clone(), d.receivers().to_vec())
        };
        let now = now_ms();
        let fresh = self
            .store
            .read(|c| Dispatcher::load(c, plan, receivers, now))?;
        *self.lock() = fresh;
        self.reconcile().await
    }

    /// Runs `f` on the dispatcher in a write transaction; wakes delivery after.
    pub async fn write<R, F>(&self, f: F) -> Result<R, NotifyOpError>
    where
        F: FnOnce(&mut Dispatcher, &Transaction<'_>) -> Result<R, OpError> + Send + 'static,
        R: Send + 'static,
    {
        let inner = self.inner.clone();
        let res = self
            .store
            .write(move |tx| Ok(f(&mut lock(&inner), tx)))
            .await;
        match res {
            Ok(Ok(r)) => {
                self.wake();
                Ok(r)
            }
            Ok(Err(e)) => {
                // A refused operation may have written part of its rows before
                // failing; the transaction committed them, so reload to be sure.
                self.after_write(true).await;
                Err(e.into())
            }
            Err(e) => {
                self.after_write(false).await;
                Err(e.into())
            }
        }
    }

    /// Replaces the plan (config reload).
    pub async fn reconfigure(
        &self,
        plan: NotifyPlan,
        receivers: Vec<ReceiverInfo>,
    ) -> Result<(), NotifyOpError> {
        let now = now_ms();
        self.write(move |d, tx| {
            d.reconfigure(tx, plan, receivers, now)
                .map_err(|e| OpError::Invalid(format!("store: {e}")))
        })
        .await
    }

    /// Runs the timers due now.
    pub async fn tick(&self) -> Result<(), NotifyOpError> {
        let now = now_ms();
        self.write(move |d, tx| {
            d.tick(tx, now)
                .map_err(|e| OpError::Invalid(format!("store: {e}")))
        })
        .await
    }

    /// Acknowledges a firing alert.
    pub async fn ack(
        &self,
        fp: Fingerprint,
        by: String,
        comment: String,
        expires_at: Option<Timestamp>,
    ) -> Result<crate::ports::Acknowledgement, NotifyOpError> {
        let now = now_ms();
        self.write(move |d, tx| d.ack(tx, fp, by, comment, expires_at, now))
            .await
    }

    /// Removes an ack.
    pub async fn unack(&self, fp: Fingerprint) -> Result<(), NotifyOpError> {
        self.write(move |d, tx| d.unack(tx, fp)).await
    }

    /// Makes a silence.
    pub async fn add_silence(&self, s: NewSilence) -> Result<SilenceView, NotifyOpError> {
        let now = now_ms();
        self.write(move |d, tx| d.add_silence(tx, s, now)).await
    }

    /// Expires a silence.
    pub async fn expire_silence(&self, id: String) -> Result<SilenceView, NotifyOpError> {
        let now = now_ms();
        self.write(move |d, tx| d.expire_silence(tx, &id, now))
            .await
    }

    /// Every silence.
    pub fn silences(&self) -> Vec<SilenceView> {
        self.lock().silences(now_ms())
    }

    /// The notification state of `alerts`.
    pub fn status(&self, alerts: &[Alert]) -> Vec<AlertStatus> {
        self.lock().status(alerts, now_ms())
    }

    /// When the next timer is due.
    pub fn next_due(&self) -> Option<Timestamp> {
        self.lock().next_due()
    }

    /// The waker of `receiver`'s delivery worker.
    pub fn waker(&self, receiver: &str) -> Arc<Notify> {
        let mut w = self.wakers.lock().unwrap_or_else(|p| p.into_inner());
        w.entry(receiver.to_string())
            .or_insert_with(|| Arc::new(Notify::new()))
            .clone()
    }

    /// The ticker's waker (new timers).
    pub fn ticker(&self) -> Arc<Notify> {
        self.ticker.clone()
    }

    /// Wakes the workers of receivers with new rows, publishes events, and lets the
    /// ticker see new timers.
    pub fn wake(&self) {
        let (receivers, events) = {
            let mut d = self.lock();
            (d.take_wake(), d.take_events())
        };
        for r in receivers {
            self.waker(&r).notify_one();
        }
        if let Some(tx) = &self.events {
            for e in events {
                let ev = match e {
                    NotifyEvent::Silence { silence } => ApiEvent::Silence { silence },
                    NotifyEvent::Ack {
                        fingerprint,
                        acknowledged,
                    } => ApiEvent::Ack {
                        fingerprint,
                        acknowledged,
                    },
                };
                let _ = tx.send(ev);
            }
        }
        self.ticker.notify_one();
    }
}

fn lock(m: &Mutex<Dispatcher>) -> MutexGuard<'_, Dispatcher> {
    // A panic while holding the lock leaves the state as it was at the panic; the
    // store still has the committed truth, and a failed write reloads it.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[cfg(test)]
mod tests;
