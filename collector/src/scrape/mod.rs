//! `[[collector.scrape]]`: reads a Prometheus exporter's `/metrics` (text 0.0.4 or
//! OpenMetrics, gzip accepted) and stores every series it exposes, so rules read
//! exporter metrics and built-in ones alike.
//!
//! Metrics: the target's own series (counters, gauges, each histogram bucket,
//! `_sum` and `_count`, each summary quantile: every line is a series), plus
//! (labels: `instance`, `job` and the entry's `labels`):
//!
//! | metric | unit |
//! |---|---|
//! | `up` | 1 when the target answered 2xx with a readable payload, else 0 |
//! | `scrape_duration_seconds` | request, body and parsing, seconds |
//! | `scrape_samples_scraped` | samples the payload held |
//! | `scrape_samples_post_metric_relabeling` | samples kept after `metrics`/`drop_metrics` |
//! | `scrape_parse_errors` | lines of the payload that could not be read (they are skipped) |
//! | `scrape_error_info{reason,message}` | 1, only while `up` is 0 (reasons as in [`crate::probe`]) |
//!
//! The payload is parsed by warden's own tolerant parser ([`parse`]; its module
//! doc says why no crate is used): a bad line is counted in
//! `scrape_parse_errors`, logged when the errors change, and skipped; the rest is
//! kept. A payload with errors and no sample at all (an HTML page, garbage) makes
//! `up` 0 with `reason="protocol"`.
//!
//! Labels: every sample gets `instance` (the entry's `name`), `job` (`job`, by
//! default the name) and the entry's `labels`. When the target's own sample has a
//! label of the same name, `honor_labels = false` (the default) keeps the
//! target's value as `exported_<name>` and sets ours, as Prometheus does;
//! `honor_labels = true` keeps the target's value and drops ours. Samples with
//! their own timestamp keep it; the others are stamped with the scrape's time.
//! When the target is down, its series are not written again, so they drop out of
//! `series()` after two intervals while `up` says 0.

pub mod parse;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use reqwest::Url;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderMap, HeaderValue};
use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, MetricName, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, SampleBuf, TargetLabels, bad_regex, instance_of};
use crate::http::{TlsKeys, check_url, header_map};
use crate::probe::{self, Failure, FailureLog, Reason};
use crate::tls::cert::RecordingVerifier;
use parse::{Format, ParsedSample};

/// The default `max_body_bytes` of a scrape: 16 MiB.
const DEFAULT_MAX_BODY: u64 = 16 << 20;

/// What warden asks for: Prometheus text first, OpenMetrics too.
const ACCEPT_VALUE: &str =
    "text/plain;version=0.0.4;q=1,application/openmetrics-text;version=1.0.0;q=0.5,*/*;q=0.1";

/// `[[collector.scrape]]`: one Prometheus exporter.
///
/// ```toml
/// [[collector.scrape]]
/// name = "node-db-1"
/// url = "http://db-1:9100/metrics"
/// job = "node"
/// interval = "15s"
/// drop_metrics = ["go_.*", "promhttp_.*"]
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScrapeConfig {
    /// The `instance` label of every sample. Required. Example: `name = "node-db-1"`.
    pub name: Spanned<String>,
    /// How often to scrape, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one scrape may take, at most the interval. Default: the interval,
    /// but no more than `"10s"`; the scrape itself stops a little earlier.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none; `job` is set with the `job` key.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The exporter's URL, `http://` or `https://`. Required. Example:
    /// `url = "http://127.0.0.1:9100/metrics"`.
    pub url: Spanned<String>,
    /// The `job` label. Default: the entry's `name`. Example: `job = "node"`.
    #[serde(default)]
    pub job: Option<Spanned<String>>,
    /// Keep the target's own value when one of its labels clashes with `instance`,
    /// `job` or `labels`. Default `false`: ours win, theirs move to
    /// `exported_<name>`.
    #[serde(default)]
    pub honor_labels: bool,
    /// Keep only metrics whose name matches one of these regexes (whole-name
    /// match). Default: keep all. Example: `metrics = ["node_.*", "up"]`.
    #[serde(default)]
    pub metrics: Option<Spanned<Vec<String>>>,
    /// Drop metrics whose name matches one of these regexes (whole-name match),
    /// after `metrics`. Default: drop none. Example: `drop_metrics = ["go_.*"]`.
    #[serde(default)]
    pub drop_metrics: Option<Spanned<Vec<String>>>,
    /// The largest payload read, in bytes after gzip decoding; a larger one makes
    /// `up` 0 with `reason="too_large"`. Default 16777216 (16 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<Spanned<u64>>,
    /// Request headers. Default none. Example: `headers = { Authorization = "Bearer x" }`.
    #[serde(default)]
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    /// Refuse untrusted certificates. Default `true`.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// A PEM file of CA certificates to trust instead of the system's.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// A PEM client certificate to present; needs `client_key`.
    #[serde(default)]
    pub client_cert: Option<Spanned<PathBuf>>,
    /// The PEM private key of `client_cert`.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
}

