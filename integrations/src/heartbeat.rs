//! Who watches the watcher: a dead man's switch. warden calls a configured URL
//! (healthchecks.io, Cronitor, a PagerDuty heartbeat, an Alertmanager-style
//! deadman receiver) every `interval` while its own loops make progress, so an
//! external service pages when warden dies or hangs.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use warden_engine::duration::HumanDuration;

use crate::notify::http;
use crate::notify::secret::{self, Secret};

/// `[[heartbeat]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// A name for logs.
    #[serde(default)]
    pub name: Option<String>,
    /// The URL to call (or `url_env` / `url_file`: such URLs are secrets).
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL.
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// How often. Default `1m`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// `GET` or `POST` (a small JSON body). Default `GET`.
    #[serde(default = "default_method")]
    pub method: String,
}

fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_method() -> String {
    "GET".into()
}

/// A configured heartbeat.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    name: String,
    url: Secret,
    interval: Duration,
    post: bool,
    client: reqwest::Client,
}

impl Heartbeat {
    /// Builds it from its config.
    pub fn new(c: &HeartbeatConfig) -> Result<Self, String> {
        let url = secret::resolve(
            "url",
            c.url.as_ref(),
            c.url_env.as_ref(),
            c.url_file.as_ref(),
        )?
        .ok_or("a heartbeat needs 'url' (or 'url_env' / 'url_file')")?;
        reqwest::Url::parse(url.expose()).map_err(|e| format!("invalid heartbeat url: {e}"))?;
        let post = match c.method.to_ascii_uppercase().as_str() {
            "GET" => false,
            "POST" => true,
            m => return Err(format!("heartbeat method must be GET or POST, not '{m}'")),
        };
        if c.interval.get() < Duration::from_millis(100) {
            return Err("heartbeat interval must be at least 100ms".into());
        }
        Ok(Self {
            name: c.name.clone().unwrap_or_else(|| "heartbeat".into()),
            url,
            interval: c.interval.get(),
            post,
            client: http::client()?,
        })
    }

    /// Calls the URL every interval while `healthy()` says warden's loops make
    /// progress; stays silent otherwise, so the external service pages.
    pub async fn run(self, healthy: impl Fn() -> bool + Send, stop: CancellationToken) {
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if !healthy() {
                tracing::error!(heartbeat = %self.name, "a main loop is stalled; withholding the heartbeat");
                continue;
            }
            let req =
                if self.post {
                    self.client.post(self.url.expose()).json(&serde_json::json!({
                    "status": "ok", "source": "warden", "at": warden_engine::model::now_ms(),
                }))
                } else {
                    self.client.get(self.url.expose())
                };
            let res = req
                .timeout(self.interval.min(Duration::from_secs(10)))
                .send()
                .await;
            let ok = match res {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    tracing::warn!(heartbeat = %self.name, status = %r.status(), "heartbeat refused");
                    false
                }
                Err(e) => {
                    tracing::warn!(heartbeat = %self.name, error = %http::redact_urls(&self.url.scrub(&e.to_string())), "heartbeat failed");
                    false
                }
            };
            if ok && failing {
                tracing::info!(heartbeat = %self.name, "heartbeat delivered again");
            }
            failing = !ok;
        }
    }
}
