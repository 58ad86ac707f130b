//! Config parsing and building of the `[collector]` table: the valid forms, and
//! each mistake with its message and position.

use std::time::Duration;

use serde::Deserialize;
use warden_engine::config::line_col;

use super::*;

/// The part of a config file these tests need, as the binary will compose it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    collector: CollectorsConfig,
}

fn parse(text: &str) -> Result<CollectorsConfig, toml::de::Error> {
    toml::from_str::<File>(text).map(|f| f.collector)
}

fn build(text: &str) -> Result<Vec<CollectorSpec>, Vec<Problem>> {
    parse(text).expect("should parse").build()
}

/// The problems of a config that parses but does not build, as `(line, col, msg)`.
fn problems(text: &str) -> Vec<(usize, usize, String)> {
    let problems = build(text).expect_err("should not build");
    problems
        .into_iter()
        .map(|p| {
            let span = p.span.expect("problem without a span");
            let (line, col) = line_col(text, span.start);
            (line, col, p.message)
        })
        .collect()
}

/// The one problem of `text`: its line and message.
fn problem(text: &str) -> (usize, String) {
    let mut all = problems(text);
    assert_eq!(all.len(), 1, "{all:?}");
    let (line, _, msg) = all.remove(0);
    (line, msg)
}

/// A parse error of `text`: its line and message.
fn parse_error(text: &str) -> (usize, String) {
    let e = parse(text).expect_err("should not parse");
    let span = e.span().expect("parse error without a span");
    (line_col(text, span.start).0, e.message().to_string())
}

#[test]
fn empty_config_has_no_collectors() {
    assert!(build("").expect("builds").is_empty());
}

#[test]
fn host_defaults_to_the_host_name_and_5s() {
    let specs = build("[[collector.host]]\n").expect("builds");
    assert_eq!(specs.len(), 1);
    let s = &specs[0];
    assert_eq!(s.kind, "host");
    assert_eq!(s.collector.kind(), "host");
    assert_eq!(s.instance, host::host_name());
    assert_eq!(s.interval, Duration::from_secs(5));
    assert_eq!(s.timeout, Duration::from_secs(5));
    assert!(s.labels.is_empty());
}

