//! The guardrail keys every `[[action.KIND]]` entry has, the `[remediation]`
//! section, and their checks.
//!
//! Action kinds live in the integrations crate, each with its own config struct;
//! [`action_config!`](crate::action_config) adds the guardrail keys to such a
//! struct, so every kind accepts them and `deny_unknown_fields` still catches a
//! typo anywhere in the entry.

use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::Problem;
use crate::duration::HumanDuration;
use crate::model::MetricName;

/// Default `cooldown`: the least time between the end of one attempt on a target
/// and the start of the next.
pub const DEFAULT_COOLDOWN: Duration = Duration::from_secs(60);
/// Default `max_attempts` within `window`.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// Default `window` of the attempt budget.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(15 * 60);
/// Default `approval_expiry`.
pub const DEFAULT_APPROVAL_EXPIRY: Duration = Duration::from_secs(15 * 60);
/// Default `verify_within`.
pub const DEFAULT_VERIFY_WITHIN: Duration = Duration::from_secs(120);

/// Adds the guardrail keys to an action kind's config struct and derives
/// `Deserialize` with `deny_unknown_fields`. The struct gets a `guard_keys()`
/// method returning them as [`GuardKeys`](crate::remediate::config::GuardKeys).
///
/// ```ignore
/// warden_engine::action_config! {
///     /// `[[action.exec]]`.
///     pub struct ExecConfig {
///         /// The action's name.
///         pub name: toml::Spanned<String>,
///     }
/// }
/// ```
#[macro_export]
macro_rules! action_config {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
            /// Least time from the end of one attempt on a target to the start of
            /// the next. Default `"1m"`.
            #[serde(default)]
            pub cooldown: Option<toml::Spanned<$crate::duration::HumanDuration>>,
            /// Most attempts per target within `window`; then warden stops acting,
            /// fires `WardenRemediationExhausted` and keeps watching. Default 3.
            #[serde(default)]
            pub max_attempts: Option<toml::Spanned<i64>>,
            /// The window of `max_attempts`. Default `"15m"`.
            #[serde(default)]
            pub window: Option<toml::Spanned<$crate::duration::HumanDuration>>,
            /// Labels that name the target (budget and cooldown are kept per
            /// target). Default `["instance"]`.
            #[serde(default)]
            pub target_by: Option<toml::Spanned<Vec<String>>>,
            /// Labels that form a concurrency group. Default: none (the whole action
            /// is one group).
            #[serde(default)]
            pub group_by: Option<toml::Spanned<Vec<String>>>,
            /// Most attempts running at once per group. Default 1.
            #[serde(default)]
            pub max_concurrent: Option<toml::Spanned<i64>>,
            /// Most attempts running at once per group, as a percentage of the
            /// group's size (`group_size` or `group_size_from`), at least 1.
            #[serde(default)]
            pub max_concurrent_percent: Option<toml::Spanned<i64>>,
            /// The size of each group, for `max_concurrent_percent`.
            #[serde(default)]
            pub group_size: Option<toml::Spanned<i64>>,
            /// A metric whose fresh series, counted per group, give the group's
            /// size (e.g. `"probe_success"`), for `max_concurrent_percent`.
            #[serde(default)]
            pub group_size_from: Option<toml::Spanned<String>>,
            /// Wait for an operator to approve each attempt. Default `false`.
            #[serde(default)]
            pub approval: Option<toml::Spanned<bool>>,
            /// How long an attempt waits for approval before it lapses. Default
            /// `"15m"`.
            #[serde(default)]
            pub approval_expiry: Option<toml::Spanned<$crate::duration::HumanDuration>>,
            /// After a successful run the alert must resolve within this time, or
            /// the attempt counts as failed. `"0s"` turns verification off.
            /// Default `"2m"`.
            #[serde(default)]
            pub verify_within: Option<toml::Spanned<$crate::duration::HumanDuration>>,
            /// Audit what would run, run nothing. Default `false`.
            #[serde(default)]
            pub dry_run: Option<toml::Spanned<bool>>,
        }

        impl $name {
            /// The guardrail keys of this entry.
            pub fn guard_keys(&self) -> $crate::remediate::config::GuardKeys {
                $crate::remediate::config::GuardKeys {
                    cooldown: self.cooldown.clone(),
                    max_attempts: self.max_attempts.clone(),
                    window: self.window.clone(),
                    target_by: self.target_by.clone(),
                    group_by: self.group_by.clone(),
                    max_concurrent: self.max_concurrent.clone(),
                    max_concurrent_percent: self.max_concurrent_percent.clone(),
                    group_size: self.group_size.clone(),
                    group_size_from: self.group_size_from.clone(),
                    approval: self.approval.clone(),
                    approval_expiry: self.approval_expiry.clone(),
                    verify_within: self.verify_within.clone(),
                    dry_run: self.dry_run.clone(),
                }
            }
        }
    };
}

