//! `warden rules check` and `warden config check`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::{Value, json};
use warden_rules::check::{CheckOptions, CheckReport, check_files};
use warden_rules::{Diagnostic, RuleEngine, rule_files};

use crate::cli::{ConfigCheckArgs, OutputFormat, RulesCheckArgs};
use crate::config::{self, ConfigError, Overrides};

/// What a config file says that `rules check` needs, read without validating the
/// rest of it: the actions it defines and its rule paths.
struct ConfigFacts {
    actions: BTreeSet<String>,
    rule_paths: Vec<PathBuf>,
}

/// Reads the `[[action.KIND]]` names and `[rules].paths` of a config file.
fn config_facts(path: &Path) -> Result<ConfigFacts, ConfigError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
        file: file.clone(),
        line: 0,
        col: 0,
        message: format!("cannot read the config file: {e}"),
    })?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let (line, col) = e
            .span()
            .map(|s| warden_engine::config::line_col(&text, s.start))
            .unwrap_or((0, 0));
        ConfigError {
            file: file.clone(),
            line,
            col,
            message: e.message().trim().to_string(),
        }
    })?;
    let actions = table
        .get("action")
        .and_then(|a| a.as_table())
        .into_iter()
        .flat_map(|kinds| kinds.values())
        .filter_map(|entries| entries.as_array())
        .flatten()
        .filter_map(|e| e.get("name").and_then(|n| n.as_str()))
        .map(str::to_string)
        .collect();
    let base = path.parent().unwrap_or(Path::new(""));
    let rule_paths = table
        .get("rules")
        .and_then(|r| r.get("paths"))
        .and_then(|p| p.as_array())
        .into_iter()
        .flatten()
        .filter_map(|p| p.as_str())
        .map(|p| base.join(p))
        .collect();
    Ok(ConfigFacts {
        actions,
        rule_paths,
    })
}

fn diag_json(d: &Diagnostic) -> Value {
    json!({
        "file": d.file.display().to_string(),
        "line": d.line,
        "col": d.col,
        "rule": d.rule,
        "message": d.message,
    })
}

fn config_error_json(e: &ConfigError) -> Value {
    json!({
        "file": e.file,
        "line": e.line,
        "col": e.col,
        "rule": Value::Null,
        "message": e.message,
    })
}

/// Checks rule files; prints each problem as `file:line:col: message` (or one
/// JSON document). Exit 0 clean, 1 problems, 2 usage.
pub fn rules_check(args: &RulesCheckArgs) -> ExitCode {
    for p in &args.paths {
        if !p.exists() {
            eprintln!("{}: no such file or directory", p.display());
            return ExitCode::from(2);
        }
    }
    let mut config_problems = Vec::new();
    let mut paths = args.paths.clone();
    let mut opts = CheckOptions::default();
    if let Some(cfg) = &args.config {
        if !cfg.exists() {
            eprintln!("{}: no such file or directory", cfg.display());
            return ExitCode::from(2);
        }
        match config_facts(cfg) {
            Ok(facts) => {
                opts.actions = Some(facts.actions);
                if paths.is_empty() {
                    paths = facts.rule_paths;
                }
            }
            Err(e) => config_problems.push(e),
        }
    }
    if paths.is_empty() && config_problems.is_empty() {
        eprintln!("no rule files to check: give PATH... or a --config with [rules].paths");
        return ExitCode::from(2);
    }
    let report = check_files(&RuleEngine::new(), &rule_files(&paths), &opts);
    print_report(&report, &config_problems, args.format);
    if report.diagnostics.is_empty() && config_problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

fn print_report(report: &CheckReport, config_problems: &[ConfigError], format: OutputFormat) {
    let problems = report.diagnostics.len() + config_problems.len();
    match format {
        OutputFormat::Text => {
            for e in config_problems {
                println!("{e}");
            }
            for d in &report.diagnostics {
                println!("{d}");
            }
            if problems == 0 {
                eprintln!(
                    "{} file(s), {} rule(s) checked, no problems",
                    report.files, report.rules
                );
            } else {
                eprintln!(
                    "{} file(s), {} rule(s) checked, {problems} problem(s)",
                    report.files, report.rules
                );
            }
        }
        OutputFormat::Json => {
            let list: Vec<Value> = config_problems
                .iter()
                .map(config_error_json)
                .chain(report.diagnostics.iter().map(diag_json))
                .collect();
            println!(
                "{}",
                json!({ "files": report.files, "rules": report.rules, "problems": list })
            );
        }
    }
}

/// Validates a config file, every error with `file:line:col`; with `--rules` also
/// the rule files it points at (and their `remediate` against its actions).
pub fn config_check(args: &ConfigCheckArgs) -> ExitCode {
    if !args.file.exists() {
        eprintln!("{}: no such file or directory", args.file.display());
        return ExitCode::from(2);
    }
    let (mut errors, rule_paths) = match config::load(&args.file, &Overrides::default()) {
        Err(errors) => (errors, Vec::new()),
        Ok(cfg) => (Vec::new(), cfg.rule_paths.clone()),
    };
    let mut report = CheckReport::default();
    if args.rules {
        let facts = config_facts(&args.file);
        let (actions, paths) = match facts {
            Ok(f) => (Some(f.actions), f.rule_paths),
            Err(_) => (None, rule_paths),
        };
        let existing: Vec<PathBuf> = paths.into_iter().filter(|p| p.exists()).collect();
        report = check_files(
            &RuleEngine::new(),
            &rule_files(&existing),
            &CheckOptions { actions },
        );
    }
    errors.sort_by_key(|e| (e.line, e.col));
    let ok = errors.is_empty() && report.diagnostics.is_empty();
    match args.format {
        OutputFormat::Text => {
            for e in &errors {
                println!("{e}");
            }
            for d in &report.diagnostics {
                println!("{d}");
            }
            if ok {
                if args.rules {
                    eprintln!(
                        "{}: valid ({} rule file(s), {} rule(s))",
                        args.file.display(),
                        report.files,
                        report.rules
                    );
                } else {
                    eprintln!("{}: valid", args.file.display());
                }
            } else {
                eprintln!(
                    "{}: {} problem(s)",
                    args.file.display(),
                    errors.len() + report.diagnostics.len()
                );
            }
        }
        OutputFormat::Json => {
            let list: Vec<Value> = errors
                .iter()
                .map(config_error_json)
                .chain(report.diagnostics.iter().map(diag_json))
                .collect();
            println!(
                "{}",
                json!({ "file": args.file.display().to_string(), "valid": ok, "problems": list })
            );
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
