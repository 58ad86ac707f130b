//! Time of one collection run of each database and cluster collector against
//! real local servers (the test kit's): PostgreSQL primary and standby,
//! PgBouncer, MariaDB primary and replica, Redis master and Sentinel, a Patroni
//! node and etcd. The connection is opened in the warm-up and reused, as in
//! the daemon.
//!
//! `cargo bench -p warden-collector --bench databases`; criterion prints the
//! time per run (the median is the middle figure).
#![allow(clippy::unwrap_used, clippy::expect_used)] // benchmark code: a failed step should fail loudly

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use warden_collector::CollectorsConfig;
use warden_engine::model::{Labels, now_ms};
use warden_engine::ports::CollectContext;
use warden_engine::scheduler::Pusher;
use warden_engine::store::Ingest;
use warden_testkit::mariadb::{self, MariaPair};
use warden_testkit::patroni::PatroniCluster;
use warden_testkit::pg::{self, PgPair};
use warden_testkit::pgbouncer::{self, Bouncer};
use warden_testkit::redis::{REDIS_PASSWORD, RedisSet};

#[derive(Deserialize)]
struct File {
    collector: CollectorsConfig,
}

fn bench(c: &mut Criterion) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let pg = PgPair::start("bench-pg");
    let bouncer = Bouncer::start(&pg.primary, 2);
    let maria = MariaPair::start("bench-mariadb");
    let redis = RedisSet::start("bench-redis");
    let patroni = PatroniCluster::start("bench-patroni");
    let pgpw = pg::MONITOR_PASSWORD;
    let entries = [
        (
            "postgres_primary",
            format!(
                "[[collector.postgres]]\nname = \"a\"\ndsn = \"{}\"\npassword = \"{pgpw}\"\n",
                pg.primary.dsn(pg::MONITOR_USER)
            ),
        ),
        (
            "postgres_standby",
            format!(
                "[[collector.postgres]]\nname = \"a\"\ndsn = \"{}\"\npassword = \"{pgpw}\"\n",
                pg.standby.dsn(pg::MONITOR_USER)
            ),
        ),
        (
            "pgbouncer",
            format!(
                "[[collector.pgbouncer]]\nname = \"a\"\ndsn = \"{}\"\npassword = \"{}\"\n",
                bouncer.dsn(),
                pgbouncer::STATS_PASSWORD
            ),
        ),
        (
            "mysql_primary",
            format!(
                "[[collector.mysql]]\nname = \"a\"\nurl = \"{}\"\npassword = \"{}\"\n",
                maria.primary.url(mariadb::MONITOR_USER),
                mariadb::MONITOR_PASSWORD
            ),
        ),
        (
            "mysql_replica",
            format!(
                "[[collector.mysql]]\nname = \"a\"\nurl = \"{}\"\npassword = \"{}\"\n",
                maria.replica.url(mariadb::MONITOR_USER),
                mariadb::MONITOR_PASSWORD
            ),
        ),
        (
            "redis_master",
            format!(
                "[[collector.redis]]\nname = \"a\"\nurl = \"{}\"\npassword = \"{REDIS_PASSWORD}\"\n",
                redis.primary.url()
            ),
        ),
        (
            "sentinel",
            format!(
                "[[collector.sentinel]]\nname = \"a\"\nurl = \"{}\"\n",
                redis.sentinel.url()
            ),
        ),
        (
            "patroni",
            format!(
                "[[collector.patroni]]\nname = \"a\"\nurl = \"{}\"\n",
                patroni.nodes[0].url()
            ),
        ),
        (
            "etcd",
            format!(
                "[[collector.etcd]]\nname = \"a\"\nurl = \"{}\"\n",
                patroni.etcd.url()
            ),
        ),
    ];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (ingest, _rx) = Ingest::channel(16);
    let cx = CollectContext {
        now: now_ms(),
        push: Pusher::new(Labels::empty(), 10_000, ingest),
        shutdown: CancellationToken::new(),
    };
    let mut g = c.benchmark_group("collect");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    g.sample_size(30);
    for (name, text) in entries {
        let file: File = toml::from_str(&text).unwrap();
        let mut spec = file.collector.build().unwrap().remove(0);
        let up = format!("{}_up", spec.kind.replace("postgres", "pg"));
        g.bench_function(name, |b| {
            b.iter(|| {
                let samples = rt.block_on(spec.collector.collect(&cx)).unwrap();
                let ok = samples
                    .iter()
                    .any(|s| s.name.as_str() == up && s.value == 1.0);
                assert!(ok, "{name}: {samples:?}");
                samples.len()
            })
        });
    }
    g.finish();
    cx.shutdown.cancel();
}

criterion_group!(benches, bench);
criterion_main!(benches);
