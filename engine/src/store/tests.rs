use super::*;
use crate::model::Matcher;

fn sample(name: &str, instance: &str, v: f64, ts: i64) -> Sample {
    Sample::new(
        MetricName::new(name).unwrap(),
        Labels::new([("instance", instance)]).unwrap(),
        v,
        ts,
    )
}

fn sel(name: &str) -> Selector {
    Selector::metric(MetricName::new(name).unwrap())
}

#[tokio::test]
async fn ingest_then_query_from_head_and_disk() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
    let mut updates = store.subscribe();
    let now = now_ms();
    let samples: Vec<Sample> = (0..10)
        .map(|i| sample("cpu", "a", i as f64, now - 10_000 + i * 1_000))
        .collect();
    assert!(
        store
            .ingest()
            .send(Batch {
                samples,
                fresh_ms: 5_000
            })
            .await
    );
    store.flush().await.unwrap();
    let names = updates.recv().await.unwrap();
    assert_eq!(names[0].as_str(), "cpu");

    let latest = store.latest(&sel("cpu"), now).unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].value, 9.0);
    let r = store.range(&sel("cpu"), now - 5_500, now).unwrap();
    assert_eq!(r[0].samples.len(), 5);

    store.compact().await.unwrap();
    let batches: i64 = store
        .read(|c| c.query_row("SELECT count(*) FROM batches", [], |r| r.get(0)))
        .unwrap();
    let chunks: i64 = store
        .read(|c| c.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0)))
        .unwrap();
    assert_eq!((batches, chunks), (0, 1));
    let r = store
        .range(
            &sel("cpu").with(Matcher::eq("instance", "a")),
            now - 20_000,
            now,
        )
        .unwrap();
    assert_eq!(r[0].samples.len(), 10);
    store.close().await.unwrap();
}

#[tokio::test]
async fn restart_restores_head_from_batches_and_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    let now = now_ms();
    {
        let store = Store::open(&StoreOptions::new(&path)).unwrap();
        let ingest = store.ingest();
        ingest
            .send(Batch {
                samples: vec![sample("m", "a", 1.0, now - 3_000)],
                fresh_ms: 60_000,
            })
            .await;
        store.flush().await.unwrap();
        store.compact().await.unwrap();
        ingest
            .send(Batch {
                samples: vec![
                    sample("m", "a", 2.0, now - 2_000),
                    sample("m", "b", 7.0, now - 2_000),
                ],
                fresh_ms: 60_000,
            })
            .await;
        store.flush().await.unwrap();
        // No close: the batch row stays uncompacted, as after a kill -9.
        drop(ingest);
        store.close().await.unwrap();
    }
    let store = Store::open(&StoreOptions::new(&path)).unwrap();
    let r = store
        .range(
            &sel("m").with(Matcher::eq("instance", "a")),
            now - 10_000,
            now,
        )
        .unwrap();
    assert_eq!(r[0].samples, vec![(now - 3_000, 1.0), (now - 2_000, 2.0)]);
    assert_eq!(store.latest(&sel("m"), now).unwrap().len(), 2);
    store.close().await.unwrap();
}

#[tokio::test]
async fn old_data_is_read_from_chunks_beyond_the_head() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path().join("w.db"));
    opts.head = Duration::from_secs(60);
    let store = Store::open(&opts).unwrap();
    let now = now_ms();
    let samples: Vec<Sample> = (0..30)
        .map(|i| sample("old", "a", i as f64, now - 600_000 + i * 10_000))
        .collect();
    store
        .ingest()
        .send(Batch {
            samples,
            fresh_ms: 20_000,
        })
        .await;
    store.flush().await.unwrap();
    store.compact().await.unwrap();
    assert_eq!(
        store.head_size().1,
        0,
        "everything older than the head window was trimmed"
    );
    let r = store.range(&sel("old"), now - 700_000, now).unwrap();
    assert_eq!(r[0].samples.len(), 30);
    assert_eq!(r[0].samples[29].1, 29.0);
    store.close().await.unwrap();
}

#[tokio::test]
async fn nan_and_inf_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
    let now = now_ms();
    store
        .ingest()
        .send(Batch {
            samples: vec![
                sample("x", "a", f64::NAN, now - 2),
                sample("x", "b", f64::INFINITY, now - 1),
            ],
            fresh_ms: 10_000,
        })
        .await;
    store.flush().await.unwrap();
    store.compact().await.unwrap();
    let r = store.range(&sel("x"), now - 10, now).unwrap();
    assert!(r.iter().any(|s| s.samples[0].1.is_nan()));
    assert!(r.iter().any(|s| s.samples[0].1 == f64::INFINITY));
    store.close().await.unwrap();
}

#[tokio::test]
async fn a_file_that_is_not_a_database_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.db");
    std::fs::write(
        &path,
        b"this is not sqlite at all, just some text that is long enough",
    )
    .unwrap();
    let err = Store::open(&StoreOptions::new(&path))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open store"), "{err}");
    let err = Store::open(&StoreOptions::new(dir.path().join("missing/dir/w.db")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("cannot open store"), "{err}");
}

#[tokio::test]
async fn writes_run_in_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&StoreOptions::new(dir.path().join("w.db"))).unwrap();
    let n = store
        .write(|tx| {
            tx.execute("INSERT INTO alert_history (fingerprint, rule, severity, labels, annotations, to_state, at) VALUES ('f','r','info','{}','{}','firing',1)", [])?;
            tx.query_row("SELECT count(*) FROM alert_history", [], |r| r.get::<_, i64>(0))
        })
        .await
        .unwrap();
    assert_eq!(n, 1);
    store.close().await.unwrap();
}
