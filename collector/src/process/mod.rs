//! `[[collector.process]]`: processes found by exact name, by a regex over the
//! command line, through a pidfile, or warden itself; how many run and what they
//! use.
//!
//! Metrics (sums over the matching processes; labels besides `instance` and the
//! entry's `labels`: none):
//!
//! | metric | unit |
//! |---|---|
//! | `process_running` | how many processes match (0 when none) |
//! | `process_cpu_percent` | CPU time since the previous run; 100 = one CPU busy, so up to 100 × CPUs |
//! | `process_resident_memory_bytes` | resident set size, bytes |
//! | `process_open_fds` | open file descriptors (left out when none can be read: other users' processes need root) |
//! | `process_threads` | threads |
//!
//! Zombie processes do not count: they have exited. Threads are not processes here.
//!
//! Exits are seen at once, not at the next run: the `watch` module holds a pidfd
//! per matching process and pushes `process_running` the moment one exits.
//!
//! CPU is a difference between two readings: the first run reads twice,
//! [`sysinfo::MINIMUM_CPU_UPDATE_INTERVAL`] apart; a process first seen in a
//! later run counts 0 CPU in that run.

mod watch;

use std::ffi::OsStr;
use std::ops::Range;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use regex::Regex;
use serde::Deserialize;
use sysinfo::{
    Pid, Process, ProcessRefreshKind, ProcessStatus, ProcessesToUpdate, RefreshKind, System,
    UpdateKind,
};
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{
    Common, CommonKeys, NameKey, SampleBuf, TargetLabels, bad_regex, blocking, lock_state,
};
use watch::Watched;

/// The kernel keeps the first 15 bytes of a process name (`comm`).
const COMM_LEN: usize = 15;

/// `[[collector.process]]`: one process, or a group of processes, to watch. Set
/// exactly one of `match`, `cmdline`, `pidfile` and `this_process`.
///
/// ```toml
/// [[collector.process]]
/// name = "postgres"
/// match = "postgres"
///
/// [[collector.process]]
/// name = "api"
/// cmdline = 'java .* -jar /opt/api/api\.jar'
///
/// [[collector.process]]
/// name = "nginx"
/// pidfile = "/run/nginx.pid"
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessConfig {
    /// The `instance` label of every sample. Required. Example: `name = "postgres"`.
    pub name: Spanned<String>,
    /// How often to collect, as a duration, at least `"1s"`. Default `"5s"`. Example:
    /// `interval = "10s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take before it counts as failed, at most the interval.
    /// Default: the interval, but no more than `"10s"`. Example: `timeout = "2s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample, as a table of label name to value. Default
    /// none; `instance` is taken. Example: `labels = { service = "db" }`.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The exact process name, as `ps -e` and `pgrep -x` show it. Every process of
    /// that name counts. Names longer than 15 bytes, which the kernel cuts short,
    /// are compared with the file name of the executable. No default. Example:
    /// `match = "nginx"`.
    #[serde(default, rename = "match")]
    pub match_name: Option<Spanned<String>>,
    /// A regular expression (Rust `regex` syntax) searched in the full command line,
    /// its arguments joined by single spaces; anchor it with `^…$` to match it
    /// whole. Every process it matches counts; kernel threads (no command line)
    /// never do. No default. Example: `cmdline = 'java .* -jar /opt/api/api\.jar'`.
    #[serde(default)]
    pub cmdline: Option<Spanned<String>>,
    /// The absolute path of a file holding the process id. A missing or empty file,
    /// or one naming a process that is gone, means 0 processes running. No default.
    /// Example: `pidfile = "/run/nginx.pid"`.
    #[serde(default)]
    pub pidfile: Option<Spanned<PathBuf>>,
    /// `true` to watch warden's own process. Default `false`.
    #[serde(default)]
    pub this_process: Option<Spanned<bool>>,
}

/// What a process entry looks for.
#[derive(Debug, Clone)]
pub enum ProcessTarget {
    /// Processes with this exact name.
    Name(String),
    /// Processes whose command line the regex finds a match in.
    Cmdline(Regex),
    /// The process whose id is in this file.
    Pidfile(PathBuf),
    /// warden itself.
    ThisProcess,
}

