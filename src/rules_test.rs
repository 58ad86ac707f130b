//! `warden rules test`: runs rule unit-test files and reports like a test runner.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{Value, json};
use warden_rules::testing::{FileReport, is_test_file, run_file};
use warden_rules::{Diagnostic, RuleEngine};

use crate::cli::{OutputFormat, RulesTestArgs};

/// The test files named by `paths`: files as given, directories read one level
/// deep (`*.toml`, `*.yaml`, `*.yml`), sorted. `Err` names a path that does not
/// exist.
fn test_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let rd = std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut v: Vec<PathBuf> = rd
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_test_file(p))
                .collect();
            v.sort();
            out.extend(v);
        } else if p.exists() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or directory", p.display()));
        }
    }
    Ok(out)
}

/// Runs every test file; exit 0 when all pass, 1 when any fails or cannot run,
/// 2 for a path that does not exist.
pub fn main(args: &RulesTestArgs) -> ExitCode {
    let files = match test_files(&args.paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let engine = RuleEngine::new();
    let reports: Vec<FileReport> = files.iter().map(|f| run_file(&engine, f)).collect();
    let passed: usize = reports
        .iter()
        .flat_map(|r| &r.tests)
        .filter(|t| t.passed())
        .count();
    let failed: usize = reports
        .iter()
        .flat_map(|r| &r.tests)
        .filter(|t| !t.passed())
        .count();
    let broken = reports.iter().filter(|r| !r.problems.is_empty()).count();
    let empty = files.is_empty();
    match args.format {
        OutputFormat::Text => {
            for r in &reports {
                print_text(r);
            }
            if empty {
                eprintln!(
                    "no rule test files (*.toml, *.yaml, *.yml) in {}",
                    list(&args.paths)
                );
            } else {
                eprintln!(
                    "{} rule test(s) passed, {failed} failed, {broken} file(s) could not run ({} file(s))",
                    passed,
                    files.len()
                );
            }
        }
        OutputFormat::Json => {
            let doc = json!({
                "files": reports.iter().map(file_json).collect::<Vec<_>>(),
                "passed": passed,
                "failed": failed,
                "files_not_run": broken,
            });
            println!("{doc}");
        }
    }
    if empty || failed > 0 || broken > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn list(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn print_text(r: &FileReport) {
    let file = r.file.display();
    if !r.problems.is_empty() {
        println!("FAILED {file}: the tests could not run:");
        for d in &r.problems {
            println!("  {d}");
        }
        return;
    }
    let failed = r.tests.iter().filter(|t| !t.passed()).count();
    if failed == 0 {
        println!("ok     {file}: {} test(s) passed", r.tests.len());
        return;
    }
    println!(
        "FAILED {file}: {failed} of {} test(s) failed",
        r.tests.len()
    );
    for t in r.tests.iter().filter(|t| !t.passed()) {
        println!("  test \"{}\":", t.name);
        for f in &t.failures {
            let lines = f
                .to_string()
                .lines()
                .map(str::to_string)
                .collect::<Vec<_>>();
            if let Some(first) = lines.first() {
                println!("    {first}");
            }
            for l in lines.iter().skip(1) {
                println!("      {l}");
            }
        }
    }
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

fn file_json(r: &FileReport) -> Value {
    json!({
        "file": r.file.display().to_string(),
        "passed": r.passed(),
        "problems": r.problems.iter().map(diag_json).collect::<Vec<_>>(),
        "tests": r.tests.iter().map(|t| json!({
            "name": t.name,
            "passed": t.passed(),
            "failures": t.failures.iter().map(|f| json!({
                "file": f.file.display().to_string(),
                "line": f.line,
                "col": f.col,
                "what": f.what,
                "message": f.message,
                "expected": f.expected,
                "got": f.got,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
    })
}
