//! The tls collector against TLS servers started here with certificates made at
//! test time (valid, 20 days, 5 days, 12 hours, expired, self-signed, wrong
//! hostname), certificate files, directories and globs, STARTTLS, and bad targets.

use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use warden_engine::model::Sample;

use crate::testing::{self, Ca, labels, named, run, spec, value};

fn days(n: f64) -> time::Duration {
    time::Duration::seconds_f64(n * 86_400.0)
}

fn endpoint(address: &str, extra: &str) -> String {
    format!(
        "[[collector.tls]]\nname = \"web\"\naddress = \"{address}\"\ninterval = \"2s\"\ntimeout = \"1s\"\n{extra}\n"
    )
}

async fn check(text: &str) -> Vec<Sample> {
    run(&mut spec(text)).await
}

fn leaf_of(s: &[Sample], name: &str) -> f64 {
    let found: Vec<&Sample> = named(s, name)
        .into_iter()
        .filter(|x| x.labels.get("chain") == Some("leaf"))
        .collect();
    assert_eq!(found.len(), 1, "{name}: {s:#?}");
    found[0].value
}

fn verify_reason(s: &[Sample]) -> Option<String> {
    let found = named(s, "tls_cert_verify_error_info");
    found
        .first()
        .map(|x| x.labels.get("reason").unwrap_or("").to_string())
}

#[tokio::test]
async fn endpoints_in_every_state_of_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("warden test CA");
    let ca_file = testing::write(dir.path(), "ca.pem", &ca.pem);
    let cases: [(&str, crate::testing::Leaf, f64, f64, Option<&str>); 7] = [
        (
            "valid",
            ca.leaf(&["localhost"], days(365.0)),
            365.0,
            1.0,
            None,
        ),
        (
            "20 days",
            ca.leaf(&["localhost"], days(20.0)),
            20.0,
            1.0,
            None,
        ),
        ("5 days", ca.leaf(&["localhost"], days(5.0)), 5.0, 1.0, None),
        (
            "12 hours",
            ca.leaf(&["localhost"], days(0.5)),
            0.5,
            1.0,
            None,
        ),
        (
            "expired",
            ca.leaf(&["localhost"], days(-2.0)),
            -2.0,
            0.0,
            Some("expired"),
        ),
        (
            "self-signed",
            testing::self_signed(&["localhost"], days(100.0)),
            100.0,
            0.0,
            Some("unknown issuer"),
        ),
        (
            "wrong hostname",
            ca.leaf(&["other.example"], days(100.0)),
            100.0,
            0.0,
            Some("wrong hostname"),
        ),
    ];
    for (what, leaf, want_days, want_valid, want_reason) in cases {
        let srv = testing::tls_server(&leaf, None, None).await;
        let address = format!("127.0.0.1:{}", srv.addr.port());
        let s = check(&endpoint(
            &address,
            &format!("server_name = \"localhost\"\nca_file = '{ca_file}'"),
        ))
        .await;
        assert_eq!(
            value(&s, "probe_success"),
            1.0,
            "{what}: the handshake completes"
        );
        let left = leaf_of(&s, "tls_cert_days_left");
        assert!((left - want_days).abs() < 0.01, "{what}: {left}");
        let not_after = leaf_of(&s, "tls_cert_not_after_seconds");
        let expected = (warden_engine::model::now_ms() as f64 / 1000.0) + want_days * 86_400.0;
        assert!((not_after - expected).abs() < 60.0, "{what}: {not_after}");
        assert_eq!(leaf_of(&s, "tls_cert_valid"), want_valid, "{what}");
        assert_eq!(verify_reason(&s).as_deref(), want_reason, "{what}");
        let l = labels(&s, "tls_cert_valid");
        assert_eq!(l.get("address"), Some(address.as_str()));
        assert_eq!(l.get("instance"), Some("web"));
        assert!(l.get("serial").is_some_and(|x| !x.is_empty()));
        // Only the leaf carries a verdict; the CA after it is the chain's root.
        assert_eq!(named(&s, "tls_cert_valid").len(), 1);
        if what != "self-signed" {
            let root = named(&s, "tls_cert_days_left")
                .into_iter()
                .find(|x| x.labels.get("chain") == Some("root"))
                .expect("the CA is in the chain");
            assert_eq!(root.labels.get("subject"), Some("CN=warden test CA"));
        }
    }
}

