//! Aggregations: plain, `_by`, `_without`, `topk`/`bottomk`.

use warden_rules::ExprValue;

use crate::common::*;

fn disks() -> Store {
    let mut s = Store::new();
    for (inst, mp, v) in [
        ("a", "/", 10.0),
        ("a", "/var", 30.0),
        ("b", "/", 50.0),
        ("b", "/var", 70.0),
        ("c", "/", f64::NAN),
    ] {
        s.add("used", &[("instance", inst), ("mountpoint", mp)], v, 1_000);
    }
    s
}

#[test]
fn plain_aggregations_give_one_unlabelled_element() {
    let s = disks();
    let one = |e: &str| {
        let v = vector(&s, &format!(r#"{e}(series("used") >= 0)"#), 2_000);
        assert_eq!(v.len(), 1, "{e}");
        assert!(v[0].labels.is_empty(), "{e}");
        v[0].value
    };
    close(one("sum"), 160.0);
    close(one("min"), 10.0);
    close(one("max"), 70.0);
    close(one("avg"), 40.0);
    close(one("count"), 4.0);
    close(one("stddev"), 500f64.sqrt());
    // NaN: sum propagates it, min/max skip it.
    assert!(
        vector(&s, r#"sum(series("used"))"#, 2_000)[0]
            .value
            .is_nan()
    );
    assert_eq!(vector(&s, r#"max(series("used"))"#, 2_000)[0].value, 70.0);
    // Nothing to aggregate: nothing, not 0.
    assert!(vector(&s, r#"sum(series("nothing"))"#, 2_000).is_empty());
    assert!(vector(&s, r#"count(series("used") > 1000)"#, 2_000).is_empty());
}

#[test]
fn by_and_without_keep_or_drop_labels() {
    let s = disks();
    assert_eq!(
        by_instance(&s, r#"sum_by(series("used") >= 0, ["instance"])"#, 2_000),
        vec![("a".into(), 40.0), ("b".into(), 120.0)]
    );
    assert_eq!(
        by_instance(
            &s,
            r#"max_without(series("used") >= 0, ["mountpoint"])"#,
            2_000
        ),
        vec![("a".into(), 30.0), ("b".into(), 70.0)]
    );
    let v = vector(&s, r#"avg_by(series("used") >= 0, ["mountpoint"])"#, 2_000);
    assert_eq!(v.len(), 2);
    assert_eq!(v[0].labels, labels(&[("mountpoint", "/")]));
    close(v[0].value, 30.0);
    close(v[1].value, 50.0);
    let v = vector(
        &s,
        r#"count_without(series("used"), ["instance", "mountpoint"])"#,
        2_000,
    );
    assert_eq!((v.len(), v[0].value), (1, 5.0));
    for f in ["min_by", "stddev_by", "count_by"] {
        let v = vector(
            &s,
            &format!(r#"{f}(series("used") >= 0, ["instance"])"#),
            2_000,
        );
        assert_eq!(v.len(), 2, "{f}");
    }
    close(
        by_instance(&s, r#"min_by(series("used") >= 0, ["instance"])"#, 2_000)[1].1,
        50.0,
    );
    close(
        by_instance(&s, r#"stddev_by(series("used") >= 0, ["instance"])"#, 2_000)[0].1,
        10.0,
    );
    close(
        by_instance(
            &s,
            r#"sum_without(series("used") >= 0, ["instance"])"#,
            2_000,
        )[0]
        .1,
        60.0,
    );
    close(
        by_instance(
            &s,
            r#"avg_without(series("used") >= 0, ["mountpoint"])"#,
            2_000,
        )[0]
        .1,
        20.0,
    );
    close(
        by_instance(
            &s,
            r#"min_without(series("used") >= 0, ["mountpoint"])"#,
            2_000,
        )[0]
        .1,
        10.0,
    );
    close(
        by_instance(&s, r#"max_by(series("used") >= 0, ["instance"])"#, 2_000)[0].1,
        30.0,
    );
    close(
        by_instance(&s, r#"count_by(series("used"), ["instance"])"#, 2_000)[2].1,
        1.0,
    );
    close(
        by_instance(
            &s,
            r#"stddev_without(series("used") >= 0, ["mountpoint"])"#,
            2_000,
        )[1]
        .1,
        10.0,
    );
}

#[test]
fn topk_and_bottomk_keep_elements() {
    let s = disks();
    let v = vector(&s, r#"topk(series("used"), 2)"#, 2_000);
    let mut vals: Vec<f64> = v.iter().map(|e| e.value).collect();
    vals.sort_by(f64::total_cmp);
    assert_eq!(vals, [50.0, 70.0]);
    assert!(
        v.iter().all(|e| e.labels.get("mountpoint").is_some()),
        "labels kept"
    );
    let v = vector(&s, r#"bottomk(series("used"), 1.0)"#, 2_000);
    assert_eq!(v[0].value, 10.0);
    assert_eq!(vector(&s, r#"topk(series("used"), 0)"#, 2_000).len(), 0);
    assert_eq!(
        vector(&s, r#"topk(series("used"), 10)"#, 2_000).len(),
        5,
        "NaN sorts last but stays"
    );
    assert_eq!(
        eval(&s, r#"len(topk(series("used"), 3))"#, 2_000),
        ExprValue::Scalar(3.0)
    );
}
