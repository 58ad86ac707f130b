//! `[[collector.http]]`: an HTTP(S) health check, as a load balancer or
//! keepalived would run it: one request, the status, the body, the time it took,
//! and for https the certificate the server presented.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | unit |
//! |---|---|
//! | `probe_success` | 1 when the request got an expected status and the body matched, else 0 |
//! | `probe_duration_seconds` | from the start of the request to the end of the body, seconds |
//! | `probe_http_status_code` | the status of the last response (after redirects), 0 when there was none |
//! | `probe_error_info{reason,message}` | 1, only while the probe fails (see [`crate::probe`]) |
//! | `tls_cert_days_left{subject,issuer,serial,chain}` | https only: days until each certificate of the served chain expires, fractional, negative once expired |
//! | `tls_cert_not_after_seconds{…}` | https only: the certificate's `notAfter`, Unix seconds |
//! | `tls_cert_valid{…,chain="leaf"}` | https only: 1 when the chain leads to a trusted root and names the host |
//! | `tls_cert_verify_error_info{reason}` | https only: 1 while the chain is not valid, `reason` e.g. `expired` |
//!
//! Every probe opens a new connection (no keep-alive), so the duration includes
//! connecting and the TLS handshake, and the certificate is read on each probe.
//! The certificates are those of the configured URL's server (the first handshake),
//! also after redirects to another host. With `tls_verify = false` an untrusted
//! certificate does not fail the probe, but `tls_cert_valid` still says 0.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use regex::Regex;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{Method, Url};
use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, SampleBuf, TargetLabels, bad_regex, instance_of};
use crate::probe::{self, Failure, FailureLog, Reason};
use crate::tls::cert::{self, RecordingVerifier};

/// The default `max_body_bytes` of an http check: 1 MiB.
const DEFAULT_MAX_BODY: u64 = 1 << 20;

/// `[[collector.http]]`: one HTTP(S) health check.
///
/// ```toml
/// [[collector.http]]
/// name = "api"
/// url = "https://127.0.0.1:8443/health"
/// interval = "5s"
/// timeout = "2s"
/// valid_status_codes = [200]
/// json_pointer = "/status"
/// json_value = "UP"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The `instance` label of every sample. Required. Example: `name = "api"`.
    pub name: Spanned<String>,
    /// How often to probe, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one probe may take, at most the interval. Default: the interval,
    /// but no more than `"10s"`. The probe gives up a little earlier (a tenth,
    /// at most 250 ms) so it can report `probe_success 0` with `reason="timeout"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none; `reason`, `message`, `subject`,
    /// `issuer`, `serial` and `chain` are taken. Example: `labels = { service = "api" }`.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The URL to request, `http://` or `https://`. Required. Example:
    /// `url = "http://127.0.0.1:8080/health"`.
    pub url: Spanned<String>,
    /// The request method. Default `"GET"`. Example: `method = "HEAD"`.
    #[serde(default)]
    pub method: Option<Spanned<String>>,
    /// Request headers. Default none. Example: `headers = { Authorization = "Bearer x" }`.
    #[serde(default)]
    pub headers: Option<Spanned<BTreeMap<String, String>>>,
    /// The request body. Default none. Example: `body = '{"ping":1}'`.
    #[serde(default)]
    pub body: Option<String>,
    /// The statuses that count as success. Default: any 2xx. Example:
    /// `valid_status_codes = [200, 301]`.
    #[serde(default)]
    pub valid_status_codes: Option<Spanned<Vec<u16>>>,
    /// The body must contain this text. Default: not checked. Example:
    /// `body_contains = "OK"`.
    #[serde(default)]
    pub body_contains: Option<String>,
    /// The body must match this regular expression (Rust `regex` syntax; searched,
    /// not anchored). Default: not checked. Example: `body_regex = '"status":\s*"UP"'`.
    #[serde(default)]
    pub body_regex: Option<Spanned<String>>,
    /// A JSON pointer (RFC 6901) into the body, which must then be JSON; the value
    /// there must exist, and equal `json_value` when that is set. Example:
    /// `json_pointer = "/checks/0/status"`.
    #[serde(default)]
    pub json_pointer: Option<Spanned<String>>,
    /// The value `json_pointer` must point at, any TOML value (a string, a number,
    /// a bool, …), compared with the JSON value. Example: `json_value = "UP"`.
    #[serde(default)]
    pub json_value: Option<Spanned<serde_json::Value>>,
    /// Follow redirects (at most 10). Default `true`; with `false` a 3xx is the
    /// answer (list it in `valid_status_codes` to accept it).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Refuse certificates that do not lead to a trusted root or do not name the
    /// host. Default `true`. With `false` the probe goes on, and
    /// `tls_cert_valid` still reports the verdict.
    #[serde(default)]
    pub tls_verify: Option<bool>,
    /// A PEM file of CA certificates to trust instead of the system's. Default:
    /// the system's. Example: `ca_file = "/etc/warden/ca.pem"`.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
    /// A PEM client certificate (chain) to present; needs `client_key`. Example:
    /// `client_cert = "/etc/warden/client.pem"`.
    #[serde(default)]
    pub client_cert: Option<Spanned<PathBuf>>,
    /// The PEM private key of `client_cert`. Example:
    /// `client_key = "/etc/warden/client.key"`.
    #[serde(default)]
    pub client_key: Option<Spanned<PathBuf>>,
    /// The largest body read, in bytes; a larger body fails the probe with
    /// `reason="too_large"`. Default 1048576 (1 MiB).
    #[serde(default)]
    pub max_body_bytes: Option<Spanned<u64>>,
}

