//! Drives rule evaluation: each rule on its own `every` tick, and at once when a
//! metric it read gets a new sample, so detection latency is the probe's own phase
//! plus milliseconds. Results go through the alert lifecycle, are persisted in one
//! transaction per round, published to the API and announced to the notifiers.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use warden_engine::api::ApiEvent;
use warden_engine::lifecycle::{ActiveInstance, AlertBook, Applied, Change, RuleMeta, persist};
use warden_engine::model::{Alert, AlertState, Labels, MetricName, Sample, Timestamp, now_ms};
use warden_engine::notify::NotifyHandle;
use warden_engine::ports::{NoMemo, Notification, NotifiedAlert, Notifier, NotifyReason};
use warden_engine::remediate::{AlertSignal, Remediation};
use warden_engine::store::{Batch, Store};
use warden_engine::telemetry::{Loop, RuleLabels, Telemetry};
use warden_rules::{Diagnostic, ReadCache, Rule, RuleEngine, RuleFile};

/// Shortest gap between two sample-triggered evaluations of one rule.
const MIN_TRIGGER_GAP: Duration = Duration::from_millis(20);

/// The always-firing alert for receivers that expect one (`[rules].watchdog`).
const WATCHDOG_RULE: &str = r#"rule("Watchdog", #{
    severity: "info",
    summary: "warden is alive",
    description: "This alert always fires while warden evaluates rules. Route it to a dead man's switch: it pages when this stops arriving.",
    when: || true,
});"#;

/// Where rules come from.
#[derive(Debug, Clone)]
pub struct RuleSources {
    /// Files and directories of `*.rhai`.
    pub paths: Vec<PathBuf>,
    /// Run the built-in host pack too.
    pub builtin_host: bool,
    /// Run the always-firing `Watchdog` rule.
    pub watchdog: bool,
    /// Default evaluation interval.
    pub interval: Duration,
}

/// Messages to the evaluator.
pub enum Control {
    /// Rule files changed on disk: recompile.
    FilesChanged,
    /// A new config: new sources and state log.
    Reconfigure(RuleSources, Option<Arc<dyn Notifier>>),
}

struct FileState {
    /// The last version that compiled.
    good: Option<RuleFile>,
    /// Problems of the version on disk, if it does not compile.
    problems: Vec<Diagnostic>,
}

struct Scheduled {
    rule: Arc<Rule>,
    file: String,
    interval: Duration,
    next_due: Instant,
    reads: Vec<MetricName>,
    last_eval: Option<Instant>,
    triggered: bool,
    last_error: Option<String>,
}

/// The evaluator's state; runs as one task.
pub struct Evaluator {
    engine: Arc<RuleEngine>,
    store: Store,
    telemetry: Telemetry,
    book: AlertBook,
    notify: NotifyHandle,
    state_log: Option<Arc<dyn Notifier>>,
    sources: RuleSources,
    files: BTreeMap<PathBuf, FileState>,
    rules: Vec<Scheduled>,
    alerts_tx: watch::Sender<Arc<Vec<Alert>>>,
    events_tx: broadcast::Sender<ApiEvent>,
    next_internal: Instant,
    remediation: Option<Remediation>,
}

pub use warden_rules::rule_files;

fn sample(name: &str, labels: Labels, value: f64, ts: Timestamp) -> Option<Sample> {
    MetricName::new(name)
        .ok()
        .map(|n| Sample::new(n, labels, value, ts))
}

impl Evaluator {
    /// Loads the alert book from the store and compiles the rules.
    pub fn new(
        store: Store,
        telemetry: Telemetry,
        sources: RuleSources,
        notify: NotifyHandle,
        state_log: Option<Arc<dyn Notifier>>,
        alerts_tx: watch::Sender<Arc<Vec<Alert>>>,
        events_tx: broadcast::Sender<ApiEvent>,
    ) -> anyhow::Result<Self> {
        let book = store.read(|c| AlertBook::load(c, now_ms()))?;
        let _ = alerts_tx.send(Arc::new(book.alerts()));
        let mut ev = Self {
            engine: Arc::new(RuleEngine::new()),
            store,
            telemetry,
            book,
            notify,
            state_log,
            sources,
            files: BTreeMap::new(),
            rules: Vec::new(),
            alerts_tx,
            events_tx,
            next_internal: Instant::now(),
            remediation: None,
        };
        ev.reload();
        Ok(ev)
    }

