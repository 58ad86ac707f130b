//! warden's own remediation series, behind its remediation alerts.

use super::*;

impl Runner {
    /// Writes warden's own remediation series: `warden_remediation_exhausted` and
    /// `warden_remediation_failed` (1 per flagged target, 0 once when a flag
    /// clears) and `warden_remediation_paused`. With `all`, every active flag is
    /// written again to stay fresh.
    pub(super) async fn write_flags(&mut self, all: bool) {
        let mut want: HashMap<(&'static str, Labels), f64> = HashMap::new();
        for c in self.cases.values() {
            let mut labels = c.key.target.clone();
            let _ = labels.set("action", &c.key.action);
            if !c.rule.is_empty() {
                let _ = labels.set("rule", &c.rule);
            }
            if c.exhausted {
                want.insert(("warden_remediation_exhausted", labels.clone()), 1.0);
            }
            if c.failed {
                want.insert(("warden_remediation_failed", labels), 1.0);
            }
        }
        want.insert(
            ("warden_remediation_paused", Labels::empty()),
            if self.paused && self.switches.enabled {
                1.0
            } else {
                0.0
            },
        );
        let mut out: Vec<(&'static str, Labels, f64)> = Vec::new();
        for ((m, l), v) in &want {
            if all || self.flags.get(&(*m, l.clone())) != Some(v) {
                out.push((m, l.clone(), *v));
            }
        }
        for (m, l) in self.flags.keys() {
            if !want.contains_key(&(*m, l.clone())) {
                out.push((m, l.clone(), 0.0));
            }
        }
        // A cleared flag was written as 0 above and is forgotten, so its 0 is
        // written once; the paused gauge is always kept.
        self.flags = want;
        if out.is_empty() {
            return;
        }
        // Samples carry the wall clock: they go to the store like any other.
        let ts = now_ms();
        let samples: Vec<Sample> = out
            .into_iter()
            .filter_map(|(m, l, v)| MetricName::new(m).ok().map(|n| Sample::new(n, l, v, ts)))
            .collect();
        let _ = self
            .store
            .ingest()
            .send(Batch {
                samples,
                fresh_ms: 3 * REFRESH.as_millis() as i64,
            })
            .await;
    }
}
