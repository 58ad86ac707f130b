//! `warden rules check` and `warden config check`.

use std::process::ExitCode;

use warden_rules::RuleEngine;

use crate::cli::{ConfigCheckArgs, RulesCheckArgs};
use crate::config::{self, Overrides};
use crate::evaluate::rule_files;

/// Compiles every rule file; prints each problem as `file:line:col: message`.
pub fn rules_check(args: &RulesCheckArgs) -> ExitCode {
    let mut problems = 0usize;
    let mut files = 0usize;
    for p in &args.paths {
        if !p.exists() {
            eprintln!("{}: no such file or directory", p.display());
            return ExitCode::from(2);
        }
    }
    let engine = RuleEngine::new();
    for path in rule_files(&args.paths) {
        files += 1;
        if let Err(diags) = engine.compile_file(&path) {
            for d in diags {
                println!("{d}");
                problems += 1;
            }
        }
    }
    if problems == 0 {
        eprintln!("{files} file(s) checked, no problems");
        ExitCode::SUCCESS
    } else {
        eprintln!("{files} file(s) checked, {problems} problem(s)");
        ExitCode::from(1)
    }
}

/// Validates a config file (and with `--rules` its rule files).
pub fn config_check(args: &ConfigCheckArgs) -> ExitCode {
    match config::load(&args.file, &Overrides::default()) {
        Err(errors) => {
            for e in &errors {
                println!("{e}");
            }
            ExitCode::from(1)
        }
        Ok(cfg) => {
            if args.rules && !cfg.rule_paths.is_empty() {
                let code = rules_check(&RulesCheckArgs {
                    paths: cfg.rule_paths.clone(),
                });
                if code != ExitCode::SUCCESS {
                    return code;
                }
            }
            eprintln!("{}: valid", args.file.display());
            ExitCode::SUCCESS
        }
    }
}