/// The guardrail keys of one action entry, as written.
#[derive(Debug, Clone, Default)]
#[allow(missing_docs)] // documented on the config structs `action_config!` builds
pub struct GuardKeys {
    pub cooldown: Option<Spanned<HumanDuration>>,
    pub max_attempts: Option<Spanned<i64>>,
    pub window: Option<Spanned<HumanDuration>>,
    pub target_by: Option<Spanned<Vec<String>>>,
    pub group_by: Option<Spanned<Vec<String>>>,
    pub max_concurrent: Option<Spanned<i64>>,
    pub max_concurrent_percent: Option<Spanned<i64>>,
    pub group_size: Option<Spanned<i64>>,
    pub group_size_from: Option<Spanned<String>>,
    pub approval: Option<Spanned<bool>>,
    pub approval_expiry: Option<Spanned<HumanDuration>>,
    pub verify_within: Option<Spanned<HumanDuration>>,
    pub dry_run: Option<Spanned<bool>>,
}

/// How many attempts of one action may run at once in one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Limit {
    /// At most this many.
    Count(u32),
    /// At most this percentage of the group's size (rounded down, at least 1).
    Percent {
        /// 1 to 100.
        percent: u32,
        /// Where the group's size comes from.
        size: GroupSize,
    },
}

/// The size of a concurrency group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupSize {
    /// As configured.
    Fixed(u32),
    /// The number of fresh series of this metric with the group's labels.
    Metric(MetricName),
}

/// The guardrails of one action, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Guardrails {
    /// Least time from the end of one attempt on a target to the next start.
    pub cooldown: Duration,
    /// Most attempts per target within `window`.
    pub max_attempts: u32,
    /// The window of `max_attempts`.
    pub window: Duration,
    /// Labels that name a target.
    pub target_by: Vec<String>,
    /// Labels that form a concurrency group (empty: one group).
    pub group_by: Vec<String>,
    /// Most attempts running at once per group.
    pub limit: Limit,
    /// How long an attempt waits for approval; `None`: no approval needed.
    pub approval: Option<Duration>,
    /// How long the alert may take to resolve after a run; `None`: not verified.
    pub verify_within: Option<Duration>,
    /// Audit only, run nothing.
    pub dry_run: bool,
}

impl Default for Guardrails {
    fn default() -> Self {
        Self {
            cooldown: DEFAULT_COOLDOWN,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            window: DEFAULT_WINDOW,
            target_by: vec!["instance".into()],
            group_by: Vec::new(),
            limit: Limit::Count(1),
            approval: None,
            verify_within: Some(DEFAULT_VERIFY_WITHIN),
            dry_run: false,
        }
    }
}

fn label_list(
    v: &Option<Spanned<Vec<String>>>,
    key: &str,
    problems: &mut Vec<Problem>,
) -> Option<Vec<String>> {
    let v = v.as_ref()?;
    let mut out = Vec::new();
    for name in v.get_ref() {
        if crate::model::Labels::new([(name.as_str(), "x")]).is_err() {
            problems.push(Problem::at(
                v.span(),
                format!("'{key}' has '{name}', which is not a label name"),
            ));
        } else if !out.contains(name) {
            out.push(name.clone());
        }
    }
    Some(out)
}

fn positive(v: &Spanned<i64>, key: &str, max: i64, problems: &mut Vec<Problem>) -> Option<u32> {
    let n = *v.get_ref();
    if n < 1 || n > max {
        problems.push(Problem::at(
            v.span(),
            format!("'{key}' must be from 1 to {max}, not {n}"),
        ));
        None
    } else {
        Some(n as u32)
    }
}

