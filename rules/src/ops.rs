//! Operators on vectors, and pairing vectors with each other.
//!
//! - `v > x`, `x < v` (also `>= <= == !=`), with `x` an `INT` or a `FLOAT`: the
//!   elements of `v` whose value compares true; values and labels unchanged. A NaN
//!   value never compares true, not even with `!=`.
//! - `v + x`, `x - v`, … (`+ - * / % **`): every value changed; labels kept, metric
//!   name dropped. `-v` negates.
//! - `v1 op v2`: elements paired by identical labels (the metric name is ignored);
//!   unpaired elements are dropped. Arithmetic gives the computed value with the
//!   left labels; a comparison keeps the left element where it holds.
//! - `on(v, ["instance"])` / `ignoring(v, ["cpu"])` mark a vector so that the next
//!   vector-vector operator (or `and`/`or`/`unless`) it takes part in pairs on those
//!   labels only (or on all but those). The result keeps the left element's labels,
//!   and several left elements may pair with one right element (PromQL's
//!   `on(…) group_left`). Two right elements with the same key are an error.
//!   Example: `on(series("host_load5"), ["instance"]) / series("host_cpu_count")`.
//! - `and(v1, v2)`, `or(v1, v2)`, `unless(v1, v2)`: PromQL's set operators.

use std::collections::HashMap;

use rhai::{Array, Engine};
use warden_engine::model::Labels;

use crate::vector::{Element, Matching, RhaiRes, Vector, label_list};

/// A comparison operator.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Cmp {
    Gt,
    Lt,
    Ge,
    Le,
    Eq,
    Ne,
}

impl Cmp {
    /// `a op b`; false whenever either side is NaN.
    pub fn test(self, a: f64, b: f64) -> bool {
        if a.is_nan() || b.is_nan() {
            return false;
        }
        match self {
            Cmp::Gt => a > b,
            Cmp::Lt => a < b,
            Cmp::Ge => a >= b,
            Cmp::Le => a <= b,
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
        }
    }
}

/// An arithmetic operator.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
}

impl Arith {
    /// `a op b` in IEEE 754 (division by zero gives ±Inf or NaN, as in PromQL).
    pub fn apply(self, a: f64, b: f64) -> f64 {
        match self {
            Arith::Add => a + b,
            Arith::Sub => a - b,
            Arith::Mul => a * b,
            Arith::Div => a / b,
            Arith::Mod => a % b,
            Arith::Pow => a.powf(b),
        }
    }
}

/// A binary operator between two vectors.
#[derive(Debug, Clone, Copy)]
enum Op {
    Cmp(Cmp),
    Arith(Arith),
}

const CMPS: [(&str, Cmp); 6] = [
    (">", Cmp::Gt),
    ("<", Cmp::Lt),
    (">=", Cmp::Ge),
    ("<=", Cmp::Le),
    ("==", Cmp::Eq),
    ("!=", Cmp::Ne),
];

const ARITHS: [(&str, Arith); 6] = [
    ("+", Arith::Add),
    ("-", Arith::Sub),
    ("*", Arith::Mul),
    ("/", Arith::Div),
    ("%", Arith::Mod),
    ("**", Arith::Pow),
];

/// The elements whose value passes `keep`; only those are copied (a filter usually
/// keeps few of a shared selection).
fn filter(v: Vector, keep: impl Fn(f64) -> bool) -> RhaiRes<Vector> {
    let elems = v
        .elements()?
        .iter()
        .filter(|e| keep(e.value))
        .cloned()
        .collect();
    Ok(Vector::from_elements(elems))
}

fn map(v: Vector, f: impl Fn(f64) -> f64) -> RhaiRes<Vector> {
    let mut elems = v.into_elements()?;
    for e in &mut elems {
        e.value = f(e.value);
        e.name = None;
    }
    Ok(Vector::from_elements(elems))
}

/// How `a` and `b` pair: the first `on`/`ignoring` mark, else identical labels.
fn pairing<'a>(a: &'a Vector, b: &'a Vector) -> Option<&'a Matching> {
    a.matching.as_deref().or(b.matching.as_deref())
}

fn key(m: Option<&Matching>, labels: &Labels) -> Labels {
    match m {
        Some(m) => m.key(labels),
        None => labels.clone(),
    }
}

