//! Notification pipeline benchmarks: an alert storm through routing, grouping and
//! the outbox, and outbox delivery throughput to a receiver that accepts at once
//! (the cost of the pipeline itself: read, send, mark delivered, one transaction
//! per row).
//!
//! `cargo bench -p warden-engine --bench notify`
#![allow(clippy::unwrap_used)] // a benchmark, not a daemon path

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_engine::lifecycle::Change;
use warden_engine::model::{Alert, AlertState, Annotations, Fingerprint, Labels, Severity};
use warden_engine::notify::NotifyHandle;
use warden_engine::notify::config::{DeliveryPolicy, NotifyConfig, NotifySections};
use warden_engine::notify::dispatch::{OpError, ReceiverInfo};
use warden_engine::notify::{deliver, outbox};
use warden_engine::ports::{
    BoxFuture, DeliveryMemo, Notification, NotifiedAlert, Notifier, NotifyError, NotifyReason,
};
use warden_engine::store::{Store, StoreOptions};
use warden_engine::telemetry::Telemetry;

fn alert(i: usize) -> Alert {
    let labels = Labels::new([
        ("alertname", "NodeDown".to_string()),
        ("severity", "critical".into()),
        ("cluster", format!("c{}", i % 5)),
        ("node", format!("n{i}")),
    ])
    .unwrap();
    Alert {
        name: "NodeDown".into(),
        state: AlertState::Firing,
        severity: Severity::Critical,
        fingerprint: Fingerprint::of("NodeDown", &labels),
        labels,
        annotations: Annotations::new(),
        value: 1.0,
        since: 0,
        fired_at: Some(0),
    }
}

fn plan(receivers: &[String]) -> warden_engine::notify::config::NotifyPlan {
    let n: NotifyConfig =
        toml::from_str("group_by = [\"cluster\"]\ngroup_wait = \"0s\"\n").unwrap();
    NotifySections {
        notify: Some(&n),
        ..Default::default()
    }
    .build(receivers)
    .unwrap()
}

fn storm(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("notify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(5_000));
    g.bench_function("storm_5000_alerts_to_grouped_outbox_rows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let (store, h) = rt.block_on(async {
                    let store = Store::open(&StoreOptions::new(dir.path().join("b.db"))).unwrap();
                    let names = vec!["hook".to_string()];
                    let infos = vec![ReceiverInfo {
                        name: "hook".into(),
                        send_resolved: true,
                    }];
                    let h = NotifyHandle::open(store.clone(), plan(&names), infos, None)
                        .await
                        .unwrap();
                    (store, h)
                });
                let changes: Vec<Change> = (0..5_000)
                    .map(|i| Change {
                        alert: alert(i),
                        from: Some(AlertState::Pending),
                        to: Some(AlertState::Firing),
                        at: 0,
                    })
                    .collect();
                let started = Instant::now();
                rt.block_on(h.write(move |d, tx| {
                    d.ingest(tx, &changes, 0)
                        .map_err(|e| OpError::Invalid(e.to_string()))
                }))
                .unwrap();
                total += started.elapsed();
                let rows = store.read(|c| outbox::pending(c, "hook", 100)).unwrap();
                assert_eq!(rows.len(), 5);
                drop(h);
                rt.block_on(store.close()).unwrap();
            }
            total
        })
    });
    g.finish();
}

struct Counting {
    done: Arc<AtomicUsize>,
    all: Arc<tokio::sync::Notify>,
    want: usize,
}

impl Notifier for Counting {
    fn name(&self) -> &str {
        "sink"
    }
    fn notify<'a>(
        &'a self,
        _n: &'a Notification,
        _m: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            if self.done.fetch_add(1, Ordering::SeqCst) + 1 == self.want {
                self.all.notify_one();
            }
            Ok(())
        })
    }
}

fn outbox_throughput(c: &mut Criterion) {
    const ROWS: usize = 2_000;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut g = c.benchmark_group("notify");
    g.sample_size(10);
    g.throughput(Throughput::Elements(ROWS as u64));
    g.bench_function("outbox_delivery_2000_rows", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                total += rt.block_on(async {
                    let store = Store::open(&StoreOptions::new(dir.path().join("b.db"))).unwrap();
                    let names = vec!["sink".to_string()];
                    let infos = vec![ReceiverInfo {
                        name: "sink".into(),
                        send_resolved: true,
                    }];
                    let h = NotifyHandle::open(store.clone(), plan(&names), infos, None)
                        .await
                        .unwrap();
                    store
                        .write(|tx| {
                            for i in 0..ROWS {
                                outbox::insert(
                                    tx,
                                    &Notification {
                                        id: 0,
                                        receiver: "sink".into(),
                                        reason: NotifyReason::FirstNotification,
                                        group_key: "g".into(),
                                        group_labels: Labels::empty(),
                                        alerts: vec![NotifiedAlert::of(
                                            alert(i),
                                            AlertState::Firing,
                                            None,
                                        )],
                                        created_at: warden_engine::model::now_ms(),
                                    },
                                )?;
                            }
                            Ok(())
                        })
                        .await
                        .unwrap();
                    let all = Arc::new(tokio::sync::Notify::new());
                    let n: Arc<dyn Notifier> = Arc::new(Counting {
                        done: Arc::new(AtomicUsize::new(0)),
                        all: all.clone(),
                        want: ROWS,
                    });
                    let tracker = TaskTracker::new();
                    let stop = CancellationToken::new();
                    let started = Instant::now();
                    deliver::spawn(
                        &h,
                        &[n],
                        DeliveryPolicy::default(),
                        &Telemetry::default(),
                        Duration::from_secs(86_400),
                        &tracker,
                        &stop,
                    );
                    all.notified().await;
                    let took = started.elapsed();
                    stop.cancel();
                    tracker.close();
                    tracker.wait().await;
                    drop(h);
                    store.close().await.unwrap();
                    took
                });
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, storm, outbox_throughput);
criterion_main!(benches);
