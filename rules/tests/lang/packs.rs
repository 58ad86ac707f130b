//! The built-in packs compile and fire on data that should fire them.

use std::collections::BTreeMap;
use std::path::Path;

use warden_rules::{BUILTIN_HOST_PACK, BUILTIN_INTERNAL_PACK, RuleEngine};

use crate::common::*;

/// Rule name → the `instance[/mountpoint]` of each instance it reports.
fn fired(pack: &str, store: &Store, now: i64) -> BTreeMap<String, Vec<String>> {
    let engine = RuleEngine::new();
    let file = engine.compile_source(Path::new("pack.rhai"), pack).unwrap();
    let mut out = BTreeMap::new();
    for rule in &file.rules {
        let ev = engine.evaluate(rule, &store.0, now).unwrap();
        let mut who: Vec<String> = ev
            .instances
            .iter()
            .map(|i| {
                let inst = i
                    .labels
                    .get("instance")
                    .or(i.labels.get("file"))
                    .unwrap_or("");
                match i.labels.get("mountpoint") {
                    Some(m) => format!("{inst}{m}"),
                    None => inst.to_string(),
                }
            })
            .collect();
        who.sort();
        out.insert(rule.name.clone(), who);
    }
    out
}

#[test]
fn host_pack_fires_on_a_struggling_host() {
    let now = 3_600_000;
    let mut s = Store::new();
    s.add("host_cpu_usage_percent", &[("instance", "h1")], 95.0, now)
        .add("host_cpu_usage_percent", &[("instance", "h2")], 40.0, now);
    for (i, v) in [("h1", 75.0), ("h2", 90.0), ("h3", 97.0), ("h4", 30.0)] {
        s.add("host_memory_used_percent", &[("instance", i)], v, now);
    }
    for (m, v) in [("/", 85.0), ("/var", 95.0), ("/boot", 20.0)] {
        s.add(
            "host_disk_used_percent",
            &[("instance", "h1"), ("mountpoint", m)],
            v,
            now,
        );
    }
    let falling: Vec<(i64, f64)> = (0..=60)
        .map(|m| (m * 60_000, 5e9 - 1e6 * (m * 60) as f64))
        .collect();
    s.series(
        "host_disk_free_bytes",
        &[("instance", "h1"), ("mountpoint", "/data")],
        &falling,
    );
    let steady: Vec<(i64, f64)> = (0..=60).map(|m| (m * 60_000, 5e9)).collect();
    s.series(
        "host_disk_free_bytes",
        &[("instance", "h1"), ("mountpoint", "/")],
        &steady,
    );
    s.add("host_swap_used_percent", &[("instance", "h1")], 60.0, now)
        .add("host_swap_used_percent", &[("instance", "h2")], 10.0, now);
    s.add("host_load5", &[("instance", "h1")], 9.0, now)
        .add("host_load5", &[("instance", "h2")], 3.0, now)
        .add("host_cpu_count", &[("instance", "h1")], 4.0, now)
        .add("host_cpu_count", &[("instance", "h2")], 4.0, now);

    let got = fired(BUILTIN_HOST_PACK, &s, now);
    let want: BTreeMap<String, Vec<String>> = [
        ("HostCpuHigh", vec!["h1"]),
        ("HostMemoryHigh", vec!["h1"]),
        ("HostMemoryCritical", vec!["h2", "h3"]),
        ("HostMemoryExhausted", vec!["h3"]),
        ("HostDiskUsageHigh", vec!["h1/"]),
        ("HostDiskUsageCritical", vec!["h1/var"]),
        ("HostDiskWillFill", vec!["h1/data"]),
        ("HostSwapHigh", vec!["h1"]),
        ("HostLoadHigh", vec!["h1"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(String::from).collect()))
    .collect();
    assert_eq!(got, want);

    let engine = RuleEngine::new();
    let file = engine
        .compile_source(Path::new("host.rhai"), BUILTIN_HOST_PACK)
        .unwrap();
    let ex = engine
        .evaluate(file.rule("HostMemoryExhausted").unwrap(), &s.0, now)
        .unwrap();
    assert_eq!(ex.instances[0].labels.get("action"), Some("scale"));
    assert_eq!(ex.instances[0].labels.get("severity"), Some("critical"));
    assert_eq!(
        ex.instances[0].annotations["summary"],
        "Memory on h3 is exhausted (97% used)"
    );
    let disk = engine
        .evaluate(file.rule("HostDiskUsageCritical").unwrap(), &s.0, now)
        .unwrap();
    assert_eq!(
        disk.instances[0].annotations["summary"],
        "Disk /var on h1 is 95% full"
    );
    let load = engine
        .evaluate(file.rule("HostLoadHigh").unwrap(), &s.0, now)
        .unwrap();
    assert_eq!(
        load.instances[0].annotations["summary"],
        "Load on h1 is 2.25 per CPU"
    );
    assert_eq!(file.rule("HostCpuHigh").unwrap().pending_for.as_secs(), 300);
}

#[test]
fn host_pack_is_quiet_on_a_healthy_host() {
    let now = 600_000;
    let mut s = Store::new();
    s.add("host_cpu_usage_percent", &[("instance", "h")], 20.0, now)
        .add("host_memory_used_percent", &[("instance", "h")], 40.0, now)
        .add(
            "host_disk_used_percent",
            &[("instance", "h"), ("mountpoint", "/")],
            40.0,
            now,
        )
        .add("host_swap_used_percent", &[("instance", "h")], 0.0, now)
        .add("host_load5", &[("instance", "h")], 1.0, now)
        .add("host_cpu_count", &[("instance", "h")], 8.0, now);
    assert!(
        fired(BUILTIN_HOST_PACK, &s, now)
            .values()
            .all(Vec::is_empty)
    );
}

#[test]
fn internal_pack_fires_on_warden_trouble() {
    let now = 100_000;
    let mut s = Store::new();
    s.add(
        "warden_rule_file_valid",
        &[("file", "rules/bad.rhai")],
        0.0,
        now,
    )
    .add(
        "warden_rule_file_valid",
        &[("file", "rules/good.rhai")],
        1.0,
        now,
    )
    .add(
        "warden_rule_ok",
        &[("rule", "PgLag"), ("file", "rules/pg.rhai")],
        0.0,
        now,
    )
    .add("warden_collector_up", &[("instance", "api")], 0.0, now)
    .add("warden_collector_up", &[("instance", "db")], 1.0, now)
    .add(
        "warden_notifications_undelivered",
        &[("receiver", "pd"), ("instance", "pd")],
        2.0,
        now,
    )
    .add(
        "warden_notifications_undelivered",
        &[("receiver", "mail"), ("instance", "mail")],
        0.0,
        now,
    );
    let got = fired(BUILTIN_INTERNAL_PACK, &s, now);
    assert_eq!(got["WardenNotificationFailed"], ["pd"]);
    assert_eq!(got["WardenRuleFileInvalid"], ["rules/bad.rhai"]);
    assert_eq!(got["WardenRuleFailing"], ["rules/pg.rhai"]);
    assert_eq!(got["WardenCollectorDown"], ["api"]);
    let engine = RuleEngine::new();
    let file = engine
        .compile_source(Path::new("internal.rhai"), BUILTIN_INTERNAL_PACK)
        .unwrap();
    let r = file.rule("WardenRuleFailing").unwrap();
    let ev = engine.evaluate(r, &s.0, now).unwrap();
    assert_eq!(
        ev.instances[0].annotations["summary"],
        "Rule PgLag fails to evaluate"
    );
    assert_eq!(
        file.rule("WardenCollectorDown")
            .unwrap()
            .pending_for
            .as_secs(),
        60
    );
}
