//! `[[collector.sentinel]]`: one Redis Sentinel: the masters it watches, where
//! they are, whether they are down, whether a failover is running, and whether
//! enough Sentinels agree to fail over (`SENTINEL MASTERS`, `SENTINEL CKQUORUM`).
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | meaning |
//! |---|---|
//! | `sentinel_up` | 1 when the Sentinel answered, else 0 |
//! | `sentinel_error_info{reason,message}` | 1, only while `sentinel_up` is 0 |
//! | `sentinel_masters` | masters it watches |
//! | `sentinel_master_address_info{master,address}` | 1; `address` = `ip:port` of the current master |
//! | `sentinel_master_ok{master}` | 1 unless the master is down (`s_down`/`o_down`) or disconnected |
//! | `sentinel_master_sdown{master}`, `sentinel_master_odown{master}` | 1 while this Sentinel (sdown) or a quorum (odown) sees it down |
//! | `sentinel_master_failover_in_progress{master}` | 1 during a failover |
//! | `sentinel_master_config_epoch{master}` | grows by one with every failover: `changes()` on it is the failover signal |
//! | `sentinel_master_replicas{master}` | replicas known |
//! | `sentinel_master_sentinels{master}` | Sentinels watching it, this one included |
//! | `sentinel_master_quorum{master}` | the configured quorum |
//! | `sentinel_master_quorum_ok{master}` | 1 when `SENTINEL CKQUORUM` says a failover could be authorised |
//!
//! Sentinel has no ACL by default; with `requirepass`, give the password as for
//! `redis`.

use std::collections::HashMap;
use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, TargetLabels, instance_of};
use crate::db::{self, Found, Outcome, labels, number};
use crate::probe::{Failure, FailureLog};
use crate::redis::{Link, connection_info, redis_failure};

const OUTCOME: Outcome = Outcome {
    up: "sentinel_up",
    error: "sentinel_error_info",
};

/// `[[collector.sentinel]]`: one Sentinel.
///
/// ```toml
/// [[collector.sentinel]]
/// name = "sentinel-1"
/// url = "redis://10.0.0.21:26379"
/// labels = { cluster = "cache" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SentinelConfig {
    /// The `instance` label of every sample. Required.
    pub name: Spanned<String>,
    /// How often to collect, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// `redis://host:port` of the Sentinel (usually port 26379). Required.
    pub url: Spanned<String>,
    /// The ACL user name, if the Sentinel has one.
    #[serde(default)]
    pub username: Option<String>,
    /// The password, inline. Prefer `password_env` or `password_file`.
    #[serde(default)]
    pub password: Option<Spanned<String>>,
    /// The environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<Spanned<String>>,
    /// A file holding the password (a final newline is ignored).
    #[serde(default)]
    pub password_file: Option<Spanned<PathBuf>>,
}

impl SentinelConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "sentinel",
            entry,
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["reason", "message", "master", "address"],
        }
        .check(problems);
        let info = connection_info(
            "redis://127.0.0.1:26379",
            &self.url,
            self.username.as_deref(),
            db::password(&self.password, &self.password_env, &self.password_file),
            problems,
        );
        let common = common?;
        let budget = crate::probe::budget(common.timeout);
        let collector = SentinelCollector {
            link: Link::new(info?, budget),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Collects one Sentinel (see the module docs).
pub struct SentinelCollector {
    link: Link,
    log: FailureLog,
}

impl SentinelCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let result = db::within(self.link.budget(), "Sentinel", self.collect()).await;
        if result.is_err() {
            self.link.reset();
        }
        self.log
            .note("sentinel", &instance_of(cx), result.as_ref().map(|_| ()));
        Ok(OUTCOME.samples(cx.now, result))
    }

    async fn collect(&mut self) -> Result<Vec<Sample>, Failure> {
        let mut conn = self.link.get().await?;
        let masters: Vec<HashMap<String, String>> = redis::cmd("SENTINEL")
            .arg("MASTERS")
            .query_async(&mut conn)
            .await
            .map_err(|e| redis_failure(&e))?;
        let mut out = Found::default();
        out.add("sentinel_masters", Labels::empty(), masters.len() as f64);
        for m in &masters {
            let name = m.get("name").map_or("", String::as_str);
            // NOQUORUM (and any other refusal) is an answer, not a failure.
            let quorum_ok = redis::cmd("SENTINEL")
                .arg("CKQUORUM")
                .arg(name)
                .query_async::<String>(&mut conn)
                .await;
            let quorum_ok = match quorum_ok {
                Ok(_) => true,
                Err(e) if e.code().is_some() => false,
                Err(e) => return Err(redis_failure(&e)),
            };
            master_samples(&mut out, m, quorum_ok);
        }
        Ok(out.into_samples())
    }
}

fn master_samples(out: &mut Found, m: &HashMap<String, String>, quorum_ok: bool) {
    let get = |k: &str| m.get(k).map(String::as_str);
    let name = get("name").unwrap_or("");
    let id = || labels(&[("master", name)]);
    let address = format!("{}:{}", get("ip").unwrap_or(""), get("port").unwrap_or(""));
    out.add(
        "sentinel_master_address_info",
        labels(&[("master", name), ("address", address.as_str())]),
        1.0,
    );
    let flags: Vec<&str> = get("flags").unwrap_or("").split(',').collect();
    let has = |f: &str| flags.contains(&f);
    out.flag(
        "sentinel_master_ok",
        id(),
        !has("s_down") && !has("o_down") && !has("disconnected"),
    );
    out.flag("sentinel_master_sdown", id(), has("s_down"));
    out.flag("sentinel_master_odown", id(), has("o_down"));
    out.flag(
        "sentinel_master_failover_in_progress",
        id(),
        flags.iter().any(|f| f.starts_with("failover_")),
    );
    out.add_opt(
        "sentinel_master_config_epoch",
        id(),
        number(get("config-epoch")),
    );
    out.add_opt("sentinel_master_replicas", id(), number(get("num-slaves")));
    out.add_opt(
        "sentinel_master_sentinels",
        id(),
        number(get("num-other-sentinels")).map(|n| n + 1.0),
    );
    out.add_opt("sentinel_master_quorum", id(), number(get("quorum")));
    out.flag("sentinel_master_quorum_ok", id(), quorum_ok);
}

impl Collector for SentinelCollector {
    fn kind(&self) -> &'static str {
        "sentinel"
    }

    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        Box::pin(self.run(cx))
    }
}
