//! Stage: active silences mute matching alerts.

use super::{MuteContext, MuteStage, Muted};
use crate::model::Alert;

/// The silence stage.
pub struct SilenceStage;

impl MuteStage for SilenceStage {
    fn name(&self) -> &'static str {
        "silence"
    }

    fn mute(&self, cx: &MuteContext<'_>, alert: &Alert) -> Option<Muted> {
        let ids: Vec<String> = cx
            .silences
            .iter()
            .filter(|s| s.mutes(&alert.labels, cx.now))
            .map(|s| s.id.clone())
            .collect();
        (!ids.is_empty()).then_some(Muted::Silenced { ids })
    }
}
