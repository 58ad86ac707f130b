//! The values rules compute with: [`Element`] and the Rhai type `Vector`.
//!
//! A `Vector` is a list of elements that may remember the selector it came from
//! (its [`Source`]), so window functions can fetch history for it. A vector
//! straight from `series()` is resolved lazily: `rate(series("x"), "5m")` never
//! reads the newest samples it would throw away. Resolved selections are shared
//! through the cycle's [`ReadCache`](crate::ReadCache), so operators copy only the
//! elements they keep. Everything computed from a vector (filtered, combined,
//! aggregated) is a plain list without a source.
//!
//! In scripts, a vector supports `len(v)`, `is_empty(v)`, `for e in v { … }`,
//! `label(v, "name")` (the first element's label), `with_label(v, "k", "v")`,
//! `without_label(v, "k")`, `values(v)`, `scalar(v)` (the value when there is
//! exactly one element, else NaN) and `vector(x)` (a number, or an array of
//! elements, as a vector). An element has `.value`, `.labels` (a map), `.ts`
//! (unix ms), `.name` and `label("x")`, and `with_label(e, "k", "v")`.

use std::fmt;
use std::sync::{Arc, OnceLock};

use rhai::{Array, Dynamic, Engine, EvalAltResult, ImmutableString, Map};
use warden_engine::model::{Labels, MetricName, Selector, SeriesPoint, Timestamp};

use crate::context::with_eval;

/// Result of a native function.
pub(crate) type RhaiRes<T> = Result<T, Box<EvalAltResult>>;

/// One element of a vector: a series' labels, a value and when it was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// The metric name, while the element still is a plain sample of one metric
    /// (arithmetic, functions and aggregations drop it, as in PromQL).
    pub name: Option<MetricName>,
    /// The series' labels.
    pub labels: Labels,
    /// The value.
    pub value: f64,
    /// When the value was measured (unix ms).
    pub ts: Timestamp,
}

impl Element {
    /// An element without a metric name.
    pub fn new(labels: Labels, value: f64, ts: Timestamp) -> Self {
        Self {
            name: None,
            labels,
            value,
            ts,
        }
    }

    /// This element with another value and no metric name.
    pub(crate) fn with_value(&self, value: f64) -> Self {
        Self {
            name: None,
            labels: self.labels.clone(),
            value,
            ts: self.ts,
        }
    }
}

impl From<SeriesPoint> for Element {
    fn from(p: SeriesPoint) -> Self {
        Self {
            name: Some(p.name),
            labels: p.labels,
            value: p.value,
            ts: p.ts,
        }
    }
}

impl fmt::Display for Element {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(n) = &self.name {
            write!(f, "{n}")?;
        }
        write!(f, "{} {}", self.labels, self.value)
    }
}

/// Where a vector's elements come from: a selector, read as of `now - offset_ms`.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    pub selector: Selector,
    pub offset_ms: i64,
}

/// How two vectors pair their elements (PromQL's `on` / `ignoring`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Matching {
    /// Pair on these labels only.
    On(Vec<String>),
    /// Pair on every label except these.
    Ignoring(Vec<String>),
}

impl Matching {
    /// The pairing key of `labels`.
    pub fn key(&self, labels: &Labels) -> Labels {
        match self {
            Matching::On(keep) => {
                let keep: Vec<&str> = keep.iter().map(String::as_str).collect();
                labels.keep_only(&keep)
            }
            Matching::Ignoring(drop) => {
                let drop: Vec<&str> = drop.iter().map(String::as_str).collect();
                labels.without(&drop)
            }
        }
    }
}

/// The Rhai `Vector` type. Cloning is cheap (shared data).
#[derive(Clone)]
pub(crate) struct Vector {
    source: Option<Arc<Source>>,
    /// Set by `on()` / `ignoring()` for the next vector-vector operation.
    pub matching: Option<Arc<Matching>>,
    /// The elements once known; shared with the cycle's read cache.
    data: Arc<OnceLock<Arc<Vec<Element>>>>,
}

impl Vector {
    /// A computed vector.
    pub fn from_elements(elements: Vec<Element>) -> Self {
        Self::from_shared(Arc::new(elements))
    }

    /// A computed vector whose elements are shared (with the read cache).
    pub fn from_shared(elements: Arc<Vec<Element>>) -> Self {
        Self {
            source: None,
            matching: None,
            data: Arc::new(OnceLock::from(elements)),
        }
    }

    /// A vector read from the store when first used.
    pub fn from_source(source: Source) -> Self {
        Self {
            source: Some(Arc::new(source)),
            matching: None,
            data: Arc::new(OnceLock::new()),
        }
    }