impl GuardKeys {
    /// Checks the keys of the entry at `entry`, adding what is wrong to `problems`.
    pub fn check(&self, problems: &mut Vec<Problem>) -> Guardrails {
        let d = Guardrails::default();
        let dur = |v: &Option<Spanned<HumanDuration>>, default: Duration| {
            v.as_ref().map_or(default, |v| v.get_ref().get())
        };
        let cooldown = dur(&self.cooldown, d.cooldown);
        let window = dur(&self.window, d.window);
        if let Some(w) = &self.window
            && w.get_ref().get().is_zero()
        {
            problems.push(Problem::at(
                w.span(),
                "'window' must be longer than '0s': write e.g. '15m'",
            ));
        }
        let max_attempts = self
            .max_attempts
            .as_ref()
            .map_or(Some(d.max_attempts), |v| {
                positive(v, "max_attempts", 1_000, problems)
            })
            .unwrap_or(d.max_attempts);
        let target_by =
            label_list(&self.target_by, "target_by", problems).unwrap_or(d.target_by.clone());
        let group_by = label_list(&self.group_by, "group_by", problems).unwrap_or_default();

        let limit = match (&self.max_concurrent, &self.max_concurrent_percent) {
            (Some(c), Some(p)) => {
                problems.push(Problem::at(
                    p.span(),
                    "set either 'max_concurrent' or 'max_concurrent_percent', not both",
                ));
                positive(c, "max_concurrent", 10_000, problems).map(Limit::Count)
            }
            (Some(c), None) => positive(c, "max_concurrent", 10_000, problems).map(Limit::Count),
            (None, Some(p)) => {
                let percent = positive(p, "max_concurrent_percent", 100, problems);
                let size = match (&self.group_size, &self.group_size_from) {
                    (Some(s), None) => {
                        positive(s, "group_size", 1_000_000, problems).map(GroupSize::Fixed)
                    }
                    (None, Some(m)) => match MetricName::new(m.get_ref().clone()) {
                        Ok(n) => Some(GroupSize::Metric(n)),
                        Err(_) => {
                            problems.push(Problem::at(
                                m.span(),
                                format!(
                                    "'group_size_from' '{}' is not a metric name",
                                    m.get_ref()
                                ),
                            ));
                            None
                        }
                    },
                    (Some(s), Some(_)) => {
                        problems.push(Problem::at(
                            s.span(),
                            "set either 'group_size' or 'group_size_from', not both",
                        ));
                        None
                    }
                    (None, None) => {
                        problems.push(Problem::at(
                            p.span(),
                            "'max_concurrent_percent' needs the group's size: set 'group_size' or 'group_size_from'",
                        ));
                        None
                    }
                };
                percent
                    .zip(size)
                    .map(|(percent, size)| Limit::Percent { percent, size })
            }
            (None, None) => {
                if let Some(k) = &self.group_size {
                    problems.push(Problem::at(
                        k.span(),
                        "'group_size' is only used with 'max_concurrent_percent'",
                    ));
                }
                if let Some(k) = &self.group_size_from {
                    problems.push(Problem::at(
                        k.span(),
                        "'group_size_from' is only used with 'max_concurrent_percent'",
                    ));
                }
                Some(d.limit.clone())
            }
        }
        .unwrap_or(Limit::Count(1));

        let approval = self
            .approval
            .as_ref()
            .is_some_and(|a| *a.get_ref())
            .then(|| dur(&self.approval_expiry, DEFAULT_APPROVAL_EXPIRY));
        if let Some(e) = &self.approval_expiry {
            if approval.is_none() {
                problems.push(Problem::at(
                    e.span(),
                    "'approval_expiry' is only used with 'approval = true'",
                ));
            } else if e.get_ref().get().is_zero() {
                problems.push(Problem::at(
                    e.span(),
                    "'approval_expiry' must be longer than '0s': write e.g. '15m'",
                ));
            }
        }
        let verify = dur(&self.verify_within, DEFAULT_VERIFY_WITHIN);
        Guardrails {
            cooldown,
            max_attempts,
            window,
            target_by,
            group_by,
            limit,
            approval,
            verify_within: (!verify.is_zero()).then_some(verify),
            dry_run: self.dry_run.as_ref().is_some_and(|d| *d.get_ref()),
        }
    }
}

/// `[remediation]`: the switches over every action.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RemediationConfig {
    /// `false` turns automatic and manual remediation off entirely (the API cannot
    /// resume it). Default `true`.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Start with the kill switch on: nothing runs until `warden actions resume`
    /// (the switch is kept in the store across restarts). Default `false`.
    #[serde(default)]
    pub paused: bool,
    /// Audit what would run, run nothing, for every action. Default `false`.
    #[serde(default)]
    pub dry_run: bool,
    /// Most attempts running at once over all actions. Default 4.
    #[serde(default = "default_max_running")]
    pub max_running: Spanned<i64>,
}

fn yes() -> bool {
    true
}

fn default_max_running() -> Spanned<i64> {
    Spanned::new(0..0, 4)
}

impl Default for RemediationConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            paused: false,
            dry_run: false,
            max_running: default_max_running(),
        }
    }
}

impl RemediationConfig {
    /// Checks the section.
    pub fn check(&self, problems: &mut Vec<Problem>) -> Switches {
        let max_running = positive(&self.max_running, "max_running", 1_000, problems).unwrap_or(4);
        Switches {
            enabled: self.enabled,
            paused: self.paused,
            dry_run: self.dry_run,
            max_running,
        }
    }
}

/// `[remediation]`, checked; `warden run --dry-run` sets `dry_run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Switches {
    /// Remediation is on at all.
    pub enabled: bool,
    /// Start paused.
    pub paused: bool,
    /// Every action is a dry run.
    pub dry_run: bool,
    /// Most attempts running at once over all actions.
    pub max_running: u32,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            enabled: true,
            paused: false,
            dry_run: false,
            max_running: 4,
        }
    }
}
