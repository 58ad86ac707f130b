//! `[[action.restart]]`: restart a service, then wait until its health check
//! passes.
//!
//! ```toml
//! # a systemd unit (runs `systemctl restart web@<instance>.service`)
//! [[action.restart]]
//! name = "restart-web"
//! unit = "web@{{instance}}.service"
//! health = { collector = "{{instance}}" }    # the collector named like the instance
//!
//! # a supervised process without systemd: a stop/start command pair
//! [[action.restart]]
//! name = "restart-api"
//! stop = ["/usr/local/bin/api-ctl", "stop", "{{instance}}"]
//! start = ["/usr/local/bin/api-ctl", "start", "{{instance}}"]
//! health = { http = "http://127.0.0.1:8080/health", timeout = "20s" }
//! ```
//!
//! The health check is either a named collector (healthy once it writes a sample
//! newer than the restart saying so: `probe_success 1`, `up 1`, `*_up 1`,
//! `process_running` above 0 or `check_status 0`) or an inline probe: `http`
//! (any 2xx), `tcp` (connects) or `command` (exits 0). It is tried every
//! `interval` until `timeout`; a restart whose check never passes failed.
//! Without `health`, the restart succeeded when its command(s) did.
//!
//! A failing `stop` does not stop the restart (a crashed service often cannot be
//! stopped); a failing `start` or `systemctl restart` fails it.

use std::ops::Range;
use std::time::{Duration, Instant};

use serde::Deserialize;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Matcher, MetricName, Selector, now_ms};
use warden_engine::ports::{
    Action, ActionContext, ActionError, ActionOutcome, ActionRequest, BoxFuture,
};
use warden_engine::template::Template;

use super::exec::{CommandSpec, DEFAULT_TIMEOUT, check_argv, check_max_output, check_timeout};
use super::process::{self, Spec, safe_arg, shown};

/// Default health check `timeout`.
pub const DEFAULT_HEALTH_TIMEOUT: Duration = Duration::from_secs(30);
/// Default health check `interval`.
pub const DEFAULT_HEALTH_INTERVAL: Duration = Duration::from_millis(200);

/// `health = { ... }` of a restart.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthConfig {
    /// The `name` of a collector whose samples say the service is healthy.
    #[serde(default)]
    pub collector: Option<Spanned<Template>>,
    /// A URL answering 2xx when healthy.
    #[serde(default)]
    pub http: Option<Spanned<Template>>,
    /// `host:port` accepting connections when healthy.
    #[serde(default)]
    pub tcp: Option<Spanned<Template>>,
    /// A command exiting 0 when healthy (argument vector).
    #[serde(default)]
    pub command: Option<Spanned<Vec<Spanned<Template>>>>,
    /// How long to wait for the check to pass. Default `"30s"`.
    #[serde(default)]
    pub timeout: Option<Spanned<HumanDuration>>,
    /// How often to try. Default `"200ms"`.
    #[serde(default)]
    pub interval: Option<Spanned<HumanDuration>>,
}

warden_engine::action_config! {
    /// `[[action.restart]]`: a service restart with a health check.
    pub struct RestartConfig {
        /// The action's name. Required.
        pub name: Spanned<String>,
        /// A systemd unit to `systemctl restart` (placeholders allowed).
        #[serde(default)]
        pub unit: Option<Spanned<Template>>,
        /// `systemctl --user`: the unit is the user's. Default `false`.
        #[serde(default)]
        pub user: Option<Spanned<bool>>,
        /// The stop command of a supervised process (argument vector).
        #[serde(default)]
        pub stop: Option<Spanned<Vec<Spanned<Template>>>>,
        /// The start command of a supervised process (argument vector). It should
        /// return once the service is started (as a daemon's start script does).
        #[serde(default)]
        pub start: Option<Spanned<Vec<Spanned<Template>>>>,
        /// How long each command may run. Default `"30s"`.
        #[serde(default)]
        pub timeout: Option<Spanned<HumanDuration>>,
        /// The health check to wait for after the restart.
        #[serde(default)]
        pub health: Option<Spanned<HealthConfig>>,
        /// Most bytes of each command's output kept. Default 16384.
        #[serde(default)]
        pub max_output_bytes: Option<Spanned<i64>>,
    }
}

