//! Exit detection without polling.
//!
//! For every matching process the collector holds a pidfd (Linux 5.3+,
//! `pidfd_open(2)`) in a [`tokio::io::unix::AsyncFd`]. The kernel makes a pidfd
//! readable the moment its process exits, so a small task per process wakes
//! then, removes the pid from the matched set and pushes a fresh
//! `process_running` (the count of the processes still matched) through the
//! collector's [`Pusher`](warden_engine::scheduler::Pusher), without waiting for
//! the next run.
//!
//! Each regular run re-syncs the set with what it found: new processes get a
//! watcher, processes that no longer match lose theirs (its token is cancelled),
//! and a process already watched is left alone, so no process ever has two
//! watchers. Watchers end with the collector's shutdown token, and when the
//! collector is dropped.
//!
//! Where pidfds are not available (kernels before 5.3, seccomp filters that
//! refuse the call with `ENOSYS` or `EPERM`, other systems) the set is kept
//! anyway and exits are noticed by the next run only; this is logged once.

use std::collections::{HashMap, HashSet};
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;
use warden_engine::model::{Labels, now_ms};
use warden_engine::ports::CollectContext;
use warden_engine::scheduler::Pusher;

use crate::common::SampleBuf;

/// The matched processes of one collector, shared with their watchers.
pub(super) struct Watched {
    // A std mutex: every critical section is a few map operations, with no
    // `.await` inside.
    pub(super) set: Arc<Mutex<MatchSet>>,
    /// Set once pidfd_open has been refused, so it is not tried (and logged) again.
    unsupported: AtomicBool,
}

#[derive(Default)]
pub(super) struct MatchSet {
    pids: HashMap<u32, Entry>,
    /// Tells watchers apart when a pid is reused.
    next_generation: u64,
}

struct Entry {
    generation: u64,
    /// Cancels the entry's watcher; `None` when the process is only polled.
    watcher: Option<CancellationToken>,
}

impl Entry {
    fn stop(&self) {
        if let Some(t) = &self.watcher {
            t.cancel();
        }
    }
}

fn lock(set: &Mutex<MatchSet>) -> MutexGuard<'_, MatchSet> {
    // The set holds no invariant a panic could break half-way.
    set.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Watched {
    pub(super) fn new() -> Self {
        Self {
            set: Arc::new(Mutex::new(MatchSet::default())),
            unsupported: AtomicBool::new(false),
        }
    }

    /// Makes the matched set `found`, starting watchers (when `watch`) for new
    /// processes and stopping those of processes no longer found. Returns the
    /// processes that are matched now: `found` less those that exited in the
    /// meantime.
    pub(super) fn sync(&self, found: &[u32], watch: bool, cx: &CollectContext) -> HashSet<u32> {
        let wanted: HashSet<u32> = found.iter().copied().collect();
        let mut set = lock(&self.set);
        set.pids.retain(|pid, entry| {
            let keep = wanted.contains(pid);
            if !keep {
                entry.stop();
            }
            keep
        });

        for &pid in &wanted {
            if set.pids.contains_key(&pid) {
                continue;
            }
            let generation = set.next_generation;
            set.next_generation += 1;
            let watcher = if watch && !self.unsupported.load(Ordering::Relaxed) {
                match self.start(pid, generation, cx) {
                    Start::Watching(token) => Some(token),
                    Start::Exited => continue,
                    Start::Polled => None,
                }
            } else {
                None
            };
            set.pids.insert(
                pid,
                Entry {
                    generation,
                    watcher,
                },
            );
        }
        set.pids.keys().copied().collect()
    }

    /// Opens a pidfd for `pid` and spawns its watcher.
    fn start(&self, pid: u32, generation: u64, cx: &CollectContext) -> Start {
        let fd = match pidfd::open(pid) {
            Ok(fd) => fd,
            Err(pidfd::OpenError::Gone) => return Start::Exited,
            Err(pidfd::OpenError::Unsupported(e)) => {
                if !self.unsupported.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        error = %e,
                        "pidfd_open is not available: process exits are noticed at the next run only"
                    );
                }
                return Start::Polled;
            }
            Err(pidfd::OpenError::Other(e)) => {
                tracing::warn!(pid, error = %e, "cannot watch process for exit; polling it");
                return Start::Polled;
            }
        };
        // The process may have exited between the scan and pidfd_open; then it is
        // not counted, and no watcher is needed.
        if pidfd::has_exited(&fd) {
            return Start::Exited;
        }
        // SAFETY: an `OwnedFd` stays open, and is the same descriptor, until the
        // `AsyncFd` that owns it drops it.
        let registered = unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) };
        let fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(pid, error = %e, "cannot register pidfd; polling the process");
                return Start::Polled;
            }
        };
        let token = cx.shutdown.child_token();
        let watcher = Watcher {
            pid,
            generation,
            set: Arc::clone(&self.set),
            push: cx.push.clone(),
            cancel: token.clone(),
        };
        tokio::spawn(watcher.run(fd));
        Start::Watching(token)
    }

    /// How many watcher tasks are alive (each holds a handle on the set).
    #[cfg(test)]
    pub(super) fn live_watchers(&self) -> usize {
        Arc::strong_count(&self.set) - 1
    }
}

