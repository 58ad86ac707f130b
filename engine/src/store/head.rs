//! [`SeriesSet`]: series held in memory, indexed by metric name.
//!
//! It is the store's head (the recent window every rule reads, so evaluation never
//! touches disk for it) and, on its own, the series source of rule unit tests.

use std::collections::{HashMap, VecDeque};

use crate::model::{Labels, MetricName, Sample, Selector, SeriesPoint, SeriesRange, Timestamp};
use crate::ports::{QueryError, SeriesQuery};

/// Freshness of series that nobody set one for: Prometheus' 5 minute lookback.
pub const DEFAULT_FRESH_MS: i64 = 5 * 60 * 1000;

/// A series id: the store's interned id, or a counter for a standalone set.
pub type SeriesId = u64;

#[derive(Debug)]
pub(crate) struct MemSeries {
    pub(crate) name: MetricName,
    pub(crate) labels: Labels,
    /// A sample older than this (ms) at query time is stale.
    pub(crate) fresh_ms: i64,
    /// `(ts, value)` in time order.
    pub(crate) samples: VecDeque<(Timestamp, f64)>,
    /// How many of the oldest samples are already in a chunk on disk.
    pub(crate) persisted: usize,
}

/// Series in memory, indexed by metric name then label set.
#[derive(Debug, Default)]
pub struct SeriesSet {
    index: HashMap<MetricName, HashMap<Labels, SeriesId>>,
    pub(crate) series: HashMap<SeriesId, MemSeries>,
    next_id: SeriesId,
}

