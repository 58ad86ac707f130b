//! `warden run`: wires the store, collectors, rules, API and notifiers together,
//! reloads on SIGHUP and shuts down in order on SIGTERM/SIGINT.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use warden_engine::api::{self, ApiState};
use warden_engine::model::now_ms;
use warden_engine::notify::{NotifyHandle, deliver};
use warden_engine::ports::SingleNode;
use warden_engine::remediate::{Remediation, Setup, system_clock};
use warden_engine::scheduler;
use warden_engine::store::Store;
use warden_engine::telemetry::{Loop, Telemetry};

use crate::cli::{LogFormat, RunArgs};
use crate::config::{self, Config, Overrides};
use crate::evaluate::{Control, Evaluator, RuleSources, watch_rules};
use crate::notes::RoutedNotes;

/// How long shutdown may take before laggards are abandoned.
const GRACE: Duration = Duration::from_secs(5);

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

fn load(args: &RunArgs) -> Result<Config, Vec<config::ConfigError>> {
    let ov = Overrides {
        db: args.db.clone(),
        listen: args.listen.clone(),
        json: args.log_format == LogFormat::Json,
        dry_run: args.dry_run,
    };
    match &args.config {
        Some(path) => config::load(path, &ov),
        None => config::embedded(&ov),
    }
}

