//! `[[collector.etcd]]`: one etcd member (v3.4+), over its HTTP gateway:
//! health, leader, Raft term, members and the quorum they need, database size.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `etcd_up` | 1 when the member answered, else 0 |
//! | `etcd_error_info{reason,message}` | 1, only while `etcd_up` is 0 |
//! | `etcd_info{version,member}` | 1; `member` is this member's name |
//! | `etcd_healthy` | 1 when `/health` says `true` (it is false without a leader or with an alarm) |
//! | `etcd_has_leader` | 1 when this member knows a leader |
//! | `etcd_is_leader` | 1 when this member is the leader |
//! | `etcd_leader_info{leader}` | 1; the leader's member name |
//! | `etcd_raft_term` | the Raft term: it grows with every election |
//! | `etcd_members` | voting members in the cluster (learners left out) |
//! | `etcd_learners` | learner members |
//! | `etcd_quorum` | members needed for a quorum: `members / 2 + 1` |
//! | `etcd_db_size_bytes`, `etcd_db_size_in_use_bytes` | the backend database, allocated and in use |
//!
//! With one entry per member and `labels = { cluster = "…" }`, a rule compares
//! `count` of `etcd_healthy == 1` by cluster with `etcd_quorum` (see
//! `examples/postgres-patroni`). The endpoints read are `/health`,
//! `/v3/maintenance/status` and `/v3/cluster/member/list`; with client
//! certificate authentication give `client_cert`/`client_key`.

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
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
use crate::http::{TlsKeys, check_url};
use crate::probe::{self, Failure, FailureLog, Reason};
use crate::tls::cert::RecordingVerifier;

const OUTCOME: Outcome = Outcome {
    up: "etcd_up",
    error: "etcd_error_info",
};

/// The largest answer read from an endpoint.
const MAX_BODY: usize = 1 << 20;

/// `[[collector.etcd]]`: one etcd member.
///
/// ```toml
/// [[collector.etcd]]
/// name = "etcd-1"
/// url = "http://10.0.0.11:2379"
/// labels = { cluster = "dcs" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    /// The `instance` label of every sample. Required.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, e.g. `{ cluster = "dcs" }`. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The member's client URL. Required. Example: `url = "http://127.0.0.1:2379"`.
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

impl EtcdConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "etcd",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["reason", "message", "version", "member", "leader"],
        }
        .check(problems);
        let url = check_url(&self.url, "http://127.0.0.1:2379", problems);
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
        let collector = EtcdCollector {
            client,
            base: url,
            budget: probe::budget(common.timeout),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// A JSON client for `etcd` and `patroni`: certificates verified, no
/// redirects, the entry's budget as its timeout, connections kept between runs.
pub(crate) fn http_client(
    tls: TlsKeys<'_>,
    timeout: Option<Duration>,
    entry: &Range<usize>,
    problems: &mut Vec<Problem>,
) -> Option<reqwest::Client> {
    let (roots, identity) = tls.load(problems)?;
    let budget = probe::budget(timeout?);
    let verifier = Arc::new(RecordingVerifier::new(roots, true));
    let tls = match crate::tls::cert::client_config(verifier, identity, &[b"http/1.1"]) {
        Ok(t) => t,
        Err(e) => {
            problems.push(Problem::at(entry.clone(), e));
            return None;
        }
    };
    match reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(budget)
        .timeout(budget)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
    {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(Problem::at(
                entry.clone(),
                format!("cannot set up the HTTP client: {e}"),
            ));
            None
        }
    }
}

/// Sends `req` and reads a JSON answer of any status (etcd and Patroni answer
/// 503 with a JSON body when unhealthy).
pub(crate) async fn json(req: reqwest::RequestBuilder) -> Result<(u16, Value), Failure> {
    let mut resp = req.send().await.map_err(|e| probe::http_failure(&e))?;
    let status = resp.status().as_u16();
    let body = probe::read_body(&mut resp, MAX_BODY).await?;
    let value = serde_json::from_slice(&body).map_err(|e| {
        Failure::new(
            Reason::Protocol,
            format!("status {status}: the answer is not JSON ({e})"),
        )
    })?;
    Ok((status, value))
}

