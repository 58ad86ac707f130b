//! warden's adapters for the outside world: notifiers and remediation actions.
//!
//! # Layout
//! - `notify/`: one file per notifier kind, its config beside it.
//!   - `console`: alert state changes as lines on standard output.
//! - `action/`: one file per remediation action kind, its config beside it
//!   (`exec`, `restart`), and the process runner they share.
//! - [`NotifiersConfig`]: the `[notifier]` table of the config file.
//! - [`ActionsConfig`]: the `[action]` table.

pub mod action;
pub mod notify;

pub use action::ActionsConfig;
pub use notify::NotifiersConfig;