/// What the body must hold.
#[derive(Debug, Clone, Default)]
struct BodyChecks {
    contains: Option<String>,
    regex: Option<Regex>,
    json: Option<(String, Option<serde_json::Value>)>,
}

impl HttpConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let before = problems.len();
        let common = CommonKeys {
            kind: "http",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["reason", "message", "subject", "issuer", "serial", "chain"],
        }
        .check(problems);

        let url = check_url(&self.url, "http://127.0.0.1:8080/health", problems);
        let method = match &self.method {
            None => Method::GET,
            Some(m) => match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                Ok(method) => method,
                Err(_) => {
                    problems.push(Problem::at(
                        m.span(),
                        format!(
                            "'method' '{}' is not an HTTP method: write e.g. 'GET'",
                            m.get_ref()
                        ),
                    ));
                    Method::GET
                }
            },
        };
        let headers = self.headers.as_ref().map(|h| header_map(h, problems));
        let statuses = self.valid_status_codes.as_ref().map(|s| {
            for code in s.get_ref() {
                if !(100..=599).contains(code) {
                    problems.push(Problem::at(
                        s.span(),
                        format!(
                            "'valid_status_codes' holds '{code}', not an HTTP status (100-599)"
                        ),
                    ));
                }
            }
            s.get_ref().clone()
        });
        let checks = self.body_checks(problems);
        let max_body = self.max_body_bytes.as_ref().map_or(DEFAULT_MAX_BODY, |m| {
            if *m.get_ref() == 0 {
                problems.push(Problem::at(
                    m.span(),
                    "'max_body_bytes' must be more than 0",
                ));
            }
            *m.get_ref()
        });
        let tls = TlsKeys {
            ca_file: self.ca_file.as_ref(),
            client_cert: self.client_cert.as_ref(),
            client_key: self.client_key.as_ref(),
            entry: &entry,
        }
        .load(problems);

        if problems.len() != before {
            return None;
        }
        let (common, url, (roots, identity)) = (common?, url?, tls?);
        let verify = self.tls_verify.unwrap_or(true);
        let verifier = Arc::new(RecordingVerifier::new(roots, verify));
        let client = match client(
            &verifier,
            identity,
            self.follow_redirects.unwrap_or(true),
            probe::budget(common.timeout),
        ) {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::at(entry, e));
                return None;
            }
        };
        let collector = HttpCollector {
            client,
            verifier,
            method,
            url,
            headers: headers.unwrap_or_default(),
            body: self.body.clone(),
            statuses,
            checks,
            max_body: usize::try_from(max_body).unwrap_or(usize::MAX),
            budget: probe::budget(common.timeout),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }

    fn body_checks(&self, problems: &mut Vec<Problem>) -> BodyChecks {
        let regex = self
            .body_regex
            .as_ref()
            .and_then(|r| match Regex::new(r.get_ref()) {
                Ok(re) => Some(re),
                Err(e) => {
                    problems.push(Problem::at(
                        r.span(),
                        bad_regex("body_regex", r.get_ref(), &e),
                    ));
                    None
                }
            });
        let json = match (&self.json_pointer, &self.json_value) {
            (None, None) => None,
            (None, Some(v)) => {
                problems.push(Problem::at(
                    v.span(),
                    "'json_value' needs 'json_pointer' to say where in the body to look",
                ));
                None
            }
            (Some(p), value) => {
                let ptr = p.get_ref();
                if !ptr.is_empty() && !ptr.starts_with('/') {
                    problems.push(Problem::at(
                        p.span(),
                        format!("'json_pointer' '{ptr}' must start with '/', e.g. '/status'"),
                    ));
                }
                Some((ptr.clone(), value.as_ref().map(|v| v.get_ref().clone())))
            }
        };
        BodyChecks {
            contains: self.body_contains.clone(),
            regex,
            json,
        }
    }
}

