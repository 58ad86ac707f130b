//! Stage: recurring maintenance windows mute matching alerts while open.

use super::{MuteContext, MuteStage, Muted};
use crate::model::Alert;

/// The maintenance stage.
pub struct MaintenanceStage;

impl MuteStage for MaintenanceStage {
    fn name(&self) -> &'static str {
        "maintenance"
    }

    fn mute(&self, cx: &MuteContext<'_>, alert: &Alert) -> Option<Muted> {
        cx.plan
            .maintenance
            .iter()
            .find(|w| w.mutes(&alert.labels, cx.now))
            .map(|w| Muted::Maintenance {
                name: w.name.clone(),
            })
    }
}
