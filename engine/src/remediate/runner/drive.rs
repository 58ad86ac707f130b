//! Driving cases: the timers, the guardrail checks, starting runs and their ends.

use super::*;

impl Runner {
    /// Drives every case one step.
    pub(super) async fn step(&mut self) {
        if !self.synced {
            return;
        }
        let now = self.now();
        let keys: Vec<CaseKey> = self.cases.keys().cloned().collect();
        for key in keys {
            let Some(case) = self.cases.get(&key) else {
                continue;
            };
            match case.phase.clone() {
                Phase::Idle if !case.firing.is_empty() => self.consider(&key).await,
                Phase::Idle => self.remove(&key),
                Phase::Approval { id, expires } if now >= expires => {
                    self.finish_row(id, AttemptState::Expired, "nobody approved it in time")
                        .await;
                    if let Some(c) = self.cases.get_mut(&key) {
                        c.phase = Phase::Closed;
                    }
                }
                Phase::Queued { id } => {
                    self.start(&key, Some(id)).await;
                }
                Phase::Verifying { id, until } if now >= until => {
                    let verify = self
                        .actions
                        .get(&key.action)
                        .and_then(|s| s.guard.verify_within)
                        .map(crate::duration::format)
                        .unwrap_or_default();
                    self.write_update(
                        id,
                        Update {
                            verified: Some(false),
                            reason: Some(format!(
                                "verification failed: the alert did not resolve within {verify}"
                            )),
                            ..Update::default()
                        },
                    )
                    .await;
                    tracing::warn!(action = %key.action, target = %key.target, "remediation did not fix the alert");
                    if let Some(c) = self.cases.get_mut(&key) {
                        c.failed = true;
                        c.phase = Phase::Idle;
                    }
                }
                _ => {}
            }
        }
    }

    /// An idle case whose alert fires: ask for approval, queue or run, if the
    /// switches and guardrails allow.
    pub(super) async fn consider(&mut self, key: &CaseKey) {
        if !self.switches.enabled {
            return;
        }
        let Some(slot) = self.actions.get(&key.action) else {
            return;
        };
        let guard = slot.guard.clone();
        let dry = self.switches.dry_run || guard.dry_run;
        if self.paused && !dry {
            let why = format!(
                "paused: the kill switch is on (set by {})",
                self.paused_by.as_deref().unwrap_or("unknown")
            );
            self.refuse(key, "paused", why).await;
            return;
        }
        let now = self.now();
        match self.ledger.check(&guard, key, now) {
            Ok(()) => {}
            Err(Hold::Cooldown { .. }) => return,
            Err(h @ Hold::Budget { .. }) => {
                if let Some(c) = self.cases.get_mut(key)
                    && !c.exhausted
                {
                    c.exhausted = true;
                    tracing::error!(action = %key.action, target = %key.target, "remediation budget spent; warden keeps watching and escalates");
                }
                self.refuse(key, "budget", h.reason(now)).await;
                return;
            }
            Err(Hold::Concurrency { .. }) => {}
        }
        if let Some(c) = self.cases.get_mut(key) {
            c.exhausted = false;
            c.refusal = None;
        }
        if let (Some(expiry), false) = (guard.approval, dry) {
            let preview = self.preview(key).await;
            let Some(case) = self.cases.get(key) else {
                return;
            };
            let mut row = self.new_row(case, AttemptState::PendingApproval);
            row.expires_at = Some(now + expiry.as_millis() as i64);
            match preview {
                Ok(o) => row.args = Some(o.args),
                Err(e) => row.reason = Some(format!("preview failed: {e}")),
            }
            if let Ok(e) = self.write_insert(row).await {
                tracing::info!(id = e.id, action = %key.action, target = %key.target, "remediation waits for approval");
                if let Some(c) = self.cases.get_mut(key) {
                    c.phase = Phase::Approval {
                        id: e.id,
                        expires: e.expires_at.unwrap_or(now),
                    };
                }
            }
            return;
        }
        self.start(key, None).await;
    }

