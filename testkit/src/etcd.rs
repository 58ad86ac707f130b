//! A one-member etcd for tests, on free loopback ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::proc::{Server, Workdir, find_binary, port_open, wait_until};

fn binary() -> PathBuf {
    find_binary(&["/usr/bin/etcd", "/usr/local/bin/etcd"])
        .expect("etcd is not installed (scripts/test installs etcd-server)")
}

/// One etcd member, a cluster of its own.
#[derive(Debug)]
pub struct Etcd {
    /// The client port on 127.0.0.1.
    pub port: u16,
    /// The peer port.
    pub peer_port: u16,
    dir: Arc<Workdir>,
    server: Option<Server>,
}

impl Etcd {
    /// Starts a new single-member cluster named `name` in `dir`.
    pub fn start(dir: &Arc<Workdir>, name: &str) -> Etcd {
        let port = crate::free_port();
        let peer_port = crate::free_port();
        let mut cmd = dir.command(binary());
        let peer = format!("http://127.0.0.1:{peer_port}");
        let client = format!("http://127.0.0.1:{port}");
        cmd.args(["--name", name])
            .arg("--data-dir")
            .arg(dir.path().join(format!("{name}.etcd")))
            .args([
                "--listen-client-urls",
                &client,
                "--advertise-client-urls",
                &client,
            ])
            .args([
                "--listen-peer-urls",
                &peer,
                "--initial-advertise-peer-urls",
                &peer,
            ])
            .args(["--initial-cluster", &format!("{name}={peer}")])
            .args(["--initial-cluster-state", "new", "--enable-v2=true"])
            .args(["--heartbeat-interval", "100", "--election-timeout", "1000"])
            .args(["--unsafe-no-fsync", "--log-level", "warn"]);
        let log = dir.path().join(format!("{name}.log"));
        let server = Server::start(name, cmd, &log, libc::SIGTERM);
        let e = Etcd {
            port,
            peer_port,
            dir: dir.clone(),
            server: Some(server),
        };
        wait_until(
            Duration::from_secs(20),
            "etcd to be healthy",
            || std::fs::read_to_string(&log).unwrap_or_default(),
            || port_open(port) && e.get("/health").is_ok_and(|b| b.contains("true")),
        );
        e
    }

    /// GET `path` with curl-free plain HTTP; the body.
    pub fn get(&self, path: &str) -> Result<String, String> {
        use std::io::{Read, Write};
        let mut s =
            std::net::TcpStream::connect(("127.0.0.1", self.port)).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        )
        .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default())
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Stops it.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            s.stop_within(Duration::from_secs(5));
        }
    }

    /// The work dir.
    pub fn dir(&self) -> &Arc<Workdir> {
        &self.dir
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
    }
}
