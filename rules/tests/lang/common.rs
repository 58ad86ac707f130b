//! Helpers: a store with samples, and short ways to evaluate.

use warden_engine::model::{Labels, MetricName, Sample};
use warden_engine::store::SeriesSet;
use warden_rules::{Element, ExprValue, RuleEngine};

/// Freshness used for every test series: 5 minutes.
pub const FRESH: i64 = 300_000;

/// A store built sample by sample.
#[derive(Default)]
pub struct Store(pub SeriesSet);

impl Store {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample.
    pub fn add(&mut self, name: &str, labels: &[(&str, &str)], value: f64, ts: i64) -> &mut Self {
        let s = Sample::new(
            MetricName::new(name).unwrap(),
            Labels::new(labels.iter().copied()).unwrap(),
            value,
            ts,
        );
        self.0.push(&s, FRESH);
        self
    }

    /// Adds samples `(ts, value)` to one series.
    pub fn series(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        points: &[(i64, f64)],
    ) -> &mut Self {
        for (ts, v) in points {
            self.add(name, labels, *v, *ts);
        }
        self
    }
}

pub fn labels(pairs: &[(&str, &str)]) -> Labels {
    Labels::new(pairs.iter().copied()).unwrap()
}

/// Evaluates `expr` at `now`; panics with the diagnostic on error.
pub fn eval(store: &Store, expr: &str, now: i64) -> ExprValue {
    let engine = RuleEngine::new();
    match engine.eval_expr(expr, &store.0, now) {
        Ok(v) => v,
        Err(d) => panic!("{expr}: {d}"),
    }
}

/// The elements of a vector result, sorted by labels.
pub fn vector(store: &Store, expr: &str, now: i64) -> Vec<Element> {
    match eval(store, expr, now) {
        ExprValue::Vector(mut v) => {
            v.sort_by(|a, b| a.labels.cmp(&b.labels));
            v
        }
        other => panic!("{expr}: expected a vector, got {other:?}"),
    }
}

/// `(instance label, value)` of each element, sorted.
pub fn by_instance(store: &Store, expr: &str, now: i64) -> Vec<(String, f64)> {
    let mut v: Vec<(String, f64)> = vector(store, expr, now)
        .into_iter()
        .map(|e| (e.labels.get("instance").unwrap_or("").to_string(), e.value))
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

/// A scalar result.
pub fn scalar(store: &Store, expr: &str, now: i64) -> f64 {
    match eval(store, expr, now) {
        ExprValue::Scalar(v) => v,
        other => panic!("{expr}: expected a number, got {other:?}"),
    }
}

/// Asserts two floats are equal within 1e-9 (relative).
#[track_caller]
pub fn close(a: f64, b: f64) {
    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} != {b}");
}