    /// What the action would run for the case (a dry run of the action).
    pub(super) async fn preview(&self, key: &CaseKey) -> Result<ActionOutcome, ActionError> {
        let Some(slot) = self.actions.get(&key.action) else {
            return Err(ActionError::Refused("the action is not configured".into()));
        };
        let Some(case) = self.cases.get(key) else {
            return Err(ActionError::Refused("no such case".into()));
        };
        let req = self.request(case, 0, true);
        let cx = self.context();
        slot.action.run(&req, &cx).await
    }

    pub(super) fn request(&self, case: &Case, id: i64, dry_run: bool) -> ActionRequest {
        ActionRequest {
            id,
            rule: case.rule.clone(),
            labels: case.labels.clone(),
            value: case.value,
            vars: BTreeMap::new(),
            dry_run,
        }
    }

    pub(super) fn context(&self) -> ActionContext {
        ActionContext {
            query: self.query.clone(),
            cancel: self.cancel.child_token(),
        }
    }

    pub(super) fn group_limit(&self, guard: &Guardrails, group: &Labels) -> u32 {
        let size = match &guard.limit {
            Limit::Percent {
                size: GroupSize::Fixed(n),
                ..
            } => Some(*n as usize),
            Limit::Percent {
                size: GroupSize::Metric(m),
                ..
            } => Some(self.group_size(m, group)),
            Limit::Count(_) => None,
        };
        limit_of(&guard.limit, size)
    }

