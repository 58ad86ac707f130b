//! What `when` may return, how instances are labelled and annotated, procedural
//! rules, and which metrics an evaluation reports as read.

use std::path::Path;

use warden_engine::model::{MetricName, Severity};
use warden_rules::{Evaluation, RuleEngine};

use crate::common::*;

/// Compiles `src` and evaluates its only rule at `now`.
fn run(store: &Store, src: &str, now: i64) -> Evaluation {
    let engine = RuleEngine::new();
    let file = match engine.compile_source(Path::new("test.rhai"), src) {
        Ok(f) => f,
        Err(d) => panic!("{d:?}"),
    };
    assert_eq!(file.rules.len(), 1);
    match engine.evaluate(&file.rules[0], &store.0, now) {
        Ok(e) => e,
        Err(d) => panic!("{d}"),
    }
}

fn rule_with(when: &str) -> String {
    format!(
        r#"rule("R", #{{ severity: "warning", labels: #{{ team: "db" }}, summary: "{{{{instance}}}} at {{{{value}}}}", when: {when} }});"#
    )
}

fn cpu() -> Store {
    let mut s = Store::new();
    s.add("cpu", &[("instance", "a")], 95.5, 1_000)
        .add("cpu", &[("instance", "b")], 20.0, 1_000);
    s
}

