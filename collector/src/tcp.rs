//! `[[collector.tcp]]`: can a TCP port be reached, and (optionally) does it answer
//! as it should: connect, send a line, wait for a banner.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | unit |
//! |---|---|
//! | `probe_success` | 1 when the connection opened (and `expect` matched), else 0 |
//! | `probe_duration_seconds` | from connecting to the end of the exchange, seconds |
//! | `probe_error_info{reason,message}` | 1, only while the probe fails (see [`crate::probe`]) |
//!
//! With `expect`, the answer is read until the regex matches, the peer closes,
//! 64 KiB have arrived or the time budget is spent; without it, the probe ends as
//! soon as the connection is open (after writing `send`, if set).

use std::ops::Range;
use std::time::{Duration, Instant};

use regex::bytes::Regex;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::Sample;
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, SampleBuf, TargetLabels, bad_regex, instance_of};
use crate::probe::{self, Failure, FailureLog, Reason};

/// How much of an answer is read while waiting for `expect`.
const MAX_ANSWER: usize = 64 * 1024;

/// `[[collector.tcp]]`: one TCP port.
///
/// ```toml
/// [[collector.tcp]]
/// name = "redis"
/// address = "127.0.0.1:6379"
/// send = "PING\r\n"
/// expect = '^\+PONG'
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TcpConfig {
    /// The `instance` label of every sample. Required. Example: `name = "pg"`.
    pub name: Spanned<String>,
    /// How often to probe, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one probe may take, at most the interval. Default: the interval,
    /// but no more than `"10s"`; the probe itself stops a little earlier.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none; `reason` and `message` are taken.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// `host:port` to connect to (a name, an IPv4 address, or `[IPv6]:port`).
    /// Required. Example: `address = "db-1:5432"`.
    pub address: Spanned<String>,
    /// Text to send once connected (TOML escapes such as `\r\n` work). Default:
    /// nothing. Example: `send = "PING\r\n"`.
    #[serde(default)]
    pub send: Option<String>,
    /// A regular expression (Rust `regex` syntax, searched in the bytes received)
    /// the answer must match. Default: not checked. Example: `expect = '^SSH-2\.0'`.
    #[serde(default)]
    pub expect: Option<Spanned<String>>,
}

impl TcpConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "tcp",
            entry,
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["reason", "message"],
        }
        .check(problems);
        let address = check_address("address", &self.address, problems);
        let expect = match &self.expect {
            None => Some(None),
            Some(e) => match Regex::new(e.get_ref()) {
                Ok(re) => Some(Some(re)),
                Err(err) => {
                    problems.push(Problem::at(
                        e.span(),
                        bad_regex("expect", e.get_ref(), &err),
                    ));
                    None
                }
            },
        };
        let common = common?;
        let collector = TcpCollector {
            address: address?,
            send: self.send.clone().map(String::into_bytes),
            expect: expect?,
            budget: probe::budget(common.timeout),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }
}

/// Checks a `host:port` key; returns it as written.
pub(crate) fn check_address(
    key: &str,
    value: &Spanned<String>,
    problems: &mut Vec<Problem>,
) -> Option<String> {
    let a = value.get_ref();
    match split_host_port(a) {
        Some(_) => Some(a.clone()),
        None => {
            problems.push(Problem::at(
                value.span(),
                format!(
                    "'{key}' '{a}' is not host:port: write e.g. '127.0.0.1:5432' or '[::1]:443'"
                ),
            ));
            None
        }
    }
}

/// `("host", port)` of `host:port` or `[v6]:port`.
pub(crate) fn split_host_port(a: &str) -> Option<(&str, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let port: u16 = port.parse().ok().filter(|p| *p > 0)?;
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.strip_suffix(']')?,
        None if host.contains(':') => return None,
        None => host,
    };
    (!host.is_empty()).then_some((host, port))
}

/// Connects to `address`, naming a DNS failure as such.
pub(crate) async fn connect(address: &str) -> Result<TcpStream, Failure> {
    let addrs: Vec<std::net::SocketAddr> = tokio::net::lookup_host(address)
        .await
        .map_err(|e| Failure::new(Reason::Dns, format!("cannot resolve '{address}': {e}")))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match TcpStream::connect(addr).await {
            Ok(s) => return Ok(s),
            Err(e) => last = Some(Failure::io(&format!("connect to {addr}"), &e)),
        }
    }
    Err(last.unwrap_or_else(|| {
        Failure::new(Reason::Dns, format!("'{address}' resolves to no address"))
    }))
}

/// Probes one TCP port (see the module docs).
pub struct TcpCollector {
    address: String,
    send: Option<Vec<u8>>,
    expect: Option<Regex>,
    budget: Duration,
    log: FailureLog,
}

impl TcpCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let started = Instant::now();
        let result = match tokio::time::timeout(self.budget, self.exchange()).await {
            Ok(r) => r,
            Err(_) => Err(Failure::new(
                Reason::Timeout,
                match &self.expect {
                    Some(re) => format!(
                        "no answer matching '{}' within {}",
                        re.as_str(),
                        HumanDuration(self.budget)
                    ),
                    None => format!("no connection within {}", HumanDuration(self.budget)),
                },
            )),
        };
        self.log
            .note("tcp", &instance_of(cx), result.as_ref().map(|_| ()));
        let mut out = SampleBuf::new(cx.now);
        probe::outcome_samples(&mut out, result.as_ref().map(|_| ()), started.elapsed());
        Ok(out.into_samples())
    }

    async fn exchange(&self) -> Result<(), Failure> {
        let mut stream = connect(&self.address).await?;
        if let Some(data) = &self.send {
            stream
                .write_all(data)
                .await
                .map_err(|e| Failure::io("send", &e))?;
        }
        let Some(re) = &self.expect else {
            return Ok(());
        };
        let mut answer = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = stream
                .read(&mut buf)
                .await
                .map_err(|e| Failure::io("read", &e))?;
            if n == 0 {
                return Err(Failure::new(
                    Reason::Mismatch,
                    format!(
                        "the peer closed after {} bytes without '{}': got '{}'",
                        answer.len(),
                        re.as_str(),
                        preview(&answer)
                    ),
                ));
            }
            answer.extend_from_slice(&buf[..n]);
            if re.is_match(&answer) {
                return Ok(());
            }
            if answer.len() >= MAX_ANSWER {
                return Err(Failure::new(
                    Reason::Mismatch,
                    format!("no '{}' in the first {MAX_ANSWER} bytes", re.as_str()),
                ));
            }
        }
    }
}

/// The start of an answer, printable, for messages.
fn preview(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(60)])
        .chars()
        .map(|c| if c.is_control() { '.' } else { c })
        .collect()
}

impl Collector for TcpCollector {
    fn kind(&self) -> &'static str {
        "tcp"
    }

    fn collect<'a>(
        &'a mut self,
        cx: &'a CollectContext,
    ) -> BoxFuture<'a, Result<Vec<Sample>, CollectError>> {
        Box::pin(self.run(cx))
    }
}
