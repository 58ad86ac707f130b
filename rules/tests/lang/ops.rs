//! Operators: vector∘number in both orders and both number types, vector∘vector,
//! NaN, on/ignoring and the set operators.

use warden_rules::{ExprValue, RuleEngine};

use crate::common::*;

/// cpu{instance=a..e} = 10, 50, 90, 95, NaN at t=1s.
fn cpu() -> Store {
    let mut s = Store::new();
    for (i, v) in [
        ("a", 10.0),
        ("b", 50.0),
        ("c", 90.0),
        ("d", 95.0),
        ("e", f64::NAN),
    ] {
        s.add("cpu", &[("instance", i)], v, 1_000);
    }
    s
}

fn names(v: Vec<(String, f64)>) -> Vec<String> {
    v.into_iter().map(|(i, _)| i).collect()
}

#[test]
fn comparisons_filter_with_int_and_float_on_either_side() {
    let s = cpu();
    let cases: [(&str, &[&str]); 12] = [
        (r#"series("cpu") > 90"#, &["d"]),
        (r#"series("cpu") > 90.0"#, &["d"]),
        (r#"series("cpu") >= 90"#, &["c", "d"]),
        (r#"series("cpu") >= 90.0"#, &["c", "d"]),
        (r#"series("cpu") < 50"#, &["a"]),
        (r#"series("cpu") < 50.5"#, &["a", "b"]),
        (r#"series("cpu") <= 50"#, &["a", "b"]),
        (r#"series("cpu") <= 50.0"#, &["a", "b"]),
        (r#"series("cpu") == 90"#, &["c"]),
        (r#"series("cpu") == 90.0"#, &["c"]),
        (r#"series("cpu") != 90"#, &["a", "b", "d"]),
        (r#"series("cpu") != 90.0"#, &["a", "b", "d"]),
    ];
    for (expr, want) in cases {
        assert_eq!(names(by_instance(&s, expr, 2_000)), want, "{expr}");
    }
    let left: [(&str, &[&str]); 8] = [
        (r#"90 < series("cpu")"#, &["d"]),
        (r#"90.0 < series("cpu")"#, &["d"]),
        (r#"50 >= series("cpu")"#, &["a", "b"]),
        (r#"50.0 >= series("cpu")"#, &["a", "b"]),
        (r#"90 == series("cpu")"#, &["c"]),
        (r#"90.0 != series("cpu")"#, &["a", "b", "d"]),
        (r#"10 > series("cpu")"#, &[]),
        (r#"10.0 <= series("cpu")"#, &["a", "b", "c", "d"]),
    ];
    for (expr, want) in left {
        assert_eq!(names(by_instance(&s, expr, 2_000)), want, "{expr}");
    }
    // Values and labels are unchanged by a filter.
    let v = vector(&s, r#"series("cpu") > 90"#, 2_000);
    assert_eq!(v[0].value, 95.0);
    assert_eq!(v[0].labels, labels(&[("instance", "d")]));
    assert_eq!(v[0].name.as_ref().map(|n| n.as_str()), Some("cpu"));
}

#[test]
fn arithmetic_with_int_and_float_on_either_side() {
    let mut s = Store::new();
    s.add("x", &[("instance", "a")], 10.0, 1_000);
    let cases = [
        (r#"series("x") + 5"#, 15.0),
        (r#"series("x") + 0.5"#, 10.5),
        (r#"series("x") - 4"#, 6.0),
        (r#"series("x") - 0.5"#, 9.5),
        (r#"series("x") * 3"#, 30.0),
        (r#"series("x") * 0.5"#, 5.0),
        (r#"series("x") / 4"#, 2.5),
        (r#"series("x") / 0.5"#, 20.0),
        (r#"series("x") % 3"#, 1.0),
        (r#"series("x") % 4.0"#, 2.0),
        (r#"series("x") ** 2"#, 100.0),
        (r#"series("x") ** 0.5"#, 10f64.sqrt()),
        (r#"5 + series("x")"#, 15.0),
        (r#"0.5 + series("x")"#, 10.5),
        (r#"100 - series("x")"#, 90.0),
        (r#"1.5 - series("x")"#, -8.5),
        (r#"2 * series("x")"#, 20.0),
        (r#"2.0 * series("x")"#, 20.0),
        (r#"100 / series("x")"#, 10.0),
        (r#"1.0 / series("x")"#, 0.1),
        (r#"25 % series("x")"#, 5.0),
        (r#"25.5 % series("x")"#, 5.5),
        (r#"2 ** series("x")"#, 1024.0),
        (r#"-series("x")"#, -10.0),
        (r#"abs(0 - series("x"))"#, 10.0),
    ];
    for (expr, want) in cases {
        let v = vector(&s, expr, 2_000);
        assert_eq!(v.len(), 1, "{expr}");
        close(v[0].value, want);
        assert_eq!(v[0].labels, labels(&[("instance", "a")]), "{expr}");
        assert!(
            v[0].name.is_none(),
            "{expr}: arithmetic drops the metric name"
        );
    }
    let v = vector(&s, r#"series("x") / 0"#, 2_000);
    assert_eq!(v[0].value, f64::INFINITY);
}

#[test]
fn nan_never_compares_true() {
    let s = cpu();
    for op in [">", "<", ">=", "<=", "==", "!="] {
        let got = names(by_instance(
            &s,
            &format!(r#"series("cpu") {op} -1000000"#),
            2_000,
        ));
        assert!(!got.contains(&"e".to_string()), "NaN passed {op}");
    }
    let v = vector(&s, r#"series("cpu", #{instance: "e"}) + 1"#, 2_000);
    assert!(v[0].value.is_nan(), "arithmetic keeps NaN");
}

#[test]
fn vector_vector_pairs_by_identical_labels() {
    let mut s = Store::new();
    s.add("used", &[("instance", "a")], 30.0, 1_000)
        .add("used", &[("instance", "b")], 80.0, 1_000)
        .add("used", &[("instance", "c")], 10.0, 1_000)
        .add("size", &[("instance", "a")], 100.0, 1_000)
        .add("size", &[("instance", "b")], 100.0, 1_000)
        .add("size", &[("instance", "z")], 100.0, 1_000)
        .add("limit", &[("instance", "a")], 50.0, 1_000)
        .add("limit", &[("instance", "b")], 50.0, 1_000);
    assert_eq!(
        by_instance(&s, r#"series("used") / series("size") * 100"#, 2_000),
        vec![("a".into(), 30.0), ("b".into(), 80.0)],
        "c and z are unpaired"
    );
    assert_eq!(
        by_instance(&s, r#"series("used") + series("size")"#, 2_000)[0].1,
        130.0
    );
    assert_eq!(
        by_instance(&s, r#"series("used") - series("size")"#, 2_000)[0].1,
        -70.0
    );
    assert_eq!(
        by_instance(&s, r#"series("used") % series("limit")"#, 2_000)[1].1,
        30.0
    );
    // A comparison keeps the left value where it holds.
    assert_eq!(
        by_instance(&s, r#"series("used") > series("limit")"#, 2_000),
        vec![("b".into(), 80.0)]
    );
    assert_eq!(
        by_instance(&s, r#"series("used") <= series("limit")"#, 2_000),
        vec![("a".into(), 30.0)]
    );
}

#[test]
fn on_and_ignoring_pair_on_some_labels() {
    let mut s = Store::new();
    s.add(
        "host_load5",
        &[("instance", "a"), ("job", "host")],
        9.0,
        1_000,
    )
    .add(
        "host_load5",
        &[("instance", "b"), ("job", "host")],
        3.0,
        1_000,
    )
    .add("host_cpu_count", &[("instance", "a")], 4.0, 1_000)
    .add("host_cpu_count", &[("instance", "b")], 4.0, 1_000);
    assert!(
        vector(
            &s,
            r#"series("host_load5") / series("host_cpu_count")"#,
            2_000
        )
        .is_empty()
    );
    let v = vector(
        &s,
        r#"on(series("host_load5"), ["instance"]) / series("host_cpu_count")"#,
        2_000,
    );
    assert_eq!(v.len(), 2);
    assert_eq!(
        v[0].labels,
        labels(&[("instance", "a"), ("job", "host")]),
        "left labels kept"
    );
    close(v[0].value, 2.25);
    let v = vector(
        &s,
        r#"series("host_load5") / on(series("host_cpu_count"), ["instance"]) > 2"#,
        2_000,
    );
    assert_eq!(v.len(), 1);
    let v = vector(
        &s,
        r#"ignoring(series("host_load5"), ["job"]) > series("host_cpu_count")"#,
        2_000,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].value, 9.0);

    // Two right elements with the same key are refused.
    let mut s2 = Store::new();
    s2.add("l", &[("instance", "a")], 1.0, 1_000)
        .add("r", &[("instance", "a"), ("cpu", "0")], 1.0, 1_000)
        .add("r", &[("instance", "a"), ("cpu", "1")], 1.0, 1_000);
    let err = RuleEngine::new()
        .eval_expr(
            r#"on(series("l"), ["instance"]) / series("r")"#,
            &s2.0,
            2_000,
        )
        .unwrap_err();
    assert!(
        err.message
            .contains("several elements on the right-hand side"),
        "{err}"
    );
}

#[test]
fn set_operators() {
    let mut s = Store::new();
    for i in ["a", "b", "c"] {
        s.add("x", &[("instance", i)], 1.0, 1_000);
    }
    for i in ["b", "c", "d"] {
        s.add("y", &[("instance", i)], 2.0, 1_000);
    }
    assert_eq!(
        names(by_instance(&s, r#"and(series("x"), series("y"))"#, 2_000)),
        ["b", "c"]
    );
    assert_eq!(
        names(by_instance(
            &s,
            r#"unless(series("x"), series("y"))"#,
            2_000
        )),
        ["a"]
    );
    assert_eq!(
        by_instance(&s, r#"or(series("x"), series("y"))"#, 2_000),
        vec![
            ("a".into(), 1.0),
            ("b".into(), 1.0),
            ("c".into(), 1.0),
            ("d".into(), 2.0)
        ]
    );
}

#[test]
fn matchers_select_series() {
    let mut s = Store::new();
    for (i, job) in [("a", "api"), ("b", "web"), ("c", "db")] {
        s.add("up", &[("instance", i), ("job", job)], 1.0, 1_000);
    }
    let n = |e: &str| names(by_instance(&s, e, 2_000));
    assert_eq!(n(r#"series("up", #{job: "api"})"#), ["a"]);
    assert_eq!(n(r#"series("up", #{job: re("api|web")})"#), ["a", "b"]);
    assert_eq!(n(r#"series("up", #{job: ne("api")})"#), ["b", "c"]);
    assert_eq!(n(r#"series("up", #{job: nre("a.*|w.*")})"#), ["c"]);
    assert_eq!(
        n(r#"series("up", #{job: re("ap")})"#),
        Vec::<String>::new(),
        "anchored"
    );
    assert_eq!(n(r#"series("nothing")"#), Vec::<String>::new());
    let err = RuleEngine::new()
        .eval_expr(r#"series("up", #{job: re("(")})"#, &s.0, 2_000)
        .unwrap_err();
    assert!(err.message.contains("invalid regex"), "{err}");
    let err = RuleEngine::new()
        .eval_expr(r#"series("9up")"#, &s.0, 2_000)
        .unwrap_err();
    assert!(err.message.contains("invalid metric name '9up'"), "{err}");
}

#[test]
fn stale_series_drop_out() {
    let mut s = Store::new();
    s.add("up", &[("instance", "old")], 1.0, 0)
        .add("up", &[("instance", "new")], 1.0, 400_000);
    assert_eq!(names(by_instance(&s, r#"series("up")"#, 400_000)), ["new"]);
}

#[test]
fn helpers_on_vectors() {
    let s = cpu();
    assert_eq!(scalar(&s, r#"len(series("cpu"))"#, 2_000), 5.0);
    assert_eq!(scalar(&s, r#"series("cpu").len()"#, 2_000), 5.0);
    assert_eq!(
        eval(&s, r#"is_empty(series("cpu") > 1000)"#, 2_000),
        ExprValue::Bool(true)
    );
    assert_eq!(
        eval(
            &s,
            r#"label(series("cpu", #{instance: "c"}), "instance")"#,
            2_000
        ),
        ExprValue::Other("c".into())
    );
    assert_eq!(
        scalar(&s, r#"scalar(series("cpu", #{instance: "c"}))"#, 2_000),
        90.0
    );
    assert!(scalar(&s, r#"scalar(series("cpu"))"#, 2_000).is_nan());
    let v = vector(&s, r#"with_label(series("cpu") > 90, "team", "db")"#, 2_000);
    assert_eq!(v[0].labels, labels(&[("instance", "d"), ("team", "db")]));
    let v = vector(
        &s,
        r#"without_label(series("cpu") > 90, "instance")"#,
        2_000,
    );
    assert!(v[0].labels.is_empty());
    let v = vector(&s, "vector(3)", 2_000);
    assert_eq!((v.len(), v[0].value), (1, 3.0));
}
