//! The runner against a real store, with a scripted action and a manual clock.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use tokio::sync::Semaphore;

use super::*;
use crate::ports::{BoxFuture, SingleNode};
use crate::remediate::config::Guardrails;
use crate::store::StoreOptions;

/// An action that records each call and answers as told; with a gate, each real
/// run waits for a permit.
struct Scripted {
    name: String,
    calls: Mutex<Vec<ActionRequest>>,
    ok: std::sync::atomic::AtomicBool,
    gate: Option<Arc<Semaphore>>,
    /// Keep waiting for the gate when warden stops (as a hung command would).
    stubborn: bool,
}

impl Scripted {
    fn new(name: &str, gate: Option<Arc<Semaphore>>) -> Arc<Self> {
        Arc::new(Self {
            name: name.into(),
            calls: Mutex::new(Vec::new()),
            ok: std::sync::atomic::AtomicBool::new(true),
            gate,
            stubborn: false,
        })
    }
    fn real_runs(&self) -> Vec<ActionRequest> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.dry_run)
            .cloned()
            .collect()
    }
}

impl Action for Scripted {
    fn name(&self) -> &str {
        &self.name
    }
    fn kind(&self) -> &'static str {
        "exec"
    }
    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
        cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(async move {
            self.calls.lock().unwrap().push(req.clone());
            if !req.dry_run
                && let Some(g) = &self.gate
            {
                if self.stubborn {
                    g.acquire().await.unwrap().forget();
                }
                tokio::select! {
                    p = g.acquire() => p.unwrap().forget(),
                    _ = cx.cancel.cancelled() => return Err(ActionError::Failed("stopped".into())),
                }
            }
            Ok(ActionOutcome {
                ok: self.ok.load(Ordering::SeqCst),
                status: Some(0),
                args: serde_json::json!(["restart", req.labels.get("instance")]),
                output: "done".into(),
            })
        })
    }
}

/// Records the notes the runner tells.
#[derive(Default)]
struct Told(Mutex<Vec<ActionNote>>);

impl ActionNotes for Told {
    fn tell(&self, note: ActionNote) {
        self.0.lock().unwrap().push(note);
    }
}

struct Rig {
    notes: Arc<Told>,
    handle: Remediation,
    store: Store,
    clock: Arc<AtomicI64>,
    _dir: tempfile::TempDir,
    cancel: CancellationToken,
    tracker: TaskTracker,
}

