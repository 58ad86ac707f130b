//! `[[collector.tls]]`: certificates and how long they have left, read from a TLS
//! endpoint (`address`) or from files on disk (`path`: a file, a directory or a
//! glob such as `/etc/letsencrypt/live/*/fullchain.pem`).
//!
//! Metrics, one series per certificate (labels besides `instance` and the entry's
//! `labels`: `subject`, `issuer`, `serial`, `chain`, and `address` or `path`):
//!
//! | metric | unit |
//! |---|---|
//! | `tls_cert_days_left` | days until `notAfter`, fractional; negative once expired |
//! | `tls_cert_not_after_seconds` | `notAfter`, Unix seconds |
//! | `tls_cert_valid` | leaf only: 1 when the chain leads to a trusted root (the system's, or `ca_file`'s), every certificate is within its validity period, and the leaf names the host; else 0 |
//! | `tls_cert_verify_error_info{reason}` | 1 while `tls_cert_valid` is 0: `expired`, `not yet valid`, `unknown issuer` (self-signed or private CA), `wrong hostname`, … |
//! | `probe_success` | endpoints: 1 when the handshake completed; files: 1 when every file matched was read and held a certificate |
//! | `probe_duration_seconds` | endpoints: connecting, STARTTLS and the handshake; files: reading them |
//! | `probe_error_info{reason,message}` | 1 while `probe_success` is 0 (see [`crate::probe`]) |
//!
//! `chain` tells where a certificate sits: `leaf` (the first: the server's own
//! certificate, or the first in a file), `intermediate`, or `root` (self-signed,
//! after the leaf). An expired certificate is data (negative days), not an error:
//! the handshake accepts any certificate, records it, and judges it separately.
//!
//! For files, the hostname is checked only when `server_name` is set; the first
//! certificate of a file is the leaf and the rest are its chain, as in
//! `fullchain.pem`. In a directory, files that hold no certificate (keys, READMEs)
//! are skipped; a file named on its own or matched by a glob must hold one.

pub(crate) mod cert;

use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::RootCertStore;
use rustls::pki_types::{ServerName, UnixTime};
use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::Sample;
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{
    Common, CommonKeys, NameKey, SampleBuf, TargetLabels, blocking, instance_of, one_label,
};
use crate::probe::{self, Failure, FailureLog, Reason};
use crate::tcp::{check_address, connect, split_host_port};
use cert::{RecordingVerifier, Verdict};

/// `[[collector.tls]]`: the certificates of one endpoint or of some files. Set
/// exactly one of `address` and `path`.
///
/// ```toml
/// [[collector.tls]]
/// name = "www"
/// address = "203.0.113.7:443"
/// server_name = "www.example.org"
///
/// [[collector.tls]]
/// name = "letsencrypt"
/// path = "/etc/letsencrypt/live/*/fullchain.pem"
/// interval = "1h"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The `instance` label of every sample. Required. Example: `name = "www"`.
    pub name: Spanned<String>,
    /// How often to check, at least `"1s"`. Default `"5s"`; certificates change
    /// rarely, so `"1m"` or more is usual.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one check may take, at most the interval. Default: the interval,
    /// but no more than `"10s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none; `subject`, `issuer`, `serial`,
    /// `chain`, `address`, `path`, `reason` and `message` are taken.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The endpoint, `host:port`. Example: `address = "db-1:5432"`.
    #[serde(default)]
    pub address: Option<Spanned<String>>,
    /// The host name sent as SNI and checked against the certificate. Default: the
    /// host of `address` (an IP address is sent without SNI and checked against
    /// the certificate's IP addresses). With `path`: check the files for this name.
    /// Example: `server_name = "www.example.org"`.
    #[serde(default)]
    pub server_name: Option<Spanned<String>>,
    /// Upgrade a plain connection first: `"smtp"` (EHLO + STARTTLS) or
    /// `"postgres"` (SSLRequest). Default: TLS from the first byte.
    #[serde(default)]
    pub starttls: Option<Spanned<String>>,
    /// A PEM file, a directory of them, or a glob (`*`, `?`, `[…]`). Example:
    /// `path = "/etc/letsencrypt/live/*/fullchain.pem"`.
    #[serde(default)]
    pub path: Option<Spanned<String>>,
    /// A PEM file of CA certificates to trust instead of the system's, for
    /// `tls_cert_valid`. Example: `ca_file = "/etc/pki/internal-ca.pem"`.
    #[serde(default)]
    pub ca_file: Option<Spanned<PathBuf>>,
}

