//! `[[action.scale]]`: scale a service out or in, through an `exec` or `http`
//! action that receives the new count as `{{replicas}}`.
//!
//! ```toml
//! [[action.scale]]
//! name = "scale-web"
//! via = "k8s-scale-web"            # an [[action.http]] or [[action.exec]] entry
//! current = "kube_deployment_spec_replicas"
//! current_labels = ["deployment"]  # copied from the alert to select the series
//! min = 2
//! max = 10
//! target = 70                      # HPA-like: ceil(current × value / target)
//! stabilization = "5m"
//! ```
//!
//! The current count is the sum of the fresh series of `current` that carry the
//! alert's values of `current_labels` (e.g. `process_running{service="web"}`
//! summed over instances). The desired count is either `current + step` (`step`,
//! default 1; negative to scale in) or, with `target`, the HPA formula
//! `ceil(current × value / target)` where `value` is the alert's value; it is kept
//! within `min` and `max`. Scale-in is stabilised like an HPA's: it goes no lower
//! than the highest count recommended within `stabilization`, and a count set
//! within `stabilization` counts as current while the metric still lags behind.
//! When the desired count equals the current one nothing is called; at `max` the
//! attempt succeeds without change and verification then escalates.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Matcher, MetricName, Selector, Timestamp, now_ms};
use warden_engine::ports::{
    Action, ActionContext, ActionError, ActionOutcome, ActionRequest, BoxFuture,
};

/// Default `stabilization`.
pub const DEFAULT_STABILIZATION: Duration = Duration::from_secs(300);

warden_engine::action_config! {
    /// `[[action.scale]]`: scale-out/in.
    pub struct ScaleConfig {
        /// The action's name. Required.
        pub name: Spanned<String>,
        /// The `exec` or `http` action that sets the count (`{{replicas}}`).
        /// Required.
        pub via: Spanned<String>,
        /// The metric holding the current count. Required.
        pub current: Spanned<String>,
        /// Alert labels selecting the series of `current`. Default none.
        #[serde(default)]
        pub current_labels: Option<Spanned<Vec<String>>>,
        /// The lowest count. Default 1.
        #[serde(default)]
        pub min: Option<Spanned<i64>>,
        /// The highest count. Required.
        pub max: Spanned<i64>,
        /// Change per attempt (negative scales in). Default 1; not with `target`.
        #[serde(default)]
        pub step: Option<Spanned<i64>>,
        /// The target value per replica of the alert's value, for
        /// `ceil(current × value / target)`.
        #[serde(default)]
        pub target: Option<Spanned<f64>>,
        /// Scale-in stabilisation window. Default `"5m"`.
        #[serde(default)]
        pub stabilization: Option<Spanned<HumanDuration>>,
    }
}

/// How the desired count is found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Policy {
    /// `current + step`.
    Step(i64),
    /// `ceil(current × value / target)`.
    Target(f64),
}

#[derive(Debug, Default)]
struct Memory {
    /// Counts set, per target: (when, count).
    set: HashMap<Labels, (Timestamp, i64)>,
    /// Recommendations within the window, per target.
    recs: HashMap<Labels, VecDeque<(Timestamp, i64)>>,
}

/// The scale action.
pub struct ScaleAction {
    name: String,
    via: Arc<dyn Action>,
    current: MetricName,
    current_labels: Vec<String>,
    min: i64,
    max: i64,
    policy: Policy,
    stabilization: Duration,
    // std Mutex: held for a few map operations, never across an await.
    memory: Mutex<Memory>,
}