/// How the service is restarted.
#[derive(Debug, Clone)]
pub enum Method {
    /// `systemctl [--user] restart UNIT`.
    Systemd {
        /// The unit.
        unit: Template,
        /// `--user`.
        user: bool,
    },
    /// A stop/start pair.
    Pair {
        /// Stop (optional).
        stop: Option<CommandSpec>,
        /// Start.
        start: CommandSpec,
    },
}

/// The health check.
#[derive(Debug, Clone)]
pub enum Probe {
    /// A collector by `instance`.
    Collector(Template),
    /// A 2xx from a URL.
    Http(Template),
    /// A TCP connect.
    Tcp(Template),
    /// A command exiting 0.
    Command(CommandSpec),
}

/// A health check with its timing.
#[derive(Debug, Clone)]
pub struct Health {
    /// What to check.
    pub probe: Probe,
    /// How long to wait.
    pub timeout: Duration,
    /// How often to try.
    pub interval: Duration,
}

/// The restart action.
#[derive(Debug, Clone)]
pub struct RestartAction {
    name: String,
    method: Method,
    timeout: Duration,
    max_output: usize,
    health: Option<Health>,
    http: reqwest::Client,
}

/// The argument vector of a systemd restart: `systemctl [--user] restart UNIT`.
pub fn systemctl_argv(unit: &str, user: bool) -> Vec<String> {
    let mut v = vec!["systemctl".to_string()];
    if user {
        v.push("--user".into());
    }
    v.push("restart".into());
    v.push(unit.to_string());
    v
}

impl RestartConfig {
    /// Checks the entry.
    pub fn build(&self, span: Range<usize>, problems: &mut Vec<Problem>) -> Option<RestartAction> {
        let before = problems.len();
        let timeout = check_timeout("timeout", &self.timeout, DEFAULT_TIMEOUT, problems);
        let max_output = check_max_output(&self.max_output_bytes, problems);
        let spec = |argv: Vec<Template>| CommandSpec {
            argv,
            env: Default::default(),
            cwd: None,
            timeout,
            max_output,
        };
        let method = match (&self.unit, &self.stop, &self.start) {
            (Some(u), None, None) => Some(Method::Systemd {
                unit: u.get_ref().clone(),
                user: self.user.as_ref().is_some_and(|u| *u.get_ref()),
            }),
            (None, stop, Some(start)) => {
                if let Some(u) = &self.user {
                    problems.push(Problem::at(u.span(), "'user' is only used with 'unit'"));
                }
                Some(Method::Pair {
                    stop: stop.as_ref().map(|s| spec(check_argv("stop", s, problems))),
                    start: spec(check_argv("start", start, problems)),
                })
            }
            (Some(u), _, _) => {
                problems.push(Problem::at(
                    u.span(),
                    "set either 'unit' (systemd) or 'start' (and 'stop'), not both",
                ));
                None
            }
            (None, _, None) => {
                problems.push(Problem::at(
                    span.clone(),
                    "a restart needs 'unit' (a systemd unit) or a 'start' command (with an optional 'stop')",
                ));
                None
            }
        };
        let health = self.health.as_ref().and_then(|h| {
            let c = h.get_ref();
            let probe = match (&c.collector, &c.http, &c.tcp, &c.command) {
                (Some(n), None, None, None) => Some(Probe::Collector(n.get_ref().clone())),
                (None, Some(u), None, None) => {
                    let text = u.get_ref().to_string();
                    if !(text.starts_with("http://") || text.starts_with("https://")) {
                        problems.push(Problem::at(
                            u.span(),
                            format!("health 'http' '{text}' is not an http:// or https:// URL"),
                        ));
                    }
                    Some(Probe::Http(u.get_ref().clone()))
                }
                (None, None, Some(a), None) => Some(Probe::Tcp(a.get_ref().clone())),
                (None, None, None, Some(cmd)) => Some(Probe::Command(spec(check_argv(
                    "health.command",
                    cmd,
                    problems,
                )))),
                _ => {
                    problems.push(Problem::at(
                        h.span(),
                        "'health' needs exactly one of 'collector', 'http', 'tcp' or 'command'",
                    ));
                    None
                }
            }?;
            Some(Health {
                probe,
                timeout: check_timeout(
                    "health.timeout",
                    &c.timeout,
                    DEFAULT_HEALTH_TIMEOUT,
                    problems,
                ),
                interval: check_timeout(
                    "health.interval",
                    &c.interval,
                    DEFAULT_HEALTH_INTERVAL,
                    problems,
                ),
            })
        });
        let method = method?;
        if problems.len() > before {
            return None;
        }
        // reqwest is built without a crypto provider; the binary installs ring
        // first thing, and this makes library users and tests work the same way.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = match reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .no_proxy()
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::at(
                    span,
                    format!("cannot build an HTTP client: {e}"),
                ));
                return None;
            }
        };
        Some(RestartAction {
            name: self.name.get_ref().clone(),
            method,
            timeout,
            max_output,
            health,
            http,
        })
    }
}