/// Joins `path` to the base URL.
pub(crate) fn endpoint(base: &Url, path: &str) -> Result<Url, Failure> {
    base.join(path)
        .map_err(|e| Failure::new(Reason::Protocol, format!("bad URL for '{path}': {e}")))
}

/// A JSON string or number field as a number (etcd writes 64-bit integers as
/// strings).
pub(crate) fn num(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

/// Collects one etcd member (see the module docs).
pub struct EtcdCollector {
    client: reqwest::Client,
    base: Url,
    budget: Duration,
    log: FailureLog,
}

impl EtcdCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let result = db::within(self.budget, "etcd", self.fetch()).await;
        self.log
            .note("etcd", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn fetch(&self) -> Result<Vec<Sample>, Failure> {
        let post = |path: &str| -> Result<reqwest::RequestBuilder, Failure> {
            Ok(self
                .client
                .post(endpoint(&self.base, path)?)
                .header("content-type", "application/json")
                .body("{}"))
        };
        let (status, members, health) = tokio::join!(
            json(post("v3/maintenance/status")?),
            json(post("v3/cluster/member/list")?),
            json(self.client.get(endpoint(&self.base, "health")?)),
        );
        let (code, status) = status?;
        if code != 200 {
            return Err(Failure::new(
                Reason::Status,
                format!("/v3/maintenance/status answered {code}: {status}"),
            ));
        }
        let (_, members) = members?;
        // /health answers 503 with {"health":"false"} when unhealthy: data.
        let healthy = health
            .ok()
            .is_some_and(|(_, h)| h["health"].as_str() == Some("true"));
        Ok(samples(&status, &members, healthy))
    }
}

fn samples(status: &Value, members: &Value, healthy: bool) -> Vec<Sample> {
    let none = Labels::empty;
    let mut out = Found::default();
    let me = status["header"]["member_id"].as_str().unwrap_or("");
    let leader = status["leader"].as_str().unwrap_or("0");
    let list = members["members"].as_array().cloned().unwrap_or_default();
    let name_of = |id: &str| {
        list.iter()
            .find(|m| m["ID"].as_str() == Some(id))
            .and_then(|m| m["name"].as_str())
            .unwrap_or(id)
            .to_string()
    };
    out.add(
        "etcd_info",
        labels(&[
            ("version", status["version"].as_str().unwrap_or("")),
            ("member", name_of(me).as_str()),
        ]),
        1.0,
    );
    out.flag("etcd_healthy", none(), healthy);
    let has_leader = !leader.is_empty() && leader != "0";
    out.flag("etcd_has_leader", none(), has_leader);
    out.flag("etcd_is_leader", none(), has_leader && leader == me);
    if has_leader {
        out.add(
            "etcd_leader_info",
            labels(&[("leader", name_of(leader).as_str())]),
            1.0,
        );
    }
    out.add_opt("etcd_raft_term", none(), num(&status["raftTerm"]));
    out.add_opt("etcd_db_size_bytes", none(), num(&status["dbSize"]));
    out.add_opt(
        "etcd_db_size_in_use_bytes",
        none(),
        num(&status["dbSizeInUse"]),
    );
    let learners = list
        .iter()
        .filter(|m| m["isLearner"].as_bool() == Some(true))
        .count();
    let voters = list.len() - learners;
    out.add("etcd_members", none(), voters as f64);
    out.add("etcd_learners", none(), learners as f64);
    out.add("etcd_quorum", none(), (voters / 2 + 1) as f64);
    out.into_samples()
}

impl Collector for EtcdCollector {
    fn kind(&self) -> &'static str {
        "etcd"
    }

    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        Box::pin(self.run(cx))
    }
}
