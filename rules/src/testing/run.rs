//! Running the tests of a checked file on simulated time.
//!
//! Each test gets its own [`InputSeries`] and [`AlertBook`]. The rules an
//! `alert_rule_test` names are evaluated with the daemon's [`RuleEngine`] at
//! `0, every, 2·every, …` (each rule's own `every`, else the file's
//! `evaluation_interval`) up to the latest `eval_time`, and every result goes
//! through the daemon's alert lifecycle, so `pending_for`, `keep_firing_for` and
//! the pending reset after an evaluation gap behave exactly as in production. An
//! alert test sees the alerts as they are after the last evaluation at or before
//! its `eval_time`. Nothing sleeps: time is a number.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use warden_engine::lifecycle::{ActiveInstance, AlertBook, RuleMeta};
use warden_engine::model::{Alert, Labels, Timestamp};

use super::file::{AlertTest, ExpAlert, ExpSample, ExprTest, Test, TestFile};
use super::input::InputSeries;
use super::{Failure, TestReport};
use crate::render::humanize;
use crate::rule::{ExprValue, Rule};
use crate::{Diagnostic, RuleEngine};

/// Evaluations of one rule in one test, at most: a week at 1 s.
const MAX_EVALUATIONS: i64 = 604_800;

/// Relative tolerance when comparing values (promtool's).
const EPSILON: f64 = 1e-6;

pub(crate) fn run_test(
    engine: &RuleEngine,
    file: &TestFile,
    rules: &BTreeMap<String, Arc<Rule>>,
    test: &Test,
) -> TestReport {
    let mut input = InputSeries::new(test.freshness.as_millis() as i64);
    let interval_ms = test.interval.as_millis() as i64;
    for s in &test.input {
        input.add(s.name.clone(), s.labels.clone(), &s.steps, interval_ms);
    }
    let mut failures = Vec::new();
    run_alert_tests(engine, file, rules, test, &input, &mut failures);
    for x in &test.expr_tests {
        if let Some(f) = expr_test(engine, file, x, &input) {
            failures.push(f);
        }
    }
    failures.sort_by_key(|f| (f.line, f.col));
    TestReport {
        name: test.name.clone(),
        failures,
    }
}

fn ms(d: std::time::Duration) -> Timestamp {
    d.as_millis() as Timestamp
}

/// `10m`, `1h30m`.
fn at_text(t: Timestamp) -> String {
    crate::diag::fmt_duration(std::time::Duration::from_millis(t.max(0) as u64))
}

