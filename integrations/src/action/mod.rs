//! Remediation actions: one file per kind, each with its config beside it;
//! [`ActionsConfig`] is the `[action]` table and builds them.
//!
//! - [`exec`]: a command as an argument vector.
//! - [`restart`]: `systemctl restart UNIT`, or a stop/start command pair, then a
//!   health check.
//! - [`http`]: an API call with a templated JSON body.
//! - [`scale`]: scale out/in through an `exec` or `http` action with `{{replicas}}`.
//! - `process`: running commands safely (process groups, bounded output, label
//!   checks), shared by `exec` and `restart`.
//!
//! Every kind also takes the guardrail keys (`cooldown`, `max_attempts`,
//! `window`, `group_by`, `max_concurrent`, `approval`, `verify_within`, `dry_run`,
//! …; see `warden_engine::remediate::config`).

pub mod exec;
pub mod http;
pub mod process;
pub mod restart;
pub mod scale;

#[cfg(test)]
mod k8s_tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::ports::Action;
use warden_engine::remediate::config::Guardrails;

/// The `[action]` table: `[[action.KIND]]` arrays.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionsConfig {
    /// `[[action.exec]]`: commands.
    #[serde(default)]
    pub exec: Vec<Spanned<exec::ExecConfig>>,
    /// `[[action.restart]]`: service restarts with a health check.
    #[serde(default)]
    pub restart: Vec<Spanned<restart::RestartConfig>>,
    /// `[[action.http]]`: API calls.
    #[serde(default)]
    pub http: Vec<Spanned<http::HttpConfig>>,
    /// `[[action.scale]]`: scale-out/in.
    #[serde(default)]
    pub scale: Vec<Spanned<scale::ScaleConfig>>,
}

/// The built actions with their guardrails.
pub type BuiltActions = Vec<(Arc<dyn Action>, Guardrails)>;

fn check_name(name: &Spanned<String>, seen: &mut Vec<String>, problems: &mut Vec<Problem>) -> bool {
    let n = name.get_ref();
    let ok = !n.is_empty()
        && n.len() <= 100
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !ok {
        problems.push(Problem::at(
            name.span(),
            format!("action name '{n}' must be 1 to 100 letters, digits, '-', '_' or '.'"),
        ));
        return false;
    }
    if seen.contains(n) {
        problems.push(Problem::at(
            name.span(),
            format!("action name '{n}' is used twice: give each action a unique 'name'"),
        ));
        return false;
    }
    seen.push(n.clone());
    true
}

impl ActionsConfig {
    /// Every configured action name, in the order of the file by kind.
    pub fn names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        out.extend(self.exec.iter().map(|e| e.get_ref().name.get_ref().clone()));
        out.extend(
            self.restart
                .iter()
                .map(|e| e.get_ref().name.get_ref().clone()),
        );
        out
    }

    /// Checks every entry and builds its action, or returns every problem found.
    pub fn build(&self) -> Result<BuiltActions, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut seen = Vec::new();
        let mut out: BuiltActions = Vec::new();
        // exec and http first: scale actions run through them.
        let mut runners: BTreeMap<String, Arc<dyn Action>> = BTreeMap::new();
        for e in &self.exec {
            let c = e.get_ref();
            let named = check_name(&c.name, &mut seen, &mut problems);
            let guard = c.guard_keys().check(&mut problems);
            let a: Arc<dyn Action> = Arc::new(c.build(e.span(), &mut problems));
            if named {
                runners.insert(c.name.get_ref().clone(), a.clone());
            }
            out.push((a, guard));
        }
        for e in &self.http {
            let c = e.get_ref();
            let named = check_name(&c.name, &mut seen, &mut problems);
            let guard = c.guard_keys().check(&mut problems);
            if let Some(a) = c.build(e.span(), &mut problems) {
                let a: Arc<dyn Action> = Arc::new(a);
                if named {
                    runners.insert(c.name.get_ref().clone(), a.clone());
                }
                out.push((a, guard));
            }
        }
        for e in &self.restart {
            let c = e.get_ref();
            check_name(&c.name, &mut seen, &mut problems);
            let guard = c.guard_keys().check(&mut problems);
            if let Some(a) = c.build(e.span(), &mut problems) {
                out.push((Arc::new(a), guard));
            }
        }
        for e in &self.scale {
            let c = e.get_ref();
            check_name(&c.name, &mut seen, &mut problems);
            let guard = c.guard_keys().check(&mut problems);
            if let Some(a) = c.build(e.span(), &runners, &mut problems) {
                out.push((Arc::new(a), guard));
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }
}
