//! Store benchmarks: sustained ingest and range queries.
//!
//! `cargo bench -p warden-engine --bench store`
#![allow(clippy::unwrap_used)] // a benchmark, not a daemon path

use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use warden_engine::model::{Labels, MetricName, Sample, Selector, now_ms};
use warden_engine::ports::SeriesQuery;
use warden_engine::store::{Batch, Store, StoreOptions};

const SERIES: usize = 1_000;

fn samples(metric: &MetricName, labels: &[Labels], ts: i64, v: f64) -> Vec<Sample> {
    labels
        .iter()
        .map(|l| Sample::new(metric.clone(), l.clone(), v, ts))
        .collect()
}

fn series_labels() -> Vec<Labels> {
    (0..SERIES)
        .map(|i| {
            Labels::new([("instance", format!("host-{i:04}")), ("job", "node".into())]).unwrap()
        })
        .collect()
}

fn ingest(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = rt
        .block_on(async { Store::open(&StoreOptions::new(dir.path().join("bench.db"))).unwrap() });
    let metric = MetricName::new("node_cpu_seconds_total").unwrap();
    let labels = series_labels();
    // 100 cycles of 1,000 series = 100,000 samples per iteration.
    let mut g = c.benchmark_group("store");
    g.throughput(Throughput::Elements((SERIES * 100) as u64));
    g.sample_size(20);
    let mut ts = now_ms() - 86_400_000;
    g.bench_function("ingest_100k_samples", |b| {
        b.iter(|| {
            rt.block_on(async {
                let ingest = store.ingest();
                for _ in 0..100 {
                    ts += 10_000;
                    ingest
                        .send(Batch {
                            samples: samples(&metric, &labels, ts, ts as f64),
                            fresh_ms: 20_000,
                        })
                        .await;
                }
                store.flush().await.unwrap();
            })
        })
    });
    g.finish();
    rt.block_on(async {
        store.compact().await.unwrap();
        let n: u64 = store.stats().samples_ingested.get();
        let chunk_bytes: i64 = store
            .read(|c| c.query_row("SELECT coalesce(sum(length(data)), 0) FROM chunks", [], |r| r.get(0)))
            .unwrap();
        store.write(|_| Ok(())).await.unwrap();
        store.read(|c| c.execute_batch("VACUUM")).unwrap();
        let file = std::fs::metadata(dir.path().join("bench.db")).unwrap().len();
        eprintln!(
            "store: {n} samples; chunk payload {:.2} bytes/sample; file after VACUUM {:.2} bytes/sample",
            chunk_bytes as f64 / n as f64,
            file as f64 / n as f64
        );
    });
}

fn range_query(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let metric = MetricName::new("node_load1").unwrap();
    let labels = series_labels();
    let now = now_ms();
    let fill = |store: &Store| {
        rt.block_on(async {
            let ingest = store.ingest();
            for i in 0..360 {
                let ts = now - 3_600_000 + i * 10_000;
                ingest
                    .send(Batch {
                        samples: samples(&metric, &labels, ts, i as f64),
                        fresh_ms: 20_000,
                    })
                    .await;
            }
            store.flush().await.unwrap();
            store.compact().await.unwrap();
        })
    };
    let sel = Selector::metric(metric.clone());
    let mut g = c.benchmark_group("store");
    g.sample_size(20);

    let mut opts = StoreOptions::new(dir.path().join("head.db"));
    opts.head = Duration::from_secs(7_200);
    let head = rt.block_on(async { Store::open(&opts).unwrap() });
    fill(&head);
    g.bench_function("range_1h_10s_1000_series_head", |b| {
        b.iter(|| {
            let r = head.range(&sel, now - 3_600_000, now).unwrap();
            assert_eq!(r.len(), SERIES);
        })
    });

    let mut opts = StoreOptions::new(dir.path().join("disk.db"));
    opts.head = Duration::from_secs(60);
    let disk = rt.block_on(async { Store::open(&opts).unwrap() });
    fill(&disk);
    g.bench_function("range_1h_10s_1000_series_disk", |b| {
        b.iter(|| {
            let r = disk.range(&sel, now - 3_600_000, now).unwrap();
            assert_eq!(r.len(), SERIES);
            assert!(r[0].samples.len() >= 350);
        })
    });
    g.finish();
    let started = Instant::now();
    let r = disk.range(&sel, now - 3_600_000, now).unwrap();
    eprintln!(
        "one disk range query: {} series in {:?}",
        r.len(),
        started.elapsed()
    );
}

criterion_group!(benches, ingest, range_query);
criterion_main!(benches);
