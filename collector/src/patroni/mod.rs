//! `[[collector.patroni]]`: one Patroni node's REST API: the node itself
//! (`/patroni`) and the cluster as the DCS describes it (`/cluster`): members,
//! their roles, states, timelines and lag, and how many leaders there are.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `patroni_up` | 1 when the REST API answered, else 0 |
//! | `patroni_error_info{reason,message}` | 1, only while `patroni_up` is 0 |
//! | `patroni_info{version,scope,member}` | 1 |
//! | `patroni_postgres_running` | 1 when this node's PostgreSQL runs |
//! | `patroni_is_primary` | 1 when this node's PostgreSQL is the primary (`role` `master`/`primary`) |
//! | `patroni_is_replica` | 1 when it is a replica (or a standby leader) |
//! | `patroni_timeline` | this node's timeline: it grows with every promotion |
//! | `patroni_pending_restart` | 1 when a changed setting waits for a restart |
//! | `patroni_cluster_unlocked` | 1 when the cluster has no leader lock |
//! | `patroni_cluster_members` | members registered in the DCS |
//! | `patroni_cluster_leaders` | members whose role is `leader` or `standby_leader`: exactly 1 in a healthy cluster |
//! | `patroni_cluster_leader_info{member}` | 1 per leader, `member` its name |
//! | `patroni_member_is_leader{member}` | 1 for the leader, 0 for the others |
//! | `patroni_member_running{member}` | 1 when its state is `running` or `streaming` |
//! | `patroni_member_info{member,role,state}` | 1 per member |
//! | `patroni_member_lag_bytes{member}` | replicas: bytes behind the leader (absent while unknown) |
//! | `patroni_member_timeline{member}` | its timeline |
//!
//! Every node of a cluster reports the cluster view; collect each node with the
//! same `cluster` label so rules can compare them. `GET` endpoints need no
//! credentials; with `restapi.certfile` set, use an `https://` URL (and
//! `ca_file`, `client_cert`/`client_key` as needed).

use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, TargetLabels, instance_of};
use crate::db::{self, Found, Outcome, labels};
use crate::etcd::{endpoint, http_client, json, num};
use crate::http::{TlsKeys, check_url};
use crate::probe::{self, Failure, FailureLog, Reason};

const OUTCOME: Outcome = Outcome {
    up: "patroni_up",
    error: "patroni_error_info",
};

/// `[[collector.patroni]]`: one Patroni node.
///
/// ```toml
/// [[collector.patroni]]
/// name = "pg-1"
/// url = "http://10.0.0.11:8008"
/// labels = { cluster = "main" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatroniConfig {
    /// The `instance` label of every sample. Required.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, e.g. `{ cluster = "main" }`. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The node's REST API. Required. Example: `url = "http://127.0.0.1:8008"`.
    pub url: Spanned<String>,
    /// A PEM file of CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// A PEM client certificate (chain) to present; needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<Spanned<PathBuf>>,
    /// The PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
}

impl PatroniConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "patroni",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &[
                "reason", "message", "version", "scope", "member", "role", "state",
            ],
        }
        .check(problems);
        let url = check_url(&self.url, "http://127.0.0.1:8008", problems);
        let client = http_client(
            TlsKeys {
                ca_file: self.ca_file.as_ref(),
                client_cert: self.client_cert.as_ref(),
                client_key: self.client_key.as_ref(),
                entry: &entry,
            },
            common.as_ref().map(|c| c.timeout),
            &entry,
            problems,
        );
        let (common, url, client) = (common?, url?, client?);
        let collector = PatroniCollector {
            client,
            base: url,
            budget: probe::budget(common.timeout),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Collects one Patroni node (see the module docs).
pub struct PatroniCollector {
    client: reqwest::Client,
    base: Url,
    budget: Duration,
    log: FailureLog,
}

impl PatroniCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let result = db::within(self.budget, "Patroni", self.fetch()).await;
        self.log
            .note("patroni", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn fetch(&self) -> Result<Vec<Sample>, Failure> {
        let (node, cluster) = tokio::join!(
            json(self.client.get(endpoint(&self.base, "patroni")?)),
            json(self.client.get(endpoint(&self.base, "cluster")?)),
        );
        // /patroni answers 503 when PostgreSQL is down, with the same body.
        let (_, node) = node?;
        let (code, cluster) = cluster?;
        if code != 200 {
            return Err(Failure::new(
                Reason::Status,
                format!("/cluster answered {code}: {cluster}"),
            ));
        }
        if !node.is_object() || !cluster["members"].is_array() {
            return Err(Failure::new(
                Reason::Protocol,
                "the answers are not Patroni's /patroni and /cluster",
            ));
        }
        Ok(samples(&node, &cluster))
    }
}

fn samples(node: &Value, cluster: &Value) -> Vec<Sample> {
    let none = Labels::empty;
    let mut out = Found::default();
    let s = |v: &Value| v.as_str().unwrap_or("").to_string();
    let role = s(&node["role"]);
    out.add(
        "patroni_info",
        labels(&[
            ("version", s(&node["patroni"]["version"]).as_str()),
            ("scope", s(&node["patroni"]["scope"]).as_str()),
            ("member", s(&node["patroni"]["name"]).as_str()),
        ]),
        1.0,
    );
    out.flag(
        "patroni_postgres_running",
        none(),
        node["state"] == "running",
    );
    out.flag(
        "patroni_is_primary",
        none(),
        matches!(role.as_str(), "master" | "primary"),
    );
    out.flag(
        "patroni_is_replica",
        none(),
        matches!(role.as_str(), "replica" | "standby_leader"),
    );
    out.add_opt("patroni_timeline", none(), num(&node["timeline"]));
    out.flag(
        "patroni_pending_restart",
        none(),
        node["pending_restart"] == true,
    );
    out.flag(
        "patroni_cluster_unlocked",
        none(),
        node["cluster_unlocked"] == true,
    );

    let members = cluster["members"].as_array().cloned().unwrap_or_default();
    out.add("patroni_cluster_members", none(), members.len() as f64);
    let mut leaders = 0;
    for m in &members {
        let name = s(&m["name"]);
        let id = || labels(&[("member", name.as_str())]);
        let role = s(&m["role"]);
        let state = s(&m["state"]);
        let is_leader = matches!(role.as_str(), "leader" | "standby_leader");
        if is_leader {
            leaders += 1;
            out.add("patroni_cluster_leader_info", id(), 1.0);
        }
        out.flag("patroni_member_is_leader", id(), is_leader);
        out.flag(
            "patroni_member_running",
            id(),
            matches!(state.as_str(), "running" | "streaming"),
        );
        out.add(
            "patroni_member_info",
            labels(&[
                ("member", name.as_str()),
                ("role", role.as_str()),
                ("state", state.as_str()),
            ]),
            1.0,
        );
        // "lag" is a number of bytes, or "unknown".
        out.add_opt("patroni_member_lag_bytes", id(), m["lag"].as_f64());
        out.add_opt("patroni_member_timeline", id(), num(&m["timeline"]));
    }
    out.add("patroni_cluster_leaders", none(), f64::from(leaders));
    out.into_samples()
}

impl Collector for PatroniCollector {
    fn kind(&self) -> &'static str {
        "patroni"
    }

    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        Box::pin(self.run(cx))
    }
}

#[cfg(test)]
mod tests;