impl ProcessConfig {
    /// An entry named `name` watching warden itself.
    pub fn this_process(name: &str) -> Self {
        Self {
            name: Spanned::new(0..0, name.to_string()),
            interval: None,
            timeout: None,
            labels: None,
            match_name: None,
            cmdline: None,
            pidfile: None,
            this_process: Some(Spanned::new(0..0, true)),
        }
    }

    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let common = CommonKeys {
            kind: "process",
            entry: entry.clone(),
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &[],
        }
        .check(problems);
        let target = self.target(entry, problems);
        Some((common?, Box::new(ProcessCollector::new(target?))))
    }

    /// The one target key that is set, checked.
    fn target(&self, entry: Range<usize>, problems: &mut Vec<Problem>) -> Option<ProcessTarget> {
        let this = self.this_process.as_ref().filter(|t| *t.get_ref());
        let set: Vec<(&str, Range<usize>)> = [
            self.match_name.as_ref().map(|m| ("match", m.span())),
            self.cmdline.as_ref().map(|c| ("cmdline", c.span())),
            self.pidfile.as_ref().map(|p| ("pidfile", p.span())),
            this.map(|t| ("this_process", t.span())),
        ]
        .into_iter()
        .flatten()
        .collect();
        let name = self.name.get_ref();
        match set.as_slice() {
            [] => {
                problems.push(Problem::at(
                    entry,
                    format!(
                        "process '{name}' says nothing to look for: set one of 'match', 'cmdline', 'pidfile' or 'this_process = true'"
                    ),
                ));
                return None;
            }
            [_] => {}
            [(first, _), (second, span), ..] => {
                problems.push(Problem::at(
                    span.clone(),
                    format!("process '{name}' sets both '{first}' and '{second}': keep only one"),
                ));
                return None;
            }
        }

        if let Some(m) = &self.match_name {
            let n = m.get_ref();
            if n.is_empty() || n.contains('/') {
                problems.push(Problem::at(
                    m.span(),
                    format!("'match' '{n}' is not a process name: write the name 'ps -e' shows, e.g. 'nginx'"),
                ));
                return None;
            }
            return Some(ProcessTarget::Name(n.clone()));
        }
        if let Some(c) = &self.cmdline {
            return match Regex::new(c.get_ref()) {
                Ok(re) => Some(ProcessTarget::Cmdline(re)),
                Err(e) => {
                    problems.push(Problem::at(c.span(), bad_regex("cmdline", c.get_ref(), &e)));
                    None
                }
            };
        }
        if let Some(p) = &self.pidfile {
            if !p.get_ref().is_absolute() {
                problems.push(Problem::at(
                    p.span(),
                    format!(
                        "'pidfile' '{}' is relative: write the absolute path, e.g. '/run/{}.pid'",
                        p.get_ref().display(),
                        name
                    ),
                ));
                return None;
            }
            return Some(ProcessTarget::Pidfile(p.get_ref().clone()));
        }
        Some(ProcessTarget::ThisProcess)
    }
}

/// Counts and measures the processes of one [`ProcessTarget`].
pub struct ProcessCollector {
    target: Arc<ProcessTarget>,
    // A std mutex, not a tokio one: it is only locked inside `spawn_blocking`
    // closures and never held across an `.await`. It survives a run that timed
    // out, whose closure may still be running.
    sys: Arc<Mutex<Option<Scanner>>>,
    watched: Watched,
}

/// The sysinfo state kept between runs (the previous CPU times of each process).
struct Scanner {
    sys: System,
    /// The pid last read from the pidfile; a new pid starts a fresh `System` so
    /// the old process does not linger in it.
    last_pid: Option<Pid>,
}

/// One matching process as measured.
#[derive(Debug, Clone, Copy)]
struct Found {
    pid: u32,
    cpu: f32,
    rss: u64,
    fds: Option<usize>,
    threads: Option<u64>,
}

impl ProcessCollector {
    /// A collector for `target`; processes are first read on the first run.
    pub fn new(target: ProcessTarget) -> Self {
        Self {
            target: Arc::new(target),
            sys: Arc::new(Mutex::new(None)),
            watched: Watched::new(),
        }
    }

    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let (mut found, fresh) = self.scan().await?;
        if fresh {
            // The first reading is only the CPU baseline.
            tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
            found = self.scan().await?.0;
        }
        let pids: Vec<u32> = found.iter().map(|f| f.pid).collect();
        // warden watching itself would only see its own exit too late to report it.
        let watch = !matches!(*self.target, ProcessTarget::ThisProcess);
        let running = self.watched.sync(&pids, watch, cx);

        let mut out = SampleBuf::new(cx.now);
        let live: Vec<&Found> = found.iter().filter(|f| running.contains(&f.pid)).collect();
        let none = Labels::empty;
        out.add("process_running", none(), live.len() as f64);
        out.add(
            "process_cpu_percent",
            none(),
            live.iter().map(|f| f64::from(f.cpu)).sum(),
        );
        out.add(
            "process_resident_memory_bytes",
            none(),
            live.iter().map(|f| f.rss as f64).sum(),
        );
        let fds: Vec<usize> = live.iter().filter_map(|f| f.fds).collect();
        if live.is_empty() || !fds.is_empty() {
            out.add("process_open_fds", none(), fds.iter().sum::<usize>() as f64);
        }
        out.add(
            "process_threads",
            none(),
            live.iter().filter_map(|f| f.threads).sum::<u64>() as f64,
        );
        Ok(out.into_samples())
    }

    /// Refreshes sysinfo and returns the matching processes, on the blocking pool;
    /// true when this was the first reading.
    async fn scan(&self) -> Result<(Vec<Found>, bool), CollectError> {
        let (sys, target) = (Arc::clone(&self.sys), Arc::clone(&self.target));
        blocking(move || {
            let mut guard = lock_state(&sys);
            let fresh = guard.is_none();
            let scanner = match guard.as_mut() {
                Some(s) => s,
                None => guard.insert(Scanner {
                    sys: new_system()?,
                    last_pid: None,
                }),
            };
            Ok((scanner.scan(&target)?, fresh))
        })
        .await
    }
}

