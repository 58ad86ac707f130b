//! Certificates as data: reading chains (from a TLS handshake or PEM files),
//! judging them with webpki against trusted roots and a host name, and turning
//! them into `tls_cert_*` samples.
//!
//! The handshake side is a [`RecordingVerifier`]: rustls hands it the peer's chain,
//! it records the chain and webpki's verdict, and it lets the handshake go on
//! (unless asked to enforce), so an expired, self-signed or misnamed certificate is
//! still read and reported instead of ending as a bare handshake error. The http
//! collector uses the same verifier, so it reports the served certificate from the
//! probe's own connection.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use warden_engine::model::Labels;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::common::SampleBuf;

/// The crypto provider every warden TLS client uses (ring, as the binary installs).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    static P: OnceLock<Arc<CryptoProvider>> = OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::ring::default_provider()))
        .clone()
}

/// The system's trusted roots, read once (it takes tens of milliseconds).
fn system_roots() -> Arc<RootCertStore> {
    static ROOTS: OnceLock<Arc<RootCertStore>> = OnceLock::new();
    ROOTS
        .get_or_init(|| {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::debug!(error = %e, "a system CA certificate could not be read");
            }
            let mut store = RootCertStore::empty();
            let (added, ignored) = store.add_parsable_certificates(found.certs);
            tracing::debug!(added, ignored, "system CA certificates loaded");
            Arc::new(store)
        })
        .clone()
}

/// The roots to verify against: the certificates of `ca_file` (which replace the
/// system's), or the system's.
pub(crate) fn roots(ca_file: Option<&Path>) -> Result<Arc<RootCertStore>, String> {
    let Some(path) = ca_file else {
        return Ok(system_roots());
    };
    let certs = read_pem_certs(path)?;
    if certs.is_empty() {
        return Err(format!(
            "'{}' holds no PEM certificate ('-----BEGIN CERTIFICATE-----')",
            path.display()
        ));
    }
    let mut store = RootCertStore::empty();
    let (added, _) = store.add_parsable_certificates(certs);
    if added == 0 {
        return Err(format!(
            "no certificate in '{}' can serve as a trusted root",
            path.display()
        ));
    }
    Ok(Arc::new(store))
}

/// The certificates of a PEM file, in file order.
pub(crate) fn read_pem_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes =
        std::fs::read(path).map_err(|e| format!("cannot read '{}': {e}", path.display()))?;
    CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("'{}' is not valid PEM: {e}", path.display()))
}