/// The TLS file keys shared by `http` and `scrape` entries.
pub(crate) struct TlsKeys<'a> {
    pub ca_file: Option<&'a Spanned<PathBuf>>,
    pub client_cert: Option<&'a Spanned<PathBuf>>,
    pub client_key: Option<&'a Spanned<PathBuf>>,
    pub entry: &'a Range<usize>,
}

/// A client certificate chain and its key.
type Identity = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

impl TlsKeys<'_> {
    /// Reads the files, reporting what is wrong at the key's position.
    pub(crate) fn load(
        self,
        problems: &mut Vec<Problem>,
    ) -> Option<(Arc<rustls::RootCertStore>, Option<Identity>)> {
        let roots = match cert::roots(self.ca_file.map(|c| c.get_ref().as_path())) {
            Ok(r) => Some(r),
            Err(e) => {
                let span = self.ca_file.map_or(self.entry.clone(), Spanned::span);
                problems.push(Problem::at(span, format!("'ca_file': {e}")));
                None
            }
        };
        let identity = match (self.client_cert, self.client_key) {
            (None, None) => Some(None),
            (Some(c), Some(k)) => match cert::read_identity(c.get_ref(), k.get_ref()) {
                Ok(id) => Some(Some(id)),
                Err(e) => {
                    problems.push(Problem::at(c.span(), e));
                    None
                }
            },
            (Some(c), None) => {
                problems.push(Problem::at(
                    c.span(),
                    "'client_cert' needs 'client_key' (the PEM private key)",
                ));
                None
            }
            (None, Some(k)) => {
                problems.push(Problem::at(
                    k.span(),
                    "'client_key' needs 'client_cert' (the PEM certificate)",
                ));
                None
            }
        };
        Some((roots?, identity?))
    }
}

/// Checks a `url` key: http or https, with a host.
pub(crate) fn check_url(
    url: &Spanned<String>,
    example: &str,
    problems: &mut Vec<Problem>,
) -> Option<Url> {
    match Url::parse(url.get_ref()) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
        _ => {
            problems.push(Problem::at(
                url.span(),
                format!(
                    "'url' '{}' is not an http:// or https:// URL: write e.g. '{example}'",
                    url.get_ref()
                ),
            ));
            None
        }
    }
}

/// Checks a `headers` table.
pub(crate) fn header_map(
    h: &Spanned<BTreeMap<String, String>>,
    problems: &mut Vec<Problem>,
) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in h.get_ref() {
        match (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            (Ok(name), Ok(value)) => {
                map.insert(name, value);
            }
            _ => problems.push(Problem::at(
                h.span(),
                format!("header '{k}' is not a valid HTTP header name and value"),
            )),
        }
    }
    map
}

