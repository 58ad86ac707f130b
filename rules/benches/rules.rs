//! One evaluation cycle: 1,000 rules over 10,000 series (10 metrics × 1,000
//! instances, 5 minutes of 10s samples). Target: under 200 ms per cycle.
//!
//! `cycle_…` evaluates the rules together (`evaluate_many`, reads shared);
//! `…_one_by_one` calls `evaluate` per rule, so every rule reads the store itself.

#![allow(clippy::expect_used)] // a benchmark, not a daemon path

use std::fmt::Write as _;
use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use warden_engine::model::{Labels, MetricName, Sample};
use warden_engine::store::SeriesSet;
use warden_rules::RuleEngine;

const INSTANCES: usize = 1_000;
const NOW: i64 = 1_700_000_000_000;
const STEP_MS: i64 = 10_000;
const SAMPLES: i64 = 31;

/// Five gauges (`g0..g4`, 0–100) and five counters (`c0_total..c4_total`).
fn store() -> SeriesSet {
    let mut set = SeriesSet::new();
    for m in 0..10 {
        let name = if m < 5 {
            format!("g{m}")
        } else {
            format!("c{}_total", m - 5)
        };
        let name = MetricName::new(name).expect("valid name");
        for i in 0..INSTANCES {
            let labels = Labels::new([
                ("instance", format!("i{i}")),
                ("group", format!("grp{}", i % 10)),
            ])
            .expect("valid labels");
            for k in 0..SAMPLES {
                let ts = NOW - (SAMPLES - 1 - k) * STEP_MS;
                let value = if m < 5 {
                    ((i * 7 + m * 13) % 100) as f64 + (k % 3) as f64 * 0.5
                } else {
                    (k as f64) * (1.0 + (i % 50) as f64)
                };
                set.push(
                    &Sample::new(name.clone(), labels.clone(), value, ts),
                    60_000,
                );
            }
        }
    }
    set
}

/// 1,000 rules: thresholds on `series()`, `avg_over`, `rate`, aggregations and
/// narrow selections, in that mix.
fn rules_source() -> String {
    let mut src = String::new();
    for r in 0..1_000 {
        let g = r % 5;
        let when = match r % 10 {
            0..=3 => format!(r#"series("g{g}") > 98"#),
            4..=5 => format!(r#"avg_over(series("g{g}"), "5m") > 98.5"#),
            6..=7 => format!(r#"rate(series("c{g}_total"), "5m") > 4.9"#),
            8 => format!(r#"sum_by(series("g{g}"), ["group"]) > 60000"#),
            _ => format!(r#"series("g{g}", #{{instance: "i{r}"}}) > 50"#),
        };
        let _ = writeln!(
            src,
            r#"rule("R{r}", #{{ severity: "warning", summary: "{{{{instance}}}} is {{{{value}}}}", when: || {when} }});"#
        );
    }
    src
}

fn cycle(c: &mut Criterion) {
    let set = store();
    let engine = RuleEngine::new();
    let file = engine
        .compile_source(Path::new("bench.rhai"), &rules_source())
        .expect("bench rules compile");
    assert_eq!(file.rules.len(), 1_000);
    let mut fired = 0;
    for r in &file.rules {
        fired += engine
            .evaluate(r, &set, NOW)
            .expect("evaluates")
            .instances
            .len();
    }
    eprintln!("one cycle: {fired} instances");

    let mut group = c.benchmark_group("rules");
    group.sample_size(10);
    group.bench_function("cycle_1000_rules_10000_series", |b| {
        b.iter(|| black_box(engine.evaluate_many(&file.rules, &set, NOW)))
    });
    group.bench_function("cycle_1000_rules_10000_series_one_by_one", |b| {
        b.iter(|| {
            for r in &file.rules {
                black_box(engine.evaluate(r, &set, NOW).expect("evaluates"));
            }
        })
    });
    group.bench_function("compile_1000_rules", |b| {
        let src = rules_source();
        b.iter(|| {
            black_box(
                engine
                    .compile_source(Path::new("bench.rhai"), &src)
                    .expect("compiles"),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, cycle);
criterion_main!(benches);
