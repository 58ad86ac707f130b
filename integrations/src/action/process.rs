//! Running one argument vector as the actions need it: no shell, its own process
//! group (killed as a whole on timeout or shutdown), output captured up to a bound
//! while the rest is drained, labels as data.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;
use warden_engine::ports::{ActionError, ActionRequest};
use warden_engine::template::Template;

/// Longest label value passed to a command.
const MAX_VALUE: usize = 1_024;
/// How long a process group gets between SIGTERM and SIGKILL.
const KILL_GRACE: Duration = Duration::from_millis(1_000);
/// How long output is still read after the command exited (a child it left behind
/// may hold the pipes open).
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(200);

/// True when `v` may be an argument: 1 to 1024 bytes of letters, digits and
/// `. _ - : / @ % + = ,`, not starting with `-` (it would read as an option).
/// Anything else (spaces, quotes, `;`, `$`, backticks, globs, newlines) is refused,
/// so a value can neither inject an option nor mean anything to a shell script
/// that passes it on unquoted.
pub fn safe_arg(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= MAX_VALUE
        && !v.starts_with('-')
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-:/@%+=,".contains(c))
}

/// True when `v` may be an environment value: no control characters, at most
/// 1024 bytes. Environment variables are data: a script must quote them.
pub fn safe_env(v: &str) -> bool {
    v.len() <= MAX_VALUE && !v.chars().any(char::is_control)
}

/// Renders an argument vector, refusing unsafe variable values.
pub fn render_argv(argv: &[Template], req: &ActionRequest) -> Result<Vec<String>, ActionError> {
    argv.iter()
        .map(|t| {
            for var in t.vars() {
                let v = req.var(var).ok_or_else(|| {
                    ActionError::Refused(format!(
                        "'{t}' needs '{var}', which the alert does not have"
                    ))
                })?;
                if !safe_arg(&v) {
                    return Err(ActionError::Refused(format!(
                        "the value of '{var}' ({}) is not safe as an argument: only letters, digits and . _ - : / @ % + = , are passed, not starting with '-'",
                        shown(&v)
                    )));
                }
            }
            t.render(|v| req.var(v))
                .map_err(|e| ActionError::Refused(e.to_string()))
        })
        .collect()
}

/// A value for a message: quoted, control characters escaped, at most 80 chars.
pub fn shown(v: &str) -> String {
    let mut s: String = v
        .chars()
        .take(80)
        .collect::<String>()
        .escape_debug()
        .to_string();
    if v.chars().count() > 80 {
        s.push('…');
    }
    format!("'{s}'")
}

/// `WARDEN_LABEL_<NAME>` for every label (name upper-cased), plus
/// `WARDEN_ACTION`, `WARDEN_RULE`, `WARDEN_VALUE` and `WARDEN_ATTEMPT`. A label
/// whose value is not [`safe_env`] refuses the action.
pub fn label_env(
    action: &str,
    req: &ActionRequest,
) -> Result<BTreeMap<String, String>, ActionError> {
    let mut env = BTreeMap::new();
    for (k, v) in req.labels.iter() {
        if !safe_env(v) {
            return Err(ActionError::Refused(format!(
                "label '{k}' has a value that is not safe in the environment ({}): control characters or over 1024 bytes",
                shown(v)
            )));
        }
        env.insert(
            format!("WARDEN_LABEL_{}", k.to_ascii_uppercase()),
            v.to_string(),
        );
    }
    env.insert("WARDEN_ACTION".into(), action.to_string());
    if !req.rule.is_empty() {
        env.insert("WARDEN_RULE".into(), req.rule.clone());
    }
    if let Some(v) = req.var("value") {
        env.insert("WARDEN_VALUE".into(), v);
    }
    env.insert("WARDEN_ATTEMPT".into(), req.id.to_string());
    for (k, v) in &req.vars {
        env.insert(format!("WARDEN_{}", k.to_ascii_uppercase()), v.clone());
    }
    Ok(env)
}