    /// The selector this vector was read with, if it still is a plain selection.
    pub fn source(&self) -> Option<&Source> {
        self.source.as_deref()
    }

    /// The elements, reading the store on first use.
    pub fn elements(&self) -> RhaiRes<&[Element]> {
        if let Some(v) = self.data.get() {
            return Ok(v);
        }
        let Some(src) = &self.source else {
            return Ok(&[]);
        };
        let read = with_eval("series", |cx| {
            cx.cached(format!("latest {}", src.key()), || {
                let points = cx
                    .query
                    .latest(&src.selector, cx.now - src.offset_ms)
                    .map_err(|e| format!("reading {}: {e}", src.selector))?;
                Ok(points.into_iter().map(Element::from).collect())
            })
        })??;
        let _ = self.data.set(read);
        Ok(self.data.get().map(|v| v.as_slice()).unwrap_or(&[]))
    }

    /// The elements, owned (without copying when nothing else holds them).
    pub fn into_elements(self) -> RhaiRes<Vec<Element>> {
        self.elements()?;
        let shared = match Arc::try_unwrap(self.data) {
            Ok(cell) => cell.into_inner().unwrap_or_default(),
            Err(cell) => return Ok(cell.get().map(|v| v.to_vec()).unwrap_or_default()),
        };
        Ok(Arc::try_unwrap(shared).unwrap_or_else(|v| v.to_vec()))
    }
}

impl Source {
    /// Identifies this selection in the read cache.
    pub fn key(&self) -> String {
        format!("{}@{}", self.selector, self.offset_ms)
    }
}

impl fmt::Debug for Vector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.source, self.data.get()) {
            (_, Some(e)) => f.debug_list().entries(e.iter()).finish(),
            (Some(s), None) => write!(f, "Vector({})", s.selector),
            (None, None) => f.write_str("Vector[]"),
        }
    }
}

/// True when `s` is a valid label name (`[a-zA-Z_][a-zA-Z0-9_]*`).
pub(crate) fn is_label_name(s: &str) -> bool {
    Labels::new([(s, "x")]).is_ok()
}

/// True when `s` is a valid metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
pub(crate) fn is_metric_name(s: &str) -> bool {
    MetricName::new(s).is_ok()
}

/// A number as `f64`, whether Rhai holds it as `INT` or `FLOAT`.
pub(crate) fn as_number(d: &Dynamic) -> Option<f64> {
    d.as_float()
        .ok()
        .or_else(|| d.as_int().ok().map(|i| i as f64))
}

/// A numeric argument of function `f`.
pub(crate) fn number_arg(f: &str, what: &str, d: &Dynamic) -> RhaiRes<f64> {
    as_number(d)
        .ok_or_else(|| format!("{f}(): {what} must be a number, not {}", d.type_name()).into())
}

/// A list of label names (an array of strings) given to function `f`.
pub(crate) fn label_list(f: &str, arr: &Array) -> RhaiRes<Vec<String>> {
    arr.iter()
        .map(|d| {
            d.clone()
                .into_immutable_string()
                .map(|s| s.to_string())
                .map_err(|t| format!("{f}(): label names must be strings, not {t}").into())
        })
        .collect()
}

/// A vector, or an array of elements (and vectors), as a list of elements.
pub(crate) fn elements_of(f: &str, d: Dynamic) -> RhaiRes<Vec<Element>> {
    if d.is::<Vector>() {
        return d.cast::<Vector>().into_elements();
    }
    if d.is::<Array>() {
        let arr = d.cast::<Array>();
        let mut out = Vec::with_capacity(arr.len());
        for item in arr {
            if item.is::<Element>() {
                out.push(item.cast::<Element>());
            } else if item.is::<Vector>() {
                out.extend(item.cast::<Vector>().into_elements()?);
            } else {
                return Err(format!(
                    "{f}(): an array must hold vector elements, not {}",
                    item.type_name()
                )
                .into());
            }
        }
        return Ok(out);
    }
    Err(format!("{f}(): expected a vector, not {}", d.type_name()).into())
}

fn labels_map(labels: &Labels) -> Map {
    labels
        .iter()
        .map(|(k, v)| (k.into(), Dynamic::from(ImmutableString::from(v))))
        .collect()
}

/// Sets label `k` to `v` (a string, number or bool; `""` removes the label).
fn set_label(labels: &mut Labels, k: &str, v: &Dynamic) -> RhaiRes<()> {
    if !(v.is_string() || v.is_int() || v.is_float() || v.is_bool()) {
        return Err(format!(
            "with_label(): the value of '{k}' must be a string, not {}",
            v.type_name()
        )
        .into());
    }
    labels
        .set(k, &v.to_string())
        .map_err(|e| e.to_string().into())
}