    /// Sends alerts of rules with `remediate` to the remediation runner.
    pub fn with_remediation(mut self, r: Remediation) -> Self {
        self.remediation = Some(r);
        self
    }

    /// The `remediate` list of each rule that has one.
    fn remediating(&self) -> HashMap<&str, &Vec<String>> {
        self.rules
            .iter()
            .filter(|s| !s.rule.remediate.is_empty())
            .map(|s| (s.rule.name.as_str(), &s.rule.remediate))
            .collect()
    }

    /// Tells the remediation runner every firing alert of a rule with `remediate`
    /// (`full`: this is all of them), plus `changes`.
    async fn tell_remediation(&self, alerts: &[Alert], changes: &[Change], full: bool) {
        let Some(r) = &self.remediation else {
            return;
        };
        let map = self.remediating();
        let signal = |a: &Alert, firing: bool| {
            map.get(a.name.as_str()).map(|rem| AlertSignal {
                rule: a.name.clone(),
                labels: a.labels.clone(),
                fingerprint: a.fingerprint,
                value: a.value,
                firing,
                remediate: (*rem).clone(),
            })
        };
        let mut out: Vec<AlertSignal> = Vec::new();
        for c in changes {
            if c.to != Some(AlertState::Firing) {
                out.extend(signal(&c.alert, false));
            }
        }
        for a in alerts.iter().filter(|a| a.state == AlertState::Firing) {
            out.extend(signal(a, true));
        }
        if !out.is_empty() || full {
            r.alerts(out, full).await;
        }
    }

    /// Compiles every source again, keeping the last good version of a file that
    /// no longer compiles, and reschedules the rules.
    fn reload(&mut self) {
        let mut files: BTreeMap<PathBuf, FileState> = BTreeMap::new();
        let mut compile =
            |path: PathBuf, res: Result<RuleFile, Vec<Diagnostic>>, old: Option<FileState>| {
                let state = match res {
                    Ok(f) => FileState {
                        good: Some(f),
                        problems: Vec::new(),
                    },
                    Err(problems) => {
                        for p in &problems {
                            tracing::error!("{p}");
                        }
                        FileState {
                            good: old.and_then(|o| o.good),
                            problems,
                        }
                    }
                };
                files.insert(path, state);
            };
        let internal = PathBuf::from("<builtin>/internal.rhai");
        let old = self.files.remove(&internal);
        compile(
            internal.clone(),
            self.engine
                .compile_source(&internal, warden_rules::BUILTIN_INTERNAL_PACK),
            old,
        );
        if self.sources.builtin_host {
            let host = PathBuf::from("<builtin>/host.rhai");
            let old = self.files.remove(&host);
            compile(
                host.clone(),
                self.engine
                    .compile_source(&host, warden_rules::BUILTIN_HOST_PACK),
                old,
            );
        }
        if self.sources.watchdog {
            let wd = PathBuf::from("<builtin>/watchdog.rhai");
            let old = self.files.remove(&wd);
            compile(
                wd.clone(),
                self.engine.compile_source(&wd, WATCHDOG_RULE),
                old,
            );
        }
        for path in rule_files(&self.sources.paths) {
            let old = self.files.remove(&path);
            let res = self.engine.compile_file(&path);
            compile(path, res, old);
        }
        self.files = files;

        let previous: HashMap<String, Scheduled> = self
            .rules
            .drain(..)
            .map(|s| (s.rule.name.clone(), s))
            .collect();
        let mut previous = previous;
        let now = Instant::now();
        let mut names: Vec<String> = Vec::new();
        for (path, state) in &self.files {
            let Some(good) = &state.good else { continue };
            for rule in &good.rules {
                if names.contains(&rule.name) {
                    tracing::error!(
                        "{}:{}:{}: rule \"{}\" is defined twice; this one is ignored: give each rule a unique name",
                        path.display(),
                        rule.line,
                        rule.col,
                        rule.name
                    );
                    continue;
                }
                names.push(rule.name.clone());
                let interval = rule.every.unwrap_or(self.sources.interval);
                let prev = previous.remove(&rule.name);
                self.rules.push(Scheduled {
                    rule: rule.clone(),
                    file: path.display().to_string(),
                    interval,
                    next_due: prev
                        .as_ref()
                        .map(|p| p.next_due.min(now + interval))
                        .unwrap_or(now),
                    reads: prev.as_ref().map(|p| p.reads.clone()).unwrap_or_default(),
                    last_eval: prev.as_ref().and_then(|p| p.last_eval),
                    triggered: false,
                    last_error: None,
                });
            }
        }
        let invalid = self
            .files
            .values()
            .filter(|f| !f.problems.is_empty())
            .count();
        self.telemetry.rule_files_invalid.set(invalid as i64);
        tracing::info!(
            rules = self.rules.len(),
            files = self.files.len(),
            invalid,
            "rules loaded"
        );
        self.next_internal = now;
    }

