//! The config file: the engine's sections plus the adapters' tables, parsed
//! strictly and validated into [`Config`] with every error at `file:line:col`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

mod collect;

use serde::Deserialize;
use warden_collector::CollectorsConfig;
use warden_engine::api::auth::Auth;
use warden_engine::config::{Problem, RulesConfig, ServerConfig, StoreConfig, line_col};
use warden_engine::notify::config::{
    DependencyConfig, InhibitConfig, MaintenanceConfig, NotifyConfig, NotifyPlan, NotifySections,
    RouteConfig,
};
use warden_engine::notify::dispatch::ReceiverInfo;
use warden_engine::ports::Notifier;
use warden_engine::remediate::config::{RemediationConfig, Switches};
use warden_engine::scheduler::CollectorSpec;
use warden_engine::store::StoreOptions;
use warden_integrations::action::BuiltActions;
use warden_integrations::{ActionsConfig, NotifiersConfig};

/// The config `warden run` uses without `--config`: this host, warden itself, the
/// built-in host rule pack.
pub const EMBEDDED_DEFAULT: &str = r#"
[server]
listen = "127.0.0.1:9470"

[store]
path = "warden.db"

[rules]
builtin_host = true
interval = "10s"

[[collector.host]]
interval = "5s"

[[collector.process]]
name = "warden"
this_process = true
interval = "5s"
"#;

/// The whole file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    #[serde(default)]
    server: ServerConfig,
    #[serde(default)]
    store: StoreConfig,
    #[serde(default)]
    rules: RulesConfig,
    #[serde(default)]
    collector: CollectorsConfig,
    #[serde(default)]
    notifier: NotifiersConfig,
    #[serde(default)]
    notify: Option<NotifyConfig>,
    #[serde(default)]
    route: Vec<toml::Spanned<RouteConfig>>,
    #[serde(default)]
    inhibit: Vec<toml::Spanned<InhibitConfig>>,
    #[serde(default)]
    dependency: Vec<toml::Spanned<DependencyConfig>>,
    #[serde(default)]
    maintenance: Vec<toml::Spanned<MaintenanceConfig>>,
    #[serde(default)]
    action: ActionsConfig,
    #[serde(default)]
    remediation: RemediationConfig,
    #[serde(default)]
    heartbeat: Vec<toml::Spanned<warden_integrations::heartbeat::HeartbeatConfig>>,
}

/// One error in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The file (`<embedded>` for the built-in default).
    pub file: String,
    /// 1-based line, 0 when unknown.
    pub line: usize,
    /// 1-based column, 0 when unknown.
    pub col: usize,
    /// What is wrong and what to do.
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line == 0 {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(
                f,
                "{}:{}:{}: {}",
                self.file, self.line, self.col, self.message
            )
        }
    }
}

/// The validated config.
pub struct Config {
    /// The file it came from (`None`: the embedded default).
    pub source: Option<PathBuf>,
    /// The API address.
    pub listen: SocketAddr,
    /// The store.
    pub store: StoreOptions,
    /// Rule files and directories, resolved against the config file's directory.
    pub rule_paths: Vec<PathBuf>,
    /// Also run the built-in host rule pack.
    pub builtin_host: bool,
    /// Default rule evaluation interval.
    pub rule_interval: Duration,
    /// Collector entries ready to run.
    pub collectors: Vec<CollectorSpec>,
    /// Notifiers (the receivers of the notification pipeline).
    pub notifiers: Vec<Arc<dyn Notifier>>,
    /// Routes, inhibitions, maintenance windows and delivery settings.
    pub notify: NotifyPlan,
    /// Dead man's switches to call while healthy.
    pub heartbeats: Vec<warden_integrations::heartbeat::Heartbeat>,
    /// Run the always-firing `Watchdog` rule.
    pub watchdog: bool,
    /// Without any configured notifier: every alert state change printed on the
    /// console as it happens (the embedded default's behaviour).
    pub state_log: Option<Arc<dyn Notifier>>,
    /// Who may call the API.
    pub auth: Arc<Auth>,
    /// HTTPS for the API, if configured.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Remediation actions with their guardrails.
    pub actions: BuiltActions,
    /// `[remediation]` (with `--dry-run` applied).
    pub switches: Switches,
}

impl Config {
    /// The receivers as the notification pipeline knows them.
    pub fn receivers(&self) -> Vec<ReceiverInfo> {
        self.notifiers
            .iter()
            .map(|n| ReceiverInfo {
                name: n.name().to_string(),
                send_resolved: n.send_resolved(),
            })
            .collect()
    }
}

/// Options from the command line that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--db`.
    pub db: Option<PathBuf>,
    /// `--listen`.
    pub listen: Option<String>,
    /// `--log-format json`.
    pub json: bool,
    /// `--dry-run`: every action only audits what it would run.
    pub dry_run: bool,
}