fn run_alert_tests(
    engine: &RuleEngine,
    file: &TestFile,
    rules: &BTreeMap<String, Arc<Rule>>,
    test: &Test,
    input: &InputSeries,
    failures: &mut Vec<Failure>,
) {
    if test.alert_tests.is_empty() {
        return;
    }
    // The rules under test, and each one's schedule.
    let names: BTreeSet<&str> = test
        .alert_tests
        .iter()
        .map(|a| a.alertname.as_str())
        .collect();
    let end = test
        .alert_tests
        .iter()
        .map(|a| ms(a.eval_time))
        .max()
        .unwrap_or(0);
    let mut ticks: Vec<(Timestamp, &Arc<Rule>)> = Vec::new();
    for name in &names {
        let Some(rule) = rules.get(*name) else {
            continue;
        };
        let every = ms(rule.every.unwrap_or(file.evaluation_interval)).max(1);
        let count = end / every + 1;
        if count > MAX_EVALUATIONS {
            let a = test
                .alert_tests
                .iter()
                .filter(|a| a.alertname == rule.name)
                .max_by_key(|a| a.eval_time);
            let (line, col) = a.map_or((0, 0), |a| a.at);
            failures.push(Failure {
                file: file.path.clone(),
                line,
                col,
                what: format!("alert \"{}\"", rule.name),
                message: format!(
                    "reaching {} at an evaluation every {} takes {count} evaluations; the limit is {MAX_EVALUATIONS}: use a longer evaluation_interval or an earlier eval_time",
                    at_text(end),
                    at_text(every)
                ),
                expected: Vec::new(),
                got: Vec::new(),
            });
            return;
        }
        ticks.extend((0..count).map(|k| (k * every, rule)));
    }
    ticks.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));

    let mut order: Vec<&AlertTest> = test.alert_tests.iter().collect();
    order.sort_by_key(|a| a.eval_time);
    let mut pending_tests = order.into_iter().peekable();
    let mut book = AlertBook::new();
    let mut broken: BTreeMap<String, (Timestamp, Diagnostic)> = BTreeMap::new();
    let mut snapshot =
        |book: &AlertBook, a: &AlertTest, broken: &BTreeMap<String, (Timestamp, Diagnostic)>| {
            if let Some((t, d)) = broken.get(&a.alertname) {
                failures.push(Failure {
                    file: file.path.clone(),
                    line: a.at.0,
                    col: a.at.1,
                    what: format!("alert \"{}\" at {}", a.alertname, at_text(ms(a.eval_time))),
                    message: format!("the rule failed to evaluate at {}: {d}", at_text(*t)),
                    expected: Vec::new(),
                    got: Vec::new(),
                });
                return;
            }
            let got: Vec<Alert> = book
                .alerts()
                .into_iter()
                .filter(|x| x.name == a.alertname)
                .collect();
            if let Some(f) = compare_alerts(file, a, rules.get(&a.alertname), got) {
                failures.push(f);
            }
        };
    for (t, rule) in ticks {
        while let Some(a) = pending_tests.next_if(|a| ms(a.eval_time) < t) {
            snapshot(&book, a, &broken);
        }
        if broken.contains_key(&rule.name) {
            continue;
        }
        match engine.evaluate(rule, input, t) {
            Ok(ev) => {
                let meta = RuleMeta {
                    name: rule.name.clone(),
                    severity: rule.severity,
                    pending_for: rule.pending_for,
                    keep_firing_for: rule.keep_firing_for,
                    interval: rule.every.unwrap_or(file.evaluation_interval),
                };
                let instances = ev
                    .instances
                    .into_iter()
                    .map(|i| ActiveInstance {
                        labels: i.labels,
                        value: i.value,
                        annotations: i.annotations,
                    })
                    .collect();
                book.apply(&meta, instances, t);
            }
            Err(d) => {
                broken.insert(rule.name.clone(), (t, d));
            }
        }
    }
    for a in pending_tests {
        snapshot(&book, a, &broken);
    }
}

/// An expected alert with `alertname` and `severity` filled in from the rule
/// when the test leaves them out.
fn full_labels(e: &ExpAlert, rule: Option<&Arc<Rule>>, alertname: &str) -> Labels {
    let mut pairs: BTreeMap<&str, &str> = e
        .labels
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    pairs.entry("alertname").or_insert(alertname);
    if let Some(r) = rule {
        pairs.entry("severity").or_insert(r.severity.as_str());
    }
    Labels::new(pairs).unwrap_or_default()
}

fn close(a: f64, b: f64) -> bool {
    if a.is_nan() || b.is_nan() {
        return a.is_nan() && b.is_nan();
    }
    if a == b {
        return true;
    }
    (a - b).abs() <= EPSILON * a.abs().max(b.abs())
}

/// Labels as the diff shows them: without `alertname` (the header names the
/// alert) and without the rule's own `severity`.
fn shown_labels(labels: &Labels, rule: Option<&Arc<Rule>>) -> String {
    let mut l = labels.clone();
    l.remove("alertname");
    if rule.is_some_and(|r| labels.get("severity") == Some(r.severity.as_str())) {
        l.remove("severity");
    }
    l.to_key()
}

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn show_expected(e: &ExpAlert, labels: &Labels, rule: Option<&Arc<Rule>>) -> String {
    let mut s = format!("{} {}", e.state.as_str(), shown_labels(labels, rule));
    if let Some(v) = e.value {
        s.push_str(&format!(" value={}", humanize(v)));
    }
    for (k, v) in &e.annotations {
        s.push_str(&format!(" {k}={}", quoted(v)));
    }
    s
}