/// How to get to the TLS handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartTls {
    None,
    Smtp,
    Postgres,
}

/// What an entry reads.
#[derive(Debug, Clone)]
enum Target {
    Endpoint {
        address: String,
        name: ServerName<'static>,
        starttls: StartTls,
    },
    Files {
        pattern: String,
        name: Option<ServerName<'static>>,
    },
}

impl TlsConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "tls",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &[
                "subject", "issuer", "serial", "chain", "address", "path", "reason", "message",
            ],
        }
        .check(problems);
        let target = self.target(&entry, problems);
        let roots = match cert::roots(self.ca_file.as_ref().map(|c| c.get_ref().as_path())) {
            Ok(r) => Some(r),
            Err(e) => {
                let span = self.ca_file.as_ref().map_or(entry, Spanned::span);
                problems.push(Problem::at(span, format!("'ca_file': {e}")));
                None
            }
        };
        let (common, target, roots) = (common?, target?, roots?);
        let verifier = Arc::new(RecordingVerifier::new(roots.clone(), false));
        let config = match cert::client_config(verifier.clone(), None, &[]) {
            Ok(c) => Arc::new(c),
            Err(e) => {
                problems.push(Problem::at(self.name.span(), e));
                return None;
            }
        };
        let collector = TlsCollector {
            target,
            roots,
            verifier,
            connector: tokio_rustls::TlsConnector::from(config),
            budget: probe::budget(common.timeout),
            log: FailureLog::default(),
        };
        Some((common, Box::new(collector)))
    }

    fn target(&self, entry: &Range<usize>, problems: &mut Vec<Problem>) -> Option<Target> {
        let server_name = match &self.server_name {
            None => Some(None),
            Some(n) => match ServerName::try_from(n.get_ref().clone()) {
                Ok(name) => Some(Some(name)),
                Err(_) => {
                    problems.push(Problem::at(
                        n.span(),
                        format!(
                            "'server_name' '{}' is not a host name or IP address",
                            n.get_ref()
                        ),
                    ));
                    None
                }
            },
        };
        let starttls = match &self.starttls {
            None => Some(StartTls::None),
            Some(s) => match s.get_ref().as_str() {
                "smtp" => Some(StartTls::Smtp),
                "postgres" => Some(StartTls::Postgres),
                other => {
                    problems.push(Problem::at(
                        s.span(),
                        format!("'starttls' '{other}' is not known: write 'smtp' or 'postgres'"),
                    ));
                    None
                }
            },
        };
        let name = self.name.get_ref();
        match (&self.address, &self.path) {
            (Some(a), None) => {
                let address = check_address("address", a, problems)?;
                let server_name = match server_name? {
                    Some(n) => n,
                    None => {
                        let (host, _) = split_host_port(&address)?;
                        match ServerName::try_from(host.to_string()) {
                            Ok(n) => n,
                            Err(_) => {
                                problems.push(Problem::at(
                                    a.span(),
                                    format!("the host of 'address' '{address}' is not a valid name: set 'server_name'"),
                                ));
                                return None;
                            }
                        }
                    }
                };
                Some(Target::Endpoint {
                    address,
                    name: server_name,
                    starttls: starttls?,
                })
            }
            (None, Some(p)) => {
                if let Some(s) = &self.starttls {
                    problems.push(Problem::at(
                        s.span(),
                        "'starttls' is for 'address' endpoints, not for 'path' files",
                    ));
                    return None;
                }
                let pattern = p.get_ref();
                if !pattern.starts_with('/') {
                    problems.push(Problem::at(
                        p.span(),
                        format!("'path' '{pattern}' is relative: write an absolute path, e.g. '/etc/ssl/certs/site.pem'"),
                    ));
                    return None;
                }
                if let Err(e) = glob::Pattern::new(pattern) {
                    problems.push(Problem::at(
                        p.span(),
                        format!("'path' '{pattern}' is not a valid glob ({})", e.msg),
                    ));
                    return None;
                }
                Some(Target::Files {
                    pattern: pattern.clone(),
                    name: server_name?,
                })
            }
            (None, None) => {
                problems.push(Problem::at(
                    entry.clone(),
                    format!("tls '{name}' says nothing to check: set 'address' (host:port) or 'path' (file, directory or glob)"),
                ));
                None
            }
            (Some(_), Some(p)) => {
                problems.push(Problem::at(
                    p.span(),
                    format!("tls '{name}' sets both 'address' and 'path': keep only one"),
                ));
                None
            }
        }
    }
}

