//! The writer thread: the only code that writes samples.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, params};
use tokio::sync::mpsc;

use super::chunk::{self, get_varint, put_varint, unzigzag, zigzag};
use super::{Batch, Command, SeriesId, SeriesSet, Shared};
use crate::model::{Labels, MetricName, Timestamp, now_ms};

/// Most batches folded into one transaction.
const MAX_BATCHES_PER_TX: usize = 256;

/// Loads series, the recent chunks and every uncompacted batch into `head`.
/// Returns the next free series id.
pub(super) fn load_head(
    conn: &Connection,
    head: &mut SeriesSet,
    head_from: Timestamp,
) -> rusqlite::Result<SeriesId> {
    let mut next = 1;
    {
        let mut st = conn.prepare("SELECT id, metric, labels, fresh_ms FROM series")?;
        let rows = st.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            let (id, metric, labels, fresh) = row?;
            let (Ok(name), Ok(labels)) = (
                MetricName::new(metric),
                serde_json::from_str::<Labels>(&labels),
            ) else {
                tracing::warn!(
                    series = id,
                    "skipping a stored series with an invalid name or labels"
                );
                continue;
            };
            head.register(id as SeriesId, name, labels, fresh);
            next = next.max(id as SeriesId + 1);
        }
    }
    {
        let mut st =
            conn.prepare("SELECT series_id, data FROM chunks WHERE end_ts >= ?1 ORDER BY id")?;
        let rows = st.query_map([head_from], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (id, data) = row?;
            let Some(samples) = chunk::decode(&data) else {
                tracing::warn!(series = id, "skipping a corrupt chunk");
                continue;
            };
            for (ts, v) in samples.into_iter().filter(|(t, _)| *t >= head_from) {
                head.append(id as SeriesId, ts, v);
            }
        }
        for s in head.series.values_mut() {
            s.persisted = s.samples.len();
        }
    }
    {
        let mut st = conn.prepare("SELECT data FROM batches ORDER BY id")?;
        let rows = st.query_map([], |r| r.get::<_, Vec<u8>>(0))?;
        for row in rows {
            let data = row?;
            match decode_batch(&data) {
                Some(samples) => {
                    for (id, ts, v) in samples {
                        head.append(id, ts, v);
                    }
                }
                None => tracing::warn!("skipping a corrupt batch row"),
            }
        }
    }
    Ok(next)
}

/// Above this many series, one scan of the time range beats a query per series.
const SCAN_THRESHOLD: usize = 32;

/// Reads the chunk samples of `ids` overlapping `[start, end]`.
pub(super) fn read_chunks_of(
    conn: &Connection,
    ids: &[SeriesId],
    start: Timestamp,
    end: Timestamp,
) -> rusqlite::Result<HashMap<SeriesId, Vec<(Timestamp, f64)>>> {
    let mut runs: HashMap<SeriesId, Vec<Vec<u8>>> = HashMap::new();
    if ids.len() > SCAN_THRESHOLD {
        let wanted: std::collections::HashSet<SeriesId> = ids.iter().copied().collect();
        let mut st = conn.prepare_cached(
            "SELECT series_id, data FROM chunks WHERE end_ts >= ?1 AND start_ts <= ?2 ORDER BY start_ts, id",
        )?;
        let rows = st.query_map(params![start, end], |r| {
            Ok((r.get::<_, i64>(0)? as SeriesId, r.get::<_, Vec<u8>>(1)?))
        })?;
        for row in rows {
            let (id, data) = row?;
            if wanted.contains(&id) {
                runs.entry(id).or_default().push(data);
            }
        }
    } else {
        let mut st = conn.prepare_cached(
            "SELECT data FROM chunks WHERE series_id = ?1 AND end_ts >= ?2 AND start_ts <= ?3 ORDER BY start_ts, id",
        )?;
        for &id in ids {
            let rows = st.query_map(params![id as i64, start, end], |r| r.get::<_, Vec<u8>>(0))?;
            for row in rows {
                runs.entry(id).or_default().push(row?);
            }
        }
    }
    Ok(runs
        .into_iter()
        .map(|(id, chunks)| {
            let mut out: Vec<(Timestamp, f64)> = Vec::new();
            for data in chunks {
                let Some(samples) = chunk::decode(&data) else {
                    continue;
                };
                let run: Vec<_> = samples
                    .into_iter()
                    .filter(|(t, _)| *t >= start && *t <= end)
                    .collect();
                out = if out
                    .last()
                    .is_none_or(|l| run.first().is_none_or(|f| f.0 > l.0))
                {
                    out.extend(run);
                    out
                } else {
                    super::merge(out, run)
                };
            }
            (id, out)
        })
        .collect())
}

