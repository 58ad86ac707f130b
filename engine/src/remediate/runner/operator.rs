//! What operators ask for: approve, deny, manual runs, the kill switch.

use super::*;

impl Runner {
    pub(super) async fn decide(
        &mut self,
        id: i64,
        approve: bool,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        let key = self
            .cases
            .iter()
            .find(|(_, c)| matches!(c.phase, Phase::Approval { id: i, .. } if i == id))
            .map(|(k, _)| k.clone());
        let Some(key) = key else {
            let row = self
                .store
                .read(|c| audit::get(c, id))
                .map_err(|e| RemediationError::Unavailable(e.to_string()))?;
            return Err(match row {
                None => RemediationError::NotFound(format!("no attempt with id {id}")),
                Some(e) => RemediationError::Conflict(
                    format!("attempt {id} is {}, not pending_approval", e.state.as_str()),
                    Some(Box::new(e)),
                ),
            });
        };
        if !approve {
            let now = self.now();
            let e = self
                .write_update(
                    id,
                    Update {
                        state: Some(AttemptState::Denied),
                        denied_by: Some(by.clone()),
                        comment,
                        reason: Some(format!("denied by {by}")),
                        ended_at: Some(now),
                        ..Update::default()
                    },
                )
                .await
                .ok_or_else(|| {
                    RemediationError::Unavailable("the audit log cannot be written".into())
                })?;
            tracing::info!(id, by = %by, "remediation denied");
            if let Some(c) = self.cases.get_mut(&key) {
                c.phase = Phase::Closed;
            }
            return Ok(e);
        }
        if !self.switches.enabled || self.paused {
            return Err(RemediationError::Conflict(
                "remediation is paused: resume it first (the attempt keeps waiting until it expires)".into(),
                None,
            ));
        }
        let Some(guard) = self.actions.get(&key.action).map(|s| s.guard.clone()) else {
            return Err(RemediationError::NotFound(format!(
                "action '{}' is no longer configured",
                key.action
            )));
        };
        let now = self.now();
        if let Err(h @ Hold::Budget { .. }) = self.ledger.check(&guard, &key, now) {
            let e = self
                .write_update(
                    id,
                    Update {
                        state: Some(AttemptState::Refused),
                        approved_by: Some(by),
                        comment,
                        reason: Some(h.reason(now)),
                        ended_at: Some(now),
                        ..Update::default()
                    },
                )
                .await;
            if let Some(c) = self.cases.get_mut(&key) {
                c.phase = Phase::Idle;
                c.exhausted = true;
            }
            return Err(RemediationError::Conflict(h.reason(now), e.map(Box::new)));
        }
        self.write_update(
            id,
            Update {
                state: Some(AttemptState::Queued),
                approved_by: Some(by.clone()),
                comment,
                ..Update::default()
            },
        )
        .await
        .ok_or_else(|| RemediationError::Unavailable("the audit log cannot be written".into()))?;
        tracing::info!(id, by = %by, "remediation approved");
        if let Some(c) = self.cases.get_mut(&key) {
            c.phase = Phase::Queued { id };
        }
        self.start(&key, Some(id)).await;
        self.current(id)
    }

    pub(super) fn current(&self, id: i64) -> Result<AuditEntry, RemediationError> {
        self.store
            .read(|c| audit::get(c, id))
            .map_err(|e| RemediationError::Unavailable(e.to_string()))?
            .ok_or_else(|| RemediationError::NotFound(format!("no attempt with id {id}")))
    }

    pub(super) async fn manual(
        &mut self,
        action: String,
        labels: Labels,
        by: String,
        comment: Option<String>,
    ) -> Result<AuditEntry, RemediationError> {
        let Some(key) = self.target_of(&action, &labels) else {
            let known: Vec<&str> = self.actions.keys().map(String::as_str).collect();
            return Err(RemediationError::NotFound(format!(
                "no action '{action}': configured are {}",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            )));
        };
        if !self.switches.enabled {
            return Err(RemediationError::Conflict(
                "remediation is disabled in the config ([remediation].enabled = false)".into(),
                None,
            ));
        }
        let guard = self
            .actions
            .get(&action)
            .map(|s| s.guard.clone())
            .unwrap_or_default();
        let dry = self.switches.dry_run || guard.dry_run;
        if let Some(c) = self.cases.get(&key) {
            match &c.phase {
                Phase::Idle | Phase::Closed => {}
                Phase::Approval { id, .. } => {
                    return Err(RemediationError::Conflict(
                        format!(
                            "attempt {id} on this target waits for approval: approve it instead"
                        ),
                        None,
                    ));
                }
                Phase::Queued { id } | Phase::Running { id, .. } | Phase::Verifying { id, .. } => {
                    return Err(RemediationError::Conflict(
                        format!("attempt {id} on this target is in progress"),
                        None,
                    ));
                }
            }
        }
        let case = self
            .cases
            .entry(key.clone())
            .or_insert_with(|| Case::new(key.clone()));
        if case.firing.is_empty() {
            case.labels = labels;
            case.rule = String::new();
            case.fingerprint = None;
            case.value = None;
        }
        case.manual = Some((by.clone(), comment));
        case.phase = Phase::Idle;
        let now = self.now();
        let hold = if self.paused && !dry {
            Some(format!(
                "paused: the kill switch is on (set by {})",
                self.paused_by.as_deref().unwrap_or("unknown")
            ))
        } else {
            self.ledger
                .check(&guard, &key, now)
                .err()
                .map(|h| h.reason(now))
        };
        if let Some(reason) = hold {
            let Some(case) = self.cases.get(&key) else {
                return Err(RemediationError::Unavailable("case vanished".into()));
            };
            let mut row = self.new_row(case, AttemptState::Refused);
            row.reason = Some(reason.clone());
            let e = self.write_insert(row).await;
            if let Some(c) = self.cases.get_mut(&key) {
                c.manual = None;
                if c.firing.is_empty() {
                    self.cases.remove(&key);
                }
            }
            return Err(RemediationError::Conflict(reason, e.ok().map(Box::new)));
        }
        tracing::info!(action = %action, by = %by, "manual remediation requested");
        match self.start(&key, None).await {
            Some(id) => self.current(id),
            None => {
                if let Some(c) = self.cases.get_mut(&key) {
                    c.manual = None;
                }
                Err(RemediationError::Unavailable(
                    "the audit log cannot be written; nothing runs unaudited".into(),
                ))
            }
        }
    }

    pub(super) async fn switch(
        &mut self,
        paused: bool,
        by: String,
        comment: Option<String>,
    ) -> Result<Status, RemediationError> {
        if !paused && !self.switches.enabled {
            return Err(RemediationError::Conflict(
                "remediation is disabled in the config ([remediation].enabled = false); the API cannot turn it on".into(),
                None,
            ));
        }
        let now = self.now();
        let (b, c) = (by.clone(), comment.clone());
        self.store
            .write(move |tx| audit::set_switch(tx, paused, &b, c.as_deref(), now))
            .await
            .map_err(|e| RemediationError::Unavailable(e.to_string()))?;
        self.paused = paused;
        self.paused_by = Some(by.clone());
        self.paused_comment = comment;
        self.paused_at = Some(now);
        if !paused {
            for c in self.cases.values_mut() {
                if c.refusal == Some("paused") {
                    c.refusal = None;
                }
            }
        }
        tracing::warn!(by = %by, paused, "remediation kill switch set");
        self.write_flags(true).await;
        self.publish();
        Ok(self.status.borrow().clone())
    }
}
