//! The stages a group's alerts pass at each flush, in order (the Alertmanager
//! model): [`maintenance`] → [`silence`] → [`inhibit`] (inhibitions and
//! dependencies) → [`flap`] decide whether an alert is muted; [`escalate`] raises
//! unacknowledged alerts to the next tier; [`dedup`] decides, per receiver, whether
//! and why to notify (the outbox row's reason). Routing and grouping happen when an
//! alert starts firing (`route`, `group`); delivery after the outbox (`deliver`).
//!
//! Each mute stage is a [`MuteStage`]; [`MUTE_STAGES`] is the ordered list.

pub mod dedup;
pub mod escalate;
pub mod flap;
pub mod inhibit;
pub mod maintenance;
pub mod silence;

use std::collections::HashMap;

use serde::Serialize;

use super::config::NotifyPlan;
use super::silence::Silence;
use crate::model::{Alert, Fingerprint, Timestamp};

/// Why an alert is recorded but not sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "by", rename_all = "snake_case")]
pub enum Muted {
    /// A maintenance window is open.
    Maintenance {
        /// The window's name.
        name: String,
    },
    /// Active silences match.
    Silenced {
        /// Their ids.
        ids: Vec<String>,
    },
    /// An inhibition or dependency: a source (parent) alert fires.
    Inhibited {
        /// The rule's name.
        rule: String,
    },
    /// The alert is flapping.
    Flapping,
}

/// What the mute stages look at.
pub struct MuteContext<'a> {
    /// The config.
    pub plan: &'a NotifyPlan,
    /// Every silence.
    pub silences: &'a [Silence],
    /// Inhibition sources, computed once per flush round.
    pub inhibit: &'a inhibit::Sources,
    /// Flap states.
    pub flaps: &'a flap::FlapBook,
    /// Now (unix ms).
    pub now: Timestamp,
}

/// A stage that may mute an alert.
pub trait MuteStage: Sync {
    /// The stage's name, for logs.
    fn name(&self) -> &'static str;
    /// Why `alert` is muted by this stage, if it is.
    fn mute(&self, cx: &MuteContext<'_>, alert: &Alert) -> Option<Muted>;
}

/// The mute stages, in order; the first that mutes wins.
pub const MUTE_STAGES: &[&dyn MuteStage] = &[
    &maintenance::MaintenanceStage,
    &silence::SilenceStage,
    &inhibit::InhibitStage,
    &flap::FlapStage,
];

/// Runs the mute stages on `alert`.
pub fn muted(cx: &MuteContext<'_>, alert: &Alert) -> Option<Muted> {
    MUTE_STAGES.iter().find_map(|s| s.mute(cx, alert))
}

/// Every reason that mutes `alert` (for the API: `silenced_by`, `inhibited_by`, …).
pub fn all_mutes(cx: &MuteContext<'_>, alert: &Alert) -> Vec<Muted> {
    MUTE_STAGES
        .iter()
        .filter_map(|s| s.mute(cx, alert))
        .collect()
}

/// Firing alerts by fingerprint.
pub type Firing = HashMap<Fingerprint, Alert>;