/// A got alert; `keys` limits the annotations shown to those the expectation
/// names (all of them when `None`).
fn show_got(
    a: &Alert,
    rule: Option<&Arc<Rule>>,
    with_value: bool,
    keys: Option<&BTreeMap<String, String>>,
) -> String {
    let mut s = format!("{} {}", a.state.as_str(), shown_labels(&a.labels, rule));
    if with_value {
        s.push_str(&format!(" value={}", humanize(a.value)));
    }
    for (k, v) in &a.annotations {
        if keys.is_none_or(|keys| keys.contains_key(k)) {
            s.push_str(&format!(" {k}={}", quoted(v)));
        }
    }
    s
}

fn alert_matches(e: &ExpAlert, a: &Alert) -> bool {
    e.state == a.state
        && e.value.is_none_or(|v| close(v, a.value))
        && e.annotations
            .iter()
            .all(|(k, v)| a.annotations.get(k) == Some(v))
}

fn compare_alerts(
    file: &TestFile,
    test: &AlertTest,
    rule: Option<&Arc<Rule>>,
    got: Vec<Alert>,
) -> Option<Failure> {
    let mut got: Vec<Option<Alert>> = got.into_iter().map(Some).collect();
    let mut expected_lines = Vec::new();
    let mut got_lines = Vec::new();
    let mut ok = true;
    let mut pairs: Vec<(String, Option<String>)> = Vec::new();
    for e in &test.expected {
        let labels = full_labels(e, rule, &test.alertname);
        let exp_line = show_expected(e, &labels, rule);
        expected_lines.push(exp_line.clone());
        let found = got
            .iter_mut()
            .find(|g| g.as_ref().is_some_and(|g| g.labels == labels))
            .and_then(Option::take);
        match found {
            Some(g) => {
                let line = show_got(&g, rule, e.value.is_some(), Some(&e.annotations));
                if !alert_matches(e, &g) {
                    ok = false;
                }
                pairs.push((exp_line, Some(line)));
            }
            None => {
                ok = false;
                pairs.push((exp_line, None));
            }
        }
    }
    let extra: Vec<Alert> = got.into_iter().flatten().collect();
    if !extra.is_empty() {
        ok = false;
    }
    if ok {
        return None;
    }
    got_lines.extend(pairs.iter().filter_map(|(_, g)| g.clone()));
    let mut diff = Vec::new();
    for (e, g) in pairs {
        match g {
            Some(g) if g == e => diff.push(format!("  {e}")),
            Some(g) => {
                diff.push(format!("- {e}"));
                diff.push(format!("+ {g}"));
            }
            None => diff.push(format!("- {e}")),
        }
    }
    for g in &extra {
        let line = show_got(g, rule, false, None);
        got_lines.push(line.clone());
        diff.push(format!("+ {line}"));
    }
    let summary = if test.expected.is_empty() {
        "expected no pending or firing alert".to_string()
    } else {
        format!(
            "expected {} alert(s), got {}",
            test.expected.len(),
            got_lines.len()
        )
    };
    Some(Failure {
        file: file.path.clone(),
        line: test.at.0,
        col: test.at.1,
        what: format!(
            "alert \"{}\" at {}",
            test.alertname,
            at_text(ms(test.eval_time))
        ),
        message: format!("{summary} (- expected, + got)\n{}", diff.join("\n")),
        expected: expected_lines,
        got: got_lines,
    })
}

/// A sample as the diff shows it.
fn show_sample(name: Option<&str>, labels: &Labels, value: f64) -> String {
    format!(
        "{}{} {}",
        name.unwrap_or(""),
        labels.to_key(),
        humanize(value)
    )
}

