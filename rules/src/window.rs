//! Window functions: per series over `[now − window, now]`, as in PromQL's
//! `*_over_time`, `rate`, `increase`, `delta`, `changes`, `predict_linear`.
//!
//! The first argument is `series(...)` (possibly under `offset(...)`) or a metric
//! name; the window is a duration string (`"5m"`). Each series with enough samples
//! in the window gives one element, labelled like the series, without the metric
//! name, stamped with the window's end.
//!
//! `rate`, `increase` and `delta` extrapolate to the window's edges exactly like
//! Prometheus' `extrapolatedRate`; for `rate` and `increase` a drop in value is a
//! counter reset. `predict_linear` is a least-squares fit evaluated at
//! `now + seconds_ahead`. `absent` and `consecutive_failures` are here too because
//! they read history.

use std::collections::HashMap;

use rhai::{Dynamic, Engine};
use warden_engine::model::{Labels, SeriesRange, Timestamp};

use crate::context::with_eval;
use crate::select::source_of;
use crate::vector::{Element, RhaiRes, Source, Vector, number_arg};

/// The samples of one series in a window, and the window's bounds (unix ms).
pub(crate) struct Window<'a> {
    pub samples: &'a [(Timestamp, f64)],
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window<'_> {
    fn values(&self) -> impl Iterator<Item = f64> + '_ {
        self.samples.iter().map(|(_, v)| *v)
    }
}

/// Mean of the window's values.
pub(crate) fn avg(w: &Window) -> Option<f64> {
    let n = w.samples.len();
    (n > 0).then(|| w.values().sum::<f64>() / n as f64)
}

/// Smallest value; NaN only when every value is NaN.
pub(crate) fn min(w: &Window) -> Option<f64> {
    w.values()
        .reduce(|m, v| if v < m || m.is_nan() { v } else { m })
}

/// Largest value; NaN only when every value is NaN.
pub(crate) fn max(w: &Window) -> Option<f64> {
    w.values()
        .reduce(|m, v| if v > m || m.is_nan() { v } else { m })
}

/// Sum of the values.
pub(crate) fn sum(w: &Window) -> Option<f64> {
    (!w.samples.is_empty()).then(|| w.values().sum())
}

/// Number of samples.
pub(crate) fn count(w: &Window) -> Option<f64> {
    (!w.samples.is_empty()).then_some(w.samples.len() as f64)
}

/// Population standard deviation, as PromQL's `stddev_over_time`.
pub(crate) fn stddev(w: &Window) -> Option<f64> {
    let mean = avg(w)?;
    let var = w.values().map(|v| (v - mean) * (v - mean)).sum::<f64>() / w.samples.len() as f64;
    Some(var.sqrt())
}

/// The newest value.
pub(crate) fn last(w: &Window) -> Option<f64> {
    w.samples.last().map(|(_, v)| *v)
}

/// How many times the value changed (NaN to NaN is no change).
pub(crate) fn changes(w: &Window) -> Option<f64> {
    let mut it = w.values();
    let mut prev = it.next()?;
    let mut n = 0u32;
    for cur in it {
        if cur != prev && !(cur.is_nan() && prev.is_nan()) {
            n += 1;
        }
        prev = cur;
    }
    Some(f64::from(n))
}

/// How many times the value dropped (counter resets).
pub(crate) fn resets(w: &Window) -> Option<f64> {
    let mut it = w.values();
    let mut prev = it.next()?;
    let mut n = 0u32;
    for cur in it {
        if cur < prev {
            n += 1;
        }
        prev = cur;
    }
    Some(f64::from(n))
}

/// The `q`-quantile (0 ≤ q ≤ 1) of the values, interpolated as PromQL does.
pub(crate) fn quantile(q: f64, w: &Window) -> Option<f64> {
    if w.samples.is_empty() {
        return None;
    }
    if q.is_nan() {
        return Some(f64::NAN);
    }
    if q < 0.0 {
        return Some(f64::NEG_INFINITY);
    }
    if q > 1.0 {
        return Some(f64::INFINITY);
    }
    let mut v: Vec<f64> = w.values().collect();
    v.sort_by(f64::total_cmp);
    let n = v.len() as f64;
    let rank = q * (n - 1.0);
    let lower = rank.floor().max(0.0);
    let upper = (lower + 1.0).min(n - 1.0);
    let weight = rank - lower;
    Some(v[lower as usize] * (1.0 - weight) + v[upper as usize] * weight)
}

