//! The handle the daemon, the API and the evaluator hold: it starts the runner
//! and talks to it by message; reads go straight to the audit log.

use super::*;

/// A handle on the remediation runner; cheap to clone.
#[derive(Clone)]
pub struct Remediation {
    pub(super) tx: mpsc::Sender<Msg>,
    pub(super) store: Store,
    pub(super) status: watch::Receiver<Status>,
    pub(super) names: Arc<std::sync::RwLock<Vec<String>>>,
}

impl std::fmt::Debug for Remediation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Remediation").finish_non_exhaustive()
    }
}

impl Remediation {
    /// Loads the guardrails' state from the audit log and starts the runner task
    /// on `tracker`; it stops with `cancel`.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        setup: Setup,
        store: Store,
        telemetry: Telemetry,
        events: broadcast::Sender<ApiEvent>,
        leader: Arc<dyn Leadership>,
        clock: Clock,
        tracker: &TaskTracker,
        cancel: CancellationToken,
    ) -> Result<Remediation, StoreError> {
        let (tx, rx) = mpsc::channel(256);
        let (finished_tx, finished_rx) = mpsc::channel(64);
        let stored = store.read(audit::switch)?;
        let (status_tx, status_rx) = watch::channel(Status {
            enabled: setup.switches.enabled,
            paused: false,
            paused_by: None,
            comment: None,
            since: None,
            dry_run: setup.switches.dry_run,
            running: 0,
            actions: Vec::new(),
        });
        let names = Arc::new(std::sync::RwLock::new(Vec::new()));
        let query: Arc<dyn SeriesQuery> = Arc::new(store.clone());
        let mut runner = Runner {
            actions: BTreeMap::new(),
            switches: setup.switches,
            paused: false,
            paused_by: None,
            paused_comment: None,
            paused_at: None,
            ledger: Ledger::new(),
            cases: BTreeMap::new(),
            store: store.clone(),
            query,
            events,
            leader,
            clock,
            telemetry,
            status: status_tx,
            names: names.clone(),
            finished_tx,
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            flags: HashMap::new(),
            synced: false,
            notes: setup.notes.clone(),
        };
        if let Some(sw) = stored {
            runner.paused = sw.paused;
            runner.paused_by = sw.by;
            runner.paused_comment = sw.comment;
            runner.paused_at = Some(sw.at);
        }
        if setup.switches.paused && !runner.paused {
            runner.paused = true;
            runner.paused_by = Some("config".into());
            runner.paused_comment = Some("[remediation].paused = true".into());
            runner.paused_at = Some((runner.clock)());
        }
        runner.set_actions(setup.actions);
        let recent = store.read(|c| {
            audit::recent(
                c,
                (runner.clock)() - runner.longest_window().as_millis() as i64,
            )
        })?;
        tracker.spawn(runner.run(rx, finished_rx, recent));
        Ok(Remediation {
            tx,
            store,
            status: status_rx,
            names,
        })
    }

    async fn ask<T>(&self, f: impl FnOnce(Reply<T>) -> Msg) -> Result<T, RemediationError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(f(reply)).await.map_err(|_| {
            RemediationError::Unavailable("the remediation runner has stopped".into())
        })?;
        rx.await.map_err(|_| {
            RemediationError::Unavailable("the remediation runner has stopped".into())
        })?
    }

    /// Alert changes and the firing alerts of rules with `remediate` (sent every
    /// round); with `full`, `signals` is every such firing alert, and alerts not
    /// in it are no longer firing.
    pub async fn alerts(&self, signals: Vec<AlertSignal>, full: bool) {
        let _ = self.tx.send(Msg::Alerts { signals, full }).await;
    }

    /// Approves attempt `id`.
    pub async fn approve(
        &self,
        id: i64,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        self.ask(|reply| Msg::Decide {
            id,
            approve: true,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Denies attempt `id`.
    pub async fn deny(
        &self,
        id: i64,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        self.ask(|reply| Msg::Decide {
            id,
            approve: false,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Runs `action` for `labels` on an operator's request, under the same
    /// guardrails (except approval: asking is approving).
    pub async fn run(
        &self,
        action: String,
        labels: Labels,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        self.ask(|reply| Msg::Run {
            action,
            labels,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Sets the kill switch.
    pub async fn set_paused(
        &self,
        paused: bool,
        by: String,
        comment: Option<String>,
    ) -> Result<Status, RemediationError> {
        self.ask(|reply| Msg::Switch {
            paused,
            by,
            comment,
            reply,
        })
        .await
    }

    /// Replaces the actions and switches (config reload).
    pub async fn reconfigure(&self, setup: Setup) {
        let _ = self.tx.send(Msg::Reconfigure(setup)).await;
    }

    /// The switches and actions now.
    pub fn status(&self) -> Status {
        self.status.borrow().clone()
    }

    /// The configured action names.
    pub fn action_names(&self) -> Vec<String> {
        self.names.read().map(|n| n.clone()).unwrap_or_default()
    }

    /// Audit rows, newest first.
    pub fn list(&self, f: &audit::Filter) -> Result<Vec<AuditEntry>, StoreError> {
        self.store.read(|c| audit::list(c, f))
    }

    /// One audit row.
    pub fn get(&self, id: i64) -> Result<Option<AuditEntry>, StoreError> {
        self.store.read(|c| audit::get(c, id))
    }
}