    /// Runs until `shutdown`.
    pub async fn run(
        mut self,
        mut updates: broadcast::Receiver<Arc<Vec<MetricName>>>,
        mut control: mpsc::Receiver<Control>,
        shutdown: CancellationToken,
    ) {
        let names = self
            .rules
            .iter()
            .map(|s| s.rule.name.as_str())
            .collect::<Vec<_>>();
        let gone = self.book.retain_rules(&names, now_ms());
        self.finish_round(vec![gone], Vec::new()).await;
        self.tell_remediation(&self.book.alerts(), &[], true).await;
        loop {
            let next = self
                .rules
                .iter()
                .map(|s| {
                    if s.triggered {
                        s.last_eval
                            .map_or(Instant::now(), |l| l + MIN_TRIGGER_GAP)
                            .min(s.next_due)
                    } else {
                        s.next_due
                    }
                })
                .min()
                .unwrap_or_else(|| Instant::now() + self.sources.interval)
                .min(self.next_internal);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep_until(next) => {}
                u = updates.recv() => {
                    match u {
                        Ok(names) => self.mark(&names),
                        Err(broadcast::error::RecvError::Lagged(_)) => self.rules.iter_mut().for_each(|s| s.triggered = true),
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                    while let Ok(names) = updates.try_recv() {
                        self.mark(&names);
                    }
                }
                c = control.recv() => match c {
                    Some(Control::FilesChanged) => {
                        self.reload();
                        self.tell_remediation(&self.book.alerts(), &[], true).await;
                    }
                    Some(Control::Reconfigure(sources, state_log)) => {
                        self.sources = sources;
                        self.state_log = state_log;
                        self.reload();
                        self.tell_remediation(&self.book.alerts(), &[], true).await;
                    }
                    None => break,
                },
            }
            self.round().await;
        }
    }

    fn mark(&mut self, names: &[MetricName]) {
        for s in &mut self.rules {
            if s.reads.iter().any(|r| names.contains(r)) {
                s.triggered = true;
            }
        }
    }