/// Prometheus' `extrapolatedRate`: the change over the window, corrected for
/// counter resets (`counter`), extrapolated towards the window's edges, and per
/// second (`per_second`).
pub(crate) fn extrapolated(w: &Window, counter: bool, per_second: bool) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let (first_t, first_v) = s[0];
    let (last_t, last_v) = s[s.len() - 1];
    let mut result = last_v - first_v;
    if counter {
        let mut prev = 0.0;
        for (_, v) in s {
            if *v < prev {
                result += prev;
            }
            prev = *v;
        }
    }
    let mut to_start = (first_t - w.start) as f64 / 1000.0;
    let mut to_end = (w.end - last_t) as f64 / 1000.0;
    let sampled = (last_t - first_t) as f64 / 1000.0;
    if sampled <= 0.0 {
        return None;
    }
    let avg_step = sampled / (s.len() - 1) as f64;
    let threshold = avg_step * 1.1;
    if to_start >= threshold {
        to_start = avg_step / 2.0;
    }
    if counter && result > 0.0 && first_v >= 0.0 {
        // A counter is never negative: do not extrapolate below zero.
        let to_zero = sampled * (first_v / result);
        if to_zero < to_start {
            to_start = to_zero;
        }
    }
    if to_end >= threshold {
        to_end = avg_step / 2.0;
    }
    let mut factor = (sampled + to_start + to_end) / sampled;
    if per_second {
        factor /= (w.end - w.start) as f64 / 1000.0;
    }
    Some(result * factor)
}

/// Least-squares slope (per second) and the fitted value at `at`.
pub(crate) fn linear_regression(samples: &[(Timestamp, f64)], at: Timestamp) -> (f64, f64) {
    let first = samples[0].1;
    if samples.iter().all(|(_, v)| *v == first) {
        return if first.is_infinite() {
            (f64::NAN, f64::NAN)
        } else {
            (0.0, first)
        };
    }
    let n = samples.len() as f64;
    let (mut sx, mut sy, mut sxy, mut sx2) = (0.0, 0.0, 0.0, 0.0);
    for (t, v) in samples {
        let x = (t - at) as f64 / 1000.0;
        sx += x;
        sy += v;
        sxy += x * v;
        sx2 += x * x;
    }
    let cov = sxy - sx * sy / n;
    let var = sx2 - sx * sx / n;
    let slope = cov / var;
    (slope, sy / n - slope * sx / n)
}

/// The value the least-squares line predicts `ahead` seconds after the window's end.
pub(crate) fn predict_linear(ahead: f64, w: &Window) -> Option<f64> {
    if w.samples.len() < 2 {
        return None;
    }
    let (slope, intercept) = linear_regression(w.samples, w.end);
    Some(slope * ahead + intercept)
}

/// The least-squares slope, per second.
pub(crate) fn deriv(w: &Window) -> Option<f64> {
    if w.samples.len() < 2 {
        return None;
    }
    Some(linear_regression(w.samples, w.samples[0].0).0)
}

/// A window length argument (`"5m"`).
pub(crate) fn window_arg(f: &str, d: &Dynamic) -> RhaiRes<i64> {
    let text = d
        .clone()
        .into_immutable_string()
        .map_err(|t| format!("{f}(): the window must be a duration string like \"5m\", not {t}"))?;
    let dur = warden_engine::duration::parse(&text).map_err(|e| format!("{f}(): {e}"))?;
    let ms = i64::try_from(dur.as_millis()).unwrap_or(i64::MAX);
    if ms <= 0 {
        return Err(format!("{f}(): the window must be longer than 0").into());
    }
    Ok(ms)
}

/// The series of `src` over the `window_ms` before `now - offset`, and that end.
fn read_range(f: &str, src: &Source, window_ms: i64) -> RhaiRes<(Vec<SeriesRange>, Timestamp)> {
    let (res, end) = with_eval(f, |cx| {
        let end = cx.now - src.offset_ms;
        (cx.query.range(&src.selector, end - window_ms, end), end)
    })?;
    let ranges = res.map_err(|e| format!("{f}(): reading {}: {e}", src.selector))?;
    Ok((ranges, end))
}

