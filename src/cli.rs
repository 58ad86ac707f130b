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
