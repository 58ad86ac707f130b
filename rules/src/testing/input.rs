//! The input series of one rule test as a [`SeriesQuery`]: the same reads the
//! daemon's store answers, over samples held in memory.
//!
//! Freshness works as in the store: `latest` leaves out a series whose newest
//! sample at or before the query time is older than the test's freshness window
//! (twice the input interval by default, as for a collector sampling at that
//! interval). A staleness marker (`stale`) ends a series at once: `latest` sees
//! nothing until the series' next sample, and `range` skips the marker.

use std::collections::HashMap;

use warden_engine::model::{Labels, MetricName, Selector, SeriesPoint, SeriesRange, Timestamp};
use warden_engine::ports::{QueryError, SeriesQuery};

use super::notation::Step;

/// One input series.
#[derive(Debug)]
struct Series {
    name: MetricName,
    labels: Labels,
    /// `(ts, value)` in time order; `None` is a staleness marker.
    points: Vec<(Timestamp, Option<f64>)>,
}

/// Input series in memory.
#[derive(Debug, Default)]
pub struct InputSeries {
    by_name: HashMap<MetricName, Vec<Series>>,
    fresh_ms: i64,
}

impl InputSeries {
    /// An empty set whose series are fresh for `fresh_ms` after each sample.
    pub fn new(fresh_ms: i64) -> Self {
        Self {
            by_name: HashMap::new(),
            fresh_ms,
        }
    }

    /// Adds a series sampled every `interval_ms` from time 0. Returns false when a
    /// series with the same name and labels is already there.
    pub fn add(
        &mut self,
        name: MetricName,
        labels: Labels,
        steps: &[Step],
        interval_ms: i64,
    ) -> bool {
        let list = self.by_name.entry(name.clone()).or_default();
        if list.iter().any(|s| s.labels == labels) {
            return false;
        }
        let points = steps
            .iter()
            .enumerate()
            .filter_map(|(i, s)| {
                let ts = i as i64 * interval_ms;
                match s {
                    Step::Value(v) => Some((ts, Some(*v))),
                    Step::Stale => Some((ts, None)),
                    Step::Missing => None,
                }
            })
            .collect();
        list.push(Series {
            name,
            labels,
            points,
        });
        true
    }

    fn select<'a>(&'a self, sel: &'a Selector) -> impl Iterator<Item = &'a Series> + 'a {
        self.by_name
            .get(&sel.metric)
            .into_iter()
            .flatten()
            .filter(|s| sel.matches(&s.labels))
    }
}

impl SeriesQuery for InputSeries {
    fn latest(&self, sel: &Selector, at: Timestamp) -> Result<Vec<SeriesPoint>, QueryError> {
        Ok(self
            .select(sel)
            .filter_map(|s| {
                let i = s.points.partition_point(|(t, _)| *t <= at);
                let (ts, value) = *s.points.get(i.checked_sub(1)?)?;
                let value = value?;
                (at - ts <= self.fresh_ms).then(|| SeriesPoint {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    value,
                    ts,
                })
            })
            .collect())
    }

    fn range(
        &self,
        sel: &Selector,
        start: Timestamp,
        end: Timestamp,
    ) -> Result<Vec<SeriesRange>, QueryError> {
        Ok(self
            .select(sel)
            .filter_map(|s| {
                let samples: Vec<(Timestamp, f64)> = s
                    .points
                    .iter()
                    .filter(|(t, _)| (start..=end).contains(t))
                    .filter_map(|(t, v)| v.map(|v| (*t, v)))
                    .collect();
                (!samples.is_empty()).then(|| SeriesRange {
                    name: s.name.clone(),
                    labels: s.labels.clone(),
                    samples,
                })
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::notation::expand_values;

    #[test]
    fn freshness_staleness_and_ranges() {
        let mut input = InputSeries::new(120_000);
        let name = MetricName::new("up").unwrap();
        let a = Labels::new([("instance", "a")]).unwrap();
        let steps = expand_values("1 _ _ _ 0 stale 1").unwrap();
        assert!(input.add(name.clone(), a.clone(), &steps, 60_000));
        assert!(!input.add(name.clone(), a, &steps, 60_000));
        let sel = Selector::metric(name);
        let at = |m: i64| {
            input
                .latest(&sel, m * 60_000)
                .unwrap()
                .first()
                .map(|p| p.value)
        };
        assert_eq!(at(0), Some(1.0));
        assert_eq!(at(2), Some(1.0), "2 minutes old is still fresh");
        assert_eq!(at(3), None, "3 minutes old is stale");
        assert_eq!(at(4), Some(0.0));
        assert_eq!(at(5), None, "a staleness marker ends the series");
        assert_eq!(at(6), Some(1.0));
        let r = input.range(&sel, 0, 6 * 60_000).unwrap();
        assert_eq!(r[0].samples, vec![(0, 1.0), (240_000, 0.0), (360_000, 1.0)]);
        assert!(input.range(&sel, 60_000, 180_000).unwrap().is_empty());
    }
}