/// Applies `op` to each series of `v` over `window`. `param` (the quantile, the
/// seconds ahead) is part of what the result is cached under.
fn over(
    f: &str,
    v: &Dynamic,
    window: &Dynamic,
    param: Option<f64>,
    op: impl Fn(&Window) -> Option<f64>,
) -> RhaiRes<Vector> {
    let src = source_of(f, v)?;
    let window_ms = window_arg(f, window)?;
    let key = format!("{f}({param:?}) {} {window_ms}", src.key());
    let shared = with_eval(f, |cx| {
        cx.cached(key, || {
            let (ranges, end) = read_range(f, &src, window_ms)?;
            let start = end - window_ms;
            Ok(ranges
                .into_iter()
                .filter_map(|r| {
                    let w = Window {
                        samples: &r.samples,
                        start,
                        end,
                    };
                    op(&w).map(|value| Element::new(r.labels, value, end))
                })
                .collect())
        })
    })??;
    Ok(Vector::from_shared(shared))
}

/// `absent(v, window)`: one element when nothing matched during the window.
fn absent(v: &Dynamic, window: Option<&Dynamic>) -> RhaiRes<Vector> {
    let computed = v
        .clone()
        .try_cast::<Vector>()
        .filter(|vec| vec.source().is_none());
    let (none, labels, now) = match computed {
        Some(vec) => (
            vec.elements()?.is_empty(),
            Labels::empty(),
            with_eval("absent", |cx| cx.now)?,
        ),
        None => {
            let src = source_of("absent", v)?;
            let now = with_eval("absent", |cx| cx.now)?;
            let none = match window {
                Some(w) => read_range("absent", &src, window_arg("absent", w)?)?
                    .0
                    .is_empty(),
                None => Vector::from_source(src.clone()).elements()?.is_empty(),
            };
            (none, src.selector.equality_labels(), now)
        }
    };
    let out = if none {
        vec![Element::new(labels, 1.0, now)]
    } else {
        Vec::new()
    };
    Ok(Vector::from_elements(out))
}

/// How far back `consecutive_failures` looks first, and at most.
const FAILURES_LOOKBACK_MS: [i64; 2] = [3_600_000, 86_400_000];

/// `consecutive_failures(v, n)`: the fresh series whose newest `n` samples are all 0.
fn consecutive_failures(v: &Dynamic, n: &Dynamic) -> RhaiRes<Vector> {
    const F: &str = "consecutive_failures";
    let src = source_of(F, v)?;
    let n = number_arg(F, "the count", n)?;
    if !(1.0..=10_000.0).contains(&n) {
        return Err(format!("{F}(): the count must be between 1 and 10000, not {n}").into());
    }
    let n = n as usize;
    let fresh = Vector::from_source(src.clone()).into_elements()?;
    if fresh.is_empty() {
        return Ok(Vector::from_elements(Vec::new()));
    }
    let mut out = Vec::new();
    for lookback in FAILURES_LOOKBACK_MS {
        let (ranges, _) = read_range(F, &src, lookback)?;
        let short = ranges.iter().any(|r| r.samples.len() < n);
        let by_labels: HashMap<&Labels, &[(Timestamp, f64)]> = ranges
            .iter()
            .map(|r| (&r.labels, r.samples.as_slice()))
            .collect();
        out = fresh
            .iter()
            .filter(|e| {
                by_labels.get(&e.labels).is_some_and(|s| {
                    s.len() >= n && s[s.len() - n..].iter().all(|(_, v)| *v == 0.0)
                })
            })
            .cloned()
            .collect();
        if !short {
            break;
        }
    }
    Ok(Vector::from_elements(out))
}

/// `offset(v, "1h")`: the selection as it was that long ago.
fn offset(v: &Dynamic, by: &Dynamic) -> RhaiRes<Vector> {
    let mut src = source_of("offset", v)?;
    src.offset_ms = src.offset_ms.saturating_add(window_arg("offset", by)?);
    Ok(Vector::from_source(src))
}

type WindowFn = fn(&Window) -> Option<f64>;

/// The window functions taking `(v, window)`.
const SIMPLE: [(&str, WindowFn); 14] = [
    ("avg_over", avg),
    ("min_over", min),
    ("max_over", max),
    ("sum_over", sum),
    ("count_over", count),
    ("stddev_over", stddev),
    ("last_over", last),
    ("changes", changes),
    ("resets", resets),
    ("deriv", deriv),
    ("delta", |w| extrapolated(w, false, false)),
    ("increase", |w| extrapolated(w, true, false)),
    ("rate", |w| extrapolated(w, true, true)),
    ("irate", irate),
];