impl ScrapeConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector;
    /// the returned [`Common`] carries `job` among its labels.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let before = problems.len();
        let common = CommonKeys {
            kind: "scrape",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["job"],
        }
        .check(problems);
        let url = check_url(&self.url, "http://127.0.0.1:9100/metrics", problems);
        let allow = name_patterns("metrics", self.metrics.as_ref(), problems);
        let deny = name_patterns("drop_metrics", self.drop_metrics.as_ref(), problems);
        let max_body = self.max_body_bytes.as_ref().map_or(DEFAULT_MAX_BODY, |m| {
            if *m.get_ref() == 0 {
                problems.push(Problem::at(
                    m.span(),
                    "'max_body_bytes' must be more than 0",
                ));
            }
            *m.get_ref()
        });
        let mut headers = self
            .headers
            .as_ref()
            .map(|h| header_map(h, problems))
            .unwrap_or_default();
        headers.insert(ACCEPT, HeaderValue::from_static(ACCEPT_VALUE));
        let tls = TlsKeys {
            ca_file: self.ca_file.as_ref(),
            client_cert: self.client_cert.as_ref(),
            client_key: self.client_key.as_ref(),
            entry: &entry,
        }
        .load(problems);
        if let Some(j) = &self.job
            && j.get_ref().trim().is_empty()
        {
            problems.push(Problem::at(
                j.span(),
                "'job' is empty: leave it out to use the name",
            ));
        }
        if problems.len() != before {
            return None;
        }
        let (mut common, url, (roots, identity)) = (common?, url?, tls?);
        let job = self
            .job
            .as_ref()
            .map_or(common.instance.clone(), |j| j.get_ref().clone());
        // `job` is not reserved by the engine; a valid literal name cannot fail.
        let _ = common.labels.set("job", &job);

        let budget = probe::budget(common.timeout);
        let verifier = Arc::new(RecordingVerifier::new(
            roots,
            self.tls_verify.unwrap_or(true),
        ));
        let client = match crate::http::client(&verifier, identity, true, budget) {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::at(entry, e));
                return None;
            }
        };
        let collector = ScrapeCollector {
            client,
            url,
            headers,
            honor_labels: self.honor_labels,
            allow,
            deny,
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
            budget,
            log: FailureLog::default(),
            last_parse_errors: 0,
        };
        Some((common, Box::new(collector)))
    }
}

/// Compiles a list of whole-name regexes.
fn name_patterns(
    key: &str,
    list: Option<&Spanned<Vec<String>>>,
    problems: &mut Vec<Problem>,
) -> Vec<Regex> {
    let Some(list) = list else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in list.get_ref() {
        match Regex::new(&format!("^(?:{p})$")) {
            Ok(re) => out.push(re),
            Err(e) => problems.push(Problem::at(list.span(), bad_regex(key, p, &e))),
        }
    }
    out
}

/// Scrapes one target (see the module docs).
pub struct ScrapeCollector {
    client: reqwest::Client,
    url: Url,
    headers: HeaderMap,
    honor_labels: bool,
    allow: Vec<Regex>,
    deny: Vec<Regex>,
    max_body: usize,
    budget: Duration,
    log: FailureLog,
    last_parse_errors: usize,
}

