//! `[[collector.exec]]`: runs a check command that speaks the Nagios plugin
//! protocol (the monitoring-plugins `check_*` family and anything written for
//! Nagios, Icinga or Sensu) and turns its exit status, text and perfdata into
//! samples.
//!
//! Metrics (labels besides `instance` and the entry's `labels`):
//!
//! | metric | unit |
//! |---|---|
//! | `check_status` | the exit status: 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN (any other status, a signal, a timeout or a command that cannot start is 3) |
//! | `check_duration_seconds` | how long the command ran, seconds |
//! | `check_perfdata{perf,unit}` | each perfdata item in base units (see [`nagios`]) |
//! | `check_perfdata_warn`, `check_perfdata_crit`, `check_perfdata_min`, `check_perfdata_max` `{perf,unit}` | the item's thresholds and bounds, in the same unit, when the plugin gave them |
//! | `check_output_info{output}` | 1; `output` is the first line's text (before `|`), at most 200 characters |
//!
//! Thresholds are sibling series rather than labels, so rules can compare
//! against them (`series("check_perfdata") > series("check_perfdata_warn")`) and a
//! changed threshold does not start a new series for the value.
//!
//! The text is an info series because the sample model has no annotations: join
//! it to an alert with `on(series("check_output_info"), ["instance"]) *
//! series("check_status")`, which keeps the `output` label so `{{output}}` can be
//! shown. Each distinct text is a series of its own; plugins that print changing
//! numbers in their text make one per run, which drop out of `series()` after two
//! intervals and out of the store with retention.
//!
//! The command runs as an argument vector, never through a shell, in a process
//! group of its own with stdin closed. Past the timeout the whole group is killed
//! (SIGKILL) and reaped, and the check reports UNKNOWN with a text saying so.
//! At most 64 KiB of stdout and of stderr are kept (the rest is read and
//! dropped, so a chatty plugin cannot block on a full pipe). When stdout is empty,
//! the first line of stderr is the text.

pub mod nagios;

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncReadExt};
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};
use warden_engine::ports::{BoxFuture, CollectContext, CollectError, Collector};

use crate::common::{Common, CommonKeys, NameKey, SampleBuf, TargetLabels, instance_of, one_label};
use crate::probe;

/// How much of each output stream is kept.
const MAX_OUTPUT: usize = 64 * 1024;

/// The longest `output` label value, in characters.
const MAX_TEXT: usize = 200;

/// `[[collector.exec]]`: one check command.
///
/// ```toml
/// [[collector.exec]]
/// name = "root-disk"
/// command = ["/usr/lib/nagios/plugins/check_disk", "-w", "20%", "-c", "10%", "-p", "/"]
/// interval = "1m"
/// timeout = "10s"
/// env = { LC_ALL = "C" }
/// ```
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExecConfig {
    /// The `instance` label of every sample. Required. Example: `name = "root-disk"`.
    pub name: Spanned<String>,
    /// How often to run, at least `"1s"`. Default `"5s"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
    /// How long one run may take, at most the interval. Default: the interval, but
    /// no more than `"10s"`. The process group is killed a little earlier (a
    /// tenth, at most 250 ms) so UNKNOWN can be reported.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// Extra labels on every sample. Default none; `perf`, `unit` and `output` are
    /// taken.
    #[serde(default)]
    pub labels: Option<Spanned<TargetLabels>>,
    /// The program and its arguments, run without a shell. A program without `/`
    /// is looked up in `PATH`. Required. Example:
    /// `command = ["/usr/lib/nagios/plugins/check_tcp", "-H", "127.0.0.1", "-p", "5432"]`.
    pub command: Spanned<Vec<String>>,
    /// Environment variables set for the command, on top of warden's own. Default
    /// none. Example: `env = { LC_ALL = "C" }`.
    #[serde(default)]
    pub env: Option<BTreeMap<String, String>>,
    /// The absolute directory to run in. Default: warden's working directory.
    /// Example: `working_dir = "/var/lib/checks"`.
    #[serde(default)]
    pub working_dir: Option<Spanned<PathBuf>>,
}

impl ExecConfig {
    /// Checks the entry at `entry` (its span in the file) and builds its collector.
    pub(crate) fn build(
        &self,
        entry: Range<usize>,
        problems: &mut Vec<Problem>,
    ) -> Option<(Common, Box<dyn Collector>)> {
        let before = problems.len();
        let common = CommonKeys {
            kind: "exec",
            entry,
            name: NameKey::Given(&self.name),
            interval: self.interval.as_ref(),
            timeout: self.timeout.as_ref(),
            labels: self.labels.as_ref(),
            reserved: &["perf", "unit", "output"],
        }
        .check(problems);
        let argv = self.command.get_ref();
        match argv.first() {
            None => problems.push(Problem::at(
                self.command.span(),
                "'command' is empty: write the program and its arguments, e.g. ['/usr/lib/nagios/plugins/check_dummy', '0']",
            )),
            Some(program) if program.contains('/') && !Path::new(program).is_file() => {
                problems.push(Problem::at(
                    self.command.span(),
                    format!("'command' runs '{program}', which is not a file"),
                ));
            }
            Some(_) => {}
        }
        if let Some(dir) = &self.working_dir
            && !dir.get_ref().is_absolute()
        {
            problems.push(Problem::at(
                dir.span(),
                format!(
                    "'working_dir' '{}' is relative: write an absolute directory",
                    dir.get_ref().display()
                ),
            ));
        }
        if problems.len() != before {
            return None;
        }
        let common = common?;
        let collector = ExecCollector {
            argv: argv.clone(),
            env: self.env.clone().unwrap_or_default(),
            working_dir: self.working_dir.as_ref().map(|d| d.get_ref().clone()),
            budget: probe::budget(common.timeout),
            last_errors: None,
        };
        Some((common, Box::new(collector)))
    }
}

