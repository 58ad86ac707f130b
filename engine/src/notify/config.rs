//! The notification part of the config file: `[notify]`, `[[route]]`,
//! `[[inhibit]]`, `[[dependency]]` and `[[maintenance]]`, parsed strictly and
//! validated into a [`NotifyPlan`] against the names of the configured receivers.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::maintenance::{MaintenanceWindow, parse_clock, parse_weekday};
use super::matchers::Matchers;
use super::route::{Route, RouteTree, Timing};
use crate::config::Problem;
use crate::duration::HumanDuration;

/// `[notify]`: the default route and how delivery behaves.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyConfig {
    /// Receivers of the default route (alerts no `[[route]]` matches). Default: every
    /// configured notifier.
    #[serde(default)]
    pub receivers: Option<Spanned<Vec<String>>>,
    /// Labels that group alerts into one notification. `["..."]` groups by every
    /// label (one notification per alert). Default `["alertname"]`.
    #[serde(default = "default_group_by")]
    pub group_by: Vec<String>,
    /// How long a new group waits for more alerts before its first notification.
    /// Default `30s`.
    #[serde(default = "default_group_wait")]
    pub group_wait: HumanDuration,
    /// How long a group waits before notifying about alerts that joined it or
    /// resolved. Default `5m`.
    #[serde(default = "default_group_interval")]
    pub group_interval: HumanDuration,
    /// How long before a notification about still-firing, unacknowledged alerts is
    /// sent again. Default `4h`.
    #[serde(default = "default_repeat_interval")]
    pub repeat_interval: HumanDuration,
    /// Receivers of `WardenNotificationFailed` (a notification could not be
    /// delivered). Default: the default route, without the failing receiver.
    #[serde(default = "empty_spanned")]
    pub fallback_receivers: Spanned<Vec<String>>,
    /// Timeout of one delivery attempt. Default `10s`.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// First retry delay; it doubles at every failure, with jitter. Default `1s`.
    #[serde(default = "default_retry_initial")]
    pub retry_initial: HumanDuration,
    /// Longest retry delay. Default `5m`.
    #[serde(default = "default_retry_max")]
    pub retry_max: HumanDuration,
    /// A notification not delivered this long after it was decided is dead-lettered
    /// and `WardenNotificationFailed` fires. Default `1h`.
    #[serde(default = "default_dead_after")]
    pub dead_after: HumanDuration,
    /// Flapping detection.
    #[serde(default)]
    pub flapping: FlappingConfig,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            receivers: None,
            group_by: default_group_by(),
            group_wait: default_group_wait(),
            group_interval: default_group_interval(),
            repeat_interval: default_repeat_interval(),
            fallback_receivers: Spanned::new(0..0, Vec::new()),
            timeout: default_timeout(),
            retry_initial: default_retry_initial(),
            retry_max: default_retry_max(),
            dead_after: default_dead_after(),
            flapping: FlappingConfig::default(),
        }
    }
}

fn empty_spanned() -> Spanned<Vec<String>> {
    Spanned::new(0..0, Vec::new())
}

fn default_group_by() -> Vec<String> {
    vec!["alertname".into()]
}
fn secs(s: u64) -> HumanDuration {
    HumanDuration(Duration::from_secs(s))
}
fn default_group_wait() -> HumanDuration {
    secs(30)
}
fn default_group_interval() -> HumanDuration {
    secs(300)
}
fn default_repeat_interval() -> HumanDuration {
    secs(4 * 3600)
}
fn default_timeout() -> HumanDuration {
    secs(10)
}
fn default_retry_initial() -> HumanDuration {
    secs(1)
}
fn default_retry_max() -> HumanDuration {
    secs(300)
}
fn default_dead_after() -> HumanDuration {
    secs(3600)
}

/// `[notify.flapping]`: Icinga-style flap detection over the last `window`
/// evaluations of each alert.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlappingConfig {
    /// Turn flap detection on. Default `false`.
    #[serde(default)]
    pub enabled: bool,
    /// Evaluations looked at (2–64). Default `21`, as in Icinga.
    #[serde(default = "default_window")]
    pub window: u32,
    /// Percent state change at or above which an alert starts flapping. Default `30`.
    #[serde(default = "default_high")]
    pub high: f64,
    /// Percent state change below which a flapping alert stops flapping. Default `25`.
    #[serde(default = "default_low")]
    pub low: f64,
}