impl Rig {
    fn start(actions: Vec<(Arc<dyn Action>, Guardrails)>, switches: Switches) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
        Self::start_on(store, dir, actions, switches, 1_000_000)
    }

    fn start_on(
        store: Store,
        dir: tempfile::TempDir,
        actions: Vec<(Arc<dyn Action>, Guardrails)>,
        switches: Switches,
        t0: i64,
    ) -> Rig {
        let clock = Arc::new(AtomicI64::new(t0));
        let c = clock.clone();
        let tracker = TaskTracker::new();
        let cancel = CancellationToken::new();
        let (events, _) = broadcast::channel(64);
        let notes = Arc::new(Told::default());
        let handle = Remediation::spawn(
            Setup {
                actions,
                switches,
                notes: Some(notes.clone()),
            },
            store.clone(),
            Telemetry::default(),
            events,
            Arc::new(SingleNode),
            Arc::new(move || c.load(Ordering::SeqCst)),
            &tracker,
            cancel.clone(),
        )
        .unwrap();
        Rig {
            notes,
            handle,
            store,
            clock,
            _dir: dir,
            cancel,
            tracker,
        }
    }

    fn advance(&self, ms: i64) {
        self.clock.fetch_add(ms, Ordering::SeqCst);
    }

    async fn fire(&self, instance: &str, firing: bool) {
        self.fire_rule("Down", instance, "web", firing).await;
    }

    async fn fire_rule(&self, rule: &str, instance: &str, service: &str, firing: bool) {
        let labels = Labels::new([
            ("alertname", rule),
            ("instance", instance),
            ("service", service),
        ])
        .unwrap();
        self.handle
            .alerts(
                vec![AlertSignal {
                    rule: rule.into(),
                    fingerprint: Fingerprint::of(rule, &labels),
                    labels,
                    value: 1.0,
                    firing,
                    remediate: vec!["restart".into()],
                }],
                false,
            )
            .await;
    }

    async fn sync(&self) {
        self.handle.alerts(Vec::new(), true).await;
    }

    fn rows(&self) -> Vec<AuditEntry> {
        self.handle
            .list(&audit::Filter {
                limit: 100,
                ..audit::Filter::default()
            })
            .unwrap()
    }

    /// Waits (real time, bounded) until `f` holds for the audit log, newest first.
    async fn until(&self, what: &str, f: impl Fn(&[AuditEntry]) -> bool) -> Vec<AuditEntry> {
        for _ in 0..200 {
            let rows = self.rows();
            if f(&rows) {
                return rows;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}: {:#?}", self.rows());
    }

    fn flag(&self, metric: &str) -> Vec<(Labels, f64)> {
        let sel = Selector::metric(MetricName::new(metric).unwrap());
        self.store
            .latest(&sel, now_ms())
            .unwrap()
            .into_iter()
            .map(|p| (p.labels, p.value))
            .collect()
    }

    async fn until_flag(&self, metric: &str, value: f64) -> Vec<(Labels, f64)> {
        for _ in 0..200 {
            let f = self.flag(metric);
            if f.iter().any(|(_, v)| *v == value) {
                return f;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{metric} never became {value}: {:?}", self.flag(metric));
    }

    async fn stop(self) {
        let Rig {
            handle,
            store,
            cancel,
            tracker,
            ..
        } = self;
        cancel.cancel();
        tracker.close();
        tracker.wait().await;
        // Every store handle must be gone for close to finish at once.
        drop(handle);
        store.close().await.unwrap();
    }
}

fn states(rows: &[AuditEntry]) -> Vec<&'static str> {
    rows.iter().map(|r| r.state.as_str()).collect()
}

fn guard(cooldown_s: u64, max: u32) -> Guardrails {
    Guardrails {
        cooldown: Duration::from_secs(cooldown_s),
        max_attempts: max,
        window: Duration::from_secs(600),
        verify_within: Some(Duration::from_secs(60)),
        ..Guardrails::default()
    }
}

#[tokio::test]
async fn a_firing_alert_runs_the_action_and_its_resolution_verifies_it() {
    let a = Scripted::new("restart", None);
    let rig = Rig::start(vec![(a.clone(), guard(60, 3))], Switches::default());
    rig.sync().await;
    rig.fire("web-1", true).await;
    let rows = rig
        .until("succeeded", |r| {
            r.first()
                .is_some_and(|r| r.state == AttemptState::Succeeded)
        })
        .await;
    assert_eq!(rows.len(), 1, "one row per attempt: {rows:#?}");
    let r = &rows[0];
    assert_eq!(r.action, "restart");
    assert_eq!(r.kind, "exec");
    assert_eq!(r.rule, "Down");
    assert_eq!(r.target.get("instance"), Some("web-1"));
    assert_eq!(r.labels.get("service"), Some("web"));
    assert_eq!(r.args, Some(serde_json::json!(["restart", "web-1"])));
    assert_eq!(r.exit_status, Some(0));
    assert_eq!(r.output.as_deref(), Some("done"));
    assert_eq!(r.verified, None, "not yet");
    assert!(r.started_at.is_some() && r.ended_at.is_some());
    assert!(r.fingerprint.is_some());
    assert_eq!(a.real_runs().len(), 1);
    let told = rig.notes.0.lock().unwrap().clone();
    assert_eq!(told.len(), 1, "running is not told, the end is: {told:#?}");
    assert_eq!(told[0].state, "succeeded");
    assert_eq!(
        told[0].summary,
        "warden exec restart on {instance=\"web-1\"}: succeeded (status 0)"
    );
    assert_eq!(told[0].labels.get("service"), Some("web"));

    rig.fire("web-1", false).await;
    rig.until("verified", |r| r[0].verified == Some(true)).await;
    // Firing again within the cooldown runs nothing until the cooldown ends.
    rig.fire("web-1", true).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.real_runs().len(), 1, "cooldown holds");
    rig.advance(61_000);
    rig.until("second attempt", |r| r.len() == 2).await;
    assert_eq!(a.real_runs().len(), 2);
    rig.stop().await;
}

#[tokio::test]
async fn a_spent_budget_refuses_once_and_fires_exhausted_until_the_alert_resolves() {
    let a = Scripted::new("restart", None);
    let rig = Rig::start(vec![(a.clone(), guard(0, 2))], Switches::default());
    rig.sync().await;
    for n in 1..=2 {
        rig.fire("web-1", true).await;
        rig.until("attempt", |r| {
            r.len() == n && r[0].state == AttemptState::Succeeded
        })
        .await;
        rig.fire("web-1", false).await;
        rig.until("verified", |r| r[0].verified == Some(true)).await;
        rig.advance(1_000);
    }
    rig.fire("web-1", true).await;
    let rows = rig
        .until("refused", |r| r[0].state == AttemptState::Refused)
        .await;
    assert!(
        rows[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("budget spent: 2 of 2 attempts within 10m"),
        "{rows:#?}"
    );
    assert_eq!(a.real_runs().len(), 2);
    let flag = rig.until_flag("warden_remediation_exhausted", 1.0).await;
    assert_eq!(flag[0].0.get("instance"), Some("web-1"));
    assert_eq!(flag[0].0.get("action"), Some("restart"));
    assert_eq!(flag[0].0.get("rule"), Some("Down"));
    // Ticks go by: still one refusal row.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(
        states(&rig.rows()),
        vec!["refused", "succeeded", "succeeded"]
    );

    rig.fire("web-1", false).await;
    rig.until_flag("warden_remediation_exhausted", 0.0).await;
    rig.stop().await;
}

#[tokio::test]
async fn concurrency_limits_each_group_and_queues_the_rest() {
    let gate = Arc::new(Semaphore::new(0));
    let a = Scripted::new("restart", Some(gate.clone()));
    let g = Guardrails {
        group_by: vec!["service".into()],
        ..guard(0, 5)
    };
    let rig = Rig::start(vec![(a.clone(), g)], Switches::default());
    rig.sync().await;
    for i in ["web-1", "web-2", "web-3"] {
        rig.fire(i, true).await;
    }
    rig.fire_rule("Down", "db-1", "db", true).await;
    let rows = rig
        .until("1 web + 1 db running, 2 queued", |r| {
            let mut s = states(r);
            s.sort();
            s == vec!["queued", "queued", "running", "running"]
        })
        .await;
    assert!(
        rows.iter()
            .any(|r| r.state == AttemptState::Running && r.labels.get("service") == Some("db"))
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(a.real_runs().len(), 2, "the limit holds across ticks");
    assert_eq!(rig.handle.status().running, 2);
    gate.add_permits(2);
    rig.until("the next web runs", |r| {
        r.iter()
            .filter(|r| r.state == AttemptState::Running)
            .count()
            == 1
            && r.iter().filter(|r| r.state == AttemptState::Queued).count() == 1
    })
    .await;
    gate.add_permits(10);
    rig.until("all ran", |r| {
        r.iter().all(|r| r.state == AttemptState::Succeeded)
    })
    .await;
    assert_eq!(a.real_runs().len(), 4);
    rig.stop().await;
}

#[tokio::test]
async fn approval_waits_then_runs_on_approval_and_denial_and_expiry_close_it() {
    let a = Scripted::new("restart", None);
    let g = Guardrails {
        approval: Some(Duration::from_secs(300)),
        ..guard(0, 5)
    };
    let rig = Rig::start(vec![(a.clone(), g)], Switches::default());
    rig.sync().await;
    rig.fire("web-1", true).await;
    let rows = rig
        .until("pending", |r| {
            r.first()
                .is_some_and(|r| r.state == AttemptState::PendingApproval)
        })
        .await;
    let id = rows[0].id;
    assert_eq!(rows[0].expires_at, Some(1_000_000 + 300_000));
    assert_eq!(
        rows[0].args,
        Some(serde_json::json!(["restart", "web-1"])),
        "a preview"
    );
    assert!(a.real_runs().is_empty());
    let e = rig
        .handle
        .approve(id, "alice".into(), Some("go".into()))
        .await
        .unwrap();
    assert_eq!(e.approved_by.as_deref(), Some("alice"));
    rig.until("ran", |r| r[0].state == AttemptState::Succeeded)
        .await;
    assert_eq!(a.real_runs().len(), 1);
    let again = rig
        .handle
        .approve(id, "bob".into(), None)
        .await
        .unwrap_err();
    assert!(matches!(again, RemediationError::Conflict(..)), "{again:?}");
    assert!(matches!(
        rig.handle.approve(9_999, "bob".into(), None).await,
        Err(RemediationError::NotFound(_))
    ));

    // Another target: denied, then nothing more while it fires.
    rig.fire("web-2", true).await;
    let rows = rig
        .until("pending 2", |r| r[0].state == AttemptState::PendingApproval)
        .await;
    let e = rig
        .handle
        .deny(rows[0].id, "bob".into(), None)
        .await
        .unwrap();
    assert_eq!(e.state, AttemptState::Denied);
    assert_eq!(e.denied_by.as_deref(), Some("bob"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rig.rows().len(), 2, "no new request after a denial");

    // A third: nobody answers; it expires.
    rig.fire("web-3", true).await;
    rig.until("pending 3", |r| r[0].state == AttemptState::PendingApproval)
        .await;
    rig.advance(301_000);
    rig.until("expired", |r| r[0].state == AttemptState::Expired)
        .await;
    assert_eq!(a.real_runs().len(), 1);
    rig.stop().await;
}

#[tokio::test]
async fn the_kill_switch_refuses_persists_and_resumes() {
    let a = Scripted::new("restart", None);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
    let rig = Rig::start_on(
        store,
        dir,
        vec![(a.clone(), guard(0, 5))],
        Switches::default(),
        1_000_000,
    );
    rig.sync().await;
    let st = rig
        .handle
        .set_paused(true, "carol".into(), Some("maintenance".into()))
        .await
        .unwrap();
    assert!(st.paused);
    assert_eq!(st.paused_by.as_deref(), Some("carol"));
    rig.until_flag("warden_remediation_paused", 1.0).await;
    rig.fire("web-1", true).await;
    let rows = rig.until("refused", |r| !r.is_empty()).await;
    assert_eq!(rows[0].state, AttemptState::Refused);
    assert!(
        rows[0].reason.as_deref().unwrap().contains("paused"),
        "{rows:#?}"
    );
    let manual = rig
        .handle
        .run(
            "restart".into(),
            Labels::new([("instance", "web-9")]).unwrap(),
            "dave".into(),
            None,
        )
        .await;
    assert!(
        matches!(manual, Err(RemediationError::Conflict(..))),
        "{manual:?}"
    );
    assert!(a.real_runs().is_empty());

    // The switch survives a restart.
    let Rig {
        store,
        _dir,
        cancel,
        tracker,
        handle,
        ..
    } = rig;
    cancel.cancel();
    tracker.close();
    tracker.wait().await;
    drop(handle);
    let rig = Rig::start_on(
        store,
        _dir,
        vec![(a.clone(), guard(0, 5))],
        Switches::default(),
        1_000_000,
    );
    assert!(rig.handle.status().paused);
    rig.sync().await;
    rig.fire("web-1", true).await;
    rig.handle
        .set_paused(false, "carol".into(), None)
        .await
        .unwrap();
    rig.until("ran after resume", |r| {
        r[0].state == AttemptState::Succeeded
    })
    .await;
    rig.until_flag("warden_remediation_paused", 0.0).await;
    rig.stop().await;
}

#[tokio::test]
async fn dry_run_audits_everything_and_runs_nothing() {
    let a = Scripted::new("restart", None);
    let g = Guardrails {
        approval: Some(Duration::from_secs(300)),
        ..guard(30, 5)
    };
    let rig = Rig::start(
        vec![(a.clone(), g)],
        Switches {
            dry_run: true,
            ..Switches::default()
        },
    );
    rig.sync().await;
    rig.fire("web-1", true).await;
    let rows = rig.until("dry run", |r| !r.is_empty()).await;
    assert_eq!(rows[0].state, AttemptState::DryRun);
    assert!(rows[0].dry_run || rows[0].state == AttemptState::DryRun);
    assert_eq!(rows[0].args, Some(serde_json::json!(["restart", "web-1"])));
    assert!(rows[0].reason.as_deref().unwrap().contains("approval"));
    assert!(a.real_runs().is_empty());
    assert_eq!(a.calls.lock().unwrap().len(), 1);
    // The guardrails are simulated: the cooldown holds the next dry run.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rig.rows().len(), 1);
    rig.advance(31_000);
    rig.until("second dry run", |r| r.len() == 2).await;
    assert!(a.real_runs().is_empty());
    rig.stop().await;
}

#[tokio::test]
async fn an_unresolved_alert_fails_verification_and_the_next_attempt_follows_the_cooldown() {
    let a = Scripted::new("restart", None);
    let rig = Rig::start(vec![(a.clone(), guard(10, 5))], Switches::default());
    rig.sync().await;
    rig.fire("web-1", true).await;
    rig.until("ran", |r| {
        r.first()
            .is_some_and(|r| r.state == AttemptState::Succeeded)
    })
    .await;
    rig.advance(61_000);
    let rows = rig
        .until("verification failed", |r| r[0].verified == Some(false))
        .await;
    assert!(
        rows[0]
            .reason
            .as_deref()
            .unwrap()
            .contains("did not resolve within 1m")
    );
    let flag = rig.until_flag("warden_remediation_failed", 1.0).await;
    assert_eq!(flag[0].0.get("instance"), Some("web-1"));
    rig.until("second attempt", |r| r.len() == 2).await;
    // The action itself fails this time.
    a.ok.store(false, Ordering::SeqCst);
    rig.advance(61_000);
    rig.until("verification failed 2", |r| r[0].verified == Some(false))
        .await;
    rig.advance(11_000);
    let rows = rig
        .until("failed run", |r| r[0].state == AttemptState::Failed)
        .await;
    assert_eq!(rows.len(), 3);
    rig.fire("web-1", false).await;
    rig.until_flag("warden_remediation_failed", 0.0).await;
    rig.stop().await;
}

#[tokio::test]
async fn manual_runs_are_guarded_and_audited_with_who_asked() {
    let a = Scripted::new("restart", None);
    let rig = Rig::start(vec![(a.clone(), guard(60, 5))], Switches::default());
    rig.sync().await;
    let labels = Labels::new([("instance", "web-7")]).unwrap();
    let e = rig
        .handle
        .run(
            "restart".into(),
            labels.clone(),
            "erin".into(),
            Some("by hand".into()),
        )
        .await
        .unwrap();
    assert_eq!(e.requested_by.as_deref(), Some("erin"));
    assert_eq!(e.approved_by.as_deref(), Some("erin"));
    assert_eq!(e.rule, "");
    assert_eq!(e.fingerprint, None);
    rig.until("ran", |r| r[0].state == AttemptState::Succeeded)
        .await;
    assert_eq!(
        rig.rows()[0].verified,
        None,
        "nothing to verify without an alert"
    );
    let again = rig
        .handle
        .run("restart".into(), labels, "erin".into(), None)
        .await
        .unwrap_err();
    let RemediationError::Conflict(reason, Some(row)) = again else {
        panic!("{again:?}")
    };
    assert!(reason.starts_with("cooldown"), "{reason}");
    assert_eq!(row.state, AttemptState::Refused);
    assert!(matches!(
        rig.handle
            .run("nope".into(), Labels::empty(), "erin".into(), None)
            .await,
        Err(RemediationError::NotFound(_))
    ));
    assert_eq!(a.real_runs().len(), 1);
    rig.stop().await;
}

#[tokio::test]
async fn a_restart_keeps_the_budget_and_fails_interrupted_attempts() {
    let gate = Arc::new(Semaphore::new(0));
    let a = Arc::new(Scripted {
        stubborn: true,
        ..Arc::into_inner(Scripted::new("restart", Some(gate.clone()))).unwrap()
    });
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
    let rig = Rig::start_on(
        store,
        dir,
        vec![(a.clone(), guard(0, 1))],
        Switches::default(),
        1_000_000,
    );
    rig.sync().await;
    rig.fire("web-1", true).await;
    rig.until("running", |r| {
        r.first().is_some_and(|r| r.state == AttemptState::Running)
    })
    .await;
    // warden dies mid-attempt: the runner stops, the action never reports.
    let Rig {
        store,
        _dir,
        cancel,
        ..
    } = rig;
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let b = Scripted::new("restart", None);
    let rig = Rig::start_on(
        store,
        _dir,
        vec![(b.clone(), guard(0, 1))],
        Switches::default(),
        1_010_000,
    );
    let rows = rig
        .until("interrupted", |r| r[0].state == AttemptState::Failed)
        .await;
    assert!(
        rows[0]
            .reason
            .as_deref()
            .unwrap()
            .starts_with("interrupted")
    );
    rig.sync().await;
    rig.fire("web-1", true).await;
    rig.until("refused by the budget", |r| {
        r[0].state == AttemptState::Refused
    })
    .await;
    assert!(
        b.real_runs().is_empty(),
        "the budget came back from the audit log"
    );
    // The first runner's hung action still holds a store handle: stop without
    // waiting for the store to close.
    rig.cancel.cancel();
}