/// Runs one check command (see the module docs).
pub struct ExecCollector {
    argv: Vec<String>,
    env: BTreeMap<String, String>,
    working_dir: Option<PathBuf>,
    budget: Duration,
    /// The perfdata problems last logged, to log them once.
    last_errors: Option<Vec<String>>,
}

/// How a run ended.
struct Run {
    status: u8,
    stdout: String,
    /// The text when the plugin itself gave none (timeout, cannot start).
    note: Option<String>,
    elapsed: Duration,
}

impl ExecCollector {
    async fn run(&mut self, cx: &CollectContext) -> Result<Vec<Sample>, CollectError> {
        let run = self.execute().await;
        let parsed = nagios::parse_output(&run.stdout);
        if !parsed.errors.is_empty() && self.last_errors.as_ref() != Some(&parsed.errors) {
            tracing::warn!(collector = "exec", instance = %instance_of(cx), errors = ?parsed.errors, "perfdata items skipped");
        }
        self.last_errors = Some(parsed.errors.clone());

        let mut out = SampleBuf::new(cx.now);
        out.add("check_status", Labels::empty(), f64::from(run.status));
        out.add(
            "check_duration_seconds",
            Labels::empty(),
            run.elapsed.as_secs_f64(),
        );
        for p in &parsed.perfdata {
            let labels = match Labels::new([("perf", p.label.as_str()), ("unit", p.unit.as_str())])
            {
                Ok(l) => l,
                Err(_) => continue,
            };
            out.add("check_perfdata", labels.clone(), p.value);
            for (name, v) in [
                ("check_perfdata_warn", p.warn),
                ("check_perfdata_crit", p.crit),
                ("check_perfdata_min", p.min),
                ("check_perfdata_max", p.max),
            ] {
                if let Some(v) = v {
                    out.add(name, labels.clone(), v);
                }
            }
        }
        let text = run.note.unwrap_or(parsed.text);
        let text: String = text.chars().take(MAX_TEXT).collect();
        if !text.is_empty() {
            out.add("check_output_info", one_label("output", &text), 1.0);
        }
        Ok(out.into_samples())
    }

    /// Runs the command within the budget.
    async fn execute(&self) -> Run {
        let started = Instant::now();
        let mut cmd = tokio::process::Command::new(&self.argv[0]);
        cmd.args(&self.argv[1..])
            .envs(&self.env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = &self.working_dir {
            cmd.current_dir(dir);
        }
        let unknown = |note: String| Run {
            status: 3,
            stdout: String::new(),
            note: Some(note),
            elapsed: started.elapsed(),
        };
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => return unknown(format!("cannot run '{}': {e}", self.argv[0])),
        };
        let pid = child.id();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let work = async {
            let (out, err, status) =
                tokio::join!(read_bounded(stdout), read_bounded(stderr), child.wait());
            (out, err, status)
        };
        match tokio::time::timeout(self.budget, work).await {
            Ok((out, err, status)) => {
                let status = match status {
                    Ok(s) => match s.code() {
                        Some(c @ 0..=3) => c as u8,
                        _ => 3,
                    },
                    Err(_) => 3,
                };
                let stdout = String::from_utf8_lossy(&out).into_owned();
                let note = if stdout.trim().is_empty() {
                    let err = String::from_utf8_lossy(&err);
                    Some(match err.lines().find(|l| !l.trim().is_empty()) {
                        Some(line) => line.trim().to_string(),
                        None => "(no output)".to_string(),
                    })
                } else {
                    None
                };
                Run {
                    status,
                    stdout,
                    note,
                    elapsed: started.elapsed(),
                }
            }
            Err(_) => {
                if let Some(pid) = pid {
                    kill_group(pid);
                }
                // Reap it; after SIGKILL this is immediate.
                let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                unknown(format!(
                    "timed out after {}: '{}' and its children were killed",
                    HumanDuration(self.budget),
                    self.argv[0]
                ))
            }
        }
    }
}

/// Kills the process group `pgid` (the command and every child it started).
fn kill_group(pgid: u32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    // SAFETY: kill(2) with a negative pid signals a process group; it touches no
    // memory of ours. The group is the one the command was started in.
    let rc = unsafe { libc::kill(-pgid, libc::SIGKILL) };
    if rc != 0 {
        tracing::debug!(pgid, error = %std::io::Error::last_os_error(), "killing the check's process group failed");
    }
}

/// Reads a stream to its end, keeping the first [`MAX_OUTPUT`] bytes.
async fn read_bounded<R: AsyncRead + Unpin>(stream: Option<R>) -> Vec<u8> {
    let Some(mut stream) = stream else {
        return Vec::new();
    };
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return kept,
            Ok(n) => {
                let room = MAX_OUTPUT.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
    }
}

impl Collector for ExecCollector {
    fn kind(&self) -> &'static str {
        "exec"
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