impl std::fmt::Debug for ScaleAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScaleAction")
            .field("name", &self.name)
            .field("via", &self.via.name())
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl ScaleConfig {
    /// Checks the entry; `runners` are the exec and http actions by name.
    pub fn build(
        &self,
        _span: Range<usize>,
        runners: &BTreeMap<String, Arc<dyn Action>>,
        problems: &mut Vec<Problem>,
    ) -> Option<ScaleAction> {
        let before = problems.len();
        let via = runners.get(self.via.get_ref()).cloned();
        if via.is_none() {
            problems.push(Problem::at(
                self.via.span(),
                format!(
                    "'via' '{}' is not an [[action.exec]] or [[action.http]] name{}",
                    self.via.get_ref(),
                    if runners.is_empty() {
                        String::new()
                    } else {
                        format!(
                            " (known: {})",
                            runners.keys().cloned().collect::<Vec<_>>().join(", ")
                        )
                    }
                ),
            ));
        }
        let current = MetricName::new(self.current.get_ref().clone())
            .map_err(|_| {
                problems.push(Problem::at(
                    self.current.span(),
                    format!(
                        "'current' '{}' is not a metric name",
                        self.current.get_ref()
                    ),
                ))
            })
            .ok();
        let current_labels = self
            .current_labels
            .as_ref()
            .map(|l| l.get_ref().clone())
            .unwrap_or_default();
        let min = self.min.as_ref().map_or(1, |m| *m.get_ref());
        let max = *self.max.get_ref();
        if let Some(m) = &self.min
            && min < 0
        {
            problems.push(Problem::at(m.span(), "'min' must be 0 or more"));
        }
        if max < min.max(1) {
            problems.push(Problem::at(
                self.max.span(),
                format!("'max' ({max}) must be at least 'min' ({min}) and at least 1"),
            ));
        }
        let policy = match (&self.step, &self.target) {
            (Some(s), Some(_)) => {
                problems.push(Problem::at(
                    s.span(),
                    "set either 'step' or 'target', not both",
                ));
                Policy::Step(1)
            }
            (Some(s), None) if *s.get_ref() == 0 => {
                problems.push(Problem::at(s.span(), "'step' must not be 0"));
                Policy::Step(1)
            }
            (Some(s), None) => Policy::Step(*s.get_ref()),
            (None, Some(t)) if !(t.get_ref().is_finite() && *t.get_ref() > 0.0) => {
                problems.push(Problem::at(t.span(), "'target' must be a number above 0"));
                Policy::Step(1)
            }
            (None, Some(t)) => Policy::Target(*t.get_ref()),
            (None, None) => Policy::Step(1),
        };
        let stabilization = self
            .stabilization
            .as_ref()
            .map_or(DEFAULT_STABILIZATION, |s| s.get_ref().get());
        if problems.len() > before {
            return None;
        }
        Some(ScaleAction {
            name: self.name.get_ref().clone(),
            via: via?,
            current: current?,
            current_labels,
            min,
            max,
            policy,
            stabilization,
            memory: Mutex::new(Memory::default()),
        })
    }
}

/// The pure decision: the count to set, given the current one and the history.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What the metric says.
    pub observed: i64,
    /// What counts as current (the observed count, or a count set recently).
    pub current: i64,
    /// The count to set.
    pub desired: i64,
    /// Why, for people.
    pub note: String,
}

impl ScaleAction {
    /// Decides the count for `target` at `now` with `observed` replicas and the
    /// alert's `value`, and remembers the recommendation (not in a dry run).
    pub fn decide(
        &self,
        target: &Labels,
        observed: i64,
        value: Option<f64>,
        now: Timestamp,
        remember: bool,
    ) -> Result<Decision, ActionError> {
        let window = self.stabilization.as_millis() as i64;
        let mut mem = self
            .memory
            .lock()
            .map_err(|_| ActionError::Failed("scale state lock poisoned".into()))?;
        let mut current = observed;
        let mut note = String::new();
        if let Some((at, set)) = mem.set.get(target)
            && now - at < window
            && *set > observed
        {
            current = *set;
            note.push_str(&format!(
                "the metric says {observed}, {set} were set {}s ago; ",
                (now - at) / 1000
            ));
        }
        let raw = match self.policy {
            Policy::Step(s) => current + s,
            Policy::Target(t) => {
                let v = value.ok_or_else(|| {
                    ActionError::Refused("'target' scaling needs the alert's value; a manual run has none: use a step action".into())
                })?;
                if !v.is_finite() {
                    return Err(ActionError::Refused(format!(
                        "the alert's value {v} is not a number"
                    )));
                }
                (current as f64 * v / t).ceil() as i64
            }
        };
        let mut desired = raw.clamp(self.min, self.max);
        let recs = mem.recs.entry(target.clone()).or_default();
        while recs.front().is_some_and(|(at, _)| now - at > window) {
            recs.pop_front();
        }
        if desired < current {
            let highest = recs
                .iter()
                .map(|(_, c)| *c)
                .chain([desired])
                .max()
                .unwrap_or(desired);
            if highest > desired {
                note.push_str(&format!(
                    "scale-in held at {} by a recommendation within {}; ",
                    highest.min(current),
                    warden_engine::duration::format(self.stabilization)
                ));
                desired = highest.min(current);
            }
        }
        if remember {
            recs.push_back((now, raw.clamp(self.min, self.max)));
        }
        note.push_str(&match desired.cmp(&current) {
            std::cmp::Ordering::Equal if raw > self.max => {
                format!("at max {}: nothing to do", self.max)
            }
            std::cmp::Ordering::Equal if raw < self.min => {
                format!("at min {}: nothing to do", self.min)
            }
            std::cmp::Ordering::Equal => format!("already at {current}: nothing to do"),
            _ => format!("{current} → {desired} (min {}, max {})", self.min, self.max),
        });
        Ok(Decision {
            observed,
            current,
            desired,
            note,
        })
    }