/// One command to run.
#[derive(Debug, Clone)]
pub struct Spec {
    /// The argument vector; the first is the program.
    pub argv: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// The working directory.
    pub cwd: Option<PathBuf>,
    /// How long it may run before its process group is killed.
    pub timeout: Duration,
    /// Most bytes kept of stdout and of stderr each.
    pub max_output: usize,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ran {
    /// The exit status; `None` when killed by a signal.
    pub status: Option<i32>,
    /// The signal that ended it.
    pub signal: Option<i32>,
    /// It ran past its timeout (or warden stopped) and its group was killed.
    pub killed: bool,
    /// Captured stdout, then stderr (marked), bounded.
    pub output: String,
}

impl Ran {
    /// Exit status 0.
    pub fn ok(&self) -> bool {
        self.status == Some(0)
    }

    /// The status for the audit log: the exit status, or 128 + signal as shells
    /// report it.
    pub fn audit_status(&self) -> Option<i32> {
        self.status.or(self.signal.map(|s| 128 + s))
    }

    /// A one-line description of how it ended.
    pub fn describe(&self, timeout: Duration) -> String {
        if self.killed {
            format!(
                "killed after its timeout of {}",
                warden_engine::duration::format(timeout)
            )
        } else if let Some(s) = self.status {
            format!("exit status {s}")
        } else {
            format!("killed by signal {}", self.signal.unwrap_or(0))
        }
    }
}

async fn read_bounded<R: AsyncRead + Unpin>(mut r: R, max: usize) -> (Vec<u8>, bool) {
    let mut kept = Vec::new();
    let mut cut = false;
    let mut buf = [0u8; 8192];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                let room = max.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
                cut |= n > room;
            }
        }
    }
    (kept, cut)
}

fn kill_group(pid: u32, sig: i32) {
    // SAFETY: killpg only sends a signal; a stale group id fails with ESRCH.
    unsafe {
        libc::killpg(pid as libc::pid_t, sig);
    }
}

