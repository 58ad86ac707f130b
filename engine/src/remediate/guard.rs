//! The guardrails as pure bookkeeping: what ran when, and what is running, per
//! action and target. Time is a parameter, so every rule is unit tested with an
//! explicit clock.
//!
//! - cooldown: the next attempt on a target starts no sooner than `cooldown` after
//!   the previous one ended;
//! - budget: at most `max_attempts` attempts started within `window` per target;
//! - concurrency: at most the group's limit running at once per (action, group).
//!
//! The kill switch, dry-run, approval and verification are states of an attempt,
//! handled by the runner.

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::model::{Labels, Timestamp};

use super::config::{Guardrails, Limit};

/// One action on one target: the unit cooldown and budget are kept for.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CaseKey {
    /// The action's name.
    pub action: String,
    /// The target's labels (the alert's labels named by `target_by`).
    pub target: Labels,
}

/// Why an attempt cannot start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hold {
    /// The previous attempt ended too recently; the next may start at `until`.
    Cooldown {
        /// When the cooldown ends (unix ms).
        until: Timestamp,
    },
    /// The budget is spent; the oldest attempt leaves the window at `until`.
    Budget {
        /// Attempts within the window.
        used: u32,
        /// The budget.
        max: u32,
        /// The window.
        window: Duration,
        /// When one more attempt is allowed (unix ms).
        until: Timestamp,
    },
    /// The group already has `limit` attempts running.
    Concurrency {
        /// Attempts running in the group.
        running: u32,
        /// The group's limit.
        limit: u32,
    },
}

impl Hold {
    /// A short reason for the audit log and the API.
    pub fn reason(&self, now: Timestamp) -> String {
        let left = |until: Timestamp| {
            crate::duration::format(Duration::from_millis((until - now).max(0) as u64))
        };
        match self {
            Hold::Cooldown { until } => format!("cooldown: next attempt in {}", left(*until)),
            Hold::Budget {
                used,
                max,
                window,
                until,
            } => format!(
                "budget spent: {used} of {max} attempts within {}; next allowed in {}",
                crate::duration::format(*window),
                left(*until)
            ),
            Hold::Concurrency { running, limit } => {
                format!(
                    "concurrency: {running} of {limit} allowed attempts already running in the group"
                )
            }
        }
    }
}

/// One attempt as the ledger keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempt {
    started: Timestamp,
    ended: Option<Timestamp>,
}

/// What ran, when, and what runs now.
#[derive(Debug, Default)]
pub struct Ledger {
    attempts: HashMap<CaseKey, VecDeque<Attempt>>,
    running: HashMap<(String, Labels), u32>,
    running_total: u32,
}

/// The number of attempts a group may run at once: a count, or a percentage of
/// `size` rounded down but at least 1 (so a group always makes progress).
pub fn limit_of(limit: &Limit, size: Option<usize>) -> u32 {
    match limit {
        Limit::Count(n) => *n,
        Limit::Percent { percent, .. } => {
            let size = size.unwrap_or(0) as u64;
            ((size * u64::from(*percent)) / 100).max(1) as u32
        }
    }
}

impl Ledger {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether cooldown and budget allow an attempt on `key` at `now`.
    pub fn check(&self, g: &Guardrails, key: &CaseKey, now: Timestamp) -> Result<(), Hold> {
        let Some(list) = self.attempts.get(key) else {
            return Ok(());
        };
        let window_ms = g.window.as_millis() as i64;
        let in_window: Vec<&Attempt> = list
            .iter()
            .filter(|a| a.started > now - window_ms)
            .collect();
        if in_window.len() as u32 >= g.max_attempts {
            let oldest = in_window.iter().map(|a| a.started).min().unwrap_or(now);
            return Err(Hold::Budget {
                used: in_window.len() as u32,
                max: g.max_attempts,
                window: g.window,
                until: oldest + window_ms,
            });
        }
        if let Some(last) = list.back() {
            let end = last.ended.unwrap_or(now);
            let until = end + g.cooldown.as_millis() as i64;
            if last.ended.is_none() || until > now {
                return Err(Hold::Cooldown { until });
            }
        }
        Ok(())
    }

    /// Whether the group `group` of `action` has a free slot, with `limit` the
    /// group's limit (see [`limit_of`]).
    pub fn check_slot(&self, action: &str, group: &Labels, limit: u32) -> Result<(), Hold> {
        let running = self
            .running
            .get(&(action.to_string(), group.clone()))
            .copied()
            .unwrap_or(0);
        if running >= limit {
            Err(Hold::Concurrency { running, limit })
        } else {
            Ok(())
        }
    }

    /// Attempts running over every action.
    pub fn running_total(&self) -> u32 {
        self.running_total
    }

    /// Records that an attempt on `key` in `group` started at `now` and runs.
    pub fn begin(&mut self, key: &CaseKey, group: &Labels, now: Timestamp) {
        self.attempts
            .entry(key.clone())
            .or_default()
            .push_back(Attempt {
                started: now,
                ended: None,
            });
        *self
            .running
            .entry((key.action.clone(), group.clone()))
            .or_default() += 1;
        self.running_total += 1;
    }