/// Reads and judges certificates (see the module docs).
pub struct TlsCollector {
    target: Target,
    roots: Arc<RootCertStore>,
    verifier: Arc<RecordingVerifier>,
    connector: tokio_rustls::TlsConnector,
    budget: Duration,
    log: FailureLog,
}

impl TlsCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let started = Instant::now();
        let mut out = SampleBuf::new(cx.now);
        let result = match self.target.clone() {
            Target::Endpoint {
                address,
                name,
                starttls,
            } => {
                self.verifier.clear();
                let r = tokio::time::timeout(self.budget, self.handshake(&address, name, starttls))
                    .await
                    .unwrap_or_else(|_| {
                        Err(Failure::new(
                            Reason::Timeout,
                            format!("no TLS handshake within {}", HumanDuration(self.budget)),
                        ))
                    });
                // Even a failed handshake may have shown the chain.
                if let Some(h) = self.verifier.take() {
                    let target = one_label("address", &address);
                    for e in
                        cert::chain_samples(&mut out, &target, &h.chain, Some(&h.verdict), cx.now)
                    {
                        tracing::debug!(%address, error = %e, "certificate not readable");
                    }
                }
                r
            }
            Target::Files { pattern, name } => {
                let roots = self.roots.clone();
                let read = blocking(move || Ok(read_files(&pattern, &roots, name.as_ref())));
                match tokio::time::timeout(self.budget, read).await {
                    Ok(Ok(files)) => {
                        let mut failure = None;
                        for f in files {
                            match f.certs {
                                Ok((chain, verdict)) => {
                                    let target = one_label("path", &f.path);
                                    for e in cert::chain_samples(
                                        &mut out,
                                        &target,
                                        &chain,
                                        Some(&verdict),
                                        cx.now,
                                    ) {
                                        failure.get_or_insert(Failure::new(
                                            Reason::Read,
                                            format!("{}: {e}", f.path),
                                        ));
                                    }
                                }
                                Err(e) => {
                                    failure.get_or_insert(Failure::new(Reason::Read, e));
                                }
                            }
                        }
                        failure.map_or(Ok(()), Err)
                    }
                    Ok(Err(e)) => Err(Failure::new(Reason::Read, e.to_string())),
                    Err(_) => Err(Failure::new(
                        Reason::Timeout,
                        format!(
                            "the files were not read within {}",
                            HumanDuration(self.budget)
                        ),
                    )),
                }
            }
        };
        self.log
            .note("tls", &instance_of(cx), result.as_ref().map(|_| ()));
        probe::outcome_samples(&mut out, result.as_ref().map(|_| ()), started.elapsed());
        Ok(out.into_samples())
    }

    async fn handshake(
        &self,
        address: &str,
        name: ServerName<'static>,
        starttls: StartTls,
    ) -> Result<(), Failure> {
        let mut stream = connect(address).await?;
        match starttls {
            StartTls::None => {}
            StartTls::Smtp => smtp_starttls(&mut stream).await?,
            StartTls::Postgres => postgres_ssl_request(&mut stream).await?,
        }
        let mut tls = self
            .connector
            .connect(name, stream)
            .await
            .map_err(|e| Failure::new(Reason::Tls, format!("TLS handshake: {e}")))?;
        // Say goodbye properly; a failure here does not matter.
        let _ = tls.shutdown().await;
        Ok(())
    }
}

/// SMTP: greeting, EHLO, STARTTLS, each answer read whole (multi-line replies
/// continue with `NNN-`).
async fn smtp_starttls(stream: &mut TcpStream) -> Result<(), Failure> {
    let mut reader = BufReader::new(stream);
    smtp_reply(&mut reader, "220", "greeting").await?;
    reader
        .get_mut()
        .write_all(b"EHLO warden\r\n")
        .await
        .map_err(|e| Failure::io("send EHLO", &e))?;
    smtp_reply(&mut reader, "250", "EHLO").await?;
    reader
        .get_mut()
        .write_all(b"STARTTLS\r\n")
        .await
        .map_err(|e| Failure::io("send STARTTLS", &e))?;
    smtp_reply(&mut reader, "220", "STARTTLS").await?;
    // The server says nothing more before the handshake, so nothing is left in the
    // reader's buffer.
    Ok(())
}

