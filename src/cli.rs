//! The command line.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Monitoring, alerting and auto-remediation for high-availability stacks.
#[derive(Debug, Parser)]
#[command(name = "warden", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon (without --config: watch this host with the built-in rules).
    Run(RunArgs),
    /// Work with rule files.
    #[command(subcommand)]
    Rules(RulesCommand),
    /// Work with config files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Remediation against a running daemon: the audit log, approvals, manual
    /// runs and the kill switch.
    #[command(alias = "action")]
    Actions(ActionsArgs),
    /// Silences on a running daemon.
    #[command(subcommand)]
    Silence(SilenceCommand),
    /// Acknowledge a firing alert on a running daemon.
    Ack(AckArgs),
    /// Remove an acknowledgement.
    Unack(UnackArgs),
    /// Routing: which receivers a label set reaches.
    #[command(subcommand)]
    Routes(RoutesCommand),
    /// Notifiers: send a test notification, or preview what one would send.
    #[command(subcommand)]
    Notify(NotifyCommand),
}

/// Where the daemon is.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// The daemon's API.
    #[arg(long, env = "WARDEN_URL", default_value = "http://127.0.0.1:9470")]
    pub url: String,
    /// An API token (sent as `Authorization: Bearer`).
    #[arg(long, env = "WARDEN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON.
    #[arg(long)]
    pub json: bool,
}