/// What one scrape produced.
struct Scraped {
    samples: Vec<Sample>,
    scraped: usize,
    errors: usize,
}

impl ScrapeCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.budget, self.scrape(cx)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("no complete answer within {}", HumanDuration(self.budget)),
            )),
        };
        self.log
            .note("scrape", &instance_of(cx), result.as_ref().map(|_| ()));
        let elapsed = started.elapsed();

        let mut own = SampleBuf::new(cx.now);
        let none = Labels::empty;
        own.add("up", none(), if result.is_ok() { 1.0 } else { 0.0 });
        own.add("scrape_duration_seconds", none(), elapsed.as_secs_f64());
        match result {
            Ok(s) => {
                own.add("scrape_samples_scraped", none(), s.scraped as f64);
                own.add(
                    "scrape_samples_post_metric_relabeling",
                    none(),
                    s.samples.len() as f64,
                );
                own.add("scrape_parse_errors", none(), s.errors as f64);
                let mut samples = s.samples;
                samples.extend(own.into_samples());
                Ok(samples)
            }
            Err(f) => {
                own.add("scrape_samples_scraped", none(), 0.0);
                own.add("scrape_error_info", probe::error_labels(&f), 1.0);
                Ok(own.into_samples())
            }
        }
    }

    async fn scrape(&mut self, cx: &CollectContext) -> Result<Scraped, Failure> {
        let mut resp = self
            .client
            .get(self.url.clone())
            .headers(self.headers.clone())
            .send()
            .await
            .map_err(|e| probe::http_failure(&e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(Failure::new(
                Reason::Status,
                format!("status {}", status.as_u16()),
            ));
        }
        let format = Format::from_content_type(
            resp.headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
        );
        let body = probe::read_body(&mut resp, self.max_body).await?;
        let exposition = parse::parse(&body, format);
        let errors = exposition.errors.len();
        if errors != self.last_parse_errors {
            if let Some(first) = exposition.errors.first() {
                tracing::warn!(collector = "scrape", instance = %instance_of(cx), errors, first = %first, "lines of the payload skipped");
            }
            self.last_parse_errors = errors;
        }
        if exposition.samples.is_empty()
            && let Some(first) = exposition.errors.first()
        {
            return Err(Failure::new(
                Reason::Protocol,
                format!("not an exposition payload: {first}"),
            ));
        }
        let target = cx.push.target_labels();
        let scraped = exposition.samples.len();
        let samples = exposition
            .samples
            .iter()
            .filter(|s| self.keeps(s.name))
            .filter_map(|s| self.sample(s, target, cx.now))
            .collect();
        Ok(Scraped {
            samples,
            scraped,
            errors,
        })
    }

    fn keeps(&self, name: &str) -> bool {
        (self.allow.is_empty() || self.allow.iter().any(|r| r.is_match(name)))
            && !self.deny.iter().any(|r| r.is_match(name))
    }

    /// One parsed sample as a store sample, clashes with target labels resolved.
    fn sample(&self, s: &ParsedSample<'_>, target: &Labels, now: i64) -> Option<Sample> {
        // The parser's grammar only lets valid names through.
        let name = MetricName::new(s.name).ok()?;
        let mut labels = Labels::new(s.labels.iter().map(|(k, v)| (*k, v.as_ref()))).ok()?;
        for (k, _) in target.iter() {
            let Some(theirs) = labels.get(k).map(str::to_string) else {
                continue;
            };
            if self.honor_labels {
                // Theirs win: the pusher adds target labels only where missing.
                continue;
            }
            labels.remove(k);
            let mut exported = format!("exported_{k}");
            while labels.get(&exported).is_some() {
                exported.insert_str(0, "exported_");
            }
            let _ = labels.set(&exported, &theirs);
        }
        Some(Sample::new(
            name,
            labels,
            s.value,
            s.timestamp_ms.unwrap_or(now),
        ))
    }
}

impl Collector for ScrapeCollector {
    fn kind(&self) -> &'static str {
        "scrape"
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
