//! Aggregations over a vector: `sum`, `min`, `max`, `avg`, `count`, `stddev`, each
//! also as `*_by(v, ["label", …])` (keep those labels) and `*_without(v, [...])`
//! (drop those labels); and `topk(v, k)` / `bottomk(v, k)`.
//!
//! As in PromQL: the plain form gives one element without labels, an empty vector
//! gives an empty result (not 0), `min`/`max` skip NaN unless every value is NaN,
//! `stddev` is the population standard deviation, the metric name is dropped, and
//! `topk`/`bottomk` keep the chosen elements as they are (NaN sorts last).

use std::collections::BTreeMap;

use rhai::{Array, Dynamic, Engine};
use warden_engine::model::{Labels, Timestamp};

use crate::vector::{Element, RhaiRes, Vector, label_list, number_arg};
use crate::window::{self, Window};

/// What an aggregation keeps of each element's labels.
enum Grouping {
    All,
    By(Vec<String>),
    Without(Vec<String>),
}

impl Grouping {
    /// The labels of `labels` that name its group, borrowed.
    fn key<'a>(&self, labels: &'a Labels) -> Vec<(&'a str, &'a str)> {
        let keep = |name: &str| match self {
            Grouping::All => false,
            Grouping::By(names) => names.iter().any(|n| n == name),
            Grouping::Without(names) => !names.iter().any(|n| n == name),
        };
        labels.iter().filter(|(k, _)| keep(k)).collect()
    }
}

type AggFn = fn(&Window) -> Option<f64>;

/// The aggregations, reusing the window functions' arithmetic over a group's values.
const AGGS: [(&str, AggFn); 6] = [
    ("sum", window::sum),
    ("min", window::min),
    ("max", window::max),
    ("avg", window::avg),
    ("count", window::count),
    ("stddev", window::stddev),
];

fn aggregate(v: Vector, grouping: Grouping, op: AggFn) -> RhaiRes<Vector> {
    type Group = (Vec<(Timestamp, f64)>, Timestamp);
    let mut groups: BTreeMap<Vec<(&str, &str)>, Group> = BTreeMap::new();
    for e in v.elements()? {
        let g = groups.entry(grouping.key(&e.labels)).or_default();
        g.0.push((e.ts, e.value));
        g.1 = g.1.max(e.ts);
    }
    let mut out = Vec::with_capacity(groups.len());
    for (key, (values, ts)) in groups {
        let w = Window {
            samples: &values,
            start: ts,
            end: ts,
        };
        if let Some(value) = op(&w) {
            // The names come from a valid label set, so this cannot fail.
            let labels = Labels::new(key).map_err(|e| e.to_string())?;
            out.push(Element::new(labels, value, ts));
        }
    }
    Ok(Vector::from_elements(out))
}

/// The `k` largest (`largest`) or smallest elements; NaN sorts last either way.
fn top(v: Vector, k: &Dynamic, largest: bool, f: &str) -> RhaiRes<Vector> {
    let k = number_arg(f, "k", k)?;
    let mut elems = v.into_elements()?;
    elems.sort_by(|a, b| match (a.value.is_nan(), b.value.is_nan()) {
        (true, true) => std::cmp::Ordering::Equal,
        (true, false) => std::cmp::Ordering::Greater,
        (false, true) => std::cmp::Ordering::Less,
        _ if largest => b.value.total_cmp(&a.value),
        _ => a.value.total_cmp(&b.value),
    });
    elems.truncate(if k >= 1.0 { k as usize } else { 0 });
    Ok(Vector::from_elements(elems))
}

/// Registers the aggregations.
pub(crate) fn register(engine: &mut Engine) {
    for (name, op) in AGGS {
        let by = format!("{name}_by");
        let without = format!("{name}_without");
        engine
            .register_fn(name, move |v: Vector| aggregate(v, Grouping::All, op))
            .register_fn(&by, move |v: Vector, l: Array| {
                aggregate(v, Grouping::By(label_list(name, &l)?), op)
            })
            .register_fn(&without, move |v: Vector, l: Array| {
                aggregate(v, Grouping::Without(label_list(name, &l)?), op)
            });
    }
    engine
        .register_fn("topk", |v: Vector, k: Dynamic| top(v, &k, true, "topk"))
        .register_fn("bottomk", |v: Vector, k: Dynamic| {
            top(v, &k, false, "bottomk")
        });
}
