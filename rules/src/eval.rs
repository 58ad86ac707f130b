//! Turning what `when` returned into alert instances.
//!
//! - A vector (or an array of elements): one instance per element, labelled with
//!   the element's labels + the rule's labels (which win) + `alertname` +
//!   `severity`, valued with the element's value.
//! - `true`, or a number other than 0 and NaN: one instance with the rule's labels
//!   only, valued 1 (for `true`) or the number.
//! - `false`, `0`, NaN, an empty vector or `()`: nothing is active.
//! - Anything else is an error.
//!
//! Two instances with the same labels are an error (as in Prometheus): the rule
//! must aggregate, or keep a label that tells them apart.

use std::collections::HashSet;

use rhai::{Array, Dynamic};
use warden_engine::model::{Annotations, Labels};

use crate::render::render;
use crate::rule::{ExprValue, Instance, Rule};
use crate::vector::{Element, RhaiRes, Vector, as_number, elements_of};

/// A `when` result or an expression's value, vectors resolved.
pub(crate) enum Outcome {
    Elements(Vec<Element>),
    Number(f64),
    Bool(bool),
    Unit,
    Other { type_name: String, shown: String },
}

/// Reads `value`; must run while the evaluation context is current (lazy vectors
/// read the store).
pub(crate) fn outcome(value: Dynamic, max_array: usize) -> RhaiRes<Outcome> {
    let value = value.flatten();
    if value.is::<Vector>() {
        return Ok(Outcome::Elements(value.cast::<Vector>().into_elements()?));
    }
    if value.is::<Element>() {
        return Ok(Outcome::Elements(vec![value.cast::<Element>()]));
    }
    if value.is::<Array>() {
        let len = value.read_lock::<Array>().map_or(0, |a| a.len());
        if len > max_array {
            return Err(format!("the result has {len} elements; the limit is {max_array}").into());
        }
        return elements_of("when", value).map(Outcome::Elements);
    }
    if value.is_bool() {
        return Ok(Outcome::Bool(value.as_bool().unwrap_or(false)));
    }
    if value.is_unit() {
        return Ok(Outcome::Unit);
    }
    if let Some(n) = as_number(&value) {
        return Ok(Outcome::Number(n));
    }
    Ok(Outcome::Other {
        type_name: value.type_name().to_string(),
        shown: value.to_string(),
    })
}

impl From<Outcome> for ExprValue {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Elements(e) => ExprValue::Vector(e),
            Outcome::Number(n) => ExprValue::Scalar(n),
            Outcome::Bool(b) => ExprValue::Bool(b),
            Outcome::Unit => ExprValue::Unit,
            Outcome::Other { shown, .. } => ExprValue::Other(shown),
        }
    }
}

/// The instances `rule` reports for `outcome`.
pub(crate) fn instances(rule: &Rule, outcome: Outcome) -> Result<Vec<Instance>, String> {
    let elements = match outcome {
        Outcome::Elements(e) => e,
        Outcome::Bool(true) => vec![Element::new(Labels::empty(), 1.0, 0)],
        Outcome::Number(n) if n != 0.0 && !n.is_nan() => vec![Element::new(Labels::empty(), n, 0)],
        Outcome::Bool(false) | Outcome::Number(_) | Outcome::Unit => Vec::new(),
        Outcome::Other { type_name, .. } => {
            return Err(format!(
                "`when` returned a {type_name}; return a vector (e.g. series(\"x\") > 3), a bool or a number"
            ));
        }
    };
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        let mut labels = e.labels.merged(&rule.labels);
        labels
            .set("alertname", &rule.name)
            .and_then(|()| labels.set("severity", rule.severity.as_str()))
            .map_err(|e| e.to_string())?;
        let annotations = annotations(rule, &labels, e.value);
        out.push(Instance {
            labels,
            value: e.value,
            annotations,
        });
    }
    let mut seen = HashSet::with_capacity(out.len());
    if let Some(dup) = out.iter().find(|i| !seen.insert(&i.labels)) {
        return Err(format!(
            "two results have the same labels {}; aggregate them (e.g. max_by(v, [\"instance\"])) or keep a label that tells them apart",
            dup.labels
        ));
    }
    Ok(out)
}

fn annotations(rule: &Rule, labels: &Labels, value: f64) -> Annotations {
    [
        ("summary", &rule.summary),
        ("description", &rule.description),
        ("runbook", &rule.runbook),
    ]
    .into_iter()
    .filter_map(|(k, t)| {
        t.as_ref()
            .map(|t| (k.to_string(), render(t, labels, value)))
    })
    .collect()
}