fn new_system() -> Result<System, CollectError> {
    System::new_with_specifics(RefreshKind::nothing())
        .map_err(|e| CollectError::Internal(format!("cannot read processes: {e}")))
}

impl Scanner {
    fn scan(&mut self, target: &ProcessTarget) -> Result<Vec<Found>, CollectError> {
        // Threads are listed only when asked for (`tasks`); they are not processes.
        let kind = ProcessRefreshKind::nothing()
            .without_tasks()
            .with_cpu()
            .with_memory();
        let pids = match target {
            ProcessTarget::Name(name) => {
                let kind = if name.len() > COMM_LEN {
                    kind.with_cmd(UpdateKind::OnlyIfNotSet)
                        .with_exe(UpdateKind::OnlyIfNotSet)
                } else {
                    kind
                };
                self.sys
                    .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
                self.sys
                    .processes()
                    .values()
                    .filter(|p| name_matches(p, name))
                    .map(Process::pid)
                    .collect()
            }
            ProcessTarget::Cmdline(re) => {
                let kind = kind.with_cmd(UpdateKind::Always);
                self.sys
                    .refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
                self.sys
                    .processes()
                    .values()
                    .filter(|p| !p.cmd().is_empty() && re.is_match(&joined_cmdline(p)))
                    .map(Process::pid)
                    .collect()
            }
            ProcessTarget::Pidfile(path) => match read_pidfile(path)? {
                None => Vec::new(),
                Some(pid) => {
                    if self.last_pid != Some(pid) {
                        self.sys = new_system()?;
                        self.last_pid = Some(pid);
                    }
                    self.sys.refresh_processes_specifics(
                        ProcessesToUpdate::Some(&[pid]),
                        true,
                        kind,
                    );
                    vec![pid]
                }
            },
            ProcessTarget::ThisProcess => {
                let pid = Pid::from_u32(std::process::id());
                self.sys
                    .refresh_processes_specifics(ProcessesToUpdate::Some(&[pid]), true, kind);
                vec![pid]
            }
        };

        Ok(pids
            .into_iter()
            .filter_map(|pid| self.sys.process(pid))
            .filter(|p| !matches!(p.status(), ProcessStatus::Zombie | ProcessStatus::Dead))
            .map(|p| Found {
                pid: p.pid().as_u32(),
                cpu: p.cpu_usage(),
                rss: p.memory(),
                fds: p.open_files(),
                threads: thread_count(p.pid().as_u32()),
            })
            .collect())
    }
}

/// `pgrep -x` semantics: the kernel's process name, which is cut at 15 bytes; a
/// longer `name` must also be the file name of the executable or of `argv[0]`.
fn name_matches(p: &Process, name: &str) -> bool {
    let comm = p.name().as_bytes();
    if name.len() <= COMM_LEN {
        return comm == name.as_bytes();
    }
    if comm != &name.as_bytes()[..COMM_LEN] {
        return false;
    }
    let file_name = |path: &Path| path.file_name() == Some(OsStr::new(name));
    p.exe().is_some_and(file_name) || p.cmd().first().is_some_and(|a| file_name(Path::new(a)))
}

/// The command line with its arguments joined by single spaces.
fn joined_cmdline(p: &Process) -> String {
    let args: Vec<_> = p.cmd().iter().map(|a| a.to_string_lossy()).collect();
    args.join(" ")
}

/// The pid in a pidfile; `None` when the file is missing or empty (not running).
fn read_pidfile(path: &Path) -> Result<Option<Pid>, CollectError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CollectError::Target(format!(
                "cannot read pidfile '{}': {e}",
                path.display()
            )));
        }
    };
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    // Some daemons write more than the pid (e.g. a second line); the first word is it.
    let first = text.split_whitespace().next().unwrap_or("");
    match first.parse::<u32>() {
        Ok(pid) if pid > 0 => Ok(Some(Pid::from_u32(pid))),
        _ => Err(CollectError::Target(format!(
            "pidfile '{}' holds '{first}', not a process id",
            path.display()
        ))),
    }
}

/// The number of threads of `pid`, from `/proc/PID/stat` (field 20).
fn thread_count(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The name (field 2) is in parentheses and may hold spaces and ')'.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(17)?.parse().ok()
}

impl Collector for ProcessCollector {
    fn kind(&self) -> &'static str {
        "process"
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
