//! What the network probes (`http`, `tcp`, `tls`, `scrape`) share: the failure
//! type with its fixed reasons, the samples every probe writes, the time budget
//! inside the entry's timeout, bounded body reads, and logging failures on change.
//!
//! A failed probe is data, not a collector error: the run succeeds and writes
//! `probe_success 0` (or `up 0`), so rules see the failure at once. The scheduler
//! would turn an error into `warden_collector_up 0` and write nothing else.
//!
//! The reason of a failure goes into an info series, value 1, written only while
//! the probe fails: `probe_error_info{reason="timeout",message="…"}`
//! (`scrape_error_info` for scrapes). `reason` is one of a fixed set (see
//! [`Reason`]), so rules can match on it; `message` is the detail, at most 200
//! characters. The same text goes to the log once when it changes.

use std::time::Duration;

use warden_engine::model::Labels;

use crate::common::SampleBuf;

/// Why a probe failed: a fixed set, the `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No answer within the probe's time budget.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The connection was refused (nothing listens).
    Refused,
    /// The connection was reset or closed early.
    Reset,
    /// Connecting failed otherwise (unreachable network, …).
    Connect,
    /// The TLS handshake failed (or the certificate was refused).
    Tls,
    /// The answer was not the protocol expected (not HTTP, garbage).
    Protocol,
    /// The HTTP status was not one of the expected ones.
    Status,
    /// The body did not match (substring, regex, JSON pointer), or the banner did
    /// not come.
    Mismatch,
    /// The body was larger than the configured limit.
    TooLarge,
    /// Files could not be read (tls `path` targets).
    Read,
    /// The server refused the credentials (database collectors).
    Auth,
    /// The user lacks a privilege a query needs (database collectors).
    Permission,
    /// The server is starting up, shutting down, or has no room for another
    /// connection (database collectors).
    Unavailable,
    /// A query failed for another reason (database collectors).
    Query,
}

impl Reason {
    /// The label value.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::Timeout => "timeout",
            Reason::Dns => "dns",
            Reason::Refused => "refused",
            Reason::Reset => "reset",
            Reason::Connect => "connect",
            Reason::Tls => "tls",
            Reason::Protocol => "protocol",
            Reason::Status => "status",
            Reason::Mismatch => "mismatch",
            Reason::TooLarge => "too_large",
            Reason::Read => "read",
            Reason::Auth => "auth",
            Reason::Permission => "permission",
            Reason::Unavailable => "unavailable",
            Reason::Query => "query",
        }
    }
}

/// A failed probe: a fixed reason and the detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub reason: Reason,
    pub message: String,
}

impl Failure {
    pub(crate) fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }

    /// The failure of an I/O error while connecting or talking.
    pub(crate) fn io(what: &str, e: &std::io::Error) -> Self {
        use std::io::ErrorKind as K;
        let reason = match e.kind() {
            K::ConnectionRefused => Reason::Refused,
            K::ConnectionReset | K::ConnectionAborted | K::BrokenPipe | K::UnexpectedEof => {
                Reason::Reset
            }
            K::TimedOut => Reason::Timeout,
            K::InvalidData => Reason::Protocol,
            _ => Reason::Connect,
        };
        Self::new(reason, format!("{what}: {e}"))
    }
}

/// How long a probe may take: a little less than the entry's timeout, so that the
/// probe reports its own timeout as data before the scheduler gives up on the run.
pub(crate) fn budget(timeout: Duration) -> Duration {
    timeout.saturating_sub((timeout / 10).min(Duration::from_millis(250)))
}

/// Writes `probe_success`, `probe_duration_seconds` and, on failure,
/// `probe_error_info{reason,message}`.
pub(crate) fn outcome_samples(
    out: &mut SampleBuf,
    result: Result<(), &Failure>,
    duration: Duration,
) {
    let none = Labels::empty;
    out.add(
        "probe_success",
        none(),
        if result.is_ok() { 1.0 } else { 0.0 },
    );
    out.add("probe_duration_seconds", none(), duration.as_secs_f64());
    if let Err(f) = result {
        out.add("probe_error_info", error_labels(f), 1.0);
    }
}

/// `{reason, message}` of a failure; the message is cut to 200 characters.
pub(crate) fn error_labels(f: &Failure) -> Labels {
    let message: String = f.message.chars().take(200).collect();
    Labels::new([("reason", f.reason.as_str()), ("message", message.as_str())]).unwrap_or_default()
}

/// Logs a probe's failures when they change (first failure, another reason,
/// recovery), not on every run.
#[derive(Debug, Default)]
pub(crate) struct FailureLog {
    last: Option<Failure>,
}

impl FailureLog {
    pub(crate) fn note(&mut self, kind: &str, instance: &str, result: Result<(), &Failure>) {
        match (result, &self.last) {
            (Ok(()), None) => {}
            (Ok(()), Some(_)) => {
                tracing::info!(collector = kind, instance, "probe recovered");
                self.last = None;
            }
            (Err(f), Some(last)) if last == f => {}
            (Err(f), _) => {
                tracing::warn!(collector = kind, instance, reason = f.reason.as_str(), error = %f.message, "probe failed");
                self.last = Some(f.clone());
            }
        }
    }
}

/// Reads a body chunk by chunk, stopping past `limit` bytes.
pub(crate) async fn read_body(
    resp: &mut reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, Failure> {
    let mut body = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > limit {
                    return Err(Failure::new(
                        Reason::TooLarge,
                        format!("the body is larger than {limit} bytes (max_body_bytes)"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(http_failure(&e)),
        }
    }
}

/// The failure of a reqwest error: the first cause that says what happened.
pub(crate) fn http_failure(e: &reqwest::Error) -> Failure {
    let detail = error_chain(e);
    if e.is_timeout() {
        return Failure::new(Reason::Timeout, detail);
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = source {
        if err.downcast_ref::<rustls::Error>().is_some() {
            return Failure::new(Reason::Tls, detail);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if wraps_rustls(io) {
                return Failure::new(Reason::Tls, detail);
            }
            let f = Failure::io("", io);
            if f.reason != Reason::Connect {
                return Failure::new(f.reason, detail);
            }
        }
        source = err.source();
    }
    let lower = detail.to_ascii_lowercase();
    let reason = if lower.contains("dns error") || lower.contains("failed to lookup") {
        Reason::Dns
    } else if e.is_connect() {
        Reason::Connect
    } else if e.is_body() || e.is_decode() {
        Reason::Reset
    } else {
        Reason::Protocol
    };
    Failure::new(reason, detail)
}

/// True when `io` carries a rustls error, however deeply: connectors wrap it in
/// io errors inside io errors, and an io error's `source()` skips what it wraps.
fn wraps_rustls(io: &std::io::Error) -> bool {
    let mut inner = io.get_ref();
    while let Some(e) = inner {
        if e.downcast_ref::<rustls::Error>().is_some() {
            return true;
        }
        inner = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref());
    }
    false
}

/// `outer: inner: innermost`, without repeats (reqwest's Display shows only the
/// outer layer).
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(e);
    while let Some(err) = source {
        let text = err.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = err.source();
    }
    parts.join(": ")
}