/// Runs `spec` to its end, its timeout, or `cancel`.
pub async fn run(spec: &Spec, cancel: &CancellationToken) -> Result<Ran, ActionError> {
    let Some((program, args)) = spec.argv.split_first() else {
        return Err(ActionError::Refused("the command is empty".into()));
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(&spec.env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(dir) = &spec.cwd {
        cmd.current_dir(dir);
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| ActionError::Failed(format!("cannot start '{program}': {e}")))?;
    let pid = child.id().unwrap_or(0);
    let out = child.stdout.take();
    let err = child.stderr.take();
    let max = spec.max_output;
    let out_task = tokio::spawn(async move {
        match out {
            Some(o) => read_bounded(o, max).await,
            None => (Vec::new(), false),
        }
    });
    let err_task = tokio::spawn(async move {
        match err {
            Some(e) => read_bounded(e, max).await,
            None => (Vec::new(), false),
        }
    });
    let mut killed = false;
    let status = tokio::select! {
        s = child.wait() => s,
        _ = tokio::time::sleep(spec.timeout) => {
            killed = true;
            stop_group(&mut child, pid).await
        }
        _ = cancel.cancelled() => {
            killed = true;
            stop_group(&mut child, pid).await
        }
    }
    .map_err(|e| ActionError::Failed(format!("waiting for '{program}': {e}")))?;
    let collect = |t: tokio::task::JoinHandle<(Vec<u8>, bool)>| async move {
        let abort = t.abort_handle();
        match tokio::time::timeout(DRAIN_AFTER_EXIT, t).await {
            Ok(Ok(v)) => v,
            _ => {
                abort.abort();
                (Vec::new(), false)
            }
        }
    };
    let (o, o_cut) = collect(out_task).await;
    let (e, e_cut) = collect(err_task).await;
    let mut output = String::from_utf8_lossy(&o).into_owned();
    if o_cut {
        output.push_str("\n[stdout truncated]");
    }
    if !e.is_empty() {
        if !output.is_empty() && !output.ends_with('\n') {
            output.push('\n');
        }
        output.push_str("[stderr]\n");
        output.push_str(&String::from_utf8_lossy(&e));
        if e_cut {
            output.push_str("\n[stderr truncated]");
        }
    }
    Ok(Ran {
        status: status.code(),
        signal: status.signal(),
        killed,
        output,
    })
}

/// SIGTERM to the group, SIGKILL after a grace period; then the leader's status.
async fn stop_group(
    child: &mut tokio::process::Child,
    pid: u32,
) -> std::io::Result<std::process::ExitStatus> {
    if pid != 0 {
        kill_group(pid, libc::SIGTERM);
    }
    match tokio::time::timeout(KILL_GRACE, child.wait()).await {
        Ok(s) => {
            // The leader is gone; anything left in its group goes too.
            if pid != 0 {
                kill_group(pid, libc::SIGKILL);
            }
            s
        }
        Err(_) => {
            if pid != 0 {
                kill_group(pid, libc::SIGKILL);
            }
            child.wait().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(argv: &[&str], timeout_ms: u64) -> Spec {
        Spec {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: BTreeMap::new(),
            cwd: None,
            timeout: Duration::from_millis(timeout_ms),
            max_output: 1_000,
        }
    }

    #[test]
    fn safe_values() {
        for ok in [
            "web-1",
            "10.0.0.5:8080",
            "/var/lib/pg",
            "a=b,c",
            "user@host",
            "50%",
        ] {
            assert!(safe_arg(ok), "{ok}");
        }
        for bad in [
            "; rm -rf /",
            "$(touch x)",
            "`id`",
            "a b",
            "-rf",
            "--force",
            "",
            "x\ny",
            "a|b",
            "a&b",
            "*",
            "it's",
            "\"q\"",
        ] {
            assert!(!safe_arg(bad), "{bad}");
        }
        assert!(safe_env("connect failed (os error 111); retry"));
        assert!(!safe_env("a\nb"));
        assert!(!safe_env("a\0b"));
    }

    #[tokio::test]
    async fn captures_status_and_bounded_output() {
        let r = run(
            &spec(&["sh", "-c", "echo out; echo err >&2; exit 3"], 5_000),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, Some(3));
        assert_eq!(r.output, "out\n[stderr]\nerr\n");
        let r = run(
            &spec(
                &["sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"],
                5_000,
            ),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(r.ok());
        assert!(r.output.starts_with(&"x".repeat(1_000)));
        assert!(
            r.output.ends_with("[stdout truncated]"),
            "the rest is drained, not kept"
        );
    }

    #[tokio::test]
    async fn a_timeout_kills_the_whole_process_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("child.pid");
        let script = format!("sleep 30 & echo $! > {}; wait", pidfile.display());
        let started = std::time::Instant::now();
        let r = run(
            &spec(&["sh", "-c", &script], 300),
            &CancellationToken::new(),
        )
        .await
        .unwrap();
        assert!(r.killed);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(
            r.describe(Duration::from_millis(300))
                .contains("timeout of 300ms")
        );
        let child: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        // SAFETY: signal 0 only checks that the process exists.
        let alive = unsafe { libc::kill(child, 0) } == 0;
        let zombie = std::fs::read_to_string(format!("/proc/{child}/stat"))
            .map(|s| s.contains(") Z "))
            .unwrap_or(true);
        assert!(!alive || zombie, "the grandchild was killed with the group");
    }

    #[tokio::test]
    async fn a_missing_program_fails_to_start() {
        let e = run(
            &spec(&["/nonexistent/prog"], 1_000),
            &CancellationToken::new(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(e, ActionError::Failed(m) if m.contains("cannot start '/nonexistent/prog'"))
        );
    }

    #[test]
    fn unsafe_label_values_never_reach_the_argv() {
        let req = ActionRequest {
            id: 1,
            rule: "R".into(),
            labels: warden_engine::model::Labels::new([("instance", "; rm -rf /")]).unwrap(),
            value: Some(2.0),
            vars: BTreeMap::new(),
            dry_run: false,
        };
        let argv = vec![
            Template::parse("restart").unwrap(),
            Template::parse("{{instance}}").unwrap(),
        ];
        let e = render_argv(&argv, &req).unwrap_err();
        assert!(
            matches!(&e, ActionError::Refused(m) if m.contains("not safe as an argument")),
            "{e}"
        );
        let env = label_env("a", &req).unwrap();
        assert_eq!(env["WARDEN_LABEL_INSTANCE"], "; rm -rf /");
        assert_eq!(env["WARDEN_VALUE"], "2");
        assert_eq!(env["WARDEN_RULE"], "R");
    }
}