    pub(super) fn group_size(&self, metric: &MetricName, group: &Labels) -> usize {
        let mut sel = Selector::metric(metric.clone());
        for (k, v) in group.iter() {
            sel = sel.with(crate::model::Matcher::eq(k, v));
        }
        self.query
            .latest(&sel, self.now())
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// Starts an attempt on `key`: the queued row `id`, or a new row. Without a
    /// free slot (or leadership) the attempt stays (or is written as) `queued`.
    /// Returns the row's id.
    pub(super) async fn start(&mut self, key: &CaseKey, id: Option<i64>) -> Option<i64> {
        let slot = self.actions.get(&key.action)?;
        let guard = slot.guard.clone();
        let action = slot.action.clone();
        let dry = self.switches.dry_run || guard.dry_run;
        let case = self.cases.get(key)?;
        let names: Vec<&str> = guard.group_by.iter().map(String::as_str).collect();
        let group = case.labels.keep_only(&names);
        let now = self.now();
        let free = dry
            || (self.leader.is_leader()
                && self
                    .ledger
                    .check_slot(&key.action, &group, self.group_limit(&guard, &group))
                    .is_ok()
                && self.ledger.running_total() < self.switches.max_running);
        if !free {
            if id.is_none() {
                let row = self.new_row(case, AttemptState::Queued);
                let e = self.write_insert(row).await.ok()?;
                tracing::info!(id = e.id, action = %key.action, target = %key.target, "remediation queued: no free slot in its group");
                if let Some(c) = self.cases.get_mut(key) {
                    c.phase = Phase::Queued { id: e.id };
                }
                return Some(e.id);
            }
            return id;
        }
        if dry {
            let id = match id {
                Some(id) => id,
                None => {
                    let row = self.new_row(case, AttemptState::DryRun);
                    self.write_insert(row).await.ok()?.id
                }
            };
            let Some(case) = self.cases.get(key) else {
                return Some(id);
            };
            let req = self.request(case, id, true);
            let cx = self.context();
            let res = action.run(&req, &cx).await;
            self.ledger.record(key, now, now);
            let u = match res {
                Ok(o) => Update {
                    state: Some(AttemptState::DryRun),
                    args: Some(o.args),
                    output: Some(bound(o.output, MAX_OUTPUT)),
                    started_at: Some(now),
                    ended_at: Some(now),
                    reason: guard
                        .approval
                        .map(|_| "dry run: a real run would wait for approval".to_string()),
                    ..Update::default()
                },
                Err(e) => Update {
                    state: Some(AttemptState::Refused),
                    reason: Some(format!("dry run: {e}")),
                    started_at: Some(now),
                    ended_at: Some(now),
                    ..Update::default()
                },
            };
            tracing::info!(id, action = %key.action, target = %key.target, "remediation dry run");
            self.write_update(id, u).await;
            if let Some(c) = self.cases.get_mut(key) {
                c.phase = Phase::Idle;
                c.manual = None;
                if c.firing.is_empty() {
                    self.cases.remove(key);
                }
            }
            return Some(id);
        }
        let id = match id {
            Some(id) => {
                self.write_update(
                    id,
                    Update {
                        state: Some(AttemptState::Running),
                        started_at: Some(now),
                        ..Update::default()
                    },
                )
                .await?;
                id
            }
            None => {
                let mut row = self.new_row(case, AttemptState::Running);
                row.started_at = Some(now);
                self.write_insert(row).await.ok()?.id
            }
        };
        let case = self.cases.get_mut(key)?;
        let req = ActionRequest {
            id,
            rule: case.rule.clone(),
            labels: case.labels.clone(),
            value: case.value,
            vars: BTreeMap::new(),
            dry_run: false,
        };
        case.phase = Phase::Running {
            id,
            group: group.clone(),
        };
        self.ledger.begin(key, &group, now);
        tracing::info!(id, action = %key.action, target = %key.target, "remediation starts");
        let cx = self.context();
        let done = self.finished_tx.clone();
        self.tracker.spawn(async move {
            let result = action.run(&req, &cx).await;
            let _ = done.send(Finished { id, result }).await;
        });
        Some(id)
    }

    pub(super) async fn finished(&mut self, f: Finished) {
        let Some(key) = self
            .cases
            .iter()
            .find(|(_, c)| matches!(&c.phase, Phase::Running { id, .. } if *id == f.id))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        let now = self.now();
        let group = match self.cases.get(&key).map(|c| &c.phase) {
            Some(Phase::Running { group, .. }) => group.clone(),
            _ => Labels::empty(),
        };
        self.ledger.end(&key, &group, now);
        let verify = self
            .actions
            .get(&key.action)
            .and_then(|s| s.guard.verify_within);
        let (mut u, ok) = match f.result {
            Ok(o) => (
                Update {
                    state: Some(if o.ok {
                        AttemptState::Succeeded
                    } else {
                        AttemptState::Failed
                    }),
                    args: Some(o.args),
                    exit_status: o.status,
                    output: Some(bound(o.output, MAX_OUTPUT)),
                    ended_at: Some(now),
                    ..Update::default()
                },
                o.ok,
            ),
            Err(ActionError::Refused(r)) => (
                Update {
                    state: Some(AttemptState::Refused),
                    reason: Some(r),
                    ended_at: Some(now),
                    ..Update::default()
                },
                false,
            ),
            Err(e) => (
                Update {
                    state: Some(AttemptState::Failed),
                    reason: Some(e.to_string()),
                    ended_at: Some(now),
                    ..Update::default()
                },
                false,
            ),
        };
        let Some(case) = self.cases.get_mut(&key) else {
            return;
        };
        case.manual = None;
        if ok {
            match verify {
                Some(v) if !case.firing.is_empty() => {
                    case.phase = Phase::Verifying {
                        id: f.id,
                        until: now + v.as_millis() as i64,
                    };
                }
                Some(_) if case.fingerprint.is_some() => {
                    // The alert resolved while the action ran.
                    u.verified = Some(true);
                    case.phase = Phase::Idle;
                }
                _ => case.phase = Phase::Idle,
            }
            case.failed = false;
        } else {
            case.failed = !case.firing.is_empty();
            case.phase = Phase::Idle;
            if u.state == Some(AttemptState::Failed) && u.reason.is_none() {
                u.reason = Some("the action reported failure".into());
            }
        }
        tracing::info!(id = f.id, action = %key.action, target = %key.target, ok, "remediation ended");
        self.write_update(f.id, u).await;
        if let Some(c) = self.cases.get(&key)
            && c.firing.is_empty()
            && c.phase == Phase::Idle
        {
            self.cases.remove(&key);
        }
    }
}
