//! Remediation benchmarks: the guardrails' decision per alert, and the runner's
//! path from a firing alert to the action being invoked (audit row included).
//!
//! `cargo bench -p warden-engine --bench remediate`
#![allow(clippy::unwrap_used)] // a benchmark, not a daemon path

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_engine::model::{Fingerprint, Labels};
use warden_engine::ports::{
    Action, ActionContext, ActionError, ActionOutcome, ActionRequest, BoxFuture, SingleNode,
};
use warden_engine::remediate::config::Guardrails;
use warden_engine::remediate::guard::{CaseKey, Ledger, limit_of};
use warden_engine::remediate::{AlertSignal, Remediation, Setup, system_clock};
use warden_engine::store::{Store, StoreOptions};
use warden_engine::telemetry::Telemetry;

const TARGETS: usize = 10_000;

fn decision(c: &mut Criterion) {
    let g = Guardrails {
        cooldown: Duration::from_secs(60),
        max_attempts: 3,
        window: Duration::from_secs(900),
        ..Guardrails::default()
    };
    let mut ledger = Ledger::new();
    let keys: Vec<CaseKey> = (0..TARGETS)
        .map(|i| CaseKey {
            action: "restart".into(),
            target: Labels::new([("instance", format!("web-{i:05}"))]).unwrap(),
        })
        .collect();
    let group = Labels::new([("service", "web")]).unwrap();
    for (i, k) in keys.iter().enumerate() {
        for a in 0..3 {
            let t = (i as i64) + a * 100_000;
            ledger.record(k, t, t + 1_000);
        }
    }
    let alert = Labels::new([
        ("alertname", "WebDown"),
        ("instance", "web-04242"),
        ("service", "web"),
        ("severity", "critical"),
    ])
    .unwrap();
    let mut i = 0usize;
    c.bench_function("guardrail decision (10k targets with history)", |b| {
        b.iter(|| {
            i = (i + 7919) % TARGETS;
            let key = CaseKey {
                action: "restart".into(),
                target: alert.keep_only(&["instance"]),
            };
            let held = ledger.check(&g, &keys[i], 10_000_000).is_err()
                || ledger.check(&g, &key, 10_000_000).is_err();
            let slot = ledger
                .check_slot("restart", &group, limit_of(&g.limit, None))
                .is_ok();
            std::hint::black_box((held, slot))
        })
    });
}

/// Tells the bench the moment it is invoked.
struct Signal(mpsc::UnboundedSender<Instant>);

impl Action for Signal {
    fn name(&self) -> &str {
        "restart"
    }
    fn kind(&self) -> &'static str {
        "exec"
    }
    fn run<'a>(
        &'a self,
        _req: &'a ActionRequest,
        _cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        let _ = self.0.send(Instant::now());
        Box::pin(async {
            Ok(ActionOutcome {
                ok: true,
                ..ActionOutcome::default()
            })
        })
    }
}

fn alert_to_start(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let tracker = TaskTracker::new();
    let cancel = CancellationToken::new();
    let (handle, store) = rt.block_on(async {
        let store = Store::open(&StoreOptions::new(dir.path().join("bench.db"))).unwrap();
        let (events, _) = tokio::sync::broadcast::channel(1024);
        let g = Guardrails {
            cooldown: Duration::ZERO,
            max_attempts: 1_000,
            verify_within: None,
            limit: warden_engine::remediate::config::Limit::Count(64),
            ..Guardrails::default()
        };
        let h = Remediation::spawn(
            Setup {
                actions: vec![(Arc::new(Signal(tx)) as Arc<dyn Action>, g)],
                ..Setup::default()
            },
            store.clone(),
            Telemetry::default(),
            events,
            Arc::new(SingleNode),
            system_clock(),
            &tracker,
            cancel.clone(),
        )
        .unwrap();
        h.alerts(Vec::new(), true).await;
        (h, store)
    });
    let mut n = 0u64;
    c.bench_function(
        "firing alert to action invoked (audit row written first)",
        |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        n += 1;
                        let labels = Labels::new([
                            ("alertname", "WebDown"),
                            ("instance", &format!("web-{n}")),
                        ])
                        .unwrap();
                        let sig = |firing| AlertSignal {
                            rule: "WebDown".into(),
                            fingerprint: Fingerprint::of("WebDown", &labels),
                            labels: labels.clone(),
                            value: 0.0,
                            firing,
                            remediate: vec!["restart".into()],
                        };
                        let start = Instant::now();
                        handle.alerts(vec![sig(true)], false).await;
                        let at = rx.recv().await.unwrap();
                        total += at - start;
                        handle.alerts(vec![sig(false)], false).await;
                    }
                    total
                })
            })
        },
    );
    rt.block_on(async {
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        drop(handle);
        store.close().await.unwrap();
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = decision, alert_to_start
}
criterion_main!(benches);
