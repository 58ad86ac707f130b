//! Window functions, checked against values computed by hand the way PromQL does.

use warden_rules::RuleEngine;

use crate::common::*;

/// A counter sampled every 10s at t = 5s..55s, reset between 30 and 5.
fn counter_with_reset() -> Store {
    let mut s = Store::new();
    s.series(
        "req_total",
        &[("instance", "a")],
        &[
            (5_000, 10.0),
            (15_000, 20.0),
            (25_000, 30.0),
            (35_000, 5.0),
            (45_000, 15.0),
            (55_000, 25.0),
        ],
    );
    s
}

#[test]
fn increase_and_rate_handle_a_counter_reset() {
    let s = counter_with_reset();
    // Window [0s, 60s]. Raw increase: 25 - 10 + 30 (reset) = 45. Sampled over 50s,
    // 10s apart; 5s to each edge is under the 11s threshold, and the zero point
    // (50s * 10/45 = 11.1s before the first sample) is further than 5s, so
    // extrapolate 5s each way: 45 * 60/50 = 54. rate = 54 / 60s = 0.9.
    close(
        by_instance(&s, r#"increase(series("req_total"), "1m")"#, 60_000)[0].1,
        54.0,
    );
    close(
        by_instance(&s, r#"rate(series("req_total"), "1m")"#, 60_000)[0].1,
        0.9,
    );
    close(
        by_instance(&s, r#"rate("req_total", "1m")"#, 60_000)[0].1,
        0.9,
    );
    // Not a counter: delta ignores the reset. (25 - 10) * 60/50 = 18.
    close(
        by_instance(&s, r#"delta(series("req_total"), "1m")"#, 60_000)[0].1,
        18.0,
    );
    assert_eq!(
        by_instance(&s, r#"resets(series("req_total"), "1m")"#, 60_000)[0].1,
        1.0
    );
    assert_eq!(
        by_instance(&s, r#"changes(series("req_total"), "1m")"#, 60_000)[0].1,
        5.0
    );
    // irate: the last two samples, 10 per 10s.
    close(
        by_instance(&s, r#"irate(series("req_total"), "1m")"#, 60_000)[0].1,
        1.0,
    );
}

#[test]
fn increase_does_not_extrapolate_below_zero() {
    let mut s = Store::new();
    s.series(
        "c_total",
        &[],
        &[
            (30_000, 2.0),
            (40_000, 12.0),
            (50_000, 22.0),
            (60_000, 32.0),
        ],
    );
    // Window [0, 60s]: 30 over 30s sampled. 30s to the start is past the 11s
    // threshold, so half a step (5s) would be added, but the counter reaches 0 only
    // 30s * 2/30 = 2s before the first sample: 30 * (30 + 2 + 0) / 30 = 32.
    let v = vector(&s, r#"increase(series("c_total"), "1m")"#, 60_000);
    close(v[0].value, 32.0);
    let v = vector(&s, r#"rate(series("c_total"), "1m")"#, 60_000);
    close(v[0].value, 32.0 / 60.0);
    // One sample is not enough for a rate.
    assert!(vector(&s, r#"rate(series("c_total"), "5s")"#, 60_000).is_empty());
}

#[test]
fn over_time_functions() {
    let mut s = Store::new();
    s.series(
        "g",
        &[("instance", "a")],
        &[(10_000, 1.0), (20_000, 5.0), (30_000, 3.0), (40_000, 3.0)],
    );
    let one = |e: &str| by_instance(&s, e, 40_000)[0].1;
    close(one(r#"avg_over(series("g"), "1m")"#), 3.0);
    close(one(r#"min_over(series("g"), "1m")"#), 1.0);
    close(one(r#"max_over(series("g"), "1m")"#), 5.0);
    close(one(r#"sum_over(series("g"), "1m")"#), 12.0);
    close(one(r#"count_over(series("g"), "1m")"#), 4.0);
    close(one(r#"last_over(series("g"), "1m")"#), 3.0);
    close(one(r#"stddev_over(series("g"), "1m")"#), 2f64.sqrt());
    close(one(r#"quantile_over(series("g"), 0.5, "1m")"#), 3.0);
    close(one(r#"quantile_over(series("g"), 1, "1m")"#), 5.0);
    close(one(r#"changes(series("g"), "1m")"#), 2.0);
    // The window starts at now - 15s = 25s: only the last two samples.
    close(one(r#"avg_over(series("g"), "15s")"#), 3.0);
    close(one(r#"count_over("g", "15s")"#), 2.0);
    // Functions drop the metric name and keep the labels.
    let v = vector(&s, r#"avg_over(series("g"), "1m")"#, 40_000);
    assert!(v[0].name.is_none());
    assert_eq!(v[0].labels, labels(&[("instance", "a")]));
    assert_eq!(v[0].ts, 40_000);
}

#[test]
fn predict_linear_extrapolates_the_least_squares_line() {
    let mut s = Store::new();
    // Free bytes falling 100 kB/s, a sample a minute for an hour.
    let pts: Vec<(i64, f64)> = (0..=60)
        .map(|m| (m * 60_000, 1e9 - 1e5 * (m * 60) as f64))
        .collect();
    s.series("host_disk_free_bytes", &[("mountpoint", "/")], &pts);
    let now = 3_600_000;
    // At now: 1e9 - 3.6e8 = 6.4e8; 4h later: 6.4e8 - 1e5 * 14400 = -8e8.
    let v = vector(
        &s,
        r#"predict_linear(series("host_disk_free_bytes"), "1h", 4 * 3600)"#,
        now,
    );
    close(v[0].value, -8e8);
    let v = vector(
        &s,
        r#"predict_linear(series("host_disk_free_bytes"), "1h", 14400.0) < 0"#,
        now,
    );
    assert_eq!(v.len(), 1);
    close(
        by_instance(&s, r#"deriv(series("host_disk_free_bytes"), "1h")"#, now)[0].1,
        -1e5,
    );
}

#[test]
fn absent_reports_missing_selections() {
    let mut s = Store::new();
    s.add("up", &[("job", "api"), ("instance", "a")], 1.0, 100_000);
    let now = 200_000;
    let v = vector(
        &s,
        r#"absent(series("up", #{job: "web", instance: re("a|b")}), "5m")"#,
        now,
    );
    assert_eq!(v.len(), 1);
    assert_eq!(
        v[0].labels,
        labels(&[("job", "web")]),
        "only equality matchers label it"
    );
    assert_eq!(v[0].value, 1.0);
    assert!(vector(&s, r#"absent(series("up", #{job: "api"}), "5m")"#, now).is_empty());
    let v = vector(&s, r#"absent("nothing", "5m")"#, now);
    assert_eq!((v.len(), v[0].labels.is_empty()), (1, true));
    // Outside the window the sample no longer counts.
    assert_eq!(vector(&s, r#"absent(series("up"), "1m")"#, now).len(), 1);
    // A computed vector: absent when empty.
    assert_eq!(vector(&s, r#"absent(series("up") > 5)"#, now).len(), 1);
    assert!(vector(&s, r#"absent(series("up") > 0)"#, now).is_empty());
}

#[test]
fn offset_reads_the_past() {
    let mut s = Store::new();
    s.series(
        "x",
        &[("instance", "a")],
        &[(0, 1.0), (60_000, 1.5), (3_600_000, 4.0)],
    );
    let now = 3_600_000;
    assert_eq!(
        by_instance(&s, r#"offset(series("x"), "1h")"#, now)[0].1,
        1.0
    );
    assert_eq!(
        by_instance(&s, r#"series("x") - offset(series("x"), "1h")"#, now)[0].1,
        3.0
    );
    assert_eq!(
        by_instance(&s, r#"series("x") / offset("x", "1h") > 2"#, now)[0].1,
        4.0
    );
    // Window functions over an offset vector look at the past window.
    close(
        by_instance(&s, r#"avg_over(offset(series("x"), "59m"), "2m")"#, now)[0].1,
        1.25,
    );
}

#[test]
fn consecutive_failures_needs_n_zeros_in_a_row() {
    let mut s = Store::new();
    let t = [10_000, 20_000, 30_000, 40_000];
    s.series(
        "probe_success",
        &[("instance", "a")],
        &[(t[0], 1.0), (t[1], 0.0), (t[2], 0.0), (t[3], 0.0)],
    );
    s.series(
        "probe_success",
        &[("instance", "b")],
        &[(t[0], 0.0), (t[1], 0.0), (t[2], 1.0), (t[3], 0.0)],
    );
    s.series(
        "probe_success",
        &[("instance", "c")],
        &[(t[2], 0.0), (t[3], 0.0)],
    );
    let now = 45_000;
    assert_eq!(
        by_instance(
            &s,
            r#"consecutive_failures(series("probe_success"), 3)"#,
            now
        ),
        vec![("a".into(), 0.0)]
    );
    let got = by_instance(&s, r#"consecutive_failures("probe_success", 2.0)"#, now);
    assert_eq!(
        got.iter().map(|(i, _)| i.as_str()).collect::<Vec<_>>(),
        ["a", "c"]
    );
}

#[test]
fn window_functions_refuse_computed_vectors_and_bad_windows() {
    let s = counter_with_reset();
    let engine = RuleEngine::new();
    let err = engine
        .eval_expr(r#"rate(series("req_total") * 2, "1m")"#, &s.0, 60_000)
        .unwrap_err();
    assert!(err.message.contains("needs the series' history"), "{err}");
    let err = engine
        .eval_expr(r#"rate(series("req_total"), "5")"#, &s.0, 60_000)
        .unwrap_err();
    assert!(err.message.contains("has no unit"), "{err}");
    let err = engine
        .eval_expr(r#"rate(series("req_total"), 300)"#, &s.0, 60_000)
        .unwrap_err();
    assert!(err.message.contains("duration string"), "{err}");
    assert_eq!((err.line, err.col), (1, 1));
}
