//! Starting and stopping server processes for tests.
//!
//! Servers are spawned from one long-lived thread with `PR_SET_PDEATHSIG`, so
//! the kernel stops them when the test process ends, however it ends (the
//! signal follows the spawning *thread*, and that thread lives as long as the
//! process). Dropping a [`Server`] stops it at once.
//!
//! PostgreSQL refuses to run as root, so when the tests run as root every
//! server runs as its service's user (`postgres`, `mysql`, …) and its work
//! directory is handed to that user.

use std::io;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// A free loopback port (bound, then released for the server to take).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The uid and gid to run a service as: its user when we are root, else `None`
/// (run as ourselves).
pub fn run_as(user: &str) -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let name = std::ffi::CString::new(user).ok()?;
    for candidate in [name.as_c_str(), c"nobody"] {
        // SAFETY: getpwnam reads a NUL-terminated name and returns a pointer into
        // static storage or null; the fields are copied out at once.
        let pw = unsafe { libc::getpwnam(candidate.as_ptr()) };
        if !pw.is_null() {
            // SAFETY: pw is non-null and points at a valid passwd record.
            return Some(unsafe { ((*pw).pw_uid, (*pw).pw_gid) });
        }
    }
    None
}

/// A temporary directory for one group of servers, owned by their user.
#[derive(Debug)]
pub struct Workdir {
    dir: tempfile::TempDir,
    /// The user servers in it run as.
    pub user: Option<(u32, u32)>,
}

impl Workdir {
    /// A new directory for servers running as `user` (see [`run_as`]).
    pub fn new(prefix: &str, user: &str) -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix(&format!("warden-{prefix}-"))
            .tempdir()
            .unwrap();
        let user = run_as(user);
        at_exit::remove(dir.path());
        let w = Workdir { dir, user };
        w.own(w.path());
        w
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `path/name`, created as a directory owned by the servers' user.
    pub fn subdir(&self, name: &str) -> PathBuf {
        let p = self.path().join(name);
        std::fs::create_dir_all(&p).unwrap();
        self.own(&p);
        p
    }