    /// Evaluates every rule that is due or was triggered.
    async fn round(&mut self) {
        let now = Instant::now();
        let mut batch: Vec<(usize, bool)> = Vec::new();
        for (i, s) in self.rules.iter_mut().enumerate() {
            let ticked = s.next_due <= now;
            let trig = s.triggered && s.last_eval.is_none_or(|l| now >= l + MIN_TRIGGER_GAP);
            if ticked || trig {
                batch.push((i, ticked));
                s.triggered = false;
                s.last_eval = Some(now);
                if ticked {
                    s.next_due = (s.next_due + s.interval).max(now);
                }
            }
        }
        let mut internal: Vec<Sample> = Vec::new();
        let ts = now_ms();
        if self.next_internal <= now {
            self.next_internal = now + self.sources.interval;
            for (path, f) in &self.files {
                let labels =
                    Labels::new([("file", path.display().to_string())]).unwrap_or_default();
                internal.extend(sample(
                    "warden_rule_file_valid",
                    labels,
                    if f.problems.is_empty() { 1.0 } else { 0.0 },
                    ts,
                ));
            }
        }
        if batch.is_empty() && internal.is_empty() {
            return;
        }
        let rules: Vec<Arc<Rule>> = batch
            .iter()
            .map(|(i, _)| self.rules[*i].rule.clone())
            .collect();
        let engine = self.engine.clone();
        let store = self.store.clone();
        let telemetry = self.telemetry.clone();
        let results = tokio::task::spawn_blocking(move || {
            // One cache per round: rules reading the same series share one read and
            // all see the same snapshot.
            let cache = ReadCache::new();
            rules
                .iter()
                .map(|r| {
                    let started = std::time::Instant::now();
                    let res = engine.evaluate_with(r, &store, ts, &cache);
                    telemetry
                        .rule_duration
                        .observe(started.elapsed().as_secs_f64());
                    telemetry.rule_evaluations.inc();
                    res
                })
                .collect::<Vec<_>>()
        })
        .await;
        self.telemetry.beat(Loop::Rules);
        let Ok(results) = results else {
            tracing::error!("rule evaluation thread failed");
            return;
        };
        let mut applied = Vec::new();
        for ((i, ticked), res) in batch.into_iter().zip(results) {
            let s = &mut self.rules[i];
            let ok = match res {
                Ok(ev) => {
                    s.reads = ev.metrics_read;
                    if s.last_error.take().is_some() {
                        tracing::info!(rule = %s.rule.name, "rule evaluates again");
                    }
                    let meta = RuleMeta {
                        name: s.rule.name.clone(),
                        severity: s.rule.severity,
                        pending_for: s.rule.pending_for,
                        keep_firing_for: s.rule.keep_firing_for,
                        interval: s.interval,
                    };
                    let instances = ev
                        .instances
                        .into_iter()
                        .map(|i| ActiveInstance {
                            labels: i.labels,
                            value: i.value,
                            annotations: i.annotations,
                        })
                        .collect();
                    applied.push(self.book.apply(&meta, instances, ts));
                    true
                }
                Err(d) => {
                    let msg = d.to_string();
                    if s.last_error.as_deref() != Some(msg.as_str()) {
                        tracing::error!("{msg}");
                    }
                    s.last_error = Some(msg);
                    self.telemetry
                        .rule_errors
                        .get_or_create(&RuleLabels {
                            rule: s.rule.name.clone(),
                        })
                        .inc();
                    false
                }
            };
            if ticked {
                let labels =
                    Labels::new([("rule", s.rule.name.as_str()), ("file", s.file.as_str())])
                        .unwrap_or_default();
                internal.extend(sample(
                    "warden_rule_ok",
                    labels,
                    if ok { 1.0 } else { 0.0 },
                    ts,
                ));
            }
        }
        self.finish_round(applied, internal).await;
    }

