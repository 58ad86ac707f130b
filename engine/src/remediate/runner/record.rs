//! Writing the audit log, and telling receivers about attempts.

use super::*;

impl Runner {
    pub(super) async fn finish_row(&mut self, id: i64, state: AttemptState, reason: &str) {
        let now = self.now();
        self.write_update(
            id,
            Update {
                state: Some(state),
                reason: Some(reason.to_string()),
                ended_at: Some(now),
                ..Update::default()
            },
        )
        .await;
    }

    pub(super) async fn write_update(&mut self, id: i64, u: Update) -> Option<AuditEntry> {
        let state = u.state;
        match self.store.write(move |tx| audit::update(tx, id, &u)).await {
            Ok(e) => {
                if let Some(st) = state {
                    state_counter(&self.telemetry, &e.action, st);
                    self.note(&e);
                }
                let _ = self.events.send(ApiEvent::Action {
                    entry: Box::new(e.clone()),
                });
                Some(e)
            }
            Err(err) => {
                tracing::error!(id, error = %err, "could not update the remediation audit log");
                None
            }
        }
    }

    pub(super) async fn write_insert(
        &mut self,
        a: NewAttempt,
    ) -> Result<AuditEntry, RemediationError> {
        let state = a.state;
        match self.store.write(move |tx| audit::insert(tx, &a)).await {
            Ok(e) => {
                state_counter(&self.telemetry, &e.action, state);
                self.note(&e);
                let _ = self.events.send(ApiEvent::Action {
                    entry: Box::new(e.clone()),
                });
                Ok(e)
            }
            Err(err) => {
                tracing::error!(error = %err, "could not write the remediation audit log; not acting");
                Err(RemediationError::Unavailable(format!(
                    "the audit log cannot be written ({err}); nothing runs unaudited"
                )))
            }
        }
    }

    /// Tells receivers of an attempt that waits for approval or has ended.
    pub(super) fn note(&self, e: &AuditEntry) {
        let Some(notes) = &self.notes else {
            return;
        };
        let told = matches!(
            e.state,
            AttemptState::PendingApproval
                | AttemptState::Succeeded
                | AttemptState::Failed
                | AttemptState::DryRun
                | AttemptState::Refused
                | AttemptState::Denied
                | AttemptState::Expired
        );
        if !told {
            return;
        }
        let target = if e.target.is_empty() {
            String::new()
        } else {
            format!(" on {}", e.target)
        };
        let status = e
            .exit_status
            .map(|s| format!(" (status {s})"))
            .unwrap_or_default();
        notes.tell(ActionNote {
            id: e.id,
            action: e.action.clone(),
            kind: e.kind.clone(),
            state: e.state.as_str().to_string(),
            rule: e.rule.clone(),
            labels: e.labels.clone(),
            summary: format!(
                "warden {} {}{target}: {}{status}",
                e.kind,
                e.action,
                e.state.as_str().replace('_', " ")
            ),
            reason: e.reason.clone(),
            by: e
                .denied_by
                .clone()
                .or_else(|| e.approved_by.clone())
                .or_else(|| e.requested_by.clone()),
            at: e.ended_at.unwrap_or(e.created_at),
        });
    }

    pub(super) fn new_row(&self, case: &Case, state: AttemptState) -> NewAttempt {
        let kind = self
            .actions
            .get(&case.key.action)
            .map(|s| s.action.kind())
            .unwrap_or("unknown");
        NewAttempt {
            action: case.key.action.clone(),
            kind: kind.to_string(),
            rule: if case.manual.is_some() && case.firing.is_empty() {
                String::new()
            } else {
                case.rule.clone()
            },
            fingerprint: if case.manual.is_some() && case.firing.is_empty() {
                None
            } else {
                case.fingerprint.map(|f| f.to_string())
            },
            labels: case.labels.clone(),
            target: case.key.target.clone(),
            state,
            reason: None,
            args: None,
            created_at: self.now(),
            started_at: None,
            requested_by: case.manual.as_ref().map(|m| m.0.clone()),
            approved_by: case.manual.as_ref().map(|m| m.0.clone()),
            comment: case.manual.as_ref().and_then(|m| m.1.clone()),
            expires_at: None,
            dry_run: false,
        }
    }

    /// Audits a refusal once per episode and kind.
    pub(super) async fn refuse(&mut self, key: &CaseKey, kind: &'static str, reason: String) {
        let Some(case) = self.cases.get(key) else {
            return;
        };
        if case.refusal == Some(kind) {
            return;
        }
        let mut row = self.new_row(case, AttemptState::Refused);
        row.reason = Some(reason.clone());
        tracing::warn!(action = %key.action, target = %key.target, reason = %reason, "remediation refused");
        let _ = self.write_insert(row).await;
        if let Some(case) = self.cases.get_mut(key) {
            case.refusal = Some(kind);
        }
    }
}