    /// Records that the running attempt on `key` in `group` ended at `now`.
    pub fn end(&mut self, key: &CaseKey, group: &Labels, now: Timestamp) {
        if let Some(a) = self
            .attempts
            .get_mut(key)
            .and_then(|l| l.iter_mut().rev().find(|a| a.ended.is_none()))
        {
            a.ended = Some(now);
        }
        let slot = (key.action.clone(), group.clone());
        if let Some(n) = self.running.get_mut(&slot) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.running.remove(&slot);
            }
        }
        self.running_total = self.running_total.saturating_sub(1);
    }

    /// Records a finished attempt (loading the audit log, or a dry run, which
    /// counts against cooldown and budget like a real one so it reports what
    /// the guardrails would allow).
    pub fn record(&mut self, key: &CaseKey, started: Timestamp, ended: Timestamp) {
        let list = self.attempts.entry(key.clone()).or_default();
        let at = list.partition_point(|a| a.started <= started);
        list.insert(
            at,
            Attempt {
                started,
                ended: Some(ended),
            },
        );
    }

    /// Forgets attempts older than `keep` before `now` (longer than any window and
    /// cooldown), keeping the newest of each target for its cooldown.
    pub fn prune(&mut self, now: Timestamp, keep: Duration) {
        let limit = now - keep.as_millis() as i64;
        self.attempts.retain(|_, list| {
            while list.len() > 1
                && list
                    .front()
                    .is_some_and(|a| a.ended.is_some_and(|e| e < limit))
            {
                list.pop_front();
            }
            !(list.len() == 1 && list[0].ended.is_some_and(|e| e < limit))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::remediate::config::GroupSize;

    fn key(instance: &str) -> CaseKey {
        CaseKey {
            action: "restart".into(),
            target: Labels::new([("instance", instance)]).unwrap(),
        }
    }

    fn guard(cooldown_s: u64, max: u32, window_s: u64) -> Guardrails {
        Guardrails {
            cooldown: Duration::from_secs(cooldown_s),
            max_attempts: max,
            window: Duration::from_secs(window_s),
            ..Guardrails::default()
        }
    }

    #[test]
    fn cooldown_runs_from_the_end_of_the_previous_attempt() {
        let g = guard(60, 10, 3600);
        let mut l = Ledger::new();
        let k = key("a");
        let group = Labels::empty();
        assert_eq!(l.check(&g, &k, 0), Ok(()));
        l.begin(&k, &group, 0);
        assert_eq!(
            l.check(&g, &k, 5_000),
            Err(Hold::Cooldown { until: 65_000 }),
            "running: no second attempt; the cooldown follows its end"
        );
        l.end(&k, &group, 10_000);
        assert_eq!(
            l.check(&g, &k, 30_000),
            Err(Hold::Cooldown { until: 70_000 })
        );
        assert!(l.check(&g, &k, 69_999).is_err());
        assert_eq!(l.check(&g, &k, 70_000), Ok(()));
        assert_eq!(l.check(&g, &key("b"), 30_000), Ok(()), "per target");
        assert_eq!(
            Hold::Cooldown { until: 70_000 }.reason(30_000),
            "cooldown: next attempt in 40s"
        );
    }

    #[test]
    fn budget_allows_n_attempts_per_sliding_window() {
        // Monit's "3 restarts within 5 cycles", with 10 s cycles.
        let g = guard(0, 3, 50);
        let mut l = Ledger::new();
        let k = key("a");
        for t in [0, 10_000, 20_000] {
            assert_eq!(l.check(&g, &k, t), Ok(()), "attempt at {t}");
            l.record(&k, t, t + 1_000);
        }
        let held = l.check(&g, &k, 30_000).unwrap_err();
        assert_eq!(
            held,
            Hold::Budget {
                used: 3,
                max: 3,
                window: Duration::from_secs(50),
                until: 50_000
            }
        );
        assert!(
            held.reason(30_000)
                .starts_with("budget spent: 3 of 3 attempts within 50s")
        );
        assert!(l.check(&g, &k, 49_999).is_err());
        assert_eq!(l.check(&g, &k, 50_001), Ok(()), "the first left the window");
    }

    #[test]
    fn concurrency_holds_per_action_and_group() {
        let mut l = Ledger::new();
        let web = Labels::new([("service", "web")]).unwrap();
        let db = Labels::new([("service", "db")]).unwrap();
        l.begin(&key("web-1"), &web, 0);
        assert_eq!(
            l.check_slot("restart", &web, 1),
            Err(Hold::Concurrency {
                running: 1,
                limit: 1
            })
        );
        assert_eq!(l.check_slot("restart", &web, 2), Ok(()));
        assert_eq!(l.check_slot("restart", &db, 1), Ok(()), "another group");
        assert_eq!(l.check_slot("other", &web, 1), Ok(()), "another action");
        assert_eq!(l.running_total(), 1);
        l.end(&key("web-1"), &web, 1_000);
        assert_eq!(l.check_slot("restart", &web, 1), Ok(()));
        assert_eq!(l.running_total(), 0);
    }

    #[test]
    fn percent_limits_round_down_but_allow_one() {
        let p = |percent| Limit::Percent {
            percent,
            size: GroupSize::Fixed(0),
        };
        assert_eq!(limit_of(&p(50), Some(3)), 1);
        assert_eq!(limit_of(&p(50), Some(4)), 2);
        assert_eq!(limit_of(&p(34), Some(3)), 1);
        assert_eq!(limit_of(&p(100), Some(3)), 3);
        assert_eq!(limit_of(&p(50), None), 1);
        assert_eq!(limit_of(&Limit::Count(2), None), 2);
    }

    #[test]
    fn prune_keeps_what_guards_need() {
        let g = guard(60, 2, 600);
        let mut l = Ledger::new();
        let k = key("a");
        l.record(&k, 0, 1_000);
        l.record(&k, 100_000, 101_000);
        l.prune(200_000, g.window);
        assert!(
            matches!(l.check(&g, &k, 200_000), Err(Hold::Budget { used: 2, .. })),
            "attempts within the longest window stay"
        );
        l.prune(10_000_000, g.window);
        assert!(l.attempts.is_empty());
        assert_eq!(l.check(&g, &k, 10_000_000), Ok(()));
    }
}