#[test]
fn a_vector_gives_one_instance_per_element() {
    let ev = run(&cpu(), &rule_with(r#"|| series("cpu") > 90"#), 2_000);
    assert_eq!(ev.instances.len(), 1);
    let i = &ev.instances[0];
    assert_eq!(
        i.labels,
        labels(&[
            ("alertname", "R"),
            ("instance", "a"),
            ("severity", "warning"),
            ("team", "db")
        ])
    );
    assert_eq!(i.value, 95.5);
    assert_eq!(
        i.annotations.get("summary").map(String::as_str),
        Some("a at 95.5")
    );
    assert_eq!(ev.metrics_read, vec![MetricName::new("cpu").unwrap()]);
    // An empty vector: nothing active.
    assert!(
        run(&cpu(), &rule_with(r#"|| series("cpu") > 99"#), 2_000)
            .instances
            .is_empty()
    );
}

#[test]
fn bools_and_numbers_give_one_instance_with_rule_labels() {
    let s = cpu();
    let t = run(&s, &rule_with("|| true"), 2_000);
    assert_eq!(t.instances.len(), 1);
    assert_eq!(t.instances[0].value, 1.0);
    assert_eq!(
        t.instances[0].labels,
        labels(&[("alertname", "R"), ("severity", "warning"), ("team", "db")])
    );
    assert_eq!(t.instances[0].annotations["summary"], " at 1");
    assert!(run(&s, &rule_with("|| false"), 2_000).instances.is_empty());
    let n = run(&s, &rule_with(r#"|| len(series("cpu"))"#), 2_000);
    assert_eq!(n.instances[0].value, 2.0);
    assert_eq!(run(&s, &rule_with("|| 2.5"), 2_000).instances[0].value, 2.5);
    assert!(run(&s, &rule_with("|| 0"), 2_000).instances.is_empty());
    assert!(run(&s, &rule_with("|| 0.0"), 2_000).instances.is_empty());
    assert!(
        run(&s, &rule_with(r#"|| scalar(series("cpu"))"#), 2_000)
            .instances
            .is_empty(),
        "NaN"
    );
    assert!(run(&s, &rule_with("|| ()"), 2_000).instances.is_empty());
    let b = run(&s, &rule_with(r#"|| len(series("cpu") > 90) > 0"#), 2_000);
    assert_eq!(b.instances.len(), 1);
}

#[test]
fn other_results_are_errors() {
    let engine = RuleEngine::new();
    let file = engine
        .compile_source(Path::new("r.rhai"), &rule_with(r#"|| "firing""#))
        .unwrap();
    let err = engine
        .evaluate(&file.rules[0], &cpu().0, 2_000)
        .unwrap_err();
    assert!(err.message.contains("`when` returned a string"), "{err}");
    assert_eq!((err.line, err.col, err.rule.as_deref()), (1, 1, Some("R")));
}

#[test]
fn procedural_rules_with_loops_arrays_and_helpers() {
    let mut s = cpu();
    s.add("cpu", &[("instance", "c")], 91.0, 1_000);
    let src = r#"
        fn hot(e, limit) { e.value > limit && e.label("instance") != "c" }

        rule("Procedural", #{
            severity: "critical",
            summary: "{{instance}} is {{value}}",
            when: || {
                let out = [];
                for e in series("cpu") {
                    if hot(e, 90) { out.push(with_label(e, "why", "hot")) }
                }
                out
            },
        });
    "#;
    let ev = run(&s, src, 2_000);
    assert_eq!(ev.instances.len(), 1);
    assert_eq!(ev.instances[0].labels.get("instance"), Some("a"));
    assert_eq!(ev.instances[0].labels.get("why"), Some("hot"));
    assert_eq!(ev.instances[0].annotations["summary"], "a is 95.5");

    let src = r#"
        const LIMIT = 50;
        rule("Loop", #{
            severity: "info",
            when: || {
                let v = series("cpu");
                let n = 0;
                for e in v { if e.value > LIMIT { n += 1; } }
                let labels = (v > 90).len();
                n == 2 && labels == 2 && is_empty(series("none")) && v.len() == 3
            },
        });
    "#;
    assert_eq!(run(&s, src, 2_000).instances.len(), 1);
}

#[test]
fn element_properties() {
    let s = cpu();
    let src = r#"rule("Props", #{ severity: "info", when: || {
        let e = (series("cpu") > 90).values();
        let first = [];
        for x in series("cpu") > 90 { first.push(x) }
        let x = first[0];
        e[0] == 95.5 && x.labels.instance == "a" && x.name == "cpu" && x.ts == 1000 && label(x, "nope") == ""
    }});"#;
    assert_eq!(run(&s, src, 2_000).instances.len(), 1);
}

#[test]
fn rule_keys_are_kept() {
    let engine = RuleEngine::new();
    let src = r#"
        rule("Full", #{
            severity: "critical",
            pending_for: "1m",
            keep_firing_for: "2m",
            every: "10s",
            labels: #{ team: "db", tier: 1 },
            summary: "s",
            description: "d {{value}}",
            runbook: "https://example.org/rb",
            remediate: ["restart-api", "scale"],
            when: || true,
        });
        rule("Minimal", #{ severity: "info", when: || false });
    "#;
    let f = engine
        .compile_source(Path::new("rules/full.rhai"), src)
        .unwrap();
    let r = f.rule("Full").unwrap();
    assert_eq!(r.severity, Severity::Critical);
    assert_eq!(r.pending_for.as_secs(), 60);
    assert_eq!(r.keep_firing_for.as_secs(), 120);
    assert_eq!(r.every.map(|d| d.as_secs()), Some(10));
    assert_eq!(r.labels, labels(&[("team", "db"), ("tier", "1")]));
    assert_eq!(r.remediate, ["restart-api", "scale"]);
    assert_eq!((r.line, r.col), (2, 9));
    assert_eq!(r.file, Path::new("rules/full.rhai"));
    let ev = engine.evaluate(r, &Store::new().0, 0).unwrap();
    let a = &ev.instances[0].annotations;
    assert_eq!(
        (
            a["summary"].as_str(),
            a["description"].as_str(),
            a["runbook"].as_str()
        ),
        ("s", "d 1", "https://example.org/rb")
    );
    let m = f.rule("Minimal").unwrap();
    assert_eq!((m.pending_for.as_secs(), m.every), (0, None));
    assert!(m.remediate.is_empty() && m.summary.is_none());
}

#[test]
fn metrics_read_lists_every_metric_touched() {
    let mut s = cpu();
    s.add("mem", &[("instance", "a")], 1.0, 1_000);
    let ev = run(
        &s,
        &rule_with(
            r#"|| { let x = rate("req_total", "5m"); let y = absent("gone", "1m"); series("mem") > 0 }"#,
        ),
        2_000,
    );
    let names: Vec<&str> = ev.metrics_read.iter().map(|m| m.as_str()).collect();
    assert_eq!(names, ["gone", "mem", "req_total"]);
}

#[test]
fn same_labels_twice_is_an_error() {
    let mut s = Store::new();
    s.add("x", &[("instance", "a")], 1.0, 1_000)
        .add("y", &[("instance", "a")], 2.0, 1_000);
    let engine = RuleEngine::new();
    let f = engine
        .compile_source(
            Path::new("d.rhai"),
            &rule_with(r#"|| [series("x"), series("y")]"#),
        )
        .unwrap();
    let err = engine.evaluate(&f.rules[0], &s.0, 2_000).unwrap_err();
    assert!(
        err.message.contains("two results have the same labels"),
        "{err}"
    );
}

#[test]
fn captured_constants_work_and_evaluation_is_repeatable() {
    let s = cpu();
    let src = r#"
        let threshold = 90;
        rule("Captured", #{ severity: "info", when: || series("cpu") > threshold });
    "#;
    let engine = RuleEngine::new();
    let f = engine.compile_source(Path::new("c.rhai"), src).unwrap();
    for _ in 0..3 {
        assert_eq!(
            engine
                .evaluate(&f.rules[0], &s.0, 2_000)
                .unwrap()
                .instances
                .len(),
            1
        );
    }
}

#[test]
fn evaluating_together_shares_reads_and_agrees_with_one_by_one() {
    let mut s = cpu();
    s.series(
        "req_total",
        &[("instance", "a")],
        &[(0, 0.0), (60_000, 600.0)],
    );
    let src = r#"
        rule("A", #{ severity: "info", when: || series("cpu") > 90 });
        rule("B", #{ severity: "info", when: || series("cpu") > 10 });
        rule("C", #{ severity: "info", when: || rate("req_total", "1m") > 5 });
        rule("D", #{ severity: "info", when: || rate(series("req_total"), "1m") > 20 });
        rule("E", #{ severity: "info", when: || with_label(series("cpu") < 50, "low", true) });
    "#;
    let engine = RuleEngine::new();
    let f = engine.compile_source(Path::new("many.rhai"), src).unwrap();
    let together = engine.evaluate_many(&f.rules, &s.0, 60_000);
    let alone: Vec<_> = f
        .rules
        .iter()
        .map(|r| engine.evaluate(r, &s.0, 60_000))
        .collect();
    assert_eq!(together, alone);
    let counts: Vec<usize> = together
        .iter()
        .map(|e| e.as_ref().unwrap().instances.len())
        .collect();
    assert_eq!(counts, [1, 2, 1, 0, 1]);
    let e = &together[4].as_ref().unwrap().instances[0];
    assert_eq!(e.labels.get("low"), Some("true"));
    // A cache holds each read once, per `now`.
    let cache = warden_rules::ReadCache::new();
    for r in &f.rules {
        engine.evaluate_with(r, &s.0, 60_000, &cache).unwrap();
    }
    // series("cpu"), and rate over req_total (both spellings; the selection itself
    // is never read, as rate() only needs its history).
    assert_eq!(cache.len(), 2, "{cache:?}");
    engine
        .evaluate_with(&f.rules[0], &s.0, 70_000, &cache)
        .unwrap();
    assert_eq!(cache.len(), 3, "another `now` reads again");
}
