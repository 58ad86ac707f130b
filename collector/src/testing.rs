//! Test support: building entries from TOML, running one collection, reading the
//! samples, certificates made at test time (rcgen) and a TLS/HTTPS server on
//! `127.0.0.1:0` (tokio-rustls + hyper + axum).
#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failed step should fail the test

use std::net::SocketAddr;
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use tokio_util::sync::CancellationToken;
use warden_engine::model::{Labels, Sample, now_ms};
use warden_engine::ports::CollectContext;
use warden_engine::scheduler::{CollectorSpec, Pusher};
use warden_engine::store::Ingest;

use crate::CollectorsConfig;

/// Installs ring as the process' crypto provider, as the binary does.
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    collector: CollectorsConfig,
}

/// The one entry `text` configures, built.
pub fn spec(text: &str) -> CollectorSpec {
    install_provider();
    let file: File = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    let mut specs = file.collector.build().unwrap_or_else(|p| panic!("{p:?}"));
    assert_eq!(specs.len(), 1);
    specs.remove(0)
}

/// The problems of a config that parses but does not build, as messages.
pub fn problems(text: &str) -> Vec<String> {
    install_provider();
    let file: File = toml::from_str(text).unwrap_or_else(|e| panic!("{e}"));
    match file.collector.build() {
        Ok(_) => panic!("should not build"),
        Err(p) => p.into_iter().map(|p| p.message).collect(),
    }
}

/// One run of the entry, with the target labels applied as the scheduler would.
pub async fn run(spec: &mut CollectorSpec) -> Vec<Sample> {
    let mut target = spec.labels.clone();
    target.set("instance", &spec.instance).unwrap();
    let (ingest, _rx) = Ingest::channel(16);
    let cx = CollectContext {
        now: now_ms(),
        push: Pusher::new(target, 10_000, ingest),
        shutdown: CancellationToken::new(),
    };
    let run = spec.collector.collect(&cx);
    let mut samples = tokio::time::timeout(spec.timeout, run)
        .await
        .expect("the run ends within the entry's timeout")
        .expect("a probe run reports failures as samples, not errors");
    cx.push.label(&mut samples);
    samples
}

/// The samples named `name`.
pub fn named<'a>(samples: &'a [Sample], name: &str) -> Vec<&'a Sample> {
    samples.iter().filter(|s| s.name.as_str() == name).collect()
}

/// The value of the only sample named `name`.
pub fn value(samples: &[Sample], name: &str) -> f64 {
    let found = named(samples, name);
    assert_eq!(found.len(), 1, "{name} in {samples:#?}");
    found[0].value
}

/// The labels of the only sample named `name`.
pub fn labels<'a>(samples: &'a [Sample], name: &str) -> &'a Labels {
    let found = named(samples, name);
    assert_eq!(found.len(), 1, "{name} in {samples:#?}");
    &found[0].labels
}

/// A test certificate authority.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// The CA certificate, PEM.
    pub pem: String,
    /// The CA certificate, DER.
    pub der: CertificateDer<'static>,
}

/// A certificate with its key.
pub struct Leaf {
    pub chain: Vec<CertificateDer<'static>>,
    pub key_pem: String,
    pub cert_pem: String,
}

impl Leaf {
    pub fn key(&self) -> PrivateKeyDer<'static> {
        use rustls::pki_types::pem::PemObject;
        PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap()
    }
}

impl Ca {
    pub fn new(cn: &str) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.self_signed(&key).unwrap();
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            issuer: Issuer::new(params, key),
        }
    }

    /// A leaf for `names`, valid from a day ago for `valid_for` from now (negative:
    /// already expired), with the CA certificate after it in the chain.
    pub fn leaf(&self, names: &[&str], valid_for: time::Duration) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let params = leaf_params(names, valid_for);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain: vec![cert.der().clone(), self.der.clone()],
            cert_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
        }
    }
}

fn leaf_params(names: &[&str], valid_for: time::Duration) -> CertificateParams {
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let mut params = CertificateParams::new(names.clone()).unwrap();
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().cloned().unwrap_or_default(),
    );
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(40);
    params.not_after = now + valid_for;
    params
}

/// A self-signed leaf (no CA).
pub fn self_signed(names: &[&str], valid_for: time::Duration) -> Leaf {
    let key = KeyPair::generate().unwrap();
    let cert = leaf_params(names, valid_for).self_signed(&key).unwrap();
    Leaf {
        chain: vec![cert.der().clone()],
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    }
}

/// A TLS server on `127.0.0.1:0`; stopped when dropped.
pub struct TlsServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `leaf` over TLS. With `app`, each connection is HTTP served by it;
/// without, the server completes handshakes and closes. With `client_ca`, a
/// client certificate signed by it is required.
pub async fn tls_server(
    leaf: &Leaf,
    app: Option<axum::Router>,
    client_ca: Option<&Ca>,
) -> TlsServer {
    install_provider();
    let builder = rustls::ServerConfig::builder();
    let builder = match client_ca {
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(ca.der.clone()).unwrap();
            let v = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .unwrap();
            builder.with_client_cert_verifier(v)
        }
        None => builder.with_no_client_auth(),
    };
    let mut cfg = builder
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let app = app.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                match app {
                    Some(app) => {
                        let svc = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                            .await;
                    }
                    None => {
                        use tokio::io::AsyncWriteExt;
                        let mut tls = tls;
                        let _ = tls.shutdown().await;
                    }
                }
            });
        }
    });
    TlsServer { addr, task }
}

/// An HTTP server for `app` on `127.0.0.1:0`; stopped when dropped.
pub async fn http_server(app: axum::Router) -> TlsServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    TlsServer { addr, task }
}

/// Writes `text` into `dir/name`; returns the path as a string.
pub fn write(dir: &std::path::Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.display().to_string()
}