fn encode_batch(rows: &[(SeriesId, Timestamp, f64)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(rows.len() * 12 + 8);
    let base = rows.first().map(|r| r.1).unwrap_or(0);
    put_varint(&mut out, zigzag(base));
    put_varint(&mut out, rows.len() as u64);
    for &(id, ts, v) in rows {
        put_varint(&mut out, id);
        put_varint(&mut out, zigzag(ts.wrapping_sub(base)));
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

fn decode_batch(data: &[u8]) -> Option<Vec<(SeriesId, Timestamp, f64)>> {
    let mut pos = 0;
    let base = unzigzag(get_varint(data, &mut pos)?);
    let n = get_varint(data, &mut pos)? as usize;
    if n > data.len() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let id = get_varint(data, &mut pos)?;
        let ts = base.wrapping_add(unzigzag(get_varint(data, &mut pos)?));
        let bytes: [u8; 8] = data.get(pos..pos + 8)?.try_into().ok()?;
        pos += 8;
        out.push((id, ts, f64::from_le_bytes(bytes)));
    }
    Some(out)
}

struct Writer {
    conn: Connection,
    shared: Arc<Shared>,
    next_id: SeriesId,
}

pub(super) fn spawn(
    conn: Connection,
    shared: Arc<Shared>,
    batches: mpsc::Receiver<Batch>,
    commands: mpsc::Receiver<Command>,
    next_id: SeriesId,
    compact_every: Duration,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("warden-store".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    tracing::error!(error = %e, "store writer could not start");
                    return;
                }
            };
            let mut w = Writer {
                conn,
                shared,
                next_id,
            };
            rt.block_on(w.run(batches, commands, compact_every));
            w.compact();
        })
}