impl Default for FlappingConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            window: default_window(),
            high: default_high(),
            low: default_low(),
        }
    }
}

fn default_window() -> u32 {
    21
}
fn default_high() -> f64 {
    30.0
}
fn default_low() -> f64 {
    25.0
}

/// One tier of escalation: after `after` unacknowledged, `receivers` are told too.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    /// How long an alert fires unacknowledged before this tier is told.
    pub after: HumanDuration,
    /// Who is told.
    pub receivers: Vec<String>,
}

/// `[[route]]` (and nested `[[route.routes]]`): which alerts go to whom, grouped how.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A name for logs and `warden routes test`.
    #[serde(default)]
    pub name: Option<String>,
    /// Label equality matchers.
    #[serde(default, rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Label regex matchers (anchored).
    #[serde(default)]
    pub match_re: BTreeMap<String, String>,
    /// Matchers as text: `'env!="dev"'`, `'job=~"pg.*"'`, `'team="db"'`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Receivers; inherited from the parent route when not given.
    #[serde(default)]
    pub receivers: Option<Vec<String>>,
    /// Grouping labels; inherited when not given.
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    /// Inherited when not given.
    #[serde(default)]
    pub group_wait: Option<HumanDuration>,
    /// Inherited when not given.
    #[serde(default)]
    pub group_interval: Option<HumanDuration>,
    /// Inherited when not given.
    #[serde(default)]
    pub repeat_interval: Option<HumanDuration>,
    /// Keep matching later sibling routes after this one matched. Default `false`.
    #[serde(default, rename = "continue")]
    pub continue_matching: bool,
    /// Escalation tiers, in order of `after`.
    #[serde(default)]
    pub escalate: Vec<EscalationConfig>,
    /// Child routes, tried in order; the first that matches wins (unless it has
    /// `continue`), and when none matches this route is used.
    #[serde(default)]
    pub routes: Vec<Spanned<RouteConfig>>,
}

/// `[[inhibit]]`: while an alert matching `source` fires, alerts matching `target`
/// with the same values of the `equal` labels are recorded but not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    /// Equality matchers on the inhibiting alert.
    #[serde(default)]
    pub source: BTreeMap<String, String>,
    /// Text matchers on the inhibiting alert.
    #[serde(default)]
    pub source_matchers: Vec<String>,
    /// Equality matchers on the inhibited alert.
    #[serde(default)]
    pub target: BTreeMap<String, String>,
    /// Text matchers on the inhibited alert.
    #[serde(default)]
    pub target_matchers: Vec<String>,
    /// Labels that must be equal on both.
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `[[dependency]]`: a child service depends on a parent (etcd → Patroni →
/// PgBouncer): while a parent alert fires, child alerts with the same `equal`
/// labels are recorded but not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DependencyConfig {
    /// A name for logs and the API.
    #[serde(default)]
    pub name: Option<String>,
    /// Equality matchers on the parent's alerts.
    #[serde(default)]
    pub parent: BTreeMap<String, String>,
    /// Text matchers on the parent's alerts.
    #[serde(default)]
    pub parent_matchers: Vec<String>,
    /// Equality matchers on the child's alerts.
    #[serde(default)]
    pub child: BTreeMap<String, String>,
    /// Text matchers on the child's alerts.
    #[serde(default)]
    pub child_matchers: Vec<String>,
    /// Labels that must be equal on parent and child alerts (e.g. `cluster`).
    #[serde(default)]
    pub equal: Vec<String>,
}

/// `[[maintenance]]`: a recurring window during which matching alerts are recorded
/// but not sent.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaintenanceConfig {
    /// A name for logs and the API.
    pub name: String,
    /// Equality matchers (none: every alert).
    #[serde(default, rename = "match")]
    pub match_eq: BTreeMap<String, String>,
    /// Text matchers.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Days the window starts on (`mon` … `sun`); default every day.
    #[serde(default)]
    pub weekdays: Vec<Spanned<String>>,
    /// Start time of day, `HH:MM`.
    pub start: Spanned<String>,
    /// End time of day, `HH:MM`; before `start` means the next day.
    pub end: Spanned<String>,
    /// IANA time zone, e.g. `Europe/Berlin`. Default `UTC`.
    #[serde(default = "default_tz")]
    pub time_zone: Spanned<String>,
}

fn default_tz() -> Spanned<String> {
    Spanned::new(0..0, "UTC".into())
}

