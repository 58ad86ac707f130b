//! The process collector against real child processes (`sleep`), each test with
//! its own names so tests running side by side do not see each other's children.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::Receiver;
use tokio_util::sync::CancellationToken;
use warden_engine::model::now_ms;
use warden_engine::scheduler::Pusher;
use warden_engine::store::{Batch, Ingest};

use super::*;

/// A child process that is killed and reaped when dropped.
struct Sleeper(Child);

impl Sleeper {
    /// Runs `program arg` (a `sleep` of at most 30 s).
    fn start(program: &Path, arg: &str) -> Self {
        Self(Command::new(program).arg(arg).spawn().expect("spawn sleep"))
    }

    fn pid(&self) -> u32 {
        self.0.id()
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A link to `sleep` named `name`: the kernel names the process after the path it
/// was started with, so each test gets a process name of its own.
fn sleep_named(dir: &Path, name: &str) -> PathBuf {
    let link = dir.join(name);
    std::os::unix::fs::symlink("/usr/bin/sleep", &link)
        .or_else(|_| std::os::unix::fs::symlink("/bin/sleep", &link))
        .expect("symlink sleep");
    link
}

fn context() -> (CollectContext, Receiver<Batch>) {
    let (ingest, rx) = Ingest::channel(16);
    let target = Labels::new([("instance", "t")]).expect("labels");
    let cx = CollectContext {
        now: now_ms(),
        push: Pusher::new(target, 10_000, ingest),
        shutdown: CancellationToken::new(),
    };
    (cx, rx)
}

async fn collect(c: &mut ProcessCollector, cx: &CollectContext) -> Vec<Sample> {
    tokio::time::timeout(Duration::from_secs(10), c.collect(cx))
        .await
        .expect("collect took over 10s")
        .expect("collect failed")
}

fn value(samples: &[Sample], name: &str) -> f64 {
    let v: Vec<f64> = samples
        .iter()
        .filter(|s| s.name.as_str() == name)
        .map(|s| s.value)
        .collect();
    assert_eq!(v.len(), 1, "{name} in {samples:?}");
    v[0]
}

/// Waits (at most 2 s) until no watcher task is left.
async fn watchers_gone(c: &ProcessCollector) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while c.watched.live_watchers() > 0 {
        assert!(Instant::now() < deadline, "watchers still running");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn counts_processes_by_exact_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let name = format!("wdn{}n", std::process::id());
    let prog = sleep_named(dir.path(), &name);
    let _a = Sleeper::start(&prog, "30");
    let _b = Sleeper::start(&prog, "30");

    let mut c = ProcessCollector::new(ProcessTarget::Name(name));
    let (cx, _rx) = context();
    let s = collect(&mut c, &cx).await;
    assert_eq!(value(&s, "process_running"), 2.0);
    assert!(value(&s, "process_resident_memory_bytes") > 0.0);
    assert!(value(&s, "process_threads") >= 2.0);
    assert!(value(&s, "process_open_fds") >= 2.0);
    let cpu = value(&s, "process_cpu_percent");
    assert!((0.0..=100.0 * 64.0).contains(&cpu), "{cpu}");

    let mut none =
        ProcessCollector::new(ProcessTarget::Name(format!("wdn{}x", std::process::id())));
    let s = collect(&mut none, &cx).await;
    assert_eq!(value(&s, "process_running"), 0.0);
    assert_eq!(value(&s, "process_resident_memory_bytes"), 0.0);
}

#[tokio::test]
async fn long_names_match_the_executable_not_just_the_cut_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = format!("warden-test-long-name-{}", std::process::id());
    let prog = sleep_named(dir.path(), &long);
    let _child = Sleeper::start(&prog, "30");
    let (cx, _rx) = context();

    let mut c = ProcessCollector::new(ProcessTarget::Name(long.clone()));
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 1.0);

    // Same first 15 bytes, different name: no match.
    let mut other = ProcessCollector::new(ProcessTarget::Name(format!("{long}-other")));
    assert_eq!(
        value(&collect(&mut other, &cx).await, "process_running"),
        0.0
    );
}

#[tokio::test]
async fn counts_processes_by_cmdline() {
    let arg = format!("29.{}1", std::process::id());
    let _child = Sleeper::start(Path::new("sleep"), &arg);
    let re = Regex::new(&format!(r"^sleep {}$", regex::escape(&arg))).expect("regex");
    let mut c = ProcessCollector::new(ProcessTarget::Cmdline(re));
    let (cx, _rx) = context();
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 1.0);
}

