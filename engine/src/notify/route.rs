//! Routing: a tree of routes, Alertmanager-style. An alert enters at the default
//! route; children are tried in order and the first that matches takes it (and
//! tries its own children), unless it has `continue`, in which case later siblings
//! are tried as well. When no child matches, the parent itself is the match.

use std::time::Duration;

use super::matchers::Matchers;
use crate::model::{Fingerprint, Labels};

/// A route's timers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// Wait before the first notification of a new group.
    pub group_wait: Duration,
    /// Wait between notifications of one group.
    pub group_interval: Duration,
    /// Wait before repeating a notification about unchanged, unacknowledged alerts.
    pub repeat_interval: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            group_wait: Duration::from_secs(30),
            group_interval: Duration::from_secs(300),
            repeat_interval: Duration::from_secs(4 * 3600),
        }
    }
}

/// One route, with what it inherited already filled in.
#[derive(Debug, Clone)]
pub struct Route {
    /// The route's name (or its path in the config).
    pub name: String,
    /// What it matches.
    pub matchers: Matchers,
    /// Who it notifies.
    pub receivers: Vec<String>,
    /// Grouping labels; `None` = every label.
    pub group_by: Option<Vec<String>>,
    /// Timers.
    pub timing: Timing,
    /// Keep trying siblings after a match.
    pub continue_matching: bool,
    /// Escalation tiers: after this long unacknowledged, these receivers too.
    pub escalate: Vec<(Duration, Vec<String>)>,
    /// Indexes of the child routes.
    pub children: Vec<usize>,
    /// A stable identity derived from the path and the matchers, so groups survive a
    /// restart and a reordering of unrelated routes.
    pub id: u64,
    /// Where it is in the config (`route[0].routes[1]`).
    pub path: String,
}

impl Route {
    /// The group labels of `labels` under this route.
    pub fn group_labels(&self, labels: &Labels) -> Labels {
        match &self.group_by {
            None => labels.clone(),
            Some(keys) => {
                let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
                labels.keep_only(&keys)
            }
        }
    }

    /// The group key for `labels` under this route.
    pub fn group_key(&self, labels: &Labels) -> String {
        format!("{:016x}:{}", self.id, self.group_labels(labels))
    }
}

/// The routes, index 0 being the default route.
#[derive(Debug, Clone)]
pub struct RouteTree {
    routes: Vec<Route>,
}

impl Default for RouteTree {
    fn default() -> Self {
        Self::new(Route {
            name: "default".into(),
            matchers: Matchers::default(),
            receivers: Vec::new(),
            group_by: Some(vec!["alertname".into()]),
            timing: Timing::default(),
            continue_matching: false,
            escalate: Vec::new(),
            children: Vec::new(),
            id: 0,
            path: "default".into(),
        })
    }
}

impl RouteTree {
    /// A tree with only the default route.
    pub fn new(root: Route) -> Self {
        Self { routes: vec![root] }
    }

    /// Adds `route` as the last child of `parent`; returns its index.
    pub fn add(&mut self, parent: usize, route: Route) -> usize {
        let idx = self.routes.len();
        self.routes.push(route);
        if let Some(p) = self.routes.get_mut(parent) {
            p.children.push(idx);
        }
        idx
    }

    /// Computes the stable ids; call once every route is added.
    pub fn finish(&mut self) {
        for r in &mut self.routes {
            let mut key = Labels::empty();
            let _ = key.set("path", &r.path);
            let _ = key.set("matchers", &r.matchers.to_string());
            r.id = Fingerprint::of("route", &key).0;
        }
    }

    /// The route at `idx` (the default route when out of range).
    pub fn get(&self, idx: usize) -> &Route {
        self.routes.get(idx).unwrap_or(&self.routes[0])
    }

    /// The route with `id`, if any.
    pub fn by_id(&self, id: u64) -> Option<usize> {
        self.routes.iter().position(|r| r.id == id)
    }

    /// Every route.
    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// The routes an alert with `labels` takes (at least one: the default route
    /// when nothing else matches).
    pub fn matching(&self, labels: &Labels) -> Vec<usize> {
        let mut out = Vec::new();
        self.walk(0, labels, &mut out);
        if out.is_empty() {
            out.push(0);
        }
        out
    }

    fn walk(&self, idx: usize, labels: &Labels, out: &mut Vec<usize>) -> bool {
        let r = self.get(idx);
        if !r.matchers.matches(labels) {
            return false;
        }
        let mut child_matched = false;
        for &c in &r.children {
            if self.walk(c, labels, out) {
                child_matched = true;
                if !self.get(c).continue_matching {
                    break;
                }
            }
        }
        if !child_matched {
            out.push(idx);
        }
        true
    }

