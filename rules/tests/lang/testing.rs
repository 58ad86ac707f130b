//! Rule unit tests (`warden rules test`): simulated time, the lifecycle, diffs and
//! the errors a broken test file gets.

use std::path::{Path, PathBuf};

use warden_rules::RuleEngine;
use warden_rules::testing::{FileReport, run_file};

/// A temp dir holding `rules.rhai` and a test file.
struct Case {
    dir: tempfile::TempDir,
}

impl Case {
    fn new(rules: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("rules.rhai"), rules).unwrap();
        Self { dir }
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, name: &str, text: &str) -> FileReport {
        run_file(&RuleEngine::new(), &self.file(name, text))
    }
}

const RULES: &str = r#"
rule("DiskFull", #{
    severity: "critical",
    pending_for: "3m",
    labels: #{ team: "ops" },
    summary: "{{mountpoint}} on {{instance}} is {{value}}% full",
    when: || series("disk_used_percent") > 90,
});

rule("Down", #{
    severity: "warning",
    keep_firing_for: "2m",
    when: || series("up") == 0,
});
"#;

/// Every failure message of a report, problems first.
fn messages(r: &FileReport) -> Vec<String> {
    r.problems
        .iter()
        .map(|d| d.to_string())
        .chain(
            r.tests
                .iter()
                .flat_map(|t| t.failures.iter().map(|f| f.to_string())),
        )
        .collect()
}

#[track_caller]
fn assert_passes(r: &FileReport) {
    assert!(r.passed(), "{:#?}", messages(r));
}

#[test]
fn pending_then_firing_with_labels_and_annotations() {
    let c = Case::new(RULES);
    let r = c.run(
        "t.toml",
        r#"
rule_files = ["rules.rhai"]
evaluation_interval = "1m"

[[tests]]
name = "disk"
interval = "1m"
input_series = [
    { series = 'disk_used_percent{instance="db-1", mountpoint="/var"}', values = "50 95x10" },
    { series = 'disk_used_percent{instance="db-1", mountpoint="/"}', values = "10x10" },
]

[[tests.alert_rule_test]]
eval_time = "0m"
alertname = "DiskFull"
exp_alerts = []

[[tests.alert_rule_test]]
eval_time = "1m"
alertname = "DiskFull"
exp_alerts = [{ exp_labels = { instance = "db-1", mountpoint = "/var", team = "ops" }, state = "pending" }]

# 3m after it became active (at 1m) it fires.
[[tests.alert_rule_test]]
eval_time = "3m59s"
alertname = "DiskFull"
exp_alerts = [{ exp_labels = { instance = "db-1", mountpoint = "/var", team = "ops" }, state = "pending" }]

[[tests.alert_rule_test]]
eval_time = "4m"
alertname = "DiskFull"
exp_alerts = [
    { exp_labels = { alertname = "DiskFull", severity = "critical", instance = "db-1", mountpoint = "/var", team = "ops" }, value = 95, exp_annotations = { summary = "/var on db-1 is 95% full" } },
]
"#,
    );
    assert_passes(&r);
    assert_eq!(r.tests.len(), 1);
    assert_eq!(r.tests[0].name, "disk");
}

#[test]
fn keep_firing_for_matches_prometheus() {
    // Down at 1m..3m (fires at once), up again from 4m. Prometheus keeps it
    // firing while less than keep_firing_for has passed since the first
    // evaluation that no longer returned it (4m): at 4m and 5m, resolved at 6m.
    let c = Case::new(RULES);
    let mut text = String::from(
        r#"
rule_files = ["rules.rhai"]
[[tests]]
input_series = [{ series = 'up{instance="a"}', values = "1 0 0 0 1 1 1 1" }]
"#,
    );
    for (t, firing) in [
        ("3m", true),
        ("4m", true),
        ("5m", true),
        ("6m", false),
        ("7m", false),
    ] {
        let exp = if firing {
            r#"[{ exp_labels = { instance = "a" } }]"#
        } else {
            "[]"
        };
        text.push_str(&format!(
            "[[tests.alert_rule_test]]\neval_time = \"{t}\"\nalertname = \"Down\"\nexp_alerts = {exp}\n"
        ));
    }
    assert_passes(&c.run("t.toml", &text));
}