/// `warden silence ...`.
#[derive(Debug, Subcommand)]
pub enum SilenceCommand {
    /// Silence alerts matching every MATCHER (`name=value`, `name!=value`,
    /// `name=~regex`, `name!~regex`).
    Add {
        /// Matchers.
        #[arg(required = true)]
        matchers: Vec<String>,
        /// How long, e.g. `2h`.
        #[arg(long, default_value = "1h")]
        duration: String,
        /// Why.
        #[arg(long, default_value = "")]
        comment: String,
        /// Who (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// The daemon.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List silences (active and pending; `--all` adds expired ones).
    List {
        /// Include expired silences.
        #[arg(long)]
        all: bool,
        /// The daemon.
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Expire a silence now.
    Expire {
        /// The silence id.
        id: String,
        /// The daemon.
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// `warden ack`.
#[derive(Debug, Args)]
pub struct AckArgs {
    /// The alert's fingerprint (from `/api/v1/alerts` or the dashboard).
    pub fingerprint: String,
    /// Who (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// What is being done.
    #[arg(long, default_value = "")]
    pub comment: String,
    /// Let the acknowledgement lapse after this long, e.g. `2h`.
    #[arg(long)]
    pub expires: Option<String>,
    /// The daemon.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `warden unack`.
#[derive(Debug, Args)]
pub struct UnackArgs {
    /// The alert's fingerprint.
    pub fingerprint: String,
    /// The daemon.
    #[command(flatten)]
    pub api: ApiArgs,
}

/// `warden routes ...`.
#[derive(Debug, Subcommand)]
pub enum RoutesCommand {
    /// Print the receivers (and routes) a label set reaches.
    Test {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Labels, `name=value`.
        #[arg(required = true)]
        labels: Vec<String>,
    },
}

/// `warden notify ...`.
#[derive(Debug, Subcommand)]
pub enum NotifyCommand {
    /// Send a test notification (a firing sample alert, then its resolve) to RECEIVER.
    Test {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The receiver's name.
        receiver: String,
    },
    /// Print what RECEIVER would be sent for a sample alert, without sending.
    Preview {
        /// The config file.
        #[arg(long, short)]
        config: PathBuf,
        /// The receiver's name.
        receiver: String,
    },
}

/// `warden actions ...`: where the daemon is, and what to do.
#[derive(Debug, Args)]
pub struct ActionsArgs {
    /// The daemon's API.
    #[arg(
        long,
        env = "WARDEN_URL",
        default_value = "http://127.0.0.1:9470",
        global = true
    )]
    pub url: String,
    /// An API token (sent as `Authorization: Bearer`).
    #[arg(long, env = "WARDEN_TOKEN", global = true, hide_env_values = true)]
    pub token: Option<String>,
    /// Print the API's JSON instead of a table.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: ActionsCommand,
}

/// `warden actions` subcommands.
#[derive(Debug, Subcommand)]
pub enum ActionsCommand {
    /// The audit log, newest first.
    List {
        /// Only attempts in this state (pending_approval, queued, running,
        /// succeeded, failed, dry_run, refused, denied, expired, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only attempts of this action.
        #[arg(long)]
        action: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One attempt with its arguments and output.
    Show {
        /// The attempt's id.
        id: i64,
    },
    /// Approve an attempt waiting for approval.
    Approve(Decide),
    /// Deny an attempt waiting for approval.
    Deny(Decide),
    /// Run an action by hand for a target, under the same guardrails.
    Run {
        /// The action's name.
        action: String,
        /// A target label, `NAME=VALUE` (repeat for more).
        #[arg(long = "label", short = 'l', value_parser = parse_label)]
        labels: Vec<(String, String)>,
        /// Who asks (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// Why.
        #[arg(long)]
        comment: Option<String>,
    },
    /// Turn the kill switch on: no action runs until `resume`.
    Pause(Switch),
    /// Turn the kill switch off.
    Resume(Switch),
    /// The kill switch, dry-run and the configured actions.
    Status,
}

/// Approve/deny.
#[derive(Debug, Args)]
pub struct Decide {
    /// The attempt's id.
    pub id: i64,
    /// Who decides (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Why.
    #[arg(long)]
    pub comment: Option<String>,
}

/// Pause/resume.
#[derive(Debug, Args)]
pub struct Switch {
    /// Who (default: $USER).
    #[arg(long)]
    pub by: Option<String>,
    /// Why.
    #[arg(long)]
    pub comment: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("'{s}' is not NAME=VALUE")),
    }
}

/// How log lines and console alerts are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `warden run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The config file (TOML). Without it, the embedded default runs.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// The store file, overriding `[store].path` (default `./warden.db`).
    #[arg(long)]
    pub db: Option<PathBuf>,
    /// The API address, overriding `[server].listen`.
    #[arg(long)]
    pub listen: Option<String>,
    /// Log and console alert format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
    /// Run no remediation action: audit what each would run (`dry_run` state).
    #[arg(long)]
    pub dry_run: bool,
}

/// `warden rules ...`.
#[derive(Debug, Subcommand)]
pub enum RulesCommand {
    /// Compile and lint rule files; exit 0 clean, 1 problems (`file:line:col: message`).
    Check(RulesCheckArgs),
    /// Run rule unit-test files (TOML or YAML); exit 0 all pass, 1 any fails.
    Test(RulesTestArgs),
}

/// How a checker reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// `file:line:col: message` lines, and diffs.
    Text,
    /// One JSON document on stdout, for editors and CI annotations.
    Json,
}

/// `warden rules test`.
#[derive(Debug, Args)]
pub struct RulesTestArgs {
    /// Test files (`.toml`, `.yaml`, `.yml`) or directories of them.
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `warden rules check`.
#[derive(Debug, Args)]
pub struct RulesCheckArgs {
    /// Rule files or directories of `*.rhai` (default with --config: its
    /// `[rules].paths`).
    #[arg(required_unless_present = "config")]
    pub paths: Vec<PathBuf>,
    /// A config file: `remediate` must name its actions; without PATH, its rule
    /// paths are checked.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}

/// `warden config ...`.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file; exit 0 valid, 1 invalid (`file:line:col: message`).
    Check(ConfigCheckArgs),
}

/// `warden config check`.
#[derive(Debug, Args)]
pub struct ConfigCheckArgs {
    /// The config file.
    pub file: PathBuf,
    /// Also check the rule files the config points at.
    #[arg(long)]
    pub rules: bool,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: OutputFormat,
}