#[test]
fn every_key_of_every_kind() {
    let text = r#"
[[collector.host]]
name = "db-1"
interval = "30s"
labels = { role = "db", dc = "fra1" }

[[collector.process]]
name = "postgres"
match = "postgres"
interval = "10s"
timeout = "2s"

[[collector.process]]
name = "api"
cmdline = 'java .* -jar /opt/api/api\.jar'
labels = { service = "api" }

[[collector.process]]
name = "nginx"
pidfile = "/run/nginx.pid"

[[collector.process]]
name = "warden"
this_process = true
"#;
    let specs = build(text).expect("builds");
    let got: Vec<(&str, &str, u64, u64, String)> = specs
        .iter()
        .map(|s| {
            (
                s.kind,
                s.instance.as_str(),
                s.interval.as_secs(),
                s.timeout.as_secs(),
                s.labels.to_key(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "host",
                "db-1",
                30,
                10,
                r#"{dc="fra1",role="db"}"#.to_string()
            ),
            ("process", "postgres", 10, 2, "{}".into()),
            ("process", "api", 5, 5, r#"{service="api"}"#.into()),
            ("process", "nginx", 5, 5, "{}".into()),
            ("process", "warden", 5, 5, "{}".into()),
        ]
    );
}

#[test]
fn embedded_default_builds() {
    let specs = CollectorsConfig::embedded_default()
        .build()
        .expect("builds");
    let kinds: Vec<(&str, &str)> = specs
        .iter()
        .map(|s| (s.kind, s.instance.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [("host", host::host_name().as_str()), ("process", "warden")]
    );
}

#[test]
fn unknown_keys_are_refused_where_they_are() {
    let (line, msg) = parse_error("[[collector.host]]\ninterval = \"5s\"\nintervall = \"5s\"\n");
    assert_eq!(line, 3, "{msg}");
    assert!(msg.contains("intervall"), "{msg}");

    let (line, msg) = parse_error("[[collector.proces]]\nname = \"x\"\n");
    assert_eq!(line, 1, "{msg}");
    assert!(msg.contains("proces"), "{msg}");
}

#[test]
fn bad_values_are_refused_while_parsing() {
    let (line, msg) = parse_error("[[collector.host]]\n\ninterval = \"5\"\n");
    assert_eq!(line, 3);
    assert!(msg.contains("no unit"), "{msg}");

    let (line, msg) = parse_error("[[collector.host]]\nlabels = { \"1a\" = \"x\" }\n");
    assert_eq!(line, 2);
    assert!(msg.contains("invalid label name '1a'"), "{msg}");

    let (line, msg) = parse_error("[[collector.host]]\n\nlabels = { instance = \"x\" }\n");
    assert_eq!(line, 3);
    assert!(
        msg.contains("label 'instance' comes from the entry's 'name'"),
        "{msg}"
    );

    let (line, msg) = parse_error("\n[[collector.process]]\nmatch = \"x\"\n");
    assert_eq!(line, 2);
    assert!(msg.contains("missing field `name`"), "{msg}");
}

#[test]
fn a_process_needs_exactly_one_target() {
    let (line, msg) = problem("[[collector.host]]\n\n[[collector.process]]\nname = \"db\"\n");
    assert_eq!(line, 3);
    assert_eq!(
        msg,
        "process 'db' says nothing to look for: set one of 'match', 'cmdline', 'pidfile' or 'this_process = true'"
    );

    let (line, msg) = problem(
        "[[collector.process]]\nname = \"db\"\nmatch = \"postgres\"\ncmdline = \"postgres\"\n",
    );
    assert_eq!(line, 4);
    assert_eq!(
        msg,
        "process 'db' sets both 'match' and 'cmdline': keep only one"
    );

    // `this_process = false` is the same as leaving it out.
    let (line, msg) = problem("[[collector.process]]\nname = \"db\"\nthis_process = false\n");
    assert_eq!(line, 1);
    assert!(msg.contains("says nothing to look for"), "{msg}");
}

#[test]
fn target_values_are_checked() {
    let (line, msg) = problem("[[collector.process]]\nname = \"api\"\ncmdline = 'java (-jar'\n");
    assert_eq!(line, 3);
    assert_eq!(
        msg,
        "'cmdline' 'java (-jar' is not a valid regex (unclosed group)"
    );

    let (line, msg) = problem("[[collector.process]]\nname = \"x\"\npidfile = \"run/x.pid\"\n");
    assert_eq!(line, 3);
    assert_eq!(
        msg,
        "'pidfile' 'run/x.pid' is relative: write the absolute path, e.g. '/run/x.pid'"
    );

    let (line, msg) = problem("[[collector.process]]\nname = \"x\"\nmatch = \"/usr/bin/x\"\n");
    assert_eq!(line, 3);
    assert!(
        msg.starts_with("'match' '/usr/bin/x' is not a process name"),
        "{msg}"
    );
}

#[test]
fn common_keys_are_checked() {
    let (line, msg) = problem("[[collector.host]]\ninterval = \"5s\"\ntimeout = \"20s\"\n");
    assert_eq!(line, 3);
    assert_eq!(
        msg,
        "'timeout' '20s' is longer than 'interval' '5s': make it at most the interval"
    );

    let (line, msg) = problem("[[collector.host]]\n\ninterval = \"0s\"\n");
    assert_eq!(line, 3);
    assert_eq!(
        msg,
        "'interval' '0s' is too short: the host collector needs at least '1s'"
    );
    let (line, msg) =
        problem("[[collector.process]]\nname = \"x\"\nmatch = \"x\"\ninterval = \"500ms\"\n");
    assert_eq!(line, 4);
    assert!(msg.starts_with("'interval' '500ms' is too short"), "{msg}");

    let (line, msg) = problem("[[collector.process]]\nname = \"\"\nthis_process = true\n");
    assert_eq!(line, 2);
    assert!(msg.starts_with("process 'name' is empty"), "{msg}");

    let (line, msg) = problem("[[collector.host]]\nlabels = { mountpoint = \"/\" }\n");
    assert_eq!(line, 2);
    assert_eq!(
        msg,
        "label 'mountpoint' is set by the host collector on its own samples: use another label name"
    );
}

#[test]
fn duplicate_names_are_refused() {
    let text = "[[collector.process]]\nname = \"db\"\nmatch = \"postgres\"\n\n\
                [[collector.process]]\nname = \"db\"\nmatch = \"patroni\"\n";
    let (line, msg) = problem(text);
    assert_eq!(line, 6);
    assert_eq!(
        msg,
        "duplicate process name 'db': give each entry its own 'name'"
    );

    // Two hosts both default to the host name; the second entry is pointed at.
    let (line, msg) = problem("[[collector.host]]\n\n[[collector.host]]\ninterval = \"10s\"\n");
    assert_eq!(line, 3);
    assert!(
        msg.ends_with("set a different 'name' on each [[collector.host]]"),
        "{msg}"
    );

    // The same name in two kinds is fine: the kind tells them apart.
    let text =
        "[[collector.host]]\nname = \"x\"\n[[collector.process]]\nname = \"x\"\nmatch = \"x\"\n";
    assert_eq!(build(text).expect("builds").len(), 2);
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = "[[collector.host]]\ntimeout = \"1m\"\n\n\
                [[collector.process]]\nname = \"a\"\n\n\
                [[collector.process]]\nname = \"b\"\ncmdline = \"(\"\n";
    let lines: Vec<usize> = problems(text).iter().map(|p| p.0).collect();
    assert_eq!(lines, [2, 4, 9]);
}