#[test]
fn missing_and_stale_samples() {
    let c = Case::new(RULES);
    let r = c.run(
        "t.toml",
        r#"
rule_files = ["rules.rhai"]
[[tests]]
interval = "1m"
input_series = [
    { series = 'up{instance="a"}', values = "1 _ _ _ 2 stale 3" },
    { series = 'up{instance="b"}', values = "0+5x6" },
]
# Two minutes without a sample: still fresh (twice the interval).
[[tests.expr_test]]
expr = 'series("up", #{ instance: "a" })'
eval_time = "2m"
exp_samples = [{ labels = 'up{instance="a"}', value = 1 }]
# Three: stale.
[[tests.expr_test]]
expr = 'series("up", #{ instance: "a" })'
eval_time = "3m"
exp_samples = []
[[tests.expr_test]]
expr = 'series("up", #{ instance: "a" })'
eval_time = "5m30s"
exp_samples = []
[[tests.expr_test]]
expr = 'sum(series("up"))'
eval_time = "6m"
exp_samples = [{ value = 33 }]
[[tests.expr_test]]
expr = 'rate(series("up", #{ instance: "b" }), "5m")'
eval_time = "5m"
exp_samples = [{ labels = { instance = "b" }, value = 0.08333333333 }]
[[tests.expr_test]]
expr = '1 + 1'
eval_time = "0s"
exp_samples = [{ value = 2 }]
"#,
    );
    assert_passes(&r);
}

#[test]
fn failures_show_a_diff_at_the_check() {
    let c = Case::new(RULES);
    let r = c.run(
        "t.toml",
        r#"
rule_files = ["rules.rhai"]
[[tests]]
name = "wrong"
input_series = [
    { series = 'disk_used_percent{instance="a", mountpoint="/"}', values = "95x5" },
    { series = 'disk_used_percent{instance="b", mountpoint="/"}', values = "99x5" },
]
[[tests.alert_rule_test]]
eval_time = "5m"
alertname = "DiskFull"
exp_alerts = [
    { exp_labels = { instance = "a", mountpoint = "/", team = "ops" }, exp_annotations = { summary = "/ on a is 96% full" } },
    { exp_labels = { instance = "c", mountpoint = "/", team = "ops" } },
]
[[tests.expr_test]]
expr = 'series("disk_used_percent") > 96'
eval_time = "1m"
exp_samples = [{ labels = '{instance="b", mountpoint="/"}', value = 98 }]
"#,
    );
    assert!(!r.passed());
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    let f = &r.tests[0].failures;
    assert_eq!(f.len(), 2);
    let alert = f[0].to_string();
    let path = c.dir.path().join("t.toml");
    assert!(
        alert.starts_with(&format!(
            "{}:11:13: alert \"DiskFull\" at 5m: expected 2 alert(s), got 2 (- expected, + got)\n",
            path.display()
        )),
        "{alert}"
    );
    let diff: Vec<&str> = alert.lines().skip(1).collect();
    assert_eq!(
        diff,
        [
            r#"- firing {instance="a",mountpoint="/",team="ops"} summary="/ on a is 96% full""#,
            r#"+ firing {instance="a",mountpoint="/",team="ops"} summary="/ on a is 95% full""#,
            r#"- firing {instance="c",mountpoint="/",team="ops"}"#,
            r#"+ firing {instance="b",mountpoint="/",team="ops"} summary="/ on b is 99% full""#,
        ]
    );
    assert_eq!(f[0].expected.len(), 2);
    assert_eq!(f[0].got.len(), 2);
    let expr = f[1].to_string();
    assert!(expr.contains(":17:8: expression 'series(\"disk_used_percent\") > 96' at 1m: expected 1 sample(s), got 1"), "{expr}");
    assert!(
        expr.ends_with(
            "- {instance=\"b\",mountpoint=\"/\"} 98\n+ {instance=\"b\",mountpoint=\"/\"} 99"
        ),
        "{expr}"
    );
}