/// Renders a template whose values must each be [`safe_arg`].
fn render_safe(t: &Template, req: &ActionRequest, what: &str) -> Result<String, ActionError> {
    for var in t.vars() {
        let v = req.var(var).ok_or_else(|| {
            ActionError::Refused(format!(
                "{what} '{t}' needs '{var}', which the alert does not have"
            ))
        })?;
        if !safe_arg(&v) {
            return Err(ActionError::Refused(format!(
                "the value of '{var}' ({}) is not safe in {what}",
                shown(&v)
            )));
        }
    }
    t.render(|v| req.var(v))
        .map_err(|e| ActionError::Refused(e.to_string()))
}

/// The probe as the audit log shows it, rendered.
#[derive(Debug, Clone)]
enum Ready {
    Collector(String),
    Http(String),
    Tcp(String),
    Command(Spec),
}

impl Ready {
    fn describe(&self) -> serde_json::Value {
        match self {
            Ready::Collector(n) => serde_json::json!({ "collector": n }),
            Ready::Http(u) => serde_json::json!({ "http": u }),
            Ready::Tcp(a) => serde_json::json!({ "tcp": a }),
            Ready::Command(s) => serde_json::json!({ "command": s.argv }),
        }
    }
}

type Healthy = fn(f64) -> bool;

/// Metrics a collector writes that say its target is healthy, and how.
const HEALTH_METRICS: [(&str, Healthy); 8] = [
    ("probe_success", |v| v == 1.0),
    ("up", |v| v == 1.0),
    ("process_running", |v| v > 0.0),
    ("check_status", |v| v == 0.0),
    ("pg_up", |v| v == 1.0),
    ("mysql_up", |v| v == 1.0),
    ("redis_up", |v| v == 1.0),
    ("warden_collector_up", |v| v == 1.0),
];

impl RestartAction {
    fn render(&self, req: &ActionRequest) -> Result<(Vec<Spec>, Option<Ready>), ActionError> {
        let mut cmds = Vec::new();
        match &self.method {
            Method::Systemd { unit, user } => {
                let unit = render_safe(unit, req, "the unit")?;
                cmds.push(Spec {
                    argv: systemctl_argv(&unit, *user),
                    env: Default::default(),
                    cwd: None,
                    timeout: self.timeout,
                    max_output: self.max_output,
                });
            }
            Method::Pair { stop, start } => {
                if let Some(s) = stop {
                    cmds.push(s.render(&self.name, req)?);
                }
                cmds.push(start.render(&self.name, req)?);
            }
        }
        let ready = match &self.health {
            None => None,
            Some(h) => Some(match &h.probe {
                Probe::Collector(t) => Ready::Collector(render_safe(t, req, "the collector name")?),
                Probe::Http(t) => Ready::Http(render_safe(t, req, "the health URL")?),
                Probe::Tcp(t) => Ready::Tcp(render_safe(t, req, "the health address")?),
                Probe::Command(c) => Ready::Command(c.render(&self.name, req)?),
            }),
        };
        Ok((cmds, ready))
    }

    fn args(&self, cmds: &[Spec], ready: &Option<Ready>) -> serde_json::Value {
        let mut v = match (&self.method, cmds) {
            (Method::Systemd { .. }, [c]) => serde_json::json!({ "argv": c.argv }),
            (Method::Pair { stop: Some(_), .. }, [stop, start]) => {
                serde_json::json!({ "stop": stop.argv, "start": start.argv })
            }
            (_, cmds) => serde_json::json!({ "start": cmds.last().map(|c| c.argv.clone()) }),
        };
        if let Some(r) = ready {
            v["health"] = r.describe();
        }
        v
    }

