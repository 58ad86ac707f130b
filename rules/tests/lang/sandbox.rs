//! The sandbox: runaway rules are stopped quickly, nothing reaches the outside.

use std::path::Path;
use std::time::{Duration, Instant};

use warden_engine::store::SeriesSet;
use warden_rules::{Diagnostic, Limits, RuleEngine};

fn eval_err(engine: &RuleEngine, when: &str) -> Diagnostic {
    let src = format!(r#"rule("Runaway", #{{ severity: "info", when: || {when} }});"#);
    let f = engine.compile_source(Path::new("s.rhai"), &src).unwrap();
    engine
        .evaluate(&f.rules[0], &SeriesSet::new(), 0)
        .unwrap_err()
}

#[test]
fn a_runaway_loop_hits_the_operation_limit() {
    let start = Instant::now();
    let err = eval_err(&RuleEngine::new(), "{ loop { } }");
    assert!(
        err.message
            .contains("exceeded its limit of 1000000 operations"),
        "{err}"
    );
    assert_eq!(err.rule.as_deref(), Some("Runaway"));
    assert!(start.elapsed() < Duration::from_secs(5));
}

#[test]
fn a_slow_rule_hits_the_time_budget() {
    let engine = RuleEngine::with_limits(Limits {
        max_operations: 0,
        time_budget: Duration::from_millis(50),
        ..Limits::default()
    });
    let start = Instant::now();
    let err = eval_err(&engine, "{ let i = 0; loop { i += 1; } }");
    assert!(
        err.message
            .contains("rule exceeded its time budget of 50ms"),
        "{err}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    // The engine is fine afterwards.
    let f = engine
        .compile_source(
            Path::new("ok.rhai"),
            r#"rule("Ok", #{ severity: "info", when: || true });"#,
        )
        .unwrap();
    assert_eq!(
        engine
            .evaluate(&f.rules[0], &SeriesSet::new(), 0)
            .unwrap()
            .instances
            .len(),
        1
    );
}

#[test]
fn a_runaway_top_level_is_stopped_at_load() {
    let err = RuleEngine::new()
        .compile_source(Path::new("top.rhai"), "loop { }")
        .unwrap_err();
    assert!(
        err[0]
            .message
            .contains("the file's top level exceeded its limit"),
        "{}",
        err[0]
    );
}

#[test]
fn deep_recursion_and_big_values_are_refused() {
    let engine = RuleEngine::new();
    let src = r#"fn f(n) { f(n + 1) } rule("Deep", #{ severity: "info", when: || f(0) });"#;
    let f = engine.compile_source(Path::new("d.rhai"), src).unwrap();
    let err = engine
        .evaluate(&f.rules[0], &SeriesSet::new(), 0)
        .unwrap_err();
    assert!(
        err.message.contains("nested deeper than 32 levels"),
        "{err}"
    );
    let err = eval_err(&engine, r#"{ let s = "x"; loop { s += s; } }"#);
    assert!(err.message.contains("too large"), "{err}");
    let small = RuleEngine::with_limits(Limits {
        max_array_size: 1000,
        ..Limits::default()
    });
    let err = eval_err(
        &small,
        "{ let a = []; for i in 0..2000 { a.push(i); } a.len() > 0 }",
    );
    assert!(
        err.message.contains("Size of array/BLOB too large"),
        "{err}"
    );
    assert_eq!(
        (err.line, err.col),
        (1, 1),
        "no position from Rhai: the rule's"
    );
}

#[test]
fn oversized_maps_are_caught_where_they_reach_rust() {
    let engine = RuleEngine::with_limits(Limits {
        max_map_size: 100,
        ..Limits::default()
    });
    // Rhai does not check `m[k] = v`; the rule's labels are checked on load.
    let src = r#"
        let m = #{};
        for i in 0..500 { m["k" + i] = "v"; }
        rule("Big", #{ severity: "info", labels: m, when: || true });
    "#;
    let err = engine.compile_source(Path::new("m.rhai"), src).unwrap_err();
    assert!(err[0].message.contains("map too large"), "{}", err[0]);
    // So are selectors built the same way.
    let err = eval_err(
        &engine,
        r#"{ let m = #{}; for i in 0..500 { m["k" + i] = "v"; } series("x", m) }"#,
    );
    assert!(
        err.message.contains("500 label matchers; the limit is 100"),
        "{err}"
    );
}

#[test]
fn no_eval_no_import_no_undeclared_variables() {
    let engine = RuleEngine::new();
    for src in [r#"eval("1 + 1")"#, r#"import "os" as os;"#, "let x = y;"] {
        assert!(
            engine.compile_source(Path::new("x.rhai"), src).is_err(),
            "{src}"
        );
        assert!(
            engine.eval_expr(src, &SeriesSet::new(), 0).is_err(),
            "{src}"
        );
    }
}

#[test]
fn engines_and_rules_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<RuleEngine>();
    send_sync::<warden_rules::Rule>();
    send_sync::<warden_rules::RuleFile>();
    let engine = std::sync::Arc::new(RuleEngine::new());
    let f = std::sync::Arc::new(
        engine
            .compile_source(
                Path::new("t.rhai"),
                r#"rule("T", #{ severity: "info", when: || true });"#,
            )
            .unwrap(),
    );
    let handles: Vec<_> = (0..2)
        .map(|_| {
            let (engine, f) = (engine.clone(), f.clone());
            std::thread::spawn(move || {
                engine
                    .evaluate(&f.rules[0], &SeriesSet::new(), 0)
                    .unwrap()
                    .instances
                    .len()
            })
        })
        .collect();
    for h in handles {
        assert_eq!(h.join().unwrap(), 1);
    }
}