/// A reqwest client for probes: our TLS config (recording verifier, optional
/// client certificate), a new connection per request.
pub(crate) fn client(
    verifier: &Arc<RecordingVerifier>,
    identity: Option<Identity>,
    follow_redirects: bool,
    budget: Duration,
) -> Result<reqwest::Client, String> {
    let tls = cert::client_config(verifier.clone(), identity, &[b"http/1.1"])?;
    let redirects = if follow_redirects {
        reqwest::redirect::Policy::limited(10)
    } else {
        reqwest::redirect::Policy::none()
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .redirect(redirects)
        .pool_max_idle_per_host(0)
        .connect_timeout(budget)
        .timeout(budget)
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// Runs one http check (see the module docs).
pub struct HttpCollector {
    client: reqwest::Client,
    verifier: Arc<RecordingVerifier>,
    method: Method,
    url: Url,
    headers: HeaderMap,
    body: Option<String>,
    /// `None`: any 2xx.
    statuses: Option<Vec<u16>>,
    checks: BodyChecks,
    max_body: usize,
    budget: Duration,
    log: FailureLog,
}

impl HttpCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        self.verifier.clear();
        let started = Instant::now();
        let mut status = 0;
        let result = match tokio::time::timeout(self.budget, self.exchange(&mut status)).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                format!("no complete answer within {}", HumanDuration(self.budget)),
            )),
        };
        let elapsed = started.elapsed();
        self.log
            .note("http", &instance_of(cx), result.as_ref().map(|_| ()));

        let mut out = SampleBuf::new(cx.now);
        probe::outcome_samples(&mut out, result.as_ref().map(|_| ()), elapsed);
        out.add("probe_http_status_code", Labels::empty(), f64::from(status));
        if let Some(h) = self.verifier.take() {
            for e in cert::chain_samples(
                &mut out,
                &Labels::empty(),
                &h.chain,
                Some(&h.verdict),
                cx.now,
            ) {
                tracing::debug!(url = %self.url, error = %e, "served certificate not readable");
            }
        }
        Ok(out.into_samples())
    }

    /// Sends the request and checks the answer; `status` gets the answer's status.
    async fn exchange(&self, status: &mut u16) -> Result<(), Failure> {
        let mut req = self
            .client
            .request(self.method.clone(), self.url.clone())
            .headers(self.headers.clone());
        if let Some(b) = &self.body {
            req = req.body(b.clone());
        }
        let mut resp = req.send().await.map_err(|e| probe::http_failure(&e))?;
        *status = resp.status().as_u16();
        let body = probe::read_body(&mut resp, self.max_body).await?;
        let ok = match &self.statuses {
            Some(list) => list.contains(status),
            None => resp.status().is_success(),
        };
        if !ok {
            return Err(Failure::new(
                Reason::Status,
                format!("status {} is not an expected one", status),
            ));
        }
        self.check_body(&body)
    }

    fn check_body(&self, body: &[u8]) -> Result<(), Failure> {
        let c = &self.checks;
        if c.contains.is_none() && c.regex.is_none() && c.json.is_none() {
            return Ok(());
        }
        let text = String::from_utf8_lossy(body);
        if let Some(want) = &c.contains
            && !text.contains(want.as_str())
        {
            return Err(Failure::new(
                Reason::Mismatch,
                format!("the body does not contain '{want}'"),
            ));
        }
        if let Some(re) = &c.regex
            && !re.is_match(&text)
        {
            return Err(Failure::new(
                Reason::Mismatch,
                format!("the body does not match '{}'", re.as_str()),
            ));
        }
        if let Some((ptr, want)) = &c.json {
            let doc: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                Failure::new(Reason::Mismatch, format!("the body is not JSON: {e}"))
            })?;
            let got = doc.pointer(ptr).ok_or_else(|| {
                Failure::new(
                    Reason::Mismatch,
                    format!("the JSON body has nothing at '{ptr}'"),
                )
            })?;
            if let Some(want) = want
                && !json_equal(got, want)
            {
                return Err(Failure::new(
                    Reason::Mismatch,
                    format!("the JSON body has {got} at '{ptr}', not {want}"),
                ));
            }
        }
        Ok(())
    }
}

/// JSON equality with numbers compared as numbers (`1` equals `1.0`).
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) => x == y,
        _ => a == b,
    }
}

impl Collector for HttpCollector {
    fn kind(&self) -> &'static str {
        "http"
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