#[test]
fn yaml_files_work_the_same() {
    let c = Case::new(RULES);
    let r = c.run(
        "t.yaml",
        r#"
rule_files: [rules.rhai]
evaluation_interval: 30s
tests:
  - name: disk in yaml
    interval: 30s
    input_series:
      - series: 'disk_used_percent{instance="a", mountpoint="/"}'
        values: 91x10
    alert_rule_test:
      - eval_time: 2m30s
        alertname: DiskFull
        exp_alerts:
          - exp_labels: {instance: a, mountpoint: /, team: ops}
            state: pending
      - eval_time: 3m
        alertname: DiskFull
        exp_alerts:
          - exp_labels: {instance: a, mountpoint: /, team: ops}
            exp_annotations:
              summary: / on a is 91% full
    expr_test:
      - expr: 'max_over(series("disk_used_percent"), "5m")'
        eval_time: 1m
        exp_samples:
          - labels: '{instance="a", mountpoint="/"}'
            value: 91
"#,
    );
    assert_passes(&r);

    // Numbers written without quotes are text where text is expected.
    let c = Case::new(
        r#"rule("Status", #{ severity: "info", when: || series("http_status") == 503 });"#,
    );
    let r = c.run(
        "n.yaml",
        r#"
rule_files: [rules.rhai]
tests:
  - input_series:
      - series: 'http_status{code="503"}'
        values: 503
    alert_rule_test:
      - eval_time: 0s
        alertname: Status
        exp_alerts:
          - exp_labels: {code: 503}
    expr_test:
      - expr: series("http_status")
        eval_time: 0s
        exp_samples:
          - labels: {code: 503}
            value: 503
"#,
    );
    assert_passes(&r);
}

#[test]
fn broken_test_files_get_precise_messages() {
    let c = Case::new(RULES);
    let cases: &[(&str, &str, &str)] = &[
        (
            "syntax.toml",
            "rule_files = [\"rules.rhai\"]\n[[tests]\n",
            "syntax.toml:2:",
        ),
        (
            "unknown-key.toml",
            "rule_files = [\"rules.rhai\"]\n[[tests]]\nintervall = \"1m\"\n",
            "unknown-key.toml:3:1: unknown field `intervall`",
        ),
        (
            "values.toml",
            "rule_files = [\"rules.rhai\"]\n[[tests]]\ninput_series = [{ series = 'up', values = '1 2 3+ax4' }]\n[[tests.expr_test]]\nexpr = '1'\neval_time = '1m'\n",
            "values.toml:3:43: test \"#1\": invalid value '3+ax4' in '1 2 3+ax4'",
        ),
        (
            "series.toml",
            "rule_files = [\"rules.rhai\"]\n[[tests]]\ninput_series = [{ series = 'up{job=api}', values = '1' }]\n[[tests.expr_test]]\nexpr = '1'\neval_time = '1m'\n",
            "series.toml:3:28: test \"#1\": 'up{job=api}': the value of 'job' must be in double quotes",
        ),
        (
            "duration.toml",
            "rule_files = [\"rules.rhai\"]\n[[tests]]\n[[tests.alert_rule_test]]\neval_time = \"5 parsecs\"\nalertname = \"Down\"\n",
            "duration.toml:4:13: test \"#1\": 'eval_time': invalid duration '5 parsecs'",
        ),
        (
            "unknown-rule.toml",
            "rule_files = [\"rules.rhai\"]\n[[tests]]\n[[tests.alert_rule_test]]\neval_time = \"5m\"\nalertname = \"DiskFul\"\n",
            "unknown-rule.toml:5:13: test \"#1\": no rule named 'DiskFul' in the rule files under test (did you mean 'DiskFull'?)",
        ),
        (
            "missing-rules.toml",
            "rule_files = [\"nope.rhai\"]\n[[tests]]\n[[tests.expr_test]]\nexpr = '1'\neval_time = '1m'\n",
            "missing-rules.toml:1:15: rule file '",
        ),
        (
            "state.yaml",
            "rule_files: [rules.rhai]\ntests:\n  - alert_rule_test:\n      - eval_time: 1m\n        alertname: Down\n        exp_alerts:\n          - state: burning\n",
            "state.yaml:7:20: test \"#1\": state 'burning' is not an alert state",
        ),
        (
            "type.yaml",
            "rule_files: [rules.rhai]\ntests:\n  - interval: [1]\n",
            "type.yaml:3:15: tests[0].interval: invalid type: sequence, expected a string",
        ),
        (
            "empty.toml",
            "rule_files = [\"rules.rhai\"]\n",
            "empty.toml:1:1: the file has no tests",
        ),
    ];
    for (name, text, want) in cases {
        let r = c.run(name, text);
        let got = messages(&r);
        let prefix = format!("{}/", c.dir.path().display());
        assert!(
            got.iter()
                .any(|m| m.strip_prefix(&prefix).unwrap_or(m).starts_with(want)),
            "{name}: want {want:?}, got {got:#?}"
        );
    }
}