#[tokio::test]
async fn the_address_host_is_the_default_name_and_system_roots_the_default_trust() {
    let ca = Ca::new("warden test CA");
    let srv = testing::tls_server(&ca.leaf(&["localhost"], days(30.0)), None, None).await;
    let s = check(&endpoint(&format!("localhost:{}", srv.addr.port()), "")).await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    assert_eq!(leaf_of(&s, "tls_cert_valid"), 0.0);
    assert_eq!(verify_reason(&s).as_deref(), Some("unknown issuer"));
}

#[tokio::test]
async fn files_directories_and_globs() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("warden test CA");
    let ca_file = testing::write(dir.path(), "ca.pem", &ca.pem);
    let live = dir.path().join("live");
    for (site, valid_for) in [("a.example", 40.0), ("b.example", -1.0)] {
        let d = live.join(site);
        std::fs::create_dir_all(&d).unwrap();
        let leaf = ca.leaf(&[site], days(valid_for));
        testing::write(&d, "fullchain.pem", &leaf.cert_pem);
        testing::write(&d, "privkey.pem", &leaf.key_pem);
    }
    let glob = format!("{}/*/fullchain.pem", live.display());
    let text =
        format!("[[collector.tls]]\nname = \"le\"\npath = '{glob}'\nca_file = '{ca_file}'\n");
    let s = check(&text).await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    let valid = named(&s, "tls_cert_valid");
    assert_eq!(valid.len(), 2);
    let by_path = |site: &str| {
        named(&s, "tls_cert_days_left")
            .into_iter()
            .find(|x| {
                x.labels.get("chain") == Some("leaf")
                    && x.labels.get("path").is_some_and(|p| p.contains(site))
            })
            .unwrap()
    };
    assert!((by_path("a.example").value - 40.0).abs() < 0.01);
    assert!(by_path("b.example").value < 0.0, "expired is data");
    let b_valid = valid
        .iter()
        .find(|x| x.labels.get("path").unwrap().contains("b.example"))
        .unwrap();
    assert_eq!(b_valid.value, 0.0);

    // With a server name the files are checked for it.
    let s = check(&format!("{text}server_name = \"a.example\"\n")).await;
    let reasons: Vec<String> = named(&s, "tls_cert_verify_error_info")
        .iter()
        .map(|x| x.labels.get("reason").unwrap().to_string())
        .collect();
    assert!(
        reasons.contains(&"wrong hostname".to_string()) || reasons.contains(&"expired".to_string())
    );

    // A directory: the key files are skipped, the certificate read.
    let d = live.join("a.example");
    let s = check(&format!(
        "[[collector.tls]]\nname = \"dir\"\npath = '{}'\n",
        d.display()
    ))
    .await;
    assert_eq!(value(&s, "probe_success"), 1.0);
    assert_eq!(named(&s, "tls_cert_valid").len(), 1);
}

#[tokio::test]
async fn unreadable_files_fail_the_probe_with_reason_read() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = testing::write(dir.path(), "bad.pem", "this is not a certificate\n");
    let broken = testing::write(
        dir.path(),
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
    );
    let none = format!("{}/nothing/*.pem", dir.path().display());
    for (path, want) in [
        (garbage.as_str(), "holds no PEM certificate"),
        (broken.as_str(), "not valid PEM"),
        (none.as_str(), "no file matches"),
    ] {
        let s = check(&format!(
            "[[collector.tls]]\nname = \"f\"\npath = '{path}'\n"
        ))
        .await;
        assert_eq!(value(&s, "probe_success"), 0.0, "{path}");
        let l = labels(&s, "probe_error_info");
        assert_eq!(l.get("reason"), Some("read"));
        assert!(l.get("message").unwrap().contains(want), "{path}: {l}");
    }
}