/// Per-second rate between the last two samples (counter-aware), as PromQL's `irate`.
fn irate(w: &Window) -> Option<f64> {
    let s = w.samples;
    if s.len() < 2 {
        return None;
    }
    let (t1, v1) = s[s.len() - 2];
    let (t2, v2) = s[s.len() - 1];
    let dt = (t2 - t1) as f64 / 1000.0;
    if dt <= 0.0 {
        return None;
    }
    let delta = if v2 < v1 { v2 } else { v2 - v1 };
    Some(delta / dt)
}

/// Registers the window functions.
pub(crate) fn register(engine: &mut Engine) {
    for (name, op) in SIMPLE {
        engine.register_fn(name, move |v: Dynamic, w: Dynamic| {
            over(name, &v, &w, None, op)
        });
    }
    engine
        .register_fn("quantile_over", |v: Dynamic, q: Dynamic, w: Dynamic| {
            let q = number_arg("quantile_over", "the quantile", &q)?;
            over("quantile_over", &v, &w, Some(q), |win| quantile(q, win))
        })
        .register_fn(
            "predict_linear",
            |v: Dynamic, w: Dynamic, ahead: Dynamic| {
                let ahead = number_arg("predict_linear", "seconds_ahead", &ahead)?;
                over("predict_linear", &v, &w, Some(ahead), |win| {
                    predict_linear(ahead, win)
                })
            },
        )
        .register_fn("absent", |v: Dynamic| absent(&v, None))
        .register_fn("absent", |v: Dynamic, w: Dynamic| absent(&v, Some(&w)))
        .register_fn("offset", |v: Dynamic, by: Dynamic| offset(&v, &by))
        .register_fn("consecutive_failures", |v: Dynamic, n: Dynamic| {
            consecutive_failures(&v, &n)
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(samples: &[(i64, f64)], start: i64, end: i64) -> Window<'_> {
        Window {
            samples,
            start,
            end,
        }
    }

    #[test]
    fn rate_matches_prometheus_extrapolation() {
        // Samples every 10s from t=5s to t=55s in the window [0, 60s]; a counter
        // going up by 10 per sample: 10..60.
        let s: Vec<(i64, f64)> = (0..6)
            .map(|i| (5_000 + i * 10_000, 10.0 + 10.0 * i as f64))
            .collect();
        let w = win(&s, 0, 60_000);
        // result 50 over 50s sampled; to_start 5s < 11s threshold, but to_zero =
        // 50 * 10/50 = 10s is not shorter; to_end 5s. (50+5+5)/50 = 1.2 → 60.
        assert!((extrapolated(&w, true, false).unwrap() - 60.0).abs() < 1e-9);
        assert!((extrapolated(&w, true, true).unwrap() - 1.0).abs() < 1e-9);
    }

    #[test]
    fn quantiles_interpolate() {
        let s = [(0, 1.0), (1, 2.0), (2, 3.0), (3, 4.0)];
        let w = win(&s, 0, 3);
        assert_eq!(quantile(0.5, &w), Some(2.5));
        assert_eq!(quantile(0.0, &w), Some(1.0));
        assert_eq!(quantile(1.0, &w), Some(4.0));
        assert_eq!(quantile(2.0, &w), Some(f64::INFINITY));
    }

    #[test]
    fn min_max_skip_nan() {
        let s = [(0, f64::NAN), (1, 2.0), (2, 1.0)];
        let w = win(&s, 0, 3);
        assert_eq!(min(&w), Some(1.0));
        assert_eq!(max(&w), Some(2.0));
        let all_nan = [(0, f64::NAN)];
        assert!(min(&win(&all_nan, 0, 1)).unwrap().is_nan());
    }

    #[test]
    fn regression_is_exact_on_a_line() {
        let s: Vec<(i64, f64)> = (0..5).map(|i| (i * 1000, 100.0 - 2.0 * i as f64)).collect();
        let (slope, at_end) = linear_regression(&s, 4000);
        assert!((slope + 2.0).abs() < 1e-9);
        assert!((at_end - 92.0).abs() < 1e-9);
    }
}
