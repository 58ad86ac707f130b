//! `[[action.exec]]`: run a command as an argument vector, no shell.
//!
//! ```toml
//! [[action.exec]]
//! name = "restart-web"
//! command = ["/usr/local/bin/restart-web", "--instance", "{{instance}}"]
//! env = { RESTART_REASON = "{{alertname}}" }
//! working_dir = "/srv/web"
//! timeout = "30s"
//! cooldown = "1m"
//! max_attempts = 3
//! window = "15m"
//! ```
//!
//! Alert labels reach the command only as whole arguments (`{{label}}` in an
//! element of `command`) or as environment variables (`WARDEN_LABEL_<NAME>`), never
//! spliced into a shell string. A value placed in an argument must be safe for one
//! (letters, digits, `. _ - : / @ % + = ,`, not starting with `-`); otherwise the
//! attempt is refused and audited. The command runs in its own process group, which
//! is killed (SIGTERM, then SIGKILL) when it outlives `timeout`. Standard output
//! and error are kept up to `max_output_bytes` each for the audit log.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::ports::{
    Action, ActionContext, ActionError, ActionOutcome, ActionRequest, BoxFuture,
};
use warden_engine::template::Template;

use super::process::{self, Spec, label_env, render_argv, safe_env, shown};

/// Default `timeout` of a command.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// Default `max_output_bytes`.
pub const DEFAULT_MAX_OUTPUT: usize = 16 * 1024;

warden_engine::action_config! {
    /// `[[action.exec]]`: one command.
    pub struct ExecConfig {
        /// The action's name, as rules' `remediate` lists it. Required.
        pub name: Spanned<String>,
        /// The argument vector; the first element is the program (a path, or a
        /// name looked up in `PATH`) and cannot hold placeholders. Required.
        /// Example: `["systemctl", "restart", "app@{{instance}}.service"]`.
        pub command: Spanned<Vec<Spanned<Template>>>,
        /// Extra environment variables; values may hold placeholders. Default none.
        #[serde(default)]
        pub env: Option<Spanned<BTreeMap<String, Template>>>,
        /// The working directory. Default: warden's.
        #[serde(default)]
        pub working_dir: Option<Spanned<PathBuf>>,
        /// How long the command may run before its process group is killed.
        /// Default `"30s"`.
        #[serde(default)]
        pub timeout: Option<Spanned<HumanDuration>>,
        /// Most bytes of standard output (and of standard error) kept. Default
        /// 16384.
        #[serde(default)]
        pub max_output_bytes: Option<Spanned<i64>>,
    }
}

/// A checked argument vector with its environment: what `exec` runs, and what
/// `restart` uses for its stop/start commands.
#[derive(Debug, Clone)]
pub struct CommandSpec {
    /// The argument vector.
    pub argv: Vec<Template>,
    /// Extra environment (templated).
    pub env: BTreeMap<String, Template>,
    /// Working directory.
    pub cwd: Option<PathBuf>,
    /// Timeout.
    pub timeout: Duration,
    /// Output bound.
    pub max_output: usize,
}

/// Checks an argument vector from the config.
pub fn check_argv(
    key: &str,
    argv: &Spanned<Vec<Spanned<Template>>>,
    problems: &mut Vec<Problem>,
) -> Vec<Template> {
    let list = argv.get_ref();
    match list.first() {
        None => problems.push(Problem::at(
            argv.span(),
            format!("'{key}' is empty: give the program and its arguments, e.g. [\"systemctl\", \"restart\", \"web\"]"),
        )),
        Some(p) if p.get_ref().vars().next().is_some() => problems.push(Problem::at(
            p.span(),
            format!("the program in '{key}' cannot hold a placeholder: name a fixed program and pass labels as arguments"),
        )),
        Some(p) if p.get_ref().to_string().trim().is_empty() => {
            problems.push(Problem::at(p.span(), format!("the program in '{key}' is empty")))
        }
        _ => {}
    }
    list.iter().map(|t| t.get_ref().clone()).collect()
}

/// Checks `timeout` (positive).
pub fn check_timeout(
    key: &str,
    v: &Option<Spanned<HumanDuration>>,
    default: Duration,
    problems: &mut Vec<Problem>,
) -> Duration {
    match v {
        None => default,
        Some(t) if t.get_ref().get().is_zero() => {
            problems.push(Problem::at(
                t.span(),
                format!("'{key}' must be longer than '0s': write e.g. '30s'"),
            ));
            default
        }
        Some(t) => t.get_ref().get(),
    }
}

