//! What users see when a rule file is wrong: file:line:col, the rule, what to change.

use std::path::Path;

use warden_rules::{Diagnostic, RuleEngine};

fn problems(src: &str) -> Vec<Diagnostic> {
    match RuleEngine::new().compile_source(Path::new("rules/pg.rhai"), src) {
        Ok(f) => panic!("compiled: {f:?}"),
        Err(d) => d,
    }
}

fn one(src: &str) -> Diagnostic {
    let d = problems(src);
    assert_eq!(d.len(), 1, "{d:#?}");
    d.into_iter().next().unwrap()
}

#[test]
fn syntax_errors_name_file_line_and_column() {
    let d = one("let x = 1;\nlet y = x +;\n");
    assert_eq!((d.line, d.col), (2, 12));
    assert!(d.to_string().starts_with("rules/pg.rhai:2:12: "), "{d}");
    assert!(d.rule.is_none());
    let d = one("rule(\"A\", #{ severity: \"info\", when: || undefined_var > 1 });");
    assert!(d.message.contains("undefined_var"), "{d}");
    assert_eq!((d.line, d.col), (1, 41));
}

#[test]
fn unknown_functions_are_found_at_load_with_a_suggestion() {
    let src = r#"
rule("PgLag", #{
    severity: "critical",
    when: || {
        let lag = series("pg_replication_lag_seconds");
        rate_over(lag, "5m") > 30
    },
});
"#;
    let d = one(src);
    assert_eq!(
        d.to_string(),
        "rules/pg.rhai:6:9: unknown function 'rate_over' (did you mean 'rate'?)"
    );
    let d =
        one(r#"rule("A", #{ severity: "info", when: || avg_over_time(series("x"), "5m") > 1 });"#);
    assert!(d.message.ends_with("(did you mean 'avg_over'?)"), "{d}");
    let d = one(r#"rule("A", #{ severity: "info", when: || serie("x") > 1 });"#);
    assert!(d.message.contains("did you mean 'series'"), "{d}");
    let d = one(
        r#"fn helper() { frobnicate_widgets(1) } rule("A", #{ severity: "info", when: || helper() });"#,
    );
    assert_eq!(d.message, "unknown function 'frobnicate_widgets'");
    let d = one(r#"rule("A", #{ severity: "info", when: || series("x").no_such_method() });"#);
    assert!(
        d.message.contains("unknown function 'no_such_method'"),
        "{d}"
    );
    // Wrong number of arguments to a known function.
    let d = one(r#"rule("A", #{ severity: "info", when: || rate(series("x")) > 1 });"#);
    assert_eq!(d.message, "'rate' is called with 1 argument, but takes 2");
    // Script functions, closures in variables and methods are known.
    let ok = r#"
        fn twice(x) { x * 2 }
        fn doubled() { this * 2 }
        let f = |x| x + 1;
        rule("A", #{ severity: "info", when: || { let g = |y| y; twice(f(1)) > g(1) && [1].len() == 1 && { let n = 2; n.doubled() == 4 } } });
    "#;
    assert!(
        RuleEngine::new()
            .compile_source(Path::new("ok.rhai"), ok)
            .is_ok()
    );
}

#[test]
fn bad_rule_keys_are_reported_at_the_rule_call() {
    let src = r#"
rule("A", #{ severity: "urgent", when: || true });
  rule("B", #{ severity: "info", pending_for: "5", when: || true });
rule("C", #{ severity: "info", "for": "5m", when: || true });
rule("D", #{ severity: "info", sumary: "x", when: || true });
rule("E", #{ when: || true });
rule("F", #{ severity: "info" });
rule("G", #{ severity: "info", when: true });
rule("H", #{ severity: "info", labels: #{ "bad-name": "x" }, when: || true });
rule("I", #{ severity: "info", labels: #{ severity: "x" }, when: || true });
rule("J", #{ severity: "info", every: "0s", when: || true });
rule("K", #{ severity: 3, when: || true });
rule("bad name", #{ severity: "info", when: || true });
rule("L", #{ severity: "info", when: |x| x });
"#;
    let d = problems(src);
    let at = |line: usize| -> Vec<&Diagnostic> { d.iter().filter(|x| x.line == line).collect() };
    let msg = |line: usize| at(line)[0].message.clone();
    assert!(msg(2).contains("invalid severity 'urgent'"), "{}", msg(2));
    assert_eq!((at(3)[0].col, at(3)[0].rule.as_deref()), (3, Some("B")));
    assert!(
        msg(3).contains("'pending_for'") && msg(3).contains("no unit"),
        "{}",
        msg(3)
    );
    assert!(
        msg(4).contains("'for' is a Rhai keyword") && msg(4).contains("pending_for"),
        "{}",
        msg(4)
    );
    assert!(
        msg(5).contains("unknown key 'sumary' (did you mean 'summary'?)"),
        "{}",
        msg(5)
    );
    assert!(msg(6).contains("missing 'severity'"), "{}", msg(6));
    assert!(msg(7).contains("missing 'when'"), "{}", msg(7));
    assert!(msg(8).contains("'when' must be a closure"), "{}", msg(8));
    assert!(
        msg(9).contains("invalid label name 'bad-name'"),
        "{}",
        msg(9)
    );
    assert!(
        msg(10).contains("label 'severity' is set by warden"),
        "{}",
        msg(10)
    );
    assert!(
        msg(11).contains("'every' must be longer than 0"),
        "{}",
        msg(11)
    );
    assert!(
        msg(12).contains("'severity' must be a string"),
        "{}",
        msg(12)
    );
    assert!(
        msg(13).contains("invalid rule name 'bad name'"),
        "{}",
        msg(13)
    );
    assert!(msg(14).contains("without parameters"), "{}", msg(14));
    assert_eq!(
        at(5)[0].to_string(),
        "rules/pg.rhai:5:1: rule \"D\": unknown key 'sumary' (did you mean 'summary'?)"
    );
}

#[test]
fn keywords_as_map_keys_get_a_hint() {
    let d =
        one("rule(\"A\", #{\n    severity: \"info\",\n    for: \"5m\",\n    when: || true,\n});");
    assert_eq!((d.line, d.col), (3, 5));
    assert!(
        d.message.contains("'for' is a Rhai keyword") && d.message.contains("pending_for"),
        "{d}"
    );
}

#[test]
fn duplicate_names_and_top_level_errors() {
    let d = one(
        "rule(\"A\", #{ severity: \"info\", when: || true });\nrule(\"A\", #{ severity: \"info\", when: || false });",
    );
    assert_eq!((d.line, d.rule.as_deref()), (2, Some("A")));
    assert!(d.message.contains("same name"), "{d}");
    let d = one("let v = series(\"x\");");
    assert!(d.message.contains("only run inside a rule's `when`"), "{d}");
    assert_eq!((d.line, d.col), (1, 9));
    let d = one("rule(\"A\");");
    assert!(
        d.message
            .contains("'rule' is called with 1 argument, but takes 2"),
        "{d}"
    );
    let d = one("rule(#{ severity: \"info\" }, 1);");
    assert!(
        d.message.contains("first argument must be the rule's name"),
        "{d}"
    );
}

#[test]
fn runtime_errors_name_the_rule_and_position() {
    let engine = RuleEngine::new();
    let src = "rule(\"Bad\", #{ severity: \"info\", when: || {\n    let x = series(\"a\");\n    x * \"text\"\n} });";
    let f = engine.compile_source(Path::new("rt.rhai"), src).unwrap();
    let err = engine
        .evaluate(&f.rules[0], &warden_engine::store::SeriesSet::new(), 0)
        .unwrap_err();
    assert_eq!((err.line, err.rule.as_deref()), (3, Some("Bad")));
    assert!(
        err.to_string().starts_with("rt.rhai:3:7: rule \"Bad\": "),
        "{err}"
    );
    // rule() cannot be called while evaluating.
    let src = r#"rule("Nested", #{ severity: "info", when: || { rule("X", #{}); true } });"#;
    let f = engine.compile_source(Path::new("n.rhai"), src).unwrap();
    let err = engine
        .evaluate(&f.rules[0], &warden_engine::store::SeriesSet::new(), 0)
        .unwrap_err();
    assert!(
        err.message.contains("cannot be called from inside `when`"),
        "{err}"
    );
}

#[test]
fn missing_files_are_reported() {
    let err = RuleEngine::new()
        .compile_file(Path::new("/nonexistent/x.rhai"))
        .unwrap_err();
    assert!(
        err[0]
            .to_string()
            .starts_with("/nonexistent/x.rhai: cannot read the file"),
        "{}",
        err[0]
    );
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("ok.rhai");
    std::fs::write(&p, r#"rule("A", #{ severity: "info", when: || true });"#).unwrap();
    let f = RuleEngine::new().compile_file(&p).unwrap();
    assert_eq!(
        (f.path.as_path(), f.rules[0].file.as_path()),
        (p.as_path(), p.as_path())
    );
}
