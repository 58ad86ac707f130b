//! `warden`: the daemon, the on-call dashboard, and the rule and config checkers.
//!
//! # Layout
//! - `cli`: the command line (clap derive).
//! - `config`: the whole config file composed from the engine's and adapters' parts,
//!   validated into typed values with every error at `file:line:col`.
//! - `daemon`: wires store, collectors, rules, API and notifiers; reload and shutdown.
//! - `notes`: remediation attempts told to the receivers their alert routes to.
//! - `evaluate`: drives rule evaluation and the alert lifecycle.
//! - `actions`: `warden actions ...`, the remediation API from the command line.
//! - `notify_cli`: `warden silence|ack|unack|routes|notify ...`.
//! - `check`: `warden rules check` and `warden config check`.
//! - `rules_test`: `warden rules test`.

mod actions;
mod check;
mod cli;
mod config;
mod daemon;
mod evaluate;
mod notes;
mod notify_cli;
mod rules_test;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // reqwest/rustls need exactly one crypto provider; install it before anything else.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = match cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        cli::Command::Run(args) => daemon::main(args),
        cli::Command::Rules(cli::RulesCommand::Check(args)) => check::rules_check(&args),
        cli::Command::Rules(cli::RulesCommand::Test(args)) => rules_test::main(&args),
        cli::Command::Config(cli::ConfigCommand::Check(args)) => check::config_check(&args),
        cli::Command::Actions(args) => actions::main(args),
        cli::Command::Silence(c) => notify_cli::silence(c),
        cli::Command::Ack(a) => notify_cli::ack(a),
        cli::Command::Unack(a) => notify_cli::unack(a),
        cli::Command::Routes(c) => notify_cli::routes(c),
        cli::Command::Notify(c) => notify_cli::notify(c),
    }
}
