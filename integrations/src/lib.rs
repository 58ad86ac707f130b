//! warden's adapters for the outside world: notifiers and (later) actions.
//!
//! # Layout
//! - `notify/`: one file per notifier kind, its config beside it.
//!   - `console`: alert state changes as lines on standard output.
//! - [`NotifiersConfig`]: the `[notifier]` table of the config file.

pub mod notify;

pub use notify::NotifiersConfig;