#[tokio::test]
async fn refused_hanging_and_garbage_endpoints() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let s = check(&endpoint(&format!("127.0.0.1:{port}"), "")).await;
    assert_eq!(value(&s, "probe_success"), 0.0);
    assert_eq!(
        labels(&s, "probe_error_info").get("reason"),
        Some("refused")
    );
    assert!(named(&s, "tls_cert_days_left").is_empty());

    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang = l.local_addr().unwrap();
    let garbage_l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let garbage = garbage_l.local_addr().unwrap();
    let t = tokio::spawn(async move {
        let mut held = Vec::new();
        loop {
            tokio::select! {
                Ok((s, _)) = l.accept() => held.push(s),
                Ok((mut s, _)) = garbage_l.accept() => {
                    let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\nnot tls at all").await;
                }
            }
        }
    });
    let started = Instant::now();
    let s = check(&endpoint(&hang.to_string(), "")).await;
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(
        labels(&s, "probe_error_info").get("reason"),
        Some("timeout")
    );
    let s = check(&endpoint(&garbage.to_string(), "")).await;
    assert_eq!(labels(&s, "probe_error_info").get("reason"), Some("tls"));
    t.abort();
}

/// A minimal SMTP server that offers STARTTLS and then hands the socket to TLS.
/// It speaks only the three exchanges a STARTTLS probe makes.
async fn smtp_starttls_server(leaf: &crate::testing::Leaf) -> std::net::SocketAddr {
    let mut cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .unwrap();
    cfg.alpn_protocols.clear();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                s.write_all(b"220 mx.test ESMTP ready\r\n").await.unwrap();
                let mut r = BufReader::new(&mut s);
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                assert!(line.starts_with("EHLO "), "{line}");
                r.get_mut()
                    .write_all(b"250-mx.test\r\n250-SIZE 1000\r\n250 STARTTLS\r\n")
                    .await
                    .unwrap();
                line.clear();
                r.read_line(&mut line).await.unwrap();
                assert_eq!(line, "STARTTLS\r\n");
                r.get_mut().write_all(b"220 go ahead\r\n").await.unwrap();
                let _ = acceptor.accept(s).await;
            });
        }
    });
    addr
}

/// A minimal PostgreSQL front door: answers SSLRequest with `S`, then TLS.
async fn postgres_ssl_server(leaf: &crate::testing::Leaf) -> std::net::SocketAddr {
    let cfg = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(leaf.chain.clone(), leaf.key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(cfg));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let mut req = [0u8; 8];
                s.read_exact(&mut req).await.unwrap();
                assert_eq!(req, [0, 0, 0, 8, 4, 210, 22, 47], "SSLRequest");
                s.write_all(b"S").await.unwrap();
                let _ = acceptor.accept(s).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn starttls_smtp_and_postgres() {
    testing::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("warden test CA");
    let ca_file = testing::write(dir.path(), "ca.pem", &ca.pem);
    let leaf = ca.leaf(&["localhost"], days(10.0));
    let smtp = smtp_starttls_server(&leaf).await;
    let pg = postgres_ssl_server(&leaf).await;
    for (addr, kind) in [(smtp, "smtp"), (pg, "postgres")] {
        let s = check(&endpoint(
            &addr.to_string(),
            &format!("starttls = \"{kind}\"\nserver_name = \"localhost\"\nca_file = '{ca_file}'"),
        ))
        .await;
        assert_eq!(value(&s, "probe_success"), 1.0, "{kind}");
        assert_eq!(leaf_of(&s, "tls_cert_valid"), 1.0, "{kind}");
        assert!((leaf_of(&s, "tls_cert_days_left") - 10.0).abs() < 0.01);
    }
}

#[test]
fn config_mistakes_are_reported() {
    let cases = [
        ("", "says nothing to check"),
        (
            "address = \"x:1\"\npath = \"/x\"",
            "sets both 'address' and 'path'",
        ),
        (
            "address = \"nohost\"",
            "'address' 'nohost' is not host:port",
        ),
        (
            "address = \"x:1\"\nstarttls = \"imap\"",
            "'starttls' 'imap' is not known",
        ),
        ("path = \"certs/*.pem\"", "is relative"),
        ("path = \"/certs/[.pem\"", "is not a valid glob"),
        (
            "path = \"/x.pem\"\nstarttls = \"smtp\"",
            "'starttls' is for 'address'",
        ),
        (
            "address = \"x:1\"\nca_file = \"/nonexistent\"",
            "'ca_file': cannot read",
        ),
        (
            "address = \"x:1\"\nserver_name = \"bad name!\"",
            "'server_name' 'bad name!' is not a host name",
        ),
    ];
    for (keys, want) in cases {
        let got = testing::problems(&format!("[[collector.tls]]\nname = \"t\"\n{keys}\n"));
        assert!(got.iter().any(|m| m.contains(want)), "{keys}: {got:?}");
    }
}