/// Delivery settings, validated.
#[derive(Debug, Clone)]
pub struct DeliveryPolicy {
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// First retry delay.
    pub retry_initial: Duration,
    /// Longest retry delay.
    pub retry_max: Duration,
    /// Age at which an undelivered row is dead-lettered.
    pub dead_after: Duration,
}

impl Default for DeliveryPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(10),
            retry_initial: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            dead_after: Duration::from_secs(3600),
        }
    }
}

/// Flap detection, validated.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlapPolicy {
    /// Evaluations looked at.
    pub window: u32,
    /// Start threshold, percent.
    pub high: f64,
    /// Stop threshold, percent.
    pub low: f64,
}

/// One inhibition (or dependency) rule, validated.
#[derive(Debug, Clone)]
pub struct InhibitRule {
    /// A name (dependencies) or `inhibit[N]`.
    pub name: String,
    /// Matchers on the muting alert.
    pub source: Matchers,
    /// Matchers on the muted alert.
    pub target: Matchers,
    /// Labels equal on both.
    pub equal: Vec<String>,
}

/// Everything the notification pipeline needs from the config.
#[derive(Debug, Clone, Default)]
pub struct NotifyPlan {
    /// The routing tree.
    pub routes: RouteTree,
    /// Inhibitions and dependencies.
    pub inhibits: Vec<InhibitRule>,
    /// Maintenance windows.
    pub maintenance: Vec<MaintenanceWindow>,
    /// Flap detection, when on.
    pub flapping: Option<FlapPolicy>,
    /// Delivery settings.
    pub delivery: DeliveryPolicy,
    /// Receivers of `WardenNotificationFailed`.
    pub fallback: Vec<String>,
}

/// The raw notification sections of a config file.
#[derive(Debug, Clone, Default)]
pub struct NotifySections<'a> {
    /// `[notify]`.
    pub notify: Option<&'a NotifyConfig>,
    /// `[[route]]`.
    pub routes: &'a [Spanned<RouteConfig>],
    /// `[[inhibit]]`.
    pub inhibits: &'a [Spanned<InhibitConfig>],
    /// `[[dependency]]`.
    pub dependencies: &'a [Spanned<DependencyConfig>],
    /// `[[maintenance]]`.
    pub maintenance: &'a [Spanned<MaintenanceConfig>],
}