/// The right side indexed by pairing key; a key held twice is an error.
fn index<'a>(m: Option<&Matching>, right: &'a [Element]) -> RhaiRes<HashMap<Labels, &'a Element>> {
    let mut out = HashMap::with_capacity(right.len());
    for e in right {
        let k = key(m, &e.labels);
        if out.insert(k.clone(), e).is_some() {
            return Err(format!(
                "several elements on the right-hand side pair as {k}: aggregate that side first, or pair on more labels with on(v, [...])"
            )
            .into());
        }
    }
    Ok(out)
}

fn binary(a: Vector, b: Vector, op: Op) -> RhaiRes<Vector> {
    let m = pairing(&a, &b);
    let right = index(m, b.elements()?)?;
    let mut out = Vec::new();
    for l in a.elements()? {
        let Some(r) = right.get(&key(m, &l.labels)) else {
            continue;
        };
        match op {
            Op::Cmp(c) if c.test(l.value, r.value) => out.push(l.clone()),
            Op::Cmp(_) => {}
            Op::Arith(f) => out.push(l.with_value(f.apply(l.value, r.value))),
        }
    }
    Ok(Vector::from_elements(out))
}

/// PromQL's `and` (`keep_matched`) and `unless` (`!keep_matched`).
fn intersect(a: Vector, b: Vector, keep_matched: bool) -> RhaiRes<Vector> {
    let m = pairing(&a, &b);
    let right: std::collections::HashSet<Labels> =
        b.elements()?.iter().map(|e| key(m, &e.labels)).collect();
    let out = a
        .elements()?
        .iter()
        .filter(|e| right.contains(&key(m, &e.labels)) == keep_matched)
        .cloned()
        .collect();
    Ok(Vector::from_elements(out))
}

/// PromQL's `or`: all of `a`, and the elements of `b` that pair with none of `a`.
fn union(a: Vector, b: Vector) -> RhaiRes<Vector> {
    let m = pairing(&a, &b);
    let mut out: Vec<Element> = a.elements()?.to_vec();
    let left: std::collections::HashSet<Labels> = out.iter().map(|e| key(m, &e.labels)).collect();
    out.extend(
        b.elements()?
            .iter()
            .filter(|e| !left.contains(&key(m, &e.labels)))
            .cloned(),
    );
    Ok(Vector::from_elements(out))
}

fn mark(f: &str, v: Vector, labels: &Array, make: fn(Vec<String>) -> Matching) -> RhaiRes<Vector> {
    let mut v = v;
    v.matching = Some(std::sync::Arc::new(make(label_list(f, labels)?)));
    Ok(v)
}

/// Registers the operators and the pairing helpers.
pub(crate) fn register(engine: &mut Engine) {
    for (sym, c) in CMPS {
        engine
            .register_fn(sym, move |v: Vector, x: i64| {
                filter(v, |a| c.test(a, x as f64))
            })
            .register_fn(sym, move |v: Vector, x: f64| filter(v, |a| c.test(a, x)))
            .register_fn(sym, move |x: i64, v: Vector| {
                filter(v, |a| c.test(x as f64, a))
            })
            .register_fn(sym, move |x: f64, v: Vector| filter(v, |a| c.test(x, a)))
            .register_fn(sym, move |a: Vector, b: Vector| binary(a, b, Op::Cmp(c)));
    }
    for (sym, f) in ARITHS {
        engine
            .register_fn(sym, move |v: Vector, x: i64| {
                map(v, |a| f.apply(a, x as f64))
            })
            .register_fn(sym, move |v: Vector, x: f64| map(v, |a| f.apply(a, x)))
            .register_fn(sym, move |x: i64, v: Vector| {
                map(v, |a| f.apply(x as f64, a))
            })
            .register_fn(sym, move |x: f64, v: Vector| map(v, |a| f.apply(x, a)))
            .register_fn(sym, move |a: Vector, b: Vector| binary(a, b, Op::Arith(f)));
    }
    engine
        .register_fn("-", |v: Vector| map(v, |a| -a))
        .register_fn("abs", |v: Vector| map(v, f64::abs))
        .register_fn("on", |v: Vector, l: Array| mark("on", v, &l, Matching::On))
        .register_fn("ignoring", |v: Vector, l: Array| {
            mark("ignoring", v, &l, Matching::Ignoring)
        })
        .register_fn("and", |a: Vector, b: Vector| intersect(a, b, true))
        .register_fn("unless", |a: Vector, b: Vector| intersect(a, b, false))
        .register_fn("or", union);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_never_compares_true() {
        for (_, c) in CMPS {
            assert!(!c.test(f64::NAN, 1.0), "{c:?}");
            assert!(!c.test(1.0, f64::NAN), "{c:?}");
        }
        assert!(Cmp::Ne.test(1.0, 2.0));
    }
}