async fn smtp_reply(
    reader: &mut BufReader<&mut TcpStream>,
    code: &str,
    what: &str,
) -> Result<(), Failure> {
    for _ in 0..100 {
        let mut line = String::new();
        let n = reader
            .read_line(&mut line)
            .await
            .map_err(|e| Failure::io(&format!("SMTP {what}"), &e))?;
        if n == 0 {
            return Err(Failure::new(
                Reason::Reset,
                format!("the SMTP server closed at {what}"),
            ));
        }
        if !line.starts_with(code) {
            return Err(Failure::new(
                Reason::Protocol,
                format!("SMTP {what}: expected {code}, got '{}'", line.trim_end()),
            ));
        }
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok(());
        }
    }
    Err(Failure::new(
        Reason::Protocol,
        format!("SMTP {what}: endless reply"),
    ))
}

/// PostgreSQL: the SSLRequest message, answered `S` when the server speaks TLS.
async fn postgres_ssl_request(stream: &mut TcpStream) -> Result<(), Failure> {
    const SSL_REQUEST: [u8; 8] = [0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f];
    stream
        .write_all(&SSL_REQUEST)
        .await
        .map_err(|e| Failure::io("send SSLRequest", &e))?;
    let answer = stream
        .read_u8()
        .await
        .map_err(|e| Failure::io("read the SSLRequest answer", &e))?;
    match answer {
        b'S' => Ok(()),
        b'N' => Err(Failure::new(
            Reason::Tls,
            "the PostgreSQL server does not offer TLS",
        )),
        other => Err(Failure::new(
            Reason::Protocol,
            format!("unexpected answer {other:#04x} to SSLRequest: not PostgreSQL?"),
        )),
    }
}

/// One file's certificates and verdict, or why it could not be read.
struct FileCerts {
    path: String,
    certs: Result<(Vec<rustls::pki_types::CertificateDer<'static>>, Verdict), String>,
}

/// Reads every file `pattern` names (blocking).
fn read_files(
    pattern: &str,
    roots: &RootCertStore,
    name: Option<&ServerName<'_>>,
) -> Vec<FileCerts> {
    let now = UnixTime::now();
    let judge = |path: PathBuf| -> FileCerts {
        let certs = cert::read_pem_certs(&path).and_then(|chain| {
            if chain.is_empty() {
                return Err(format!("'{}' holds no PEM certificate", path.display()));
            }
            let verdict = cert::verify(roots, &chain, name, now);
            Ok((chain, verdict))
        });
        FileCerts {
            path: path.display().to_string(),
            certs,
        }
    };
    let literal = PathBuf::from(pattern);
    let is_glob = pattern.contains(['*', '?', '[']);
    if !is_glob && literal.is_dir() {
        let mut files: Vec<PathBuf> = match std::fs::read_dir(&literal) {
            Ok(rd) => rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .collect(),
            Err(e) => {
                return vec![FileCerts {
                    path: pattern.to_string(),
                    certs: Err(format!("cannot list '{pattern}': {e}")),
                }];
            }
        };
        files.sort();
        let found: Vec<FileCerts> = files
            .into_iter()
            .map(judge)
            .filter(|f| !matches!(&f.certs, Err(e) if e.contains("holds no PEM certificate")))
            .collect();
        if found.is_empty() {
            return vec![FileCerts {
                path: pattern.to_string(),
                certs: Err(format!("no file in '{pattern}' holds a certificate")),
            }];
        }
        return found;
    }
    let paths: Vec<PathBuf> = if is_glob {
        // The pattern was checked when the config was read.
        glob::glob(pattern)
            .map(|paths| paths.flatten().filter(|p| p.is_file()).collect())
            .unwrap_or_default()
    } else {
        vec![literal]
    };
    if paths.is_empty() {
        return vec![FileCerts {
            path: pattern.to_string(),
            certs: Err(format!("no file matches '{pattern}'")),
        }];
    }
    paths.into_iter().map(judge).collect()
}

impl Collector for TlsCollector {
    fn kind(&self) -> &'static str {
        "tls"
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