impl NotifySections<'_> {
    /// Validates the sections against `receivers` (the configured notifier names).
    pub fn build(&self, receivers: &[String]) -> Result<NotifyPlan, Vec<Problem>> {
        let mut problems = Vec::new();
        let default_cfg = NotifyConfig::default();
        let n = self.notify.unwrap_or(&default_cfg);
        let check_receivers = |names: &[String],
                               span: std::ops::Range<usize>,
                               problems: &mut Vec<Problem>| {
            for r in names {
                if !receivers.contains(r) {
                    problems.push(Problem::at(
                        span.clone(),
                        format!(
                            "unknown receiver '{r}': configure a [[notifier.KIND]] with name = '{r}' (known: {})",
                            if receivers.is_empty() { "none".to_string() } else { receivers.join(", ") }
                        ),
                    ));
                }
            }
        };
        let root_receivers = match &n.receivers {
            Some(r) => {
                check_receivers(r.get_ref(), r.span(), &mut problems);
                r.get_ref().clone()
            }
            None => receivers.to_vec(),
        };
        check_receivers(
            n.fallback_receivers.get_ref(),
            n.fallback_receivers.span(),
            &mut problems,
        );
        for (what, d) in [
            ("group_interval", n.group_interval),
            ("repeat_interval", n.repeat_interval),
            ("timeout", n.timeout),
            ("retry_initial", n.retry_initial),
            ("retry_max", n.retry_max),
            ("dead_after", n.dead_after),
        ] {
            if d.get().is_zero() {
                problems.push(Problem::general(format!(
                    "[notify].{what} must be more than 0"
                )));
            }
        }
        let root = Route {
            name: "default".into(),
            matchers: Matchers::default(),
            receivers: root_receivers,
            group_by: group_by(&n.group_by),
            timing: Timing {
                group_wait: n.group_wait.get(),
                group_interval: n.group_interval.get(),
                repeat_interval: n.repeat_interval.get(),
            },
            continue_matching: false,
            escalate: Vec::new(),
            children: Vec::new(),
            id: 0,
            path: "default".into(),
        };
        let mut tree = RouteTree::new(root);
        for (i, r) in self.routes.iter().enumerate() {
            add_route(
                &mut tree,
                0,
                r,
                &format!("route[{i}]"),
                receivers,
                &mut problems,
            );
        }
        tree.finish();

        let mut inhibits = Vec::new();
        for (i, s) in self.inhibits.iter().enumerate() {
            let c = s.get_ref();
            let source = Matchers::from_parts(&c.source, &BTreeMap::new(), &c.source_matchers);
            let target = Matchers::from_parts(&c.target, &BTreeMap::new(), &c.target_matchers);
            match (source, target) {
                (Ok(source), Ok(target)) => {
                    if source.is_empty() || target.is_empty() {
                        problems.push(Problem::at(
                            s.span(),
                            "an [[inhibit]] needs both 'source' and 'target' matchers",
                        ));
                    }
                    inhibits.push(InhibitRule {
                        name: format!("inhibit[{i}]"),
                        source,
                        target,
                        equal: c.equal.clone(),
                    })
                }
                (Err(e), _) | (_, Err(e)) => problems.push(Problem::at(s.span(), e)),
            }
        }
        for (i, s) in self.dependencies.iter().enumerate() {
            let c = s.get_ref();
            let source = Matchers::from_parts(&c.parent, &BTreeMap::new(), &c.parent_matchers);
            let target = Matchers::from_parts(&c.child, &BTreeMap::new(), &c.child_matchers);
            match (source, target) {
                (Ok(source), Ok(target)) => {
                    if source.is_empty() || target.is_empty() {
                        problems.push(Problem::at(
                            s.span(),
                            "a [[dependency]] needs both 'parent' and 'child' matchers",
                        ));
                    }
                    inhibits.push(InhibitRule {
                        name: c.name.clone().unwrap_or_else(|| format!("dependency[{i}]")),
                        source,
                        target,
                        equal: c.equal.clone(),
                    })
                }
                (Err(e), _) | (_, Err(e)) => problems.push(Problem::at(s.span(), e)),
            }
        }

        let mut maintenance = Vec::new();
        for s in self.maintenance {
            match build_window(s.get_ref()) {
                Ok(w) => maintenance.push(w),
                Err(p) => problems.extend(p),
            }
        }

        let f = &n.flapping;
        let flapping = if f.enabled {
            if !(2..=64).contains(&f.window) {
                problems.push(Problem::general(format!(
                    "[notify.flapping].window is {}: use 2 to 64 evaluations",
                    f.window
                )));
            }
            if !(0.0..=100.0).contains(&f.high) || !(0.0..=100.0).contains(&f.low) || f.low > f.high
            {
                problems.push(Problem::general(format!(
                    "[notify.flapping] thresholds low {} and high {} must be percentages with low <= high",
                    f.low, f.high
                )));
            }
            Some(FlapPolicy {
                window: f.window,
                high: f.high,
                low: f.low,
            })
        } else {
            None
        };

        if problems.is_empty() {
            Ok(NotifyPlan {
                routes: tree,
                inhibits,
                maintenance,
                flapping,
                delivery: DeliveryPolicy {
                    timeout: n.timeout.get(),
                    retry_initial: n.retry_initial.get(),
                    retry_max: n.retry_max.get().max(n.retry_initial.get()),
                    dead_after: n.dead_after.get(),
                },
                fallback: n.fallback_receivers.get_ref().clone(),
            })
        } else {
            Err(problems)
        }
    }
}

fn group_by(v: &[String]) -> Option<Vec<String>> {
    if v.iter().any(|l| l == "...") {
        None
    } else {
        let mut v = v.to_vec();
        v.sort();
        v.dedup();
        Some(v)
    }
}