impl Writer {
    async fn run(
        &mut self,
        mut batches: mpsc::Receiver<Batch>,
        mut commands: mpsc::Receiver<Command>,
        compact_every: Duration,
    ) {
        let mut tick = tokio::time::interval(compact_every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let (mut batches_open, mut commands_open) = (true, true);
        while batches_open || commands_open {
            tokio::select! {
                biased;
                b = batches.recv(), if batches_open => match b {
                    Some(b) => {
                        let mut all = vec![b];
                        while all.len() < MAX_BATCHES_PER_TX {
                            match batches.try_recv() {
                                Ok(b) => all.push(b),
                                Err(_) => break,
                            }
                        }
                        self.ingest(all);
                    }
                    None => batches_open = false,
                },
                c = commands.recv(), if commands_open => match c {
                    Some(Command::Exec(job)) => job(&mut self.conn),
                    Some(Command::Flush(done)) => {
                        let mut all = Vec::new();
                        while let Ok(b) = batches.try_recv() {
                            all.push(b);
                        }
                        if !all.is_empty() {
                            self.ingest(all);
                        }
                        let _ = done.send(());
                    }
                    Some(Command::Compact(done)) => {
                        self.compact();
                        let _ = done.send(());
                    }
                    None => {
                        commands_open = false;
                        // The store handle is gone: stop even if producers linger.
                        batches.close();
                    }
                },
                _ = tick.tick() => {
                    self.compact();
                    self.enforce_retention();
                }
            }
        }
    }

    /// Appends batches to the head, announces them, then writes them durably.
    fn ingest(&mut self, batches: Vec<Batch>) {
        let mut rows: Vec<(SeriesId, Timestamp, f64)> = Vec::new();
        let mut new_series: Vec<(SeriesId, MetricName, Labels, i64)> = Vec::new();
        let mut fresh_changed: Vec<(SeriesId, i64)> = Vec::new();
        let mut names: Vec<MetricName> = Vec::new();
        {
            let Ok(mut head) = self.shared.head.write() else {
                tracing::error!("head lock poisoned; dropping a batch");
                return;
            };
            for batch in &batches {
                for s in &batch.samples {
                    let id = match head.id_of(&s.name, &s.labels) {
                        Some(id) => {
                            if head
                                .series
                                .get(&id)
                                .is_some_and(|m| m.fresh_ms != batch.fresh_ms)
                            {
                                head.set_fresh(id, batch.fresh_ms);
                                fresh_changed.push((id, batch.fresh_ms));
                            }
                            id
                        }
                        None => {
                            let id = self.next_id;
                            self.next_id += 1;
                            head.register(id, s.name.clone(), s.labels.clone(), batch.fresh_ms);
                            new_series.push((id, s.name.clone(), s.labels.clone(), batch.fresh_ms));
                            id
                        }
                    };
                    head.append(id, s.ts, s.value);
                    rows.push((id, s.ts, s.value));
                    if !names.contains(&s.name) {
                        names.push(s.name.clone());
                    }
                }
            }
        }
        self.shared.stats.samples_ingested.inc_by(rows.len() as u64);
        if !names.is_empty() {
            let _ = self.shared.updates.send(Arc::new(names));
        }
        let started = Instant::now();
        let res = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            {
                let mut ins = tx.prepare_cached(
                    "INSERT INTO series (id, metric, labels, fresh_ms) VALUES (?1, ?2, ?3, ?4)",
                )?;
                for (id, name, labels, fresh) in &new_series {
                    let labels = serde_json::to_string(labels).unwrap_or_else(|_| "{}".into());
                    ins.execute(params![*id as i64, name.as_str(), labels, fresh])?;
                }
                let mut upd = tx.prepare_cached("UPDATE series SET fresh_ms = ?2 WHERE id = ?1")?;
                for (id, fresh) in &fresh_changed {
                    upd.execute(params![*id as i64, fresh])?;
                }
            }
            if !rows.is_empty() {
                tx.prepare_cached("INSERT INTO batches (data) VALUES (?1)")?
                    .execute([encode_batch(&rows)])?;
            }
            tx.commit()
        })();
        let stats = &self.shared.stats;
        stats.write_seconds.observe(started.elapsed().as_secs_f64());
        if let Err(e) = res {
            stats.write_errors.inc();
            tracing::error!(error = %e, samples = rows.len(), "store write failed; samples kept in memory only");
        }
    }

    /// Folds everything not yet in a chunk into one chunk per series, deletes the
    /// batch rows that are now covered, and trims the head.
    pub(super) fn compact(&mut self) {
        let last_batch: i64 =
            match self
                .conn
                .query_row("SELECT coalesce(max(id), 0) FROM batches", [], |r| r.get(0))
            {
                Ok(v) => v,
                Err(e) => {
                    tracing::error!(error = %e, "compaction: cannot read batches");
                    return;
                }
            };
        let mut runs: Vec<(SeriesId, Vec<(Timestamp, f64)>)> = Vec::new();
        {
            let Ok(head) = self.shared.head.read() else {
                return;
            };
            for (id, s) in &head.series {
                if s.persisted < s.samples.len() {
                    runs.push((*id, s.samples.range(s.persisted..).copied().collect()));
                }
            }
        }
        let res = (|| -> rusqlite::Result<()> {
            let tx = self.conn.transaction()?;
            {
                let mut ins = tx.prepare_cached("INSERT INTO chunks (series_id, start_ts, end_ts, data) VALUES (?1, ?2, ?3, ?4)")?;
                let mut last = tx
                    .prepare_cached("UPDATE series SET last_ts = max(last_ts, ?2) WHERE id = ?1")?;
                for (id, run) in &runs {
                    let (Some(first), Some(end)) = (run.first(), run.last()) else {
                        continue;
                    };
                    ins.execute(params![*id as i64, first.0, end.0, chunk::encode(run)])?;
                    last.execute(params![*id as i64, end.0])?;
                }
            }
            tx.execute("DELETE FROM batches WHERE id <= ?1", [last_batch])?;
            tx.commit()
        })();
        match res {
            Ok(()) => {
                let Ok(mut head) = self.shared.head.write() else {
                    return;
                };
                let counts: HashMap<SeriesId, usize> =
                    runs.iter().map(|(id, r)| (*id, r.len())).collect();
                for (id, s) in head.series.iter_mut() {
                    if let Some(n) = counts.get(id) {
                        s.persisted = (s.persisted + n).min(s.samples.len());
                    }
                }
                head.trim(now_ms() - self.shared.head_ms);
            }
            Err(e) => tracing::error!(error = %e, "compaction failed; will retry"),
        }
    }

    fn enforce_retention(&mut self) {
        let cutoff = now_ms() - self.shared.retention_ms;
        let res = self.conn.execute("DELETE FROM chunks WHERE end_ts < ?1", [cutoff]).and_then(|_| {
            self.conn.execute(
                "DELETE FROM series WHERE last_ts < ?1 AND last_ts > 0 AND id NOT IN (SELECT series_id FROM chunks)",
                [cutoff],
            )
        });
        if let Err(e) = res {
            tracing::error!(error = %e, "retention pass failed; will retry");
        }
        let _ = self
            .conn
            .execute("DELETE FROM alert_history WHERE at < ?1", [cutoff]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trip() {
        let rows = vec![(1, 1_000, 1.5), (2, 999, f64::NAN), (300, 5_000, -2.0)];
        let d = decode_batch(&encode_batch(&rows)).unwrap();
        assert_eq!(d[0], rows[0]);
        assert!(d[1].2.is_nan());
        assert_eq!(d[2], rows[2]);
        assert!(decode_batch(&[0, 9, 1]).is_none());
    }
}
