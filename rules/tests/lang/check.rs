//! `warden rules check`: literal argument types, placeholders that can never be
//! filled, duplicate names across files, `remediate` against the config.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use warden_rules::RuleEngine;
use warden_rules::check::{CheckOptions, check_files, lint_file};

fn compile_errors(src: &str) -> Vec<String> {
    match RuleEngine::new().compile_source(Path::new("r.rhai"), src) {
        Ok(_) => Vec::new(),
        Err(d) => d.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn literal_arguments_of_the_wrong_type_are_compile_errors() {
    for (when, want) in [
        (
            r#"rate(series("x"), 5) > 1"#,
            r#"rate(): the window must be a duration string like "5m", not a number"#,
        ),
        (
            r#"avg_over(series("x"), "5 parsecs") > 1"#,
            "avg_over(): invalid duration '5 parsecs'",
        ),
        (
            r#"max_over(series("x"), "0s") > 1"#,
            "max_over(): the window must be longer than 0",
        ),
        (
            r#"avg_over(42, "5m") > 1"#,
            "avg_over(): the first argument must be series(...) or a metric name, not a number",
        ),
        (
            "series(42) > 1",
            "series(): the metric name must be a string, not a number",
        ),
        (
            r#"series("http-requests") > 1"#,
            "series(): invalid metric name 'http-requests'",
        ),
        (
            r#"series("x", "job") > 1"#,
            "series(): the label matchers must be a map",
        ),
        (
            r#"sum_by(series("x"), "instance") > 1"#,
            r#"sum_by(): the labels must be a list ["instance", ...], not a string"#,
        ),
        (
            r#"quantile_over(series("x"), "0.9", "5m") > 1"#,
            "quantile_over(): the quantile must be a number, not a string",
        ),
        (
            r#"predict_linear(series("x"), "1h", "4h") < 0"#,
            "predict_linear(): seconds_ahead must be a number, not a string",
        ),
        (
            r#"consecutive_failures(series("up"), "3")"#,
            "consecutive_failures(): the count must be a number, not a string",
        ),
        (
            r#"topk(series("x"), "3")"#,
            "topk(): k must be a number, not a string",
        ),
    ] {
        let src = format!("rule(\"R\", #{{ severity: \"info\",\n  when: || {when} }});");
        let errs = compile_errors(&src);
        assert!(
            errs.iter()
                .any(|e| e.starts_with("r.rhai:2:") && e.contains(want)),
            "{when}: want {want:?}, got {errs:#?}"
        );
    }
    // Variables and computed values are left to run time.
    assert!(
        compile_errors(
            r#"let w = "5m"; rule("R", #{ severity: "info", when: || rate(series("x"), w) > 1 });"#
        )
        .is_empty()
    );
    // A script's own function of the same name is not warden's.
    assert!(
        compile_errors(
            r#"fn rate(a, b) { a } rule("R", #{ severity: "info", when: || rate(1, 2) > 0 });"#
        )
        .is_empty()
    );
}

fn lint(src: &str, actions: Option<&[&str]>) -> Vec<String> {
    let file = RuleEngine::new()
        .compile_source(Path::new("r.rhai"), src)
        .unwrap_or_else(|d| panic!("{d:?}"));
    let opts = CheckOptions {
        actions: actions.map(|a| a.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>()),
    };
    lint_file(&file, &opts)
        .iter()
        .map(|d| d.to_string())
        .collect()
}

fn rule(summary: &str, when: &str) -> String {
    format!(
        "fn by_instance() {{ max_by(series(\"x\"), [\"instance\"]) }}\nrule(\"R\", #{{ severity: \"info\", labels: #{{ team: \"ops\" }}, summary: \"{summary}\", when: || {when} }});"
    )
}

#[test]
fn placeholders_that_can_never_be_filled() {
    let never = |summary: &str, when: &str| {
        let got = lint(&rule(summary, when), None);
        assert_eq!(got.len(), 1, "{summary} / {when}: {got:#?}");
        got[0].clone()
    };
    let fine = |summary: &str, when: &str| {
        let got = lint(&rule(summary, when), None);
        assert!(got.is_empty(), "{summary} / {when}: {got:#?}");
    };
    let e = never(
        "{{mountpoint}} on {{instance}}",
        r#"sum_by(series("disk"), ["instance"]) > 1"#,
    );
    assert_eq!(
        e,
        "r.rhai:2:1: rule \"R\": summary: placeholder '{{mountpoint}}' names a label this rule's alerts never have (`when` keeps only the labels 'instance'); keep the label in `when` (e.g. sum_by(v, [\"mountpoint\"])) or add it to `labels`"
    );
    assert!(
        never("{{instance}}", r#"sum(series("x")) > 1"#)
            .contains("`when` returns a bool, a number or an aggregation without labels")
    );
    assert!(never("{{ $labels.instance }}", r#"count(series("x")) == 0"#).contains("instance"));
    assert!(
        never("{{job}}", r#"without_label(series("x"), "job") > 1"#)
            .contains("drops the label 'job'")
    );
    assert!(
        never(
            "{{instance}}",
            r#"avg_without(series("x"), ["instance"]) > 1"#
        )
        .contains("drops")
    );
    assert!(never("{{job}}", "by_instance() > 3").contains("'instance'"));
    assert!(
        never(
            "{{instance}}",
            r#"absent(series("x", #{ job: "api" }), "5m")"#
        )
        .contains("'job'")
    );
    assert!(never("{{x}}", "{ let v = by_instance(); v > 3 }").contains("'instance'"));
    assert!(
        never(
            "{{mountpoint}}",
            r#"if is_empty(series("z")) { by_instance() } else { sum_by(series("y"), ["job"]) }"#
        )
        .contains("'instance', 'job'")
    );
    // Labels that may be there.
    fine("{{instance}} {{anything}}", r#"series("x") > 1"#);
    fine("{{instance}} {{value}}", "by_instance() > 3");
    fine("{{team}} {{alertname}} {{severity}}", "true");
    fine("{{job}}", r#"absent(series("x", #{ job: "api" }), "5m")"#);
    fine(
        "{{cluster}}",
        r#"with_label(sum(series("x")), "cluster", "a") > 1"#,
    );
    fine(
        "{{mountpoint}}",
        r#"{ let v = series("x"); for e in v { } v > 1 }"#,
    );
    fine(
        "{{reason}}",
        r#"on(series("probe_error_info"), ["instance"]) * consecutive_failures(series("probe_success"), 3)"#,
    );
}

#[test]
fn remediate_must_name_a_configured_action() {
    let src = r#"rule("R", #{ severity: "info", remediate: ["restart-api", "scale-out"], when: || true });"#;
    let got = lint(src, Some(&["restart-apí", "reinit"]));
    assert_eq!(
        got,
        [
            "r.rhai:1:1: rule \"R\": remediate: no action named 'restart-api' in the config (did you mean 'restart-apí'?)",
            "r.rhai:1:1: rule \"R\": remediate: no action named 'scale-out' in the config; the config defines 'reinit', 'restart-apí'",
        ]
    );
    assert!(lint(src, Some(&["restart-api", "scale-out"])).is_empty());
    assert!(lint(src, None).is_empty(), "no config: not checked");
    assert!(lint(src, Some(&[]))[0].contains("the config defines no actions"));
}

#[test]
fn duplicate_names_across_files_and_every_problem_reported() {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p
    };
    let a = write(
        "a.rhai",
        r#"rule("Up", #{ severity: "info", when: || true });"#,
    );
    let b = write(
        "b.rhai",
        "// b\nrule(\"Up\", #{ severity: \"info\", when: || true });\n",
    );
    let c = write(
        "c.rhai",
        "rule(\"Bad\", #{ severity: \"urgent\", pending: \"5m\", when: || true });\n",
    );
    let report = check_files(
        &RuleEngine::new(),
        &[a.clone(), b.clone(), c.clone()],
        &CheckOptions::default(),
    );
    assert_eq!(report.files, 3);
    assert_eq!(report.rules, 2);
    let got: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
    assert_eq!(got.len(), 3, "{got:#?}");
    assert_eq!(
        got[0],
        format!(
            "{}:2:1: rule \"Up\": a rule with this name is already defined at {}:1:1; rule names must be unique across files (they name the alerts)",
            b.display(),
            a.display()
        )
    );
    assert!(
        got[1].contains(
            "c.rhai:1:1: rule \"Bad\": unknown key 'pending' (did you mean 'pending_for'?)"
        ),
        "{got:#?}"
    );
    assert!(
        got[2].contains("c.rhai:1:1: rule \"Bad\":") && got[2].contains("urgent"),
        "{got:#?}"
    );
}