fn add_route(
    tree: &mut RouteTree,
    parent: usize,
    s: &Spanned<RouteConfig>,
    path: &str,
    receivers: &[String],
    problems: &mut Vec<Problem>,
) {
    let c = s.get_ref();
    let span = s.span();
    let matchers = match Matchers::from_parts(&c.match_eq, &c.match_re, &c.matchers) {
        Ok(m) => m,
        Err(e) => {
            problems.push(Problem::at(span.clone(), format!("{path}: {e}")));
            Matchers::default()
        }
    };
    let p = tree.get(parent).clone();
    let own_receivers = c.receivers.clone();
    for r in own_receivers.iter().flatten() {
        if !receivers.contains(r) {
            problems.push(Problem::at(
                span.clone(),
                format!(
                    "{path}: unknown receiver '{r}': configure a [[notifier.KIND]] with name = '{r}' (known: {})",
                    if receivers.is_empty() { "none".to_string() } else { receivers.join(", ") }
                ),
            ));
        }
    }
    let mut escalate = Vec::new();
    for e in &c.escalate {
        for r in &e.receivers {
            if !receivers.contains(r) {
                problems.push(Problem::at(
                    span.clone(),
                    format!("{path}: escalation receiver '{r}' is not a configured notifier"),
                ));
            }
        }
        if e.receivers.is_empty() {
            problems.push(Problem::at(
                span.clone(),
                format!("{path}: an escalation tier needs receivers"),
            ));
        }
        escalate.push((e.after.get(), e.receivers.clone()));
    }
    if escalate.windows(2).any(|w| w[0].0 > w[1].0) {
        problems.push(Problem::at(
            span.clone(),
            format!("{path}: escalation tiers must be in order of 'after'"),
        ));
    }
    let timing = Timing {
        group_wait: c.group_wait.map(|d| d.get()).unwrap_or(p.timing.group_wait),
        group_interval: c
            .group_interval
            .map(|d| d.get())
            .unwrap_or(p.timing.group_interval),
        repeat_interval: c
            .repeat_interval
            .map(|d| d.get())
            .unwrap_or(p.timing.repeat_interval),
    };
    if timing.group_interval.is_zero() || timing.repeat_interval.is_zero() {
        problems.push(Problem::at(
            span.clone(),
            format!("{path}: group_interval and repeat_interval must be more than 0"),
        ));
    }
    let name = c.name.clone().unwrap_or_else(|| path.to_string());
    let route = Route {
        name,
        matchers,
        receivers: own_receivers.unwrap_or_else(|| p.receivers.clone()),
        group_by: c
            .group_by
            .as_deref()
            .map(group_by)
            .unwrap_or_else(|| p.group_by.clone()),
        timing,
        continue_matching: c.continue_matching,
        escalate: if escalate.is_empty() {
            p.escalate.clone()
        } else {
            escalate
        },
        children: Vec::new(),
        id: 0,
        path: path.to_string(),
    };
    let idx = tree.add(parent, route);
    for (i, child) in c.routes.iter().enumerate() {
        add_route(
            tree,
            idx,
            child,
            &format!("{path}.routes[{i}]"),
            receivers,
            problems,
        );
    }
}

fn build_window(c: &MaintenanceConfig) -> Result<MaintenanceWindow, Vec<Problem>> {
    let mut problems = Vec::new();
    let matchers = match Matchers::from_parts(&c.match_eq, &BTreeMap::new(), &c.matchers) {
        Ok(m) => m,
        Err(e) => {
            problems.push(Problem::general(format!("maintenance '{}': {e}", c.name)));
            Matchers::default()
        }
    };
    let mut weekdays = Vec::new();
    for w in &c.weekdays {
        match parse_weekday(w.get_ref()) {
            Ok(d) => weekdays.push(d),
            Err(e) => problems.push(Problem::at(w.span(), e)),
        }
    }
    let start = parse_clock(c.start.get_ref()).map_err(|e| Problem::at(c.start.span(), e));
    let end = parse_clock(c.end.get_ref()).map_err(|e| Problem::at(c.end.span(), e));
    let tz = jiff::tz::TimeZone::get(c.time_zone.get_ref()).map_err(|e| {
        Problem::at(
            c.time_zone.span(),
            format!(
                "unknown time zone '{}' ({e}): use an IANA name such as 'Europe/Berlin' or 'UTC'",
                c.time_zone.get_ref()
            ),
        )
    });
    match (start, end, tz) {
        (Ok(start), Ok(end), Ok(tz)) if problems.is_empty() => {
            if start == end {
                return Err(vec![Problem::at(
                    c.end.span(),
                    format!("maintenance '{}': start and end are the same time", c.name),
                )]);
            }
            Ok(MaintenanceWindow {
                name: c.name.clone(),
                matchers,
                weekdays,
                start,
                end,
                tz,
                tz_name: c.time_zone.get_ref().clone(),
            })
        }
        (s, e, t) => {
            problems.extend(s.err());
            problems.extend(e.err());
            problems.extend(t.err());
            Err(problems)
        }
    }
}