fn expr_test(
    engine: &RuleEngine,
    file: &TestFile,
    x: &ExprTest,
    input: &InputSeries,
) -> Option<Failure> {
    let t = ms(x.eval_time);
    let what = format!("expression '{}' at {}", x.expr, at_text(t));
    let fail = |message: String, expected: Vec<String>, got: Vec<String>| Failure {
        file: file.path.clone(),
        line: x.at.0,
        col: x.at.1,
        what: what.clone(),
        message,
        expected,
        got,
    };
    let value = match engine.eval_expr(&x.expr, input, t) {
        Ok(v) => v,
        Err(d) => {
            let d = Diagnostic {
                file: PathBuf::new(),
                ..d
            };
            let msg = d.to_string();
            let msg = msg.trim_start_matches(": ").to_string();
            return Some(fail(
                format!("the expression failed: {msg}"),
                Vec::new(),
                Vec::new(),
            ));
        }
    };
    let got: Vec<(Option<String>, Labels, f64)> = match value {
        ExprValue::Vector(es) => es
            .into_iter()
            .map(|e| (e.name.map(|n| n.as_str().to_string()), e.labels, e.value))
            .collect(),
        ExprValue::Scalar(v) => vec![(None, Labels::empty(), v)],
        ExprValue::Bool(b) => vec![(None, Labels::empty(), if b { 1.0 } else { 0.0 })],
        ExprValue::Unit => Vec::new(),
        ExprValue::Other(shown) => {
            return Some(fail(
                format!(
                    "the expression returned '{shown}'; an expression test needs a vector, a number or a bool"
                ),
                Vec::new(),
                Vec::new(),
            ));
        }
    };
    let mut got: Vec<Option<(Option<String>, Labels, f64)>> = got.into_iter().map(Some).collect();
    let mut diff = Vec::new();
    let mut ok = true;
    let mut expected_lines = Vec::new();
    let mut got_lines = Vec::new();
    let mut exp: Vec<&ExpSample> = x.expected.iter().collect();
    exp.sort_by(|a, b| a.labels.cmp(&b.labels));
    for e in exp {
        let ename = e.name.as_ref().map(|n| n.as_str());
        let line = show_sample(ename, &e.labels, e.value);
        expected_lines.push(line.clone());
        let found = got
            .iter_mut()
            .find(|g| {
                g.as_ref().is_some_and(|(n, l, _)| {
                    *l == e.labels && (ename.is_none() || n.as_deref() == ename)
                })
            })
            .and_then(Option::take);
        match found {
            Some((n, l, v)) => {
                let g = show_sample(ename.and(n.as_deref()), &l, v);
                got_lines.push(g.clone());
                if close(e.value, v) {
                    diff.push(format!("  {line}"));
                } else {
                    ok = false;
                    diff.push(format!("- {line}"));
                    diff.push(format!("+ {g}"));
                }
            }
            None => {
                ok = false;
                diff.push(format!("- {line}"));
            }
        }
    }
    let mut extra: Vec<(Option<String>, Labels, f64)> = got.into_iter().flatten().collect();
    extra.sort_by(|a, b| a.1.cmp(&b.1));
    for (n, l, v) in extra {
        ok = false;
        let g = show_sample(n.as_deref(), &l, v);
        got_lines.push(g.clone());
        diff.push(format!("+ {g}"));
    }
    if ok {
        return None;
    }
    let summary = format!(
        "expected {} sample(s), got {}",
        x.expected.len(),
        got_lines.len()
    );
    Some(fail(
        format!("{summary} (- expected, + got)\n{}", diff.join("\n")),
        expected_lines,
        got_lines,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_compare_like_promtool() {
        assert!(close(1.0, 1.0 + 1e-9));
        assert!(!close(1.0, 1.001));
        assert!(close(f64::NAN, f64::NAN));
        assert!(!close(f64::NAN, 0.0));
        assert!(close(f64::INFINITY, f64::INFINITY));
        assert!(close(0.0, 0.0));
    }
}