    /// Writes a file owned by the servers' user, mode 0600.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::PermissionsExt;
        let p = self.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        self.own(&p);
        p
    }

    /// Hands `path` to the servers' user.
    pub fn own(&self, path: &Path) {
        if let Some((uid, gid)) = self.user {
            chown(path, Some(uid), Some(gid)).unwrap();
        }
    }

    /// A command that runs as the servers' user, in the directory.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        cmd.current_dir(self.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
            // Some tools look at HOME (psql history, patroni); keep them in here.
            cmd.env("HOME", self.path());
        }
        cmd
    }

    /// Runs a short command to completion (at most `limit`), panicking with its
    /// output when it fails.
    pub fn run(&self, mut cmd: Command, limit: Duration) -> Output {
        let what = format!("{cmd:?}");
        let out = output_within(&mut cmd, limit).unwrap_or_else(|e| panic!("{what}: {e}"));
        if !out.status.success() {
            panic!(
                "{what} failed: {}\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        out
    }
}

/// Runs `cmd` with its output captured, killing it after `limit`.
pub fn output_within(cmd: &mut Command, limit: Duration) -> io::Result<Output> {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let start = Instant::now();
    loop {
        if child.try_wait()?.is_some() {
            return child.wait_with_output();
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output()?;
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "still running after {limit:?}; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `cmd` from the keeper thread, with `PR_SET_PDEATHSIG` = `signal`.
fn spawn_kept(mut cmd: Command, signal: i32) -> io::Result<Child> {
    static KEEPER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testkit-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .unwrap();
        Mutex::new(tx)
    });
    // SAFETY: prctl with PR_SET_PDEATHSIG only sets a flag of the new process; it
    // is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let (tx, rx) = mpsc::channel();
    keeper.lock().unwrap().send((cmd, tx)).unwrap();
    rx.recv().unwrap()
}

/// A running server process. Dropping it stops it: `stop_signal`, then SIGKILL
/// after a few seconds.
#[derive(Debug)]
pub struct Server {
    child: Option<Child>,
    /// What it is, for messages.
    pub name: String,
    /// Its stdout and stderr.
    pub log: PathBuf,
    stop_signal: i32,
}

impl Server {
    /// Starts `cmd` with stdout and stderr appended to `log`. `stop_signal` is
    /// the server's clean and fast stop (SIGINT for PostgreSQL's fast shutdown,
    /// SIGTERM for most others); the kernel sends it too if the tests die.
    pub fn start(name: &str, mut cmd: Command, log: &Path, stop_signal: i32) -> Server {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        cmd.stdout(file.try_clone().unwrap()).stderr(file);
        let child =
            spawn_kept(cmd, stop_signal).unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        at_exit::stop(child.id(), stop_signal);
        Server {
            child: Some(child),
            name: name.to_string(),
            log: log.to_path_buf(),
            stop_signal,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Sends a signal.
    pub fn signal(&self, sig: i32) {
        if let Some(c) = &self.child {
            // SAFETY: kill on a pid we spawned and have not reaped.
            unsafe {
                libc::kill(c.id() as i32, sig);
            }
        }
    }

    /// Stops the server cleanly (its stop signal), waiting up to `limit`, then
    /// kills it.
    pub fn stop_within(&mut self, limit: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        at_exit::forget(child.id());
        // SAFETY: as in `signal`.
        unsafe {
            libc::kill(child.id() as i32, self.stop_signal);
        }
        let start = Instant::now();
        while start.elapsed() < limit {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Kills the server at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            at_exit::forget(child.id());
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_within(Duration::from_secs(5));
    }
}

/// Polls `f` every 50 ms until it is true, panicking after `limit` with `what`
/// and `log` (a server's log, or anything that helps).
pub fn wait_until(
    limit: Duration,
    what: &str,
    log: impl Fn() -> String,
    mut f: impl FnMut() -> bool,
) {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!(
        "timed out after {limit:?} waiting for {what}\n--- log\n{}",
        log()
    );
}

/// True when something accepts TCP connections on `127.0.0.1:port`.
pub fn port_open(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The first of `paths` that exists.
pub fn find_binary(paths: &[&str]) -> Option<PathBuf> {
    paths.iter().map(PathBuf::from).find(|p| p.exists())
}

/// What is left when the test process exits: servers held in statics (one
/// shared cluster per test binary) and their directories. The first
/// registration installs an `atexit` handler that stops the servers (their stop
/// signal, SIGKILL after 5 s) and then removes the directories.
mod at_exit {
    use std::path::{Path, PathBuf};
    use std::sync::{Mutex, Once};
    use std::time::{Duration, Instant};

    static SERVERS: Mutex<Vec<(u32, i32)>> = Mutex::new(Vec::new());
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static INSTALL: Once = Once::new();

    fn install() {
        INSTALL.call_once(|| {
            // SAFETY: registers a plain extern "C" fn without arguments.
            unsafe {
                libc::atexit(cleanup);
            }
        });
    }

    pub(super) fn stop(pid: u32, signal: i32) {
        install();
        if let Ok(mut s) = SERVERS.lock() {
            s.push((pid, signal));
        }
    }

    pub(super) fn forget(pid: u32) {
        if let Ok(mut s) = SERVERS.lock() {
            s.retain(|(p, _)| *p != pid);
        }
    }

    pub(super) fn remove(dir: &Path) {
        install();
        if let Ok(mut d) = DIRS.lock() {
            d.push(dir.to_path_buf());
        }
    }

    extern "C" fn cleanup() {
        let servers: Vec<(u32, i32)> = SERVERS.lock().map(|s| s.clone()).unwrap_or_default();
        for (pid, sig) in &servers {
            // SAFETY: signals a child process we started and have not reaped.
            unsafe {
                libc::kill(*pid as i32, *sig);
            }
        }
        let start = Instant::now();
        let mut left: Vec<u32> = servers.iter().map(|(p, _)| *p).collect();
        while !left.is_empty() && start.elapsed() < Duration::from_secs(5) {
            left.retain(|pid| {
                // SAFETY: reaps our own child without blocking.
                let r = unsafe { libc::waitpid(*pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
                r == 0
            });
            std::thread::sleep(Duration::from_millis(20));
        }
        for pid in left {
            // SAFETY: as above.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
                libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
            }
        }
        for dir in DIRS.lock().map(|d| d.clone()).unwrap_or_default() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}