#[tokio::test]
async fn pidfile_missing_stale_and_garbage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("x.pid");
    let mut c = ProcessCollector::new(ProcessTarget::Pidfile(pidfile.clone()));
    let (cx, _rx) = context();

    // Missing: not running, not an error.
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 0.0);

    // A live process.
    let child = Sleeper::start(Path::new("sleep"), "30");
    std::fs::write(&pidfile, format!("{}\n", child.pid())).expect("write pidfile");
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 1.0);

    // Stale: the process is gone (reaped).
    drop(child);
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 0.0);

    // Empty (being rewritten, or truncated at exit): not running.
    std::fs::write(&pidfile, "").expect("write pidfile");
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 0.0);

    // Garbage is an error the operator must see, not a silent 0.
    std::fs::write(&pidfile, "nginx\n").expect("write pidfile");
    let err = c.collect(&cx).await.expect_err("garbage pidfile");
    assert!(
        err.to_string().contains("holds 'nginx', not a process id"),
        "{err}"
    );
}

#[tokio::test]
async fn this_process_is_warden_itself() {
    let mut c = ProcessCollector::new(ProcessTarget::ThisProcess);
    let (cx, _rx) = context();
    let s = collect(&mut c, &cx).await;
    assert_eq!(value(&s, "process_running"), 1.0);
    assert!(value(&s, "process_resident_memory_bytes") > 1_000_000.0);
    assert!(value(&s, "process_threads") >= 1.0);
    assert!(value(&s, "process_open_fds") >= 3.0);
    // No exit watcher on ourselves.
    assert_eq!(c.watched.live_watchers(), 0);
}

/// The measurement the pidfd design exists for: a watched process is killed and
/// `process_running 0` must reach the store queue at once, not at the next run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_is_pushed_at_once() {
    let arg = format!("29.{}2", std::process::id());
    let mut child = Sleeper::start(Path::new("sleep"), &arg);
    let re = Regex::new(&format!(r"^sleep {}$", regex::escape(&arg))).expect("regex");
    let mut c = ProcessCollector::new(ProcessTarget::Cmdline(re));
    let (cx, mut rx) = context();

    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 1.0);
    assert_eq!(c.watched.live_watchers(), 1);
    // A second run re-syncs without a second watcher.
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 1.0);
    assert_eq!(c.watched.live_watchers(), 1);

    let killed = Instant::now();
    child.kill();
    let batch = tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .expect("no exit sample within 500ms")
        .expect("ingest channel closed");
    let latency = killed.elapsed();
    eprintln!("pidfd exit push latency: {latency:?}");

    assert_eq!(batch.samples.len(), 1, "{:?}", batch.samples);
    let s = &batch.samples[0];
    assert_eq!(s.name.as_str(), "process_running");
    assert_eq!(s.value, 0.0);
    assert_eq!(s.labels.get("instance"), Some("t"));
    assert!(s.ts >= cx.now);
    watchers_gone(&c).await;

    // Not reaped yet, so a zombie: it does not count.
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 0.0);
    drop(child);
    assert!(rx.try_recv().is_err(), "one exit, one push");
}

#[tokio::test]
async fn a_process_that_stops_matching_loses_its_watcher() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("y.pid");
    let mut child = Sleeper::start(Path::new("sleep"), "30");
    std::fs::write(&pidfile, child.pid().to_string()).expect("write pidfile");
    let mut c = ProcessCollector::new(ProcessTarget::Pidfile(pidfile.clone()));
    let (cx, mut rx) = context();

    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 1.0);
    assert_eq!(c.watched.live_watchers(), 1);

    std::fs::remove_file(&pidfile).expect("remove pidfile");
    assert_eq!(value(&collect(&mut c, &cx).await, "process_running"), 0.0);
    watchers_gone(&c).await;

    // Its exit is no longer this collector's business.
    child.kill();
    drop(child);
    let late = tokio::time::timeout(Duration::from_millis(100), rx.recv()).await;
    assert!(late.is_err(), "unexpected push: {late:?}");
}

#[tokio::test]
async fn shutdown_and_drop_stop_the_watchers() {
    let arg = format!("29.{}3", std::process::id());
    let _child = Sleeper::start(Path::new("sleep"), &arg);
    let re = Regex::new(&format!(r"^sleep {}$", regex::escape(&arg))).expect("regex");
    let (cx, _rx) = context();

    let mut c = ProcessCollector::new(ProcessTarget::Cmdline(re.clone()));
    collect(&mut c, &cx).await;
    assert_eq!(c.watched.live_watchers(), 1);
    cx.shutdown.cancel();
    watchers_gone(&c).await;

    let (cx, _rx) = context();
    let mut c = ProcessCollector::new(ProcessTarget::Cmdline(re));
    collect(&mut c, &cx).await;
    let set = Arc::clone(&c.watched.set);
    drop(c);
    let deadline = Instant::now() + Duration::from_secs(2);
    while Arc::strong_count(&set) > 1 {
        assert!(Instant::now() < deadline, "watcher outlived its collector");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