impl SeriesSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The id of a series if it is known.
    pub fn id_of(&self, name: &MetricName, labels: &Labels) -> Option<SeriesId> {
        self.index.get(name).and_then(|m| m.get(labels)).copied()
    }

    /// Registers a series under a given id (the store's interned id).
    pub fn register(&mut self, id: SeriesId, name: MetricName, labels: Labels, fresh_ms: i64) {
        self.index
            .entry(name.clone())
            .or_default()
            .insert(labels.clone(), id);
        self.series.entry(id).or_insert(MemSeries {
            name,
            labels,
            fresh_ms,
            samples: VecDeque::new(),
            persisted: 0,
        });
        self.next_id = self.next_id.max(id + 1);
    }

    /// Updates how long a series stays fresh (its collector's interval may change).
    pub fn set_fresh(&mut self, id: SeriesId, fresh_ms: i64) {
        if let Some(s) = self.series.get_mut(&id) {
            s.fresh_ms = fresh_ms;
        }
    }

    /// Appends a sample to a registered series, keeping time order. A sample with
    /// the timestamp of one already held replaces it.
    pub fn append(&mut self, id: SeriesId, ts: Timestamp, value: f64) {
        let Some(s) = self.series.get_mut(&id) else {
            return;
        };
        match s.samples.back() {
            None => s.samples.push_back((ts, value)),
            Some(&(last, _)) if ts > last => s.samples.push_back((ts, value)),
            _ => match s.samples.binary_search_by(|(t, _)| t.cmp(&ts)) {
                Ok(i) => s.samples[i].1 = value,
                Err(i) => {
                    s.samples.insert(i, (ts, value));
                    if i < s.persisted {
                        // Inserted into the persisted prefix: re-persist from here.
                        s.persisted = i;
                    }
                }
            },
        }
    }

    /// Adds a sample, registering its series with `fresh_ms` when new (standalone use).
    pub fn push(&mut self, sample: &Sample, fresh_ms: i64) -> SeriesId {
        let id = match self.id_of(&sample.name, &sample.labels) {
            Some(id) => id,
            None => {
                let id = self.next_id;
                self.register(id, sample.name.clone(), sample.labels.clone(), fresh_ms);
                id
            }
        };
        self.append(id, sample.ts, sample.value);
        id
    }

    /// Drops samples older than `before` that are already persisted.
    pub fn trim(&mut self, before: Timestamp) {
        for s in self.series.values_mut() {
            while s.persisted > 0 && s.samples.front().is_some_and(|(t, _)| *t < before) {
                s.samples.pop_front();
                s.persisted -= 1;
            }
        }
    }

    /// Drops every sample older than `before`, persisted or not (standalone use).
    pub fn forget_before(&mut self, before: Timestamp) {
        for s in self.series.values_mut() {
            while s.samples.front().is_some_and(|(t, _)| *t < before) {
                s.samples.pop_front();
                s.persisted = s.persisted.saturating_sub(1);
            }
        }
    }

    /// Number of series.
    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    /// Number of samples held.
    pub fn sample_count(&self) -> usize {
        self.series.values().map(|s| s.samples.len()).sum()
    }

    /// Ids of the series `sel` selects.
    pub fn select(&self, sel: &Selector) -> Vec<SeriesId> {
        let Some(by_labels) = self.index.get(&sel.metric) else {
            return Vec::new();
        };
        let mut ids: Vec<SeriesId> = by_labels
            .iter()
            .filter(|(l, _)| sel.matches(l))
            .map(|(_, id)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    /// The name and labels of a series.
    pub fn describe(&self, id: SeriesId) -> Option<(&MetricName, &Labels)> {
        self.series.get(&id).map(|s| (&s.name, &s.labels))
    }

    /// The samples of series `id` in `[start, end]`.
    pub fn samples_in(
        &self,
        id: SeriesId,
        start: Timestamp,
        end: Timestamp,
    ) -> Vec<(Timestamp, f64)> {
        let Some(s) = self.series.get(&id) else {
            return Vec::new();
        };
        let from = s.samples.partition_point(|(t, _)| *t < start);
        s.samples
            .range(from..)
            .take_while(|(t, _)| *t <= end)
            .copied()
            .collect()
    }

    /// The oldest timestamp held for series `id`.
    pub fn oldest(&self, id: SeriesId) -> Option<Timestamp> {
        self.series
            .get(&id)
            .and_then(|s| s.samples.front().map(|(t, _)| *t))
    }

    fn latest_of(&self, id: SeriesId, at: Timestamp) -> Option<SeriesPoint> {
        let s = self.series.get(&id)?;
        let i = s.samples.partition_point(|(t, _)| *t <= at);
        let (ts, value) = *s.samples.get(i.checked_sub(1)?)?;
        if at - ts > s.fresh_ms {
            return None;
        }
        Some(SeriesPoint {
            name: s.name.clone(),
            labels: s.labels.clone(),
            value,
            ts,
        })
    }
}

impl SeriesQuery for SeriesSet {
    fn latest(&self, sel: &Selector, at: Timestamp) -> Result<Vec<SeriesPoint>, QueryError> {
        Ok(self
            .select(sel)
            .into_iter()
            .filter_map(|id| self.latest_of(id, at))
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
            .into_iter()
            .filter_map(|id| {
                let samples = self.samples_in(id, start, end);
                let s = self.series.get(&id)?;
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
    use crate::model::Matcher;

    fn sample(name: &str, labels: &[(&str, &str)], v: f64, ts: i64) -> Sample {
        Sample::new(
            MetricName::new(name).unwrap(),
            Labels::new(labels.iter().copied()).unwrap(),
            v,
            ts,
        )
    }

    #[test]
    fn latest_respects_freshness_and_time() {
        let mut set = SeriesSet::new();
        set.push(&sample("up", &[("instance", "a")], 1.0, 1_000), 10_000);
        set.push(&sample("up", &[("instance", "a")], 0.0, 5_000), 10_000);
        set.push(&sample("up", &[("instance", "b")], 1.0, 1_000), 10_000);
        let sel = Selector::metric(MetricName::new("up").unwrap());
        let at5 = set.latest(&sel, 5_000).unwrap();
        assert_eq!(at5.len(), 2);
        let at12 = set.latest(&sel, 12_000).unwrap();
        assert_eq!(at12.len(), 1, "b is stale at 12s");
        assert_eq!(at12[0].value, 0.0);
        let at3 = set
            .latest(&sel.clone().with(Matcher::eq("instance", "a")), 3_000)
            .unwrap();
        assert_eq!(at3[0].value, 1.0, "as of 3s the newest is the 1s sample");
    }

    #[test]
    fn out_of_order_samples_are_placed_in_order() {
        let mut set = SeriesSet::new();
        let id = set.push(&sample("x", &[], 3.0, 3_000), DEFAULT_FRESH_MS);
        set.append(id, 1_000, 1.0);
        set.append(id, 2_000, 2.0);
        set.append(id, 2_000, 2.5);
        assert_eq!(
            set.samples_in(id, 0, 10_000),
            vec![(1_000, 1.0), (2_000, 2.5), (3_000, 3.0)]
        );
        assert_eq!(set.samples_in(id, 1_500, 2_500), vec![(2_000, 2.5)]);
    }
}