    /// The receivers an alert with `labels` reaches, in order, without repeats.
    pub fn receivers(&self, labels: &Labels) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for i in self.matching(labels) {
            for r in &self.get(i).receivers {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::config::{NotifyConfig, NotifySections, RouteConfig};

    fn tree(toml_text: &str) -> RouteTree {
        #[derive(serde::Deserialize)]
        struct F {
            #[serde(default)]
            notify: Option<NotifyConfig>,
            #[serde(default)]
            route: Vec<toml::Spanned<RouteConfig>>,
        }
        let f: F = toml::from_str(toml_text).unwrap();
        let names: Vec<String> = ["a", "b", "c", "d", "default"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        NotifySections {
            notify: f.notify.as_ref(),
            routes: &f.route,
            ..Default::default()
        }
        .build(&names)
        .unwrap()
        .routes
    }

    fn l(pairs: &[(&str, &str)]) -> Labels {
        Labels::new(pairs.iter().copied()).unwrap()
    }

    #[test]
    fn first_match_wins_continue_goes_on_default_catches_the_rest() {
        let t = tree(
            r#"
            [notify]
            receivers = ["default"]
            [[route]]
            match = { severity = "critical" }
            receivers = ["a"]
            continue = true
            [[route]]
            match_re = { service = "pg|patroni" }
            receivers = ["b"]
            [[route]]
            matchers = ['env!="dev"']
            receivers = ["c"]
            "#,
        );
        assert_eq!(
            t.receivers(&l(&[("severity", "critical"), ("service", "pg")])),
            vec!["a", "b"]
        );
        assert_eq!(t.receivers(&l(&[("service", "patroni")])), vec!["b"]);
        assert_eq!(t.receivers(&l(&[("env", "prod")])), vec!["c"]);
        assert_eq!(t.receivers(&l(&[("env", "dev")])), vec!["default"]);
        assert_eq!(
            t.receivers(&l(&[("service", "pgbouncer"), ("env", "dev")])),
            vec!["default"],
            "regexes are anchored"
        );
    }

    #[test]
    fn nested_routes_inherit_and_fall_back_to_the_parent() {
        let t = tree(
            r#"
            [notify]
            receivers = ["default"]
            group_wait = "10s"
            [[route]]
            match = { team = "db" }
            receivers = ["a"]
            group_by = ["cluster"]
            repeat_interval = "1h"
              [[route.routes]]
              match = { severity = "critical" }
              receivers = ["b"]
              [[route.routes]]
              match = { severity = "info" }
            "#,
        );
        let crit = t.matching(&l(&[("team", "db"), ("severity", "critical")]));
        assert_eq!(crit.len(), 1);
        let r = t.get(crit[0]);
        assert_eq!(r.receivers, vec!["b"]);
        assert_eq!(r.group_by, Some(vec!["cluster".to_string()]));
        assert_eq!(r.timing.repeat_interval, Duration::from_secs(3600));
        assert_eq!(r.timing.group_wait, Duration::from_secs(10));
        assert_eq!(
            t.receivers(&l(&[("team", "db"), ("severity", "info")])),
            vec!["a"],
            "inherits the receivers"
        );
        assert_eq!(
            t.receivers(&l(&[("team", "db"), ("severity", "warning")])),
            vec!["a"],
            "no child matches: the parent"
        );
        assert_ne!(t.get(crit[0]).id, t.get(0).id);
    }

    #[test]
    fn group_keys_use_group_by_labels() {
        let t = tree(
            r#"
            [notify]
            group_by = ["alertname", "cluster"]
            "#,
        );
        let r = t.get(0);
        let a = r.group_key(&l(&[
            ("alertname", "X"),
            ("cluster", "c1"),
            ("instance", "1"),
        ]));
        let b = r.group_key(&l(&[
            ("alertname", "X"),
            ("cluster", "c1"),
            ("instance", "2"),
        ]));
        let c = r.group_key(&l(&[("alertname", "X"), ("cluster", "c2")]));
        assert_eq!(a, b);
        assert_ne!(a, c);
        let all = tree("[notify]\ngroup_by = [\"...\"]\n");
        assert_ne!(
            all.get(0).group_key(&l(&[("instance", "1")])),
            all.get(0).group_key(&l(&[("instance", "2")]))
        );
    }

    #[test]
    fn unknown_receivers_are_reported() {
        #[derive(serde::Deserialize)]
        struct F {
            route: Vec<toml::Spanned<RouteConfig>>,
        }
        let f: F = toml::from_str("[[route]]\nreceivers = [\"nope\"]\n").unwrap();
        let e = NotifySections {
            routes: &f.route,
            ..Default::default()
        }
        .build(&["a".to_string()])
        .unwrap_err();
        assert!(e[0].message.contains("unknown receiver 'nope'"), "{e:?}");
    }
}