    fn remember_set(&self, target: &Labels, now: Timestamp, count: i64) {
        if let Ok(mut m) = self.memory.lock() {
            m.set.insert(target.clone(), (now, count));
        }
    }
}

impl Action for ScaleAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "scale"
    }

    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
        cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(async move {
            let mut sel = Selector::metric(self.current.clone());
            let mut target = Labels::empty();
            for l in &self.current_labels {
                let v = req.labels.get(l).ok_or_else(|| {
                    ActionError::Refused(format!(
                        "'current_labels' names '{l}', which the alert does not have"
                    ))
                })?;
                sel = sel.with(Matcher::eq(l.clone(), v.to_string()));
                let _ = target.set(l, v);
            }
            let now = now_ms();
            let points = cx
                .query
                .latest(&sel, now)
                .map_err(|e| ActionError::Failed(e.to_string()))?;
            if points.is_empty() {
                return Err(ActionError::Refused(format!(
                    "no fresh series of '{}'{}: cannot tell the current count",
                    self.current,
                    if target.is_empty() {
                        String::new()
                    } else {
                        format!(" with {target}")
                    }
                )));
            }
            let observed = points.iter().map(|p| p.value).sum::<f64>().round() as i64;
            let d = self.decide(&target, observed, req.value, now, !req.dry_run)?;
            let mut args = serde_json::json!({
                "via": self.via.name(),
                "observed": d.observed,
                "current": d.current,
                "desired": d.desired,
                "min": self.min,
                "max": self.max,
            });
            if d.desired == d.current {
                return Ok(ActionOutcome {
                    ok: true,
                    status: None,
                    args,
                    output: d.note,
                });
            }
            let mut inner = req.clone();
            inner.vars.insert("replicas".into(), d.desired.to_string());
            inner.vars.insert("current".into(), d.current.to_string());
            let out = self.via.run(&inner, cx).await?;
            args["call"] = out.args;
            if out.ok && !req.dry_run {
                self.remember_set(&target, now, d.desired);
            }
            Ok(ActionOutcome {
                ok: out.ok,
                status: out.status,
                args,
                output: format!("{}\n{}", d.note, out.output),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Noop;
    impl Action for Noop {
        fn name(&self) -> &str {
            "noop"
        }
        fn kind(&self) -> &'static str {
            "exec"
        }
        fn run<'a>(
            &'a self,
            _req: &'a ActionRequest,
            _cx: &'a ActionContext,
        ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
            Box::pin(async { Ok(ActionOutcome::default()) })
        }
    }

    fn action(policy: Policy, min: i64, max: i64) -> ScaleAction {
        ScaleAction {
            name: "s".into(),
            via: Arc::new(Noop),
            current: MetricName::new("replicas").unwrap(),
            current_labels: vec![],
            min,
            max,
            policy,
            stabilization: Duration::from_secs(300),
            memory: Mutex::new(Memory::default()),
        }
    }

    #[test]
    fn step_respects_min_and_max() {
        let a = action(Policy::Step(1), 1, 3);
        let t = Labels::empty();
        assert_eq!(a.decide(&t, 2, None, 0, true).unwrap().desired, 3);
        let d = a.decide(&t, 3, None, 1_000, true).unwrap();
        assert_eq!(d.desired, 3);
        assert!(d.note.contains("at max 3"), "{}", d.note);
        let down = action(Policy::Step(-1), 2, 5);
        assert_eq!(down.decide(&t, 2, None, 0, true).unwrap().desired, 2);
    }

    #[test]
    fn target_is_the_hpa_formula() {
        let a = action(Policy::Target(50.0), 1, 10);
        let t = Labels::empty();
        // 3 replicas at 90 % against a 50 % target → ceil(5.4) = 6
        assert_eq!(a.decide(&t, 3, Some(90.0), 0, true).unwrap().desired, 6);
        assert!(matches!(
            a.decide(&t, 3, None, 0, true),
            Err(ActionError::Refused(_))
        ));
    }

    #[test]
    fn scale_in_is_stabilised_and_recent_sets_count_as_current() {
        let a = action(Policy::Target(50.0), 1, 10);
        let t = Labels::empty();
        assert_eq!(a.decide(&t, 4, Some(100.0), 0, true).unwrap().desired, 8);
        a.remember_set(&t, 0, 8);
        // The metric still says 4: the 8 just set counts.
        let d = a.decide(&t, 4, Some(50.0), 10_000, true).unwrap();
        assert_eq!(d.current, 8);
        assert_eq!(
            d.desired, 8,
            "the recommendation of 8 holds scale-in: {}",
            d.note
        );
        // After the window, scale-in follows the load.
        let d = a.decide(&t, 8, Some(25.0), 400_000, true).unwrap();
        assert_eq!(d.desired, 4, "{}", d.note);
    }
}