    /// Persists, publishes and announces one round's outcome.
    async fn finish_round(&mut self, applied: Vec<Applied>, mut internal: Vec<Sample>) {
        // Each active alert's value as a series (like Prometheus' ALERTS), so the
        // dashboard and rules can chart and read it.
        let ts = now_ms();
        for (alert, _, _) in applied.iter().flat_map(|a| a.active.iter()) {
            internal.extend(sample(
                "warden_alert_value",
                alert.labels.clone(),
                alert.value,
                ts,
            ));
        }
        if !internal.is_empty() {
            let fresh_ms = 3 * self.sources.interval.as_millis() as i64;
            let _ = self
                .store
                .ingest()
                .send(Batch {
                    samples: internal,
                    fresh_ms,
                })
                .await;
        }
        let changes: Vec<Change> = applied
            .iter()
            .flat_map(|a| a.changes.iter().cloned())
            .collect();
        let dirty = applied
            .iter()
            .any(|a| !a.active.is_empty() || !a.gone.is_empty() || !a.changes.is_empty());
        let applied_firing: Vec<Alert> = applied
            .iter()
            .flat_map(|a| a.active.iter())
            .filter(|(a, _, _)| a.state == AlertState::Firing)
            .map(|(a, _, _)| a.clone())
            .collect();
        let flaps = applied.iter().any(|a| self.notify.tracks(&a.rule));
        if dirty || flaps {
            // The alert state, the groups it joins and the outbox rows it causes
            // commit together: a crash loses nothing and repeats nothing.
            let notify = self.notify.clone();
            let now = ts;
            let res = self
                .store
                .write(move |tx| {
                    applied.iter().try_for_each(|a| persist(tx, a))?;
                    notify.apply_tx(tx, &applied, now)
                })
                .await;
            if let Err(e) = &res {
                tracing::error!(error = %e, "could not persist alert state");
            }
            self.notify.after_write(res.is_ok()).await;
        }
        if !changes.is_empty() || dirty {
            let _ = self.alerts_tx.send(Arc::new(self.book.alerts()));
            for state in [AlertState::Pending, AlertState::Firing] {
                self.telemetry
                    .alerts
                    .get_or_create(&warden_engine::telemetry::StateLabels {
                        state: state.as_str().into(),
                    })
                    .set(self.book.count(state) as i64);
            }
        }
        if self.remediation.is_some() {
            let firing: Vec<Alert> = applied_firing;
            self.tell_remediation(&firing, &changes, false).await;
        }
        for c in changes {
            let _ = self.events_tx.send(ApiEvent::Alert { change: c.clone() });
            self.announce(c).await;
        }
    }

    /// Prints the change on the state log (the console of the embedded default).
    async fn announce(&self, c: Change) {
        let Some(status) = c.to else {
            tracing::info!(alert = %c.alert.name, labels = %c.alert.labels, "pending alert cleared before firing");
            return;
        };
        let Some(n) = &self.state_log else {
            return;
        };
        let reason = match status {
            AlertState::Resolved => NotifyReason::Resolved,
            _ => NotifyReason::FirstNotification,
        };
        let ended_at = (status == AlertState::Resolved).then_some(c.at);
        let note = Notification {
            id: 0,
            receiver: n.name().to_string(),
            reason,
            group_key: String::new(),
            group_labels: Labels::empty(),
            alerts: vec![NotifiedAlert::of(c.alert.clone(), status, ended_at)],
            created_at: c.at,
        };
        if let Err(e) = n.notify(&note, &NoMemo).await {
            self.telemetry.notification_failures.inc();
            tracing::error!(receiver = n.name(), error = %e, "console output failed");
        }
    }
}

/// Watches rule paths and sends [`Control::FilesChanged`] (debounced) on changes.
pub fn watch_rules(
    paths: &[PathBuf],
    tx: mpsc::Sender<Control>,
    shutdown: CancellationToken,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let (raw_tx, mut raw_rx) = mpsc::channel::<()>(64);
    let mut watcher =
        match notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
            if res.is_ok_and(|ev| {
                ev.paths
                    .iter()
                    .any(|p| p.extension().is_some_and(|e| e == "rhai"))
            }) {
                let _ = raw_tx.try_send(());
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch rule files; reload with SIGHUP");
                return None;
            }
        };
    for p in paths {
        let dir: &Path = if p.is_dir() {
            p
        } else {
            p.parent().unwrap_or(Path::new("."))
        };
        if let Err(e) = watcher.watch(dir, RecursiveMode::NonRecursive) {
            tracing::warn!(path = %dir.display(), error = %e, "cannot watch rule path; reload with SIGHUP");
        }
    }
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = raw_rx.recv() => {
                    if r.is_none() { break; }
                    // Editors write in several steps: wait for the burst to end.
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    while raw_rx.try_recv().is_ok() {}
                    if tx.send(Control::FilesChanged).await.is_err() { break; }
                }
            }
        }
    });
    Some(watcher)
}
