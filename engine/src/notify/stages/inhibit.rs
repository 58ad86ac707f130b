//! Stage: inhibitions and dependencies. While a source (parent) alert fires, target
//! (child) alerts with the same values of the `equal` labels are muted. An alert
//! never inhibits itself; muted source alerts still inhibit (a silenced etcd outage
//! still explains the Patroni alerts).

use std::collections::HashMap;

use super::{Firing, MuteContext, MuteStage, Muted};
use crate::model::{Alert, Fingerprint, Labels};
use crate::notify::config::InhibitRule;

/// For each rule, the `equal`-label values of its firing source alerts.
#[derive(Debug, Default)]
pub struct Sources {
    by_rule: Vec<HashMap<Vec<String>, Vec<Fingerprint>>>,
}

fn key(rule: &InhibitRule, labels: &Labels) -> Vec<String> {
    rule.equal
        .iter()
        .map(|l| labels.get(l).unwrap_or("").to_string())
        .collect()
}

impl Sources {
    /// Indexes the firing alerts that are sources of each rule.
    pub fn new(rules: &[InhibitRule], firing: &Firing) -> Self {
        let by_rule = rules
            .iter()
            .map(|r| {
                let mut m: HashMap<Vec<String>, Vec<Fingerprint>> = HashMap::new();
                for a in firing.values() {
                    if r.source.matches(&a.labels) {
                        m.entry(key(r, &a.labels)).or_default().push(a.fingerprint);
                    }
                }
                m
            })
            .collect();
        Self { by_rule }
    }

    /// The first rule inhibiting `alert`.
    pub fn inhibiting<'a>(
        &self,
        rules: &'a [InhibitRule],
        alert: &Alert,
    ) -> Option<&'a InhibitRule> {
        rules.iter().zip(&self.by_rule).find_map(|(r, m)| {
            if !r.target.matches(&alert.labels) {
                return None;
            }
            let sources = m.get(&key(r, &alert.labels))?;
            sources
                .iter()
                .any(|fp| *fp != alert.fingerprint)
                .then_some(r)
        })
    }
}

/// The inhibition stage.
pub struct InhibitStage;

impl MuteStage for InhibitStage {
    fn name(&self) -> &'static str {
        "inhibit"
    }

    fn mute(&self, cx: &MuteContext<'_>, alert: &Alert) -> Option<Muted> {
        cx.inhibit
            .inhibiting(&cx.plan.inhibits, alert)
            .map(|r| Muted::Inhibited {
                rule: r.name.clone(),
            })
    }
}