impl Drop for Watched {
    fn drop(&mut self) {
        for entry in lock(&self.set).pids.values() {
            entry.stop();
        }
    }
}

enum Start {
    Watching(CancellationToken),
    Exited,
    Polled,
}

/// Waits for one process to exit.
struct Watcher {
    pid: u32,
    generation: u64,
    set: Arc<Mutex<MatchSet>>,
    push: Pusher,
    cancel: CancellationToken,
}

impl Watcher {
    async fn run(self, fd: AsyncFd<OwnedFd>) {
        tokio::select! {
            _ = self.cancel.cancelled() => {}
            ready = fd.readable() => match ready {
                Ok(_) => self.exited(),
                Err(e) => {
                    tracing::warn!(pid = self.pid, error = %e, "pidfd wait failed; polling the process");
                }
            },
        }
    }

    /// Removes the process from the set and pushes the new count.
    fn exited(&self) {
        let remaining = {
            let mut set = lock(&self.set);
            match set.pids.get(&self.pid) {
                Some(e) if e.generation == self.generation => {
                    set.pids.remove(&self.pid);
                    set.pids.len()
                }
                // Already dropped by a run, or the pid belongs to a newer process.
                _ => return,
            }
        };
        let mut out = SampleBuf::new(now_ms());
        out.add("process_running", Labels::empty(), remaining as f64);
        if !self.push.push(out.into_samples()) {
            tracing::warn!(
                pid = self.pid,
                "store queue full: dropped the process exit sample"
            );
        }
    }
}

/// The two system calls, kept apart from the logic above.
#[cfg(target_os = "linux")]
mod pidfd {
    use std::io;
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

    pub(super) enum OpenError {
        /// No such process (it exited and was reaped).
        Gone,
        /// The kernel or a seccomp filter does not allow pidfds.
        Unsupported(io::Error),
        Other(io::Error),
    }

    pub(super) fn open(pid: u32) -> Result<OwnedFd, OpenError> {
        let Ok(pid) = libc::pid_t::try_from(pid) else {
            return Err(OpenError::Gone);
        };
        // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor
        // (close-on-exec) or -1; it touches no memory of ours.
        let ret = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if ret < 0 {
            let e = io::Error::last_os_error();
            return Err(match e.raw_os_error() {
                Some(libc::ESRCH) => OpenError::Gone,
                Some(libc::ENOSYS | libc::EPERM) => OpenError::Unsupported(e),
                _ => OpenError::Other(e),
            });
        }
        // SAFETY: `ret` is a descriptor the kernel just opened for us; nothing else
        // owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(ret as RawFd) })
    }

    /// True when the process of `fd` has already exited.
    pub(super) fn has_exited(fd: &OwnedFd) -> bool {
        let mut p = libc::pollfd {
            fd: fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, timeout 0 (no wait).
        let n = unsafe { libc::poll(&mut p, 1, 0) };
        n > 0 && p.revents & libc::POLLIN != 0
    }
}

/// Other systems have no pidfds: processes are only polled.
#[cfg(not(target_os = "linux"))]
mod pidfd {
    use std::io;
    use std::os::fd::OwnedFd;

    pub(super) enum OpenError {
        Gone,
        Unsupported(io::Error),
        Other(io::Error),
    }

    pub(super) fn open(_pid: u32) -> Result<OwnedFd, OpenError> {
        Err(OpenError::Unsupported(io::Error::from(
            io::ErrorKind::Unsupported,
        )))
    }

    pub(super) fn has_exited(_fd: &OwnedFd) -> bool {
        false
    }
}