#[test]
fn broken_rules_under_test_are_reported() {
    let c = Case::new(RULES);
    c.file(
        "dup.rhai",
        r#"rule("Down", #{ severity: "info", when: || true });"#,
    );
    c.file(
        "loop.rhai",
        r#"rule("Spin", #{ severity: "info", when: || { loop { } } });"#,
    );
    let r = c.run(
        "t.toml",
        r#"
rule_files = ["rules.rhai", "dup.rhai"]
[[tests]]
[[tests.expr_test]]
expr = "1"
eval_time = "0s"
"#,
    );
    let got = messages(&r);
    assert!(
        got.iter().any(|m| m
            .contains("dup.rhai:1:1: rule \"Down\": a rule with this name is already defined at")),
        "{got:#?}"
    );
    // A rule that never ends fails its test with the sandbox's message, and
    // the run goes on.
    let r = c.run(
        "t2.toml",
        r#"
rule_files = ["loop.rhai"]
[[tests]]
[[tests.alert_rule_test]]
eval_time = "2m"
alertname = "Spin"
"#,
    );
    assert!(r.problems.is_empty());
    let got = messages(&r);
    assert!(
        got[0].contains("alert \"Spin\" at 2m: the rule failed to evaluate at 0s:")
            && got[0].contains("rule \"Spin\": rule exceeded its"),
        "{got:#?}"
    );
}

#[test]
fn rules_with_their_own_every_run_on_their_own_ticks() {
    let c = Case::new(
        r#"rule("Slow", #{ severity: "info", every: "5m", pending_for: "5m", when: || series("x") > 0 });"#,
    );
    // x > 0 from 1m. Evaluated at 0, 5m, 10m: active at 5m, fires at 10m.
    let r = c.run(
        "t.toml",
        r#"
rule_files = ["rules.rhai"]
[[tests]]
interval = "1m"
freshness = "5m"
input_series = [{ series = 'x', values = "0 1x20" }]
[[tests.alert_rule_test]]
eval_time = "4m"
alertname = "Slow"
[[tests.alert_rule_test]]
eval_time = "9m"
alertname = "Slow"
exp_alerts = [{ state = "pending" }]
[[tests.alert_rule_test]]
eval_time = "10m"
alertname = "Slow"
exp_alerts = [{}]
"#,
    );
    assert_passes(&r);
}

#[test]
fn the_file_names_its_parts() {
    assert!(warden_rules::testing::is_test_file(Path::new(
        "a/b.test.toml"
    )));
    assert!(warden_rules::testing::is_test_file(Path::new("b.yml")));
    assert!(!warden_rules::testing::is_test_file(Path::new("b.rhai")));
}

#[test]
fn a_test_too_long_to_simulate_says_so() {
    let c = Case::new(RULES);
    let r = c.run(
        "t.toml",
        r#"
rule_files = ["rules.rhai"]
evaluation_interval = "1s"
[[tests]]
[[tests.alert_rule_test]]
eval_time = "30d"
alertname = "Down"
"#,
    );
    let got = messages(&r);
    assert!(
        got[0].contains("alert \"Down\": reaching 30d at an evaluation every 1s takes 2592001 evaluations; the limit is 604800"),
        "{got:#?}"
    );
}