/// A client certificate and its key, from PEM files.
pub(crate) fn read_identity(
    cert: &Path,
    key: &Path,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let certs = read_pem_certs(cert)?;
    if certs.is_empty() {
        return Err(format!("'{}' holds no PEM certificate", cert.display()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read a private key from '{}': {e}", key.display()))?;
    Ok((certs, key))
}

/// webpki's judgement of a chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The chain leads to a trusted root and (when a name was given) names the host.
    Valid,
    /// Why not, in a few words (`expired`, `unknown issuer`, `wrong hostname`, …).
    Invalid(String),
}

/// Judges `chain` (leaf first) at `now` against `roots`, and against `name` when
/// one is given.
pub(crate) fn verify(
    roots: &RootCertStore,
    chain: &[CertificateDer<'_>],
    name: Option<&ServerName<'_>>,
    now: UnixTime,
) -> Verdict {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return Verdict::Invalid("no certificate".into());
    };
    let ee = match webpki::EndEntityCert::try_from(leaf) {
        Ok(ee) => ee,
        Err(e) => return Verdict::Invalid(webpki_reason(&e)),
    };
    if roots.roots.is_empty() {
        return Verdict::Invalid("no trusted roots".into());
    }
    let algs = provider().signature_verification_algorithms.all;
    if let Err(e) = ee.verify_for_usage(
        algs,
        &roots.roots,
        intermediates,
        now,
        webpki::KeyUsage::server_auth(),
        None,
        None,
    ) {
        return Verdict::Invalid(webpki_reason(&e));
    }
    if let Some(name) = name
        && let Err(e) = ee.verify_is_valid_for_subject_name(name)
    {
        return Verdict::Invalid(webpki_reason(&e));
    }
    Verdict::Valid
}

/// A few words for a webpki error, fit for a label value.
fn webpki_reason(e: &webpki::Error) -> String {
    use webpki::Error as E;
    match e {
        E::CertExpired { .. } => "expired".into(),
        E::CertNotValidYet { .. } => "not yet valid".into(),
        E::UnknownIssuer => "unknown issuer".into(),
        E::CertNotValidForName(_) => "wrong hostname".into(),
        E::CertRevoked => "revoked".into(),
        E::InvalidSignatureForPublicKey => "bad signature".into(),
        E::RequiredEkuNotFoundContext(_) => "not a server certificate".into(),
        other => {
            let text = format!("{other:?}");
            text.split([' ', '{', '('])
                .next()
                .unwrap_or("invalid")
                .to_string()
        }
    }
}

/// What a handshake showed: the peer's chain (leaf first) and its verdict.
#[derive(Debug, Clone)]
pub(crate) struct Handshake {
    pub chain: Vec<CertificateDer<'static>>,
    pub verdict: Verdict,
}

/// A rustls verifier that records the peer's chain and webpki's verdict on it.
/// With `enforce` it refuses an invalid chain as a normal verifier would (the
/// record is still kept); without, it lets every handshake go on.
#[derive(Debug)]
pub(crate) struct RecordingVerifier {
    roots: Arc<RootCertStore>,
    /// Refuse an invalid chain (the http collector with `tls_verify = true`).
    enforce: bool,
    /// The first handshake since the last [`RecordingVerifier::take`]. A std mutex:
    /// held for a copy, never across an `.await`.
    record: Mutex<Option<Handshake>>,
}

impl RecordingVerifier {
    pub(crate) fn new(roots: Arc<RootCertStore>, enforce: bool) -> Self {
        Self {
            roots,
            enforce,
            record: Mutex::new(None),
        }
    }

    /// The recorded handshake, clearing it for the next probe.
    pub(crate) fn take(&self) -> Option<Handshake> {
        match self.record.lock() {
            Ok(mut g) => g.take(),
            Err(p) => p.into_inner().take(),
        }
    }

    /// Clears any record (before a probe).
    pub(crate) fn clear(&self) {
        let _ = self.take();
    }
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain = Vec::with_capacity(1 + intermediates.len());
        chain.push(end_entity.clone().into_owned());
        chain.extend(intermediates.iter().map(|c| c.clone().into_owned()));
        let verdict = verify(&self.roots, &chain, Some(server_name), now);
        let refuse = match (&verdict, self.enforce) {
            (Verdict::Invalid(why), true) => Some(why.clone()),
            _ => None,
        };
        {
            let mut g = match self.record.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            // Keep the first handshake of a probe: after a redirect the certificate
            // asked about is still the configured URL's.
            if g.is_none() {
                *g = Some(Handshake { chain, verdict });
            }
        }
        match refuse {
            Some(why) => Err(rustls::Error::General(format!(
                "certificate not trusted: {why}"
            ))),
            None => Ok(ServerCertVerified::assertion()),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A rustls client config around `verifier`, with an optional client certificate.
pub(crate) fn client_config(
    verifier: Arc<RecordingVerifier>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
    alpn: &[&[u8]],
) -> Result<rustls::ClientConfig, String> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match identity {
        Some((certs, key)) => builder
            .with_client_auth_cert(certs, key)
            .map_err(|e| format!("the client certificate cannot be used: {e}"))?,
        None => builder.with_no_client_auth(),
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// What one certificate says, as the metrics need it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CertInfo {
    pub subject: String,
    pub issuer: String,
    /// Hex bytes separated by `:`, as `openssl x509 -serial` groups them.
    pub serial: String,
    /// `notAfter` in Unix seconds.
    pub not_after: i64,
    pub self_signed: bool,
}

impl CertInfo {
    /// Parses one DER certificate.
    pub(crate) fn parse(der: &[u8]) -> Result<Self, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let subject = cert.subject().to_string();
        let issuer = cert.issuer().to_string();
        Ok(Self {
            self_signed: cert.subject() == cert.issuer(),
            subject,
            issuer,
            serial: cert.raw_serial_as_string(),
            not_after: cert.validity().not_after.timestamp(),
        })
    }
}

/// Where a certificate sits in its chain: the `chain` label.
pub(crate) fn position(index: usize, info: &CertInfo) -> &'static str {
    match (index, info.self_signed) {
        (0, _) => "leaf",
        (_, true) => "root",
        (_, false) => "intermediate",
    }
}

/// Writes `tls_cert_days_left` and `tls_cert_not_after_seconds` for each
/// certificate of `chain`, and `tls_cert_valid` (with the verdict) for its leaf.
/// `target` holds the `address` or `path` label. Certificates that do not parse
/// are skipped with their error returned.
pub(crate) fn chain_samples(
    out: &mut SampleBuf,
    target: &Labels,
    chain: &[CertificateDer<'_>],
    verdict: Option<&Verdict>,
    now_ms: i64,
) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, der) in chain.iter().enumerate() {
        let info = match CertInfo::parse(der) {
            Ok(info) => info,
            Err(e) => {
                errors.push(format!("certificate {} of the chain: {e}", i + 1));
                continue;
            }
        };
        let mut labels = target.clone();
        for (k, v) in [
            ("subject", info.subject.as_str()),
            ("issuer", info.issuer.as_str()),
            ("serial", info.serial.as_str()),
            ("chain", position(i, &info)),
        ] {
            // Names are literals of this module.
            let _ = labels.set(k, v);
        }
        let days_left = (info.not_after as f64 * 1000.0 - now_ms as f64) / 86_400_000.0;
        out.add("tls_cert_days_left", labels.clone(), days_left);
        out.add(
            "tls_cert_not_after_seconds",
            labels.clone(),
            info.not_after as f64,
        );
        if i == 0
            && let Some(v) = verdict
        {
            out.add(
                "tls_cert_valid",
                labels,
                if *v == Verdict::Valid { 1.0 } else { 0.0 },
            );
            if let Verdict::Invalid(why) = v {
                let mut l = target.clone();
                let _ = l.set("reason", why);
                out.add("tls_cert_verify_error_info", l, 1.0);
            }
        }
    }
    errors
}
