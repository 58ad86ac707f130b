//! warden's engine: the model, the ports, the store, the scheduler, the alert
//! lifecycle and the HTTP API.
//!
//! # Layout
//! - [`model`]: samples, labels, selectors, severities, alerts.
//! - [`ports`]: the traits adapters implement (`Collector`, `Notifier`, `Action`)
//!   and the one rules read through (`SeriesQuery`).
//! - [`store`]: the SQLite store with its in-memory head.
//! - [`scheduler`]: runs collectors on their intervals.
//! - [`duration`]: durations as users write them.
//! - [`lifecycle`]: alert instances from pending to resolved.
//! - [`notify`]: the notification pipeline: routing, grouping, silences, acks,
//!   inhibition, flapping, escalation, the durable outbox and delivery.
//! - [`remediate`]: auto-remediation: guardrails, the runner, the audit log.
//! - [`template`]: `{{name}}` templates in action configs.
//! - [`api`]: the HTTP API (`api::actions`: the remediation endpoints).
#![warn(missing_docs)]

pub mod api;
pub mod config;
pub mod duration;
pub mod lifecycle;
pub mod model;
pub mod notify;
pub mod ports;
pub mod remediate;
pub mod scheduler;
pub mod store;
pub mod telemetry;
pub mod template;
