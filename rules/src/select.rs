//! Selecting series: `series(name)`, `series(name, #{label: matcher})` and the
//! matcher helpers `re("a|b")`, `ne("x")`, `nre("x")`.
//!
//! A matcher value is a string (equality), one of the helpers, or a number or bool
//! (compared as its text). Regexes are anchored, as in PromQL, and compiled once
//! per (label, op, pattern) and cached.

use std::collections::HashMap;
use std::sync::Mutex;

use rhai::{Dynamic, Engine, Map};
use warden_engine::model::{MatchOp, Matcher, MetricName, Selector};

use crate::context::with_eval;
use crate::vector::{RhaiRes, Source, Vector, is_label_name};

/// A label matcher written with `re()`, `ne()` or `nre()`.
#[derive(Debug, Clone)]
pub(crate) struct LabelMatch {
    op: MatchOp,
    value: String,
}

/// Compiled matchers, so a regex in a rule is compiled once, not every evaluation.
#[derive(Default)]
pub(crate) struct MatcherCache(Mutex<HashMap<(String, String, u8), Matcher>>);

/// More entries than any sane rule set needs; past it the cache starts over.
const MATCHER_CACHE_MAX: usize = 4096;

impl MatcherCache {
    fn get(&self, name: &str, op: MatchOp, value: &str) -> RhaiRes<Matcher> {
        if op == MatchOp::Eq || op == MatchOp::Ne {
            return Matcher::new(name, op, value).map_err(|e| e.to_string().into());
        }
        let key = (name.to_string(), value.to_string(), op as u8);
        // A poisoned cache only loses compiled regexes: recover the map.
        let mut cache = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = cache.get(&key) {
            return Ok(m.clone());
        }
        let m = Matcher::new(name, op, value).map_err(|e| e.to_string())?;
        if cache.len() >= MATCHER_CACHE_MAX {
            cache.clear();
        }
        cache.insert(key, m.clone());
        Ok(m)
    }
}

/// The metric name `f` was given, validated.
pub(crate) fn metric_name(f: &str, name: &str) -> RhaiRes<MetricName> {
    MetricName::new(name).map_err(|e| format!("{f}(): {e}").into())
}

/// Builds the selector of `series(name, matchers)`.
fn selector(cache: &MatcherCache, name: &str, matchers: &Map, max_map: usize) -> RhaiRes<Selector> {
    if matchers.len() > max_map {
        return Err(format!(
            "series(): {} label matchers; the limit is {max_map}",
            matchers.len()
        )
        .into());
    }
    let mut sel = Selector::metric(metric_name("series", name)?);
    for (label, value) in matchers {
        if !is_label_name(label) {
            return Err(format!(
                "series(): invalid label name '{label}': use letters, digits and '_', not starting with a digit"
            )
            .into());
        }
        let m = if value.is::<LabelMatch>() {
            let lm = value.clone().cast::<LabelMatch>();
            cache.get(label, lm.op, &lm.value)?
        } else if value.is_string() || value.is_int() || value.is_float() || value.is_bool() {
            Matcher::eq(label.as_str(), value.to_string())
        } else {
            return Err(format!(
                "series(): the matcher for '{label}' must be a string or re(\"…\"), ne(\"…\"), nre(\"…\"), not {}",
                value.type_name()
            )
            .into());
        };
        sel = sel.with(m);
    }
    Ok(sel)
}

/// A lazily read vector for `sel`, noting the metric as read.
fn select(sel: Selector) -> RhaiRes<Vector> {
    with_eval("series", |cx| cx.touch(&sel.metric))?;
    Ok(Vector::from_source(Source {
        selector: sel,
        offset_ms: 0,
    }))
}

/// The source of a window function's first argument: a vector straight from
/// `series()` (or `offset()`), or a metric name.
pub(crate) fn source_of(f: &str, v: &Dynamic) -> RhaiRes<Source> {
    if v.is_string() {
        let name = v.clone().into_immutable_string()?;
        let metric = metric_name(f, &name)?;
        with_eval(f, |cx| cx.touch(&metric))?;
        return Ok(Source {
            selector: Selector::metric(metric),
            offset_ms: 0,
        });
    }
    if let Some(vec) = v.clone().try_cast::<Vector>() {
        return match vec.source() {
            Some(src) => Ok(src.clone()),
            None => Err(format!(
                "{f}() needs the series' history, so give it series(...) or a metric name directly; this vector was computed (filter or combine after {f}() instead)"
            )
            .into()),
        };
    }
    Err(format!(
        "{f}(): the first argument must be series(...) or a metric name, not {}",
        v.type_name()
    )
    .into())
}

/// Registers `series`, `re`, `ne` and `nre`.
pub(crate) fn register(engine: &mut Engine, max_map: usize) {
    let cache = MatcherCache::default();
    engine.register_type_with_name::<LabelMatch>("LabelMatcher");
    engine
        .register_fn("series", |name: &str| -> RhaiRes<Vector> {
            select(Selector::metric(metric_name("series", name)?))
        })
        .register_fn("series", move |name: &str, m: Map| -> RhaiRes<Vector> {
            select(selector(&cache, name, &m, max_map)?)
        });
    for (f, op) in [
        ("re", MatchOp::Re),
        ("ne", MatchOp::Ne),
        ("nre", MatchOp::Nre),
    ] {
        engine.register_fn(f, move |value: &str| LabelMatch {
            op,
            value: value.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regex_matchers_are_cached_and_validated() {
        let cache = MatcherCache::default();
        let a = cache.get("job", MatchOp::Re, "api|web").unwrap();
        let b = cache.get("job", MatchOp::Re, "api|web").unwrap();
        assert_eq!(a, b);
        assert_eq!(cache.0.lock().unwrap().len(), 1);
        assert!(cache.get("job", MatchOp::Re, "(").is_err());
    }
}
