//! Auto-remediation under guardrails: alerts ask for actions, the guardrails
//! decide whether, when and how many run, and every attempt is audited.
//!
//! # Layout
//! - [`config`]: the guardrail keys of every `[[action.KIND]]` entry
//!   ([`action_config!`](crate::action_config)) and the `[remediation]` switches.
//! - [`guard`]: cooldown, budget and concurrency as pure bookkeeping with an
//!   explicit clock.
//! - [`audit`]: the audit log in SQLite and the stored kill switch.
//! - `runner`: the task that owns the state: cases per (action, target), approval,
//!   queueing, runs, verification, and warden's own remediation alerts.
//!
//! # How an attempt goes
//! An alert of a rule with `remediate: [...]` starts firing: for each named action
//! the alert's labels pick a *target* (`target_by`, default `instance`). If the
//! kill switch is off, the target is out of its cooldown and within its budget, the
//! attempt either waits for approval (`approval = true`), waits for a concurrency
//! slot (`queued`), or runs at once. Every step is a row in the audit log. After a
//! successful run the alert must resolve within `verify_within`; if it does not,
//! the attempt counts as failed, `WardenRemediationFailed` fires, and once the
//! cooldown has passed the next attempt may run. When the budget is spent
//! `WardenRemediationExhausted` fires (critical) and warden keeps watching: the
//! original alert stays firing and routed like any other.
//!
//! warden's own alerts come from samples the runner writes
//! (`warden_remediation_exhausted`, `warden_remediation_failed`,
//! `warden_remediation_paused`) and rules in the built-in internal pack, so they
//! go through the same notification pipeline as every alert.

pub mod audit;
pub mod config;
pub mod guard;
mod runner;

pub use runner::{
    ActionInfo, AlertSignal, Clock, Remediation, RemediationError, Setup, Status, system_clock,
};