/// Checks `max_output_bytes`.
pub fn check_max_output(v: &Option<Spanned<i64>>, problems: &mut Vec<Problem>) -> usize {
    match v {
        None => DEFAULT_MAX_OUTPUT,
        Some(n) if (1..=1 << 20).contains(n.get_ref()) => *n.get_ref() as usize,
        Some(n) => {
            problems.push(Problem::at(
                n.span(),
                format!(
                    "'max_output_bytes' must be from 1 to 1048576, not {}",
                    n.get_ref()
                ),
            ));
            DEFAULT_MAX_OUTPUT
        }
    }
}

/// Checks `env` names.
pub fn check_env(
    env: &Option<Spanned<BTreeMap<String, Template>>>,
    problems: &mut Vec<Problem>,
) -> BTreeMap<String, Template> {
    let Some(env) = env else {
        return BTreeMap::new();
    };
    for k in env.get_ref().keys() {
        let ok = !k.is_empty()
            && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !k.starts_with(|c: char| c.is_ascii_digit());
        if !ok {
            problems.push(Problem::at(
                env.span(),
                format!("'env' has '{k}', which is not an environment variable name"),
            ));
        } else if k.starts_with("WARDEN_") {
            problems.push(Problem::at(
                env.span(),
                format!("'env' has '{k}': names starting with WARDEN_ are set by warden"),
            ));
        }
    }
    env.get_ref().clone()
}

impl CommandSpec {
    /// Renders the command for `req`: argv with safe values only, the label
    /// environment, the configured environment.
    pub fn render(&self, action: &str, req: &ActionRequest) -> Result<Spec, ActionError> {
        let argv = render_argv(&self.argv, req)?;
        let mut env = label_env(action, req)?;
        for (k, t) in &self.env {
            let v = t
                .render(|v| req.var(v))
                .map_err(|e| ActionError::Refused(e.to_string()))?;
            if !safe_env(&v) {
                return Err(ActionError::Refused(format!(
                    "env '{k}' would be {}, which is not safe in the environment",
                    shown(&v)
                )));
            }
            env.insert(k.clone(), v);
        }
        Ok(Spec {
            argv,
            env,
            cwd: self.cwd.clone(),
            timeout: self.timeout,
            max_output: self.max_output,
        })
    }
}

/// What the audit log shows of a command: argv, and the environment it adds
/// besides the label variables.
pub fn describe(spec: &Spec) -> serde_json::Value {
    let extra: BTreeMap<&String, &String> = spec
        .env
        .iter()
        .filter(|(k, _)| !k.starts_with("WARDEN_"))
        .collect();
    let mut v = serde_json::json!({ "argv": spec.argv });
    if !extra.is_empty() {
        v["env"] = serde_json::json!(extra);
    }
    if let Some(d) = &spec.cwd {
        v["working_dir"] = serde_json::json!(d);
    }
    v
}

impl ExecConfig {
    /// Checks the entry; `span` is the entry's.
    pub fn build(&self, _span: Range<usize>, problems: &mut Vec<Problem>) -> ExecAction {
        let argv = check_argv("command", &self.command, problems);
        let env = check_env(&self.env, problems);
        ExecAction {
            name: self.name.get_ref().clone(),
            command: CommandSpec {
                argv,
                env,
                cwd: self.working_dir.as_ref().map(|d| d.get_ref().clone()),
                timeout: check_timeout("timeout", &self.timeout, DEFAULT_TIMEOUT, problems),
                max_output: check_max_output(&self.max_output_bytes, problems),
            },
        }
    }
}

/// The exec action.
#[derive(Debug, Clone)]
pub struct ExecAction {
    name: String,
    command: CommandSpec,
}

impl ExecAction {
    /// An action running `command`.
    pub fn new(name: impl Into<String>, command: CommandSpec) -> Self {
        Self {
            name: name.into(),
            command,
        }
    }
}

impl Action for ExecAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "exec"
    }

    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
        cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(async move {
            let spec = self.command.render(&self.name, req)?;
            let args = describe(&spec);
            if req.dry_run {
                return Ok(ActionOutcome {
                    ok: true,
                    status: None,
                    args,
                    output: format!("dry run: would run {:?}", spec.argv),
                });
            }
            let ran = process::run(&spec, &cx.cancel).await?;
            let mut output = ran.output.clone();
            if !ran.ok() {
                if !output.is_empty() && !output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(&format!("[{}]", ran.describe(spec.timeout)));
            }
            Ok(ActionOutcome {
                ok: ran.ok(),
                status: ran.audit_status(),
                args,
                output,
            })
        })
    }
}