/// The evaluation time, or 0 outside an evaluation.
fn now() -> Timestamp {
    with_eval("vector", |cx| cx.now).unwrap_or(0)
}

/// An iterator over a vector for `for` loops.
pub(crate) struct VectorIter(std::vec::IntoIter<RhaiRes<Element>>);

impl Iterator for VectorIter {
    type Item = RhaiRes<Element>;
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next()
    }
}

impl IntoIterator for Vector {
    type Item = RhaiRes<Element>;
    type IntoIter = VectorIter;
    fn into_iter(self) -> VectorIter {
        let items: Vec<RhaiRes<Element>> = match self.into_elements() {
            Ok(v) => v.into_iter().map(Ok).collect(),
            Err(e) => vec![Err(e)],
        };
        VectorIter(items.into_iter())
    }
}

/// Registers the `Vector` and `Element` types and the helpers on them.
pub(crate) fn register(engine: &mut Engine) {
    engine
        .register_type_with_name::<Vector>("Vector")
        .register_type_with_name::<Element>("Element")
        .register_iterator_result::<Vector, Element>();

    engine
        .register_get("value", |e: &mut Element| e.value)
        .register_get("ts", |e: &mut Element| e.ts)
        .register_get("labels", |e: &mut Element| labels_map(&e.labels))
        .register_get("name", |e: &mut Element| {
            e.name
                .as_ref()
                .map(|n| n.as_str().to_string())
                .unwrap_or_default()
        })
        .register_fn("label", |e: &mut Element, k: &str| {
            e.labels.get(k).unwrap_or("").to_string()
        })
        .register_fn("label", |v: &mut Vector, k: &str| -> RhaiRes<String> {
            Ok(v.elements()?
                .first()
                .and_then(|e| e.labels.get(k))
                .unwrap_or("")
                .to_string())
        })
        .register_fn(
            "with_label",
            |e: Element, k: &str, v: Dynamic| -> RhaiRes<Element> {
                let mut e = e;
                set_label(&mut e.labels, k, &v)?;
                e.name = None;
                Ok(e)
            },
        )
        .register_fn(
            "with_label",
            |vec: Vector, k: &str, v: Dynamic| -> RhaiRes<Vector> {
                let mut out = vec.into_elements()?;
                for e in &mut out {
                    set_label(&mut e.labels, k, &v)?;
                    e.name = None;
                }
                Ok(Vector::from_elements(out))
            },
        )
        .register_fn("without_label", |vec: Vector, k: &str| -> RhaiRes<Vector> {
            let mut out = vec.into_elements()?;
            for e in &mut out {
                e.labels.remove(k);
                e.name = None;
            }
            Ok(Vector::from_elements(out))
        })
        .register_fn("len", |v: &mut Vector| -> RhaiRes<i64> {
            Ok(v.elements()?.len() as i64)
        })
        .register_fn("is_empty", |v: &mut Vector| -> RhaiRes<bool> {
            Ok(v.elements()?.is_empty())
        })
        .register_fn("values", |v: &mut Vector| -> RhaiRes<Array> {
            Ok(v.elements()?
                .iter()
                .map(|e| Dynamic::from_float(e.value))
                .collect())
        })
        .register_fn("scalar", |v: &mut Vector| -> RhaiRes<f64> {
            Ok(match v.elements()? {
                [one] => one.value,
                _ => f64::NAN,
            })
        })
        .register_fn("vector", |x: i64| {
            Vector::from_elements(vec![Element::new(Labels::empty(), x as f64, now())])
        })
        .register_fn("vector", |x: f64| {
            Vector::from_elements(vec![Element::new(Labels::empty(), x, now())])
        })
        .register_fn("vector", |a: Array| -> RhaiRes<Vector> {
            Ok(Vector::from_elements(elements_of(
                "vector",
                Dynamic::from_array(a),
            )?))
        })
        .register_fn("to_string", |e: &mut Element| e.to_string())
        .register_fn("to_debug", |e: &mut Element| e.to_string())
        .register_fn("to_string", |v: &mut Vector| -> RhaiRes<String> {
            Ok(display_elements(v.elements()?))
        })
        .register_fn("to_debug", |v: &mut Vector| -> RhaiRes<String> {
            Ok(display_elements(v.elements()?))
        });
}

fn display_elements(elements: &[Element]) -> String {
    let items: Vec<String> = elements.iter().map(Element::to_string).collect();
    format!("[{}]", items.join(", "))
}