    /// One health check try: `Ok(true)` healthy, `Ok(false)` not yet, with a note.
    async fn check(&self, ready: &Ready, since: i64, cx: &ActionContext) -> (bool, String) {
        match ready {
            Ready::Collector(name) => {
                for (metric, good) in HEALTH_METRICS {
                    let Ok(m) = MetricName::new(metric) else {
                        continue;
                    };
                    let sel = Selector::metric(m).with(Matcher::eq("instance", name.clone()));
                    if let Ok(points) = cx.query.latest(&sel, now_ms())
                        && let Some(p) = points.iter().find(|p| p.ts > since)
                    {
                        let note = format!("{metric}{{instance=\"{name}\"}} is {}", p.value);
                        return (good(p.value), note);
                    }
                }
                (false, format!("no new sample from collector '{name}' yet"))
            }
            Ready::Http(url) => match self.http.get(url).send().await {
                Ok(r) if r.status().is_success() => {
                    (true, format!("{url}: {}", r.status().as_u16()))
                }
                Ok(r) => (false, format!("{url}: {}", r.status().as_u16())),
                Err(e) => (false, format!("{url}: {}", error_chain(&e))),
            },
            Ready::Tcp(addr) => match tokio::time::timeout(
                Duration::from_secs(2),
                tokio::net::TcpStream::connect(addr.as_str()),
            )
            .await
            {
                Ok(Ok(_)) => (true, format!("{addr}: connected")),
                Ok(Err(e)) => (false, format!("{addr}: {e}")),
                Err(_) => (false, format!("{addr}: connect timed out")),
            },
            Ready::Command(spec) => match process::run(spec, &cx.cancel).await {
                Ok(r) if r.ok() => (true, format!("{:?}: exit status 0", spec.argv)),
                Ok(r) => (
                    false,
                    format!("{:?}: {}", spec.argv, r.describe(spec.timeout)),
                ),
                Err(e) => (false, e.to_string()),
            },
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

impl Action for RestartAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "restart"
    }

    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
        cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(async move {
            let (cmds, ready) = self.render(req)?;
            let args = self.args(&cmds, &ready);
            if req.dry_run {
                let plan: Vec<String> = cmds.iter().map(|c| format!("{:?}", c.argv)).collect();
                return Ok(ActionOutcome {
                    ok: true,
                    status: None,
                    args,
                    output: format!("dry run: would run {}", plan.join(", then ")),
                });
            }
            let mut output = String::new();
            let mut status = None;
            let last = cmds.len().saturating_sub(1);
            for (i, spec) in cmds.iter().enumerate() {
                output.push_str(&format!("$ {}\n", spec.argv.join(" ")));
                let ran = process::run(spec, &cx.cancel).await;
                let ran = match ran {
                    Ok(r) => r,
                    Err(e) if i < last => {
                        output.push_str(&format!("[{e}; restarting anyway]\n"));
                        continue;
                    }
                    Err(e) => return Err(e),
                };
                output.push_str(&ran.output);
                if !ran.output.is_empty() && !ran.output.ends_with('\n') {
                    output.push('\n');
                }
                output.push_str(&format!("[{}]\n", ran.describe(spec.timeout)));
                status = ran.audit_status();
                if !ran.ok() && i == last {
                    return Ok(ActionOutcome {
                        ok: false,
                        status,
                        args,
                        output,
                    });
                }
            }
            let Some(ready) = ready else {
                return Ok(ActionOutcome {
                    ok: true,
                    status,
                    args,
                    output,
                });
            };
            let Some(h) = &self.health else {
                return Err(ActionError::Failed("health check lost".into()));
            };
            let since = now_ms();
            let started = Instant::now();
            let mut note;
            loop {
                let (ok, n) = self.check(&ready, since, cx).await;
                note = n;
                if ok {
                    output.push_str(&format!(
                        "health: passed after {} ms ({note})\n",
                        started.elapsed().as_millis()
                    ));
                    return Ok(ActionOutcome {
                        ok: true,
                        status,
                        args,
                        output,
                    });
                }
                if started.elapsed() + h.interval > h.timeout {
                    break;
                }
                tokio::select! {
                    _ = tokio::time::sleep(h.interval) => {}
                    _ = cx.cancel.cancelled() => break,
                }
            }
            output.push_str(&format!(
                "health: did not pass within {} (last: {note})\n",
                warden_engine::duration::format(h.timeout)
            ));
            Ok(ActionOutcome {
                ok: false,
                status,
                args,
                output,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn systemctl_argv_is_built_without_a_shell() {
        assert_eq!(
            systemctl_argv("web@a.service", false),
            vec!["systemctl", "restart", "web@a.service"]
        );
        assert_eq!(
            systemctl_argv("web.service", true),
            vec!["systemctl", "--user", "restart", "web.service"]
        );
    }
}