/// Entry point of `warden run`.
pub fn main(args: RunArgs) -> ExitCode {
    init_logging(args.log_format);
    let cfg = match load(&args) {
        Ok(c) => c,
        Err(errors) => {
            for e in &errors {
                eprintln!("{e}");
            }
            eprintln!(
                "warden: the config has {} error(s); not starting",
                errors.len()
            );
            return ExitCode::from(1);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(cfg, args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("warden: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn sources(cfg: &Config) -> RuleSources {
    RuleSources {
        paths: cfg.rule_paths.clone(),
        builtin_host: cfg.builtin_host,
        watchdog: cfg.watchdog,
        interval: cfg.rule_interval,
    }
}

async fn run(mut cfg: Config, args: RunArgs) -> anyhow::Result<()> {
    let store = Store::open(&cfg.store)?;
    let root = CancellationToken::new();
    let tracker = TaskTracker::new();
    let telemetry = Telemetry::default();
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(
        listen = %cfg.listen,
        store = %cfg.store.path.display(),
        config = %cfg.source.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "<embedded default>".into()),
        tls = cfg.tls.is_some(),
        api_tokens = cfg.auth.token_count(),
        "warden starting"
    );
    if !cfg.auth.is_open() && cfg.tls.is_none() && !cfg.listen.ip().is_loopback() {
        tracing::warn!(listen = %cfg.listen, "API tokens travel in clear text: configure [server.tls] or put a TLS proxy in front");
    }

    let (alerts_tx, alerts_rx) = watch::channel(Arc::new(Vec::new()));
    let (events_tx, _) = tokio::sync::broadcast::channel(1024);
    let notify = NotifyHandle::open(
        store.clone(),
        cfg.notify.clone(),
        cfg.receivers(),
        Some(events_tx.clone()),
    )
    .await
    .context("cannot load the notification state")?;
    let mut delivery_stop = root.child_token();
    let mut delivery = TaskTracker::new();
    deliver::spawn(
        &notify,
        &cfg.notifiers,
        cfg.notify.delivery.clone(),
        &telemetry,
        cfg.store.retention,
        &delivery,
        &delivery_stop,
    );
    let state = ApiState {
        store: store.clone(),
        telemetry: telemetry.clone(),
        alerts: alerts_rx,
        events: events_tx.clone(),
        notify: Some(notify.clone()),
    };
    // Actions get their own stop token: they stop after the rules, so an attempt
    // in flight can still be recorded.
    let remediation_stop = CancellationToken::new();
    let remediation = Remediation::spawn(
        Setup {
            actions: std::mem::take(&mut cfg.actions),
            switches: cfg.switches,
            notes: Some(Arc::new(RoutedNotes::new(
                notify.clone(),
                cfg.notifiers.clone(),
                tracker.clone(),
            ))),
        },
        store.clone(),
        telemetry.clone(),
        events_tx.clone(),
        Arc::new(SingleNode),
        system_clock(),
        &tracker,
        remediation_stop.clone(),
    )
    .context("cannot load the remediation audit log")?;
    if cfg.switches.dry_run {
        tracing::warn!("dry run: remediation actions are audited, none runs");
    }
    let router = api::router(state).merge(api::actions::router(remediation.clone()));
    let api_stop = root.child_token();
    let api_task = tracker.spawn({
        let stop = api_stop.clone();
        let auth = cfg.auth.clone();
        let tls = cfg.tls.clone();
        async move {
            let router = api::auth::protect(router, auth);
            let shutdown = async move { stop.cancelled().await };
            let served = match tls {
                Some(tls) => api::serve_tls(listener, tls, router, shutdown).await,
                None => api::serve(listener, router, shutdown).await,
            };
            if let Err(e) = served {
                tracing::error!(error = %e, "API server failed");
            }
        }
    });

    let mut collectors_stop = root.child_token();
    let mut collectors = TaskTracker::new();
    let has_collectors = !cfg.collectors.is_empty();
    scheduler::spawn_all(
        std::mem::take(&mut cfg.collectors),
        &store.ingest(),
        &telemetry,
        &collectors,
        &collectors_stop,
    );

    let (control_tx, control_rx) = mpsc::channel(16);
    let rules_stop = root.child_token();
    let evaluator = Evaluator::new(
        store.clone(),
        telemetry.clone(),
        sources(&cfg),
        notify.clone(),
        cfg.state_log.clone(),
        alerts_tx,
        events_tx,
    )?
    .with_remediation(remediation.clone());
    let updates = store.subscribe();
    let rules_task = tracker.spawn(evaluator.run(updates, control_rx, rules_stop.clone()));
    let mut _watcher = watch_rules(&cfg.rule_paths, control_tx.clone(), root.child_token());

    spawn_watchdog(&tracker, &telemetry, has_collectors, root.child_token());
    for hb in cfg.heartbeats.clone() {
        let t = telemetry.clone();
        // Healthy while the rule loop (which runs at least every rule interval)
        // made progress within three intervals.
        let stale = (3 * cfg.rule_interval.as_millis() as i64).max(30_000);
        tracker.spawn(hb.run(
            move || now_ms() - t.last_beat(warden_engine::telemetry::Loop::Rules) < stale,
            root.child_token(),
        ));
    }
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);

    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut hup = signal(SignalKind::hangup())?;
    loop {
        tokio::select! {
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = hup.recv() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Reloading]);
                match load(&args) {
                    Err(errors) => {
                        for e in &errors {
                            tracing::error!("{e}");
                        }
                        tracing::error!(errors = errors.len(), "new config refused; the running one stays");
                    }
                    Ok(mut new) => {
                        if new.listen != cfg.listen || new.store.path != cfg.store.path {
                            tracing::warn!("[server].listen and [store].path take effect after a restart");
                        }
                        if new.tls.is_some() != cfg.tls.is_some() {
                            tracing::warn!("[server.tls] and [[server.token]] changes take effect after a restart");
                        }
                        collectors_stop.cancel();
                        collectors.close();
                        let _ = tokio::time::timeout(GRACE, collectors.wait()).await;
                        collectors_stop = root.child_token();
                        collectors = TaskTracker::new();
                        scheduler::spawn_all(std::mem::take(&mut new.collectors), &store.ingest(), &telemetry, &collectors, &collectors_stop);
                        delivery_stop.cancel();
                        delivery.close();
                        let _ = tokio::time::timeout(GRACE, delivery.wait()).await;
                        if let Err(e) = notify.reconfigure(new.notify.clone(), new.receivers()).await {
                            tracing::error!(error = %e, "could not apply the new routes");
                        }
                        delivery_stop = root.child_token();
                        delivery = TaskTracker::new();
                        deliver::spawn(&notify, &new.notifiers, new.notify.delivery.clone(), &telemetry, new.store.retention, &delivery, &delivery_stop);
                        let notes = RoutedNotes::new(notify.clone(), new.notifiers.clone(), tracker.clone());
                        remediation.reconfigure(Setup { actions: std::mem::take(&mut new.actions), switches: new.switches, notes: Some(Arc::new(notes)) }).await;
                        let _ = control_tx.send(Control::Reconfigure(sources(&new), new.state_log.clone())).await;
                        _watcher = watch_rules(&new.rule_paths, control_tx.clone(), root.child_token());
                        tracing::info!("config reloaded");
                        cfg = new;
                    }
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
            }
        }
    }

    // Shutdown in order: intake first, then the rules, then the store.
    tracing::info!("shutting down");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    api_stop.cancel();
    collectors_stop.cancel();
    collectors.close();
    if tokio::time::timeout(GRACE, collectors.wait())
        .await
        .is_err()
    {
        tracing::warn!("collectors did not stop in time");
    }
    rules_stop.cancel();
    let _ = tokio::time::timeout(GRACE, rules_task).await;
    // Running actions are told to stop (their process groups are killed); the
    // runner records how they ended for a few seconds, the rest shows as
    // interrupted at the next start.
    remediation_stop.cancel();
    drop(remediation);
    // Deliveries in flight finish (each is bounded by its timeout) within the grace
    // period; what is left stays in the outbox for the next start.
    delivery_stop.cancel();
    delivery.close();
    if tokio::time::timeout(GRACE, delivery.wait()).await.is_err() {
        tracing::warn!("deliveries still in flight at shutdown; they resume at the next start");
    }
    let _ = tokio::time::timeout(GRACE, api_task).await;
    root.cancel();
    tracker.close();
    if tokio::time::timeout(GRACE, tracker.wait()).await.is_err() {
        tracing::warn!("some tasks did not stop in time");
    }
    // Every store handle must be gone for the writer to finish its last compaction.
    drop(notify);
    store.close().await?;
    tracing::info!("stopped");
    Ok(())
}

/// Pings the systemd watchdog only while the main loops make progress, so systemd
/// restarts a hung warden instead of being told it is fine.
fn spawn_watchdog(
    tracker: &TaskTracker,
    telemetry: &Telemetry,
    has_collectors: bool,
    stop: CancellationToken,
) {
    let Some(period) = sd_notify::watchdog_enabled() else {
        return;
    };
    let telemetry = telemetry.clone();
    if !has_collectors {
        telemetry.beat(Loop::Scheduler);
    }
    tracker.spawn(async move {
        let mut tick = tokio::time::interval(period / 2);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {
                    if !has_collectors {
                        telemetry.beat(Loop::Scheduler);
                    }
                    let age = now_ms() - telemetry.oldest_beat();
                    if age < period.as_millis() as i64 {
                        let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
                    } else {
                        tracing::error!(stalled_ms = age, "a main loop made no progress; withholding the watchdog ping");
                    }
                }
            }
        }
    });
}
