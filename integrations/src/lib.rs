//! warden's adapters for the outside world: notifiers and remediation actions.
//!
//! # Layout
//! - `notify/`: one file per notifier kind, its config beside it.
//!   - `console`, `pagerduty`, `webhook` (see the module).
//! - `action/`: one file per remediation action kind, its config beside it
//!   (`exec`, `restart`), and the process runner they share.
//! - `inbound/`: parsers of payloads external systems push (Alertmanager v4).
//! - `testing` (feature `testing`): emulators of the services notifiers talk to.
//! - `heartbeat`: the dead man's switch warden calls while it is healthy.
//! - [`NotifiersConfig`]: the `[notifier]` table of the config file.
//! - [`ActionsConfig`]: the `[action]` table.

pub mod action;
pub mod heartbeat;
pub mod inbound;
pub mod notify;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use action::ActionsConfig;
pub use notify::NotifiersConfig;