/// Reads and validates `path`.
pub fn load(path: &Path, ov: &Overrides) -> Result<Config, Vec<ConfigError>> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![ConfigError {
            file: file.clone(),
            line: 0,
            col: 0,
            message: format!("cannot read the config file: {e}"),
        }]
    })?;
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    parse(&text, &file, &base, Some(path.to_path_buf()), ov)
}

/// The embedded default.
pub fn embedded(ov: &Overrides) -> Result<Config, Vec<ConfigError>> {
    parse(EMBEDDED_DEFAULT, "<embedded>", Path::new(""), None, ov)
}

fn at(
    text: &str,
    file: &str,
    span: Option<std::ops::Range<usize>>,
    message: String,
) -> ConfigError {
    let (line, col) = match span {
        Some(s) if !(s.start == 0 && s.end == 0) => line_col(text, s.start),
        _ => (0, 0),
    };
    ConfigError {
        file: file.to_string(),
        line,
        col,
        message,
    }
}

/// Parses and validates config text.
pub fn parse(
    text: &str,
    file: &str,
    base: &Path,
    source: Option<PathBuf>,
    ov: &Overrides,
) -> Result<Config, Vec<ConfigError>> {
    // Every error of the file, not just the first; checks below run over what
    // did parse.
    let (raw, parse_errors) = collect::deserialize::<FileConfig>(text);
    let mut errors: Vec<ConfigError> = parse_errors
        .into_iter()
        .map(|e| at(text, file, e.span, e.message))
        .collect();
    let Some(raw): Option<FileConfig> = raw else {
        return Err(errors);
    };
    let mut problem = |p: Problem| errors.push(at(text, file, p.span, p.message));

    let listen_text = ov
        .listen
        .clone()
        .unwrap_or_else(|| raw.server.listen.get_ref().clone());
    let listen_span = ov.listen.is_none().then(|| raw.server.listen.span());
    let auth = match Auth::from_config(&raw.server.token, raw.server.metrics_auth, base) {
        Ok(a) => Some(a),
        Err(ps) => {
            ps.into_iter().for_each(&mut problem);
            None
        }
    };
    let open = raw.server.token.is_empty();
    let listen = match listen_text.parse::<SocketAddr>() {
        Ok(a) if open && !a.ip().is_loopback() => {
            problem(Problem {
                span: listen_span,
                message: format!(
                    "listen address '{listen_text}' is not loopback and no [[server.token]] is configured: an open API only listens on 127.0.0.0/8 or ::1; add tokens (see docs/api.md) or listen on loopback"
                ),
            });
            None
        }
        Ok(a) => Some(a),
        Err(_) => {
            problem(Problem {
                span: listen_span,
                message: format!(
                    "invalid listen address '{listen_text}': write host:port, e.g. '127.0.0.1:9470'"
                ),
            });
            None
        }
    };
    let tls = match &raw.server.tls {
        None => None,
        Some(t) => {
            let resolve = |p: &Path| {
                if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    base.join(p)
                }
            };
            let entry = t.get_ref();
            match warden_engine::api::tls::server_config(
                &resolve(&entry.cert),
                &resolve(&entry.key),
            ) {
                Ok(c) => Some(c),
                Err(m) => {
                    problem(Problem::at(t.span(), format!("[server.tls]: {m}")));
                    None
                }
            }
        }
    };

    let collectors = match raw.collector.build() {
        Ok(c) => c,
        Err(ps) => {
            ps.into_iter().for_each(&mut problem);
            Vec::new()
        }
    };
    let notifiers = match raw.notifier.build(ov.json) {
        Ok(n) => n,
        Err(ps) => {
            ps.into_iter().for_each(&mut problem);
            Vec::new()
        }
    };
    let state_log: Option<Arc<dyn Notifier>> = if raw.notifier.is_empty() {
        // Nothing configured: alerts still reach a human, on the console.
        Some(Arc::new(
            warden_integrations::notify::console::ConsoleNotifier::new("console", ov.json),
        ))
    } else {
        None
    };
    let mut heartbeats = Vec::new();
    for h in &raw.heartbeat {
        match warden_integrations::heartbeat::Heartbeat::new(h.get_ref()) {
            Ok(hb) => heartbeats.push(hb),
            Err(e) => problem(Problem::at(h.span(), e)),
        }
    }
    let names: Vec<String> = notifiers.iter().map(|n| n.name().to_string()).collect();
    let notify = match (NotifySections {
        notify: raw.notify.as_ref(),
        routes: &raw.route,
        inhibits: &raw.inhibit,
        dependencies: &raw.dependency,
        maintenance: &raw.maintenance,
    })
    .build(&names)
    {
        Ok(p) => p,
        Err(ps) => {
            ps.into_iter().for_each(&mut problem);
            NotifyPlan::default()
        }
    };

    let actions = match raw.action.build() {
        Ok(a) => a,
        Err(ps) => {
            ps.into_iter().for_each(&mut problem);
            Vec::new()
        }
    };
    let mut action_problems = Vec::new();
    let mut switches = raw.remediation.check(&mut action_problems);
    action_problems.into_iter().for_each(&mut problem);
    switches.dry_run |= ov.dry_run;

    let mut rule_paths = Vec::new();
    for p in &raw.rules.paths {
        let resolved = base.join(p.get_ref());
        if !resolved.exists() {
            problem(Problem::at(
                p.span(),
                format!("rule path '{}' does not exist", resolved.display()),
            ));
        }
        rule_paths.push(resolved);
    }
    if raw.rules.interval.get().is_zero() {
        problem(Problem::general("[rules].interval must be more than 0"));
    }

    let store_path = ov.db.clone().unwrap_or_else(|| {
        if raw.store.path.is_absolute() || source.is_none() {
            raw.store.path.clone()
        } else {
            base.join(&raw.store.path)
        }
    });
    let mut store = StoreOptions::new(store_path);
    store.retention = raw.store.retention.get();
    store.head = raw.store.head.get();

    match (errors.is_empty(), listen, auth) {
        (true, Some(listen), Some(auth)) => Ok(Config {
            source,
            listen,
            store,
            rule_paths,
            builtin_host: raw.rules.builtin_host,
            rule_interval: raw.rules.interval.get(),
            collectors,
            notifiers,
            notify,
            state_log,
            heartbeats,
            watchdog: raw.rules.watchdog,
            auth: Arc::new(auth),
            tls,
            actions,
            switches,
        }),
        _ => Err(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errs(text: &str) -> Vec<String> {
        match parse(
            text,
            "w.toml",
            Path::new("/nonexistent"),
            None,
            &Overrides::default(),
        ) {
            Ok(_) => vec![],
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = embedded(&Overrides::default()).unwrap_or_else(|e| panic!("{e:?}"));
        assert!(c.builtin_host);
        assert_eq!(c.listen.to_string(), "127.0.0.1:9470");
        assert_eq!(c.collectors.len(), 2);
    }

    #[test]
    fn unknown_keys_are_errors_with_position() {
        let e = errs("[server]\nlisten = \"127.0.0.1:1\"\n\n[rules]\nintervall = \"5s\"\n");
        assert_eq!(e.len(), 1);
        assert!(
            e[0].starts_with("w.toml:5:1: unknown field `intervall`"),
            "{e:?}"
        );
    }

    #[test]
    fn bad_durations_point_at_the_value() {
        let e = errs("[rules]\ninterval = \"5 parsecs\"\n");
        assert!(
            e[0].starts_with("w.toml:2:12: invalid duration '5 parsecs'"),
            "{e:?}"
        );
    }

    #[test]
    fn public_listen_is_refused_without_tokens() {
        let e = errs("[server]\nlisten = \"0.0.0.0:9470\"\n");
        assert!(
            e[0].starts_with("w.toml:2:10: listen address '0.0.0.0:9470' is not loopback"),
            "{e:?}"
        );
    }

    #[test]
    fn public_listen_is_allowed_with_tokens() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("tok"), "0123456789abcdef0123\n").unwrap();
        let text = "[server]\nlisten = \"0.0.0.0:9470\"\n\n[[server.token]]\nname = \"ops\"\nrole = \"admin\"\ntoken_file = \"tok\"\n";
        let c = parse(text, "w.toml", dir.path(), None, &Overrides::default())
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert!(!c.auth.is_open());
        assert_eq!(c.listen.to_string(), "0.0.0.0:9470");
    }

    #[test]
    fn token_and_tls_problems_have_positions() {
        let text = "[server]\nlisten = \"127.0.0.1:1\"\n\n[[server.token]]\nname = \"ops\"\nrole = \"admin\"\ntoken_env = \"WARDEN_TEST_SURELY_UNSET_VAR\"\n\n[server.tls]\ncert = \"nope.pem\"\nkey = \"nope.key\"\n";
        let e = errs(text);
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter().any(|m| m.starts_with("w.toml:4:1: token 'ops': the environment variable 'WARDEN_TEST_SURELY_UNSET_VAR' is not set")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|m| m.starts_with(
                "w.toml:9:1: [server.tls]: cannot read certificate '/nonexistent/nope.pem'"
            )),
            "{e:?}"
        );
        let e = errs(
            "[server]\nlisten = \"127.0.0.1:1\"\n\n[[server.token]]\nname = \"ops\"\nrole = \"root\"\ntoken_env = \"X\"\n",
        );
        assert!(
            e[0].starts_with("w.toml:6:8: unknown variant `root`"),
            "{e:?}"
        );
    }

    #[test]
    fn missing_rule_path_is_reported() {
        let e = errs("[rules]\npaths = [\"nope/\"]\n");
        assert!(
            e[0].contains("w.toml:2:10: rule path '/nonexistent/nope/' does not exist"),
            "{e:?}"
        );
    }
}
