//! Parsing a real node_exporter payload (57.7 KB, 507 samples): warden's parser
//! beside prometheus-parse (the baseline it replaces) and openmetrics-parser.
//!
//! `cargo bench -p warden-collector --bench parse`; criterion prints time per
//! payload and the throughput in bytes/s; samples/s is 507 / time.
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a failed step should fail loudly

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use warden_collector::scrape::parse::{Format, parse};

const NODE: &str = include_str!("../tests/data/node_exporter-1.5.prom");

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("node_exporter_payload");
    g.throughput(Throughput::Bytes(NODE.len() as u64));
    g.bench_function("warden", |b| {
        b.iter(|| {
            let e = parse(black_box(NODE.as_bytes()), Format::Prometheus);
            assert_eq!(e.samples.len(), 507);
            e.samples.len()
        })
    });
    g.bench_function("prometheus-parse", |b| {
        b.iter(|| {
            let s =
                prometheus_parse::Scrape::parse(black_box(NODE).lines().map(|l| Ok(l.to_string())))
                    .unwrap();
            s.samples.len()
        })
    });
    g.bench_function("openmetrics-parser", |b| {
        b.iter(|| {
            let e = openmetrics_parser::prometheus::parse_prometheus(black_box(NODE)).unwrap();
            e.families.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
