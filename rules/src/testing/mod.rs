//! Rule unit tests, in the spirit of `promtool test rules`: input series in a
//! compact notation, expected alerts at given times, expected values of
//! expressions. Tests run on simulated time through the daemon's own rule engine
//! and alert lifecycle; nothing sleeps, and a run is deterministic.
//!
//! ```toml
//! rule_files = ["../rules/host.rhai"]
//! evaluation_interval = "1m"
//!
//! [[tests]]
//! name = "memory bands"
//! interval = "1m"
//! input_series = [
//!     { series = 'host_memory_used_percent{instance="db-1"}', values = "50 75x10" },
//! ]
//!
//! [[tests.alert_rule_test]]
//! eval_time = "6m"
//! alertname = "HostMemoryHigh"
//! exp_alerts = [
//!     { exp_labels = { instance = "db-1" }, exp_annotations = { summary = "Memory on db-1 is 75% used" } },
//! ]
//! ```
//!
//! The same in YAML (`.yaml`/`.yml`) has the same keys. docs/rules.md is the
//! reference of the format.
//!
//! # Layout
//! - `notation`: series selectors and the expanding value notation.
//! - `input`: the input series as a [`SeriesQuery`](warden_engine::ports::SeriesQuery).
//! - `file`: reading a test file into checked tests, every problem with `file:line:col`.
//! - `run`: simulated evaluation and the comparison with readable diffs.

mod file;
mod input;
mod notation;
mod run;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use file::is_test_file;
pub use notation::{SeriesSpec, Step, expand_values, parse_series};

use crate::{Diagnostic, Rule, RuleEngine};

/// What running one test file gave.
#[derive(Debug, Clone)]
pub struct FileReport {
    /// The test file.
    pub file: PathBuf,
    /// Why the file could not run (syntax, bad values, rule files that do not
    /// compile, a test naming an unknown rule); empty when it ran.
    pub problems: Vec<Diagnostic>,
    /// Each test's outcome, in file order.
    pub tests: Vec<TestReport>,
}

impl FileReport {
    /// True when the file ran and every test passed.
    pub fn passed(&self) -> bool {
        self.problems.is_empty() && self.tests.iter().all(TestReport::passed)
    }
}

/// What one `[[tests]]` entry gave.
#[derive(Debug, Clone)]
pub struct TestReport {
    /// Its `name`, or `#N` (1-based) without one.
    pub name: String,
    /// Each failing check.
    pub failures: Vec<Failure>,
}

impl TestReport {
    /// True when every check passed.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// One failing `alert_rule_test` or `expr_test`.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    /// The test file.
    pub file: PathBuf,
    /// 1-based line of the check (its `alertname` or `expr`); 0 when unknown.
    pub line: usize,
    /// 1-based column.
    pub col: usize,
    /// Which check: `alert "HostCpuHigh" at 10m`, `expression '…' at 5m`.
    pub what: String,
    /// What went wrong; for a mismatch, a summary and a diff with `- ` expected
    /// lines, `+ ` got lines and `  ` lines that matched.
    pub message: String,
    /// The expected alerts or samples, one line each.
    pub expected: Vec<String>,
    /// The alerts or samples got, one line each.
    pub got: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        write!(f, ": {}: {}", self.what, self.message)
    }
}

/// Runs the test file at `path` with `engine`.
pub fn run_file(engine: &RuleEngine, path: &Path) -> FileReport {
    let mut report = FileReport {
        file: path.to_path_buf(),
        problems: Vec::new(),
        tests: Vec::new(),
    };
    let file = match file::load(path) {
        Ok(f) => f,
        Err(problems) => {
            report.problems = problems;
            return report;
        }
    };
    let (rules, problems) = compile_rules(engine, &file.rule_files);
    report.problems = problems;
    if !report.problems.is_empty() {
        // A rule file that does not compile leaves its rules unknown: naming
        // each test that uses them would only repeat that.
        return report;
    }
    for t in &file.tests {
        for a in &t.alert_tests {
            if !rules.contains_key(&a.alertname) {
                let names: Vec<&str> = rules.keys().map(String::as_str).collect();
                let hint = match crate::diag::did_you_mean(&a.alertname, names.iter().copied()) {
                    Some(n) => format!(" (did you mean '{n}'?)"),
                    None if names.is_empty() => String::new(),
                    None => format!("; the rules are {}", names.join(", ")),
                };
                report.problems.push(Diagnostic {
                    file: path.to_path_buf(),
                    line: a.at.0,
                    col: a.at.1,
                    rule: None,
                    message: format!(
                        "test \"{}\": no rule named '{}' in the rule files under test{hint}",
                        t.name, a.alertname
                    ),
                });
            }
        }
    }
    if !report.problems.is_empty() {
        return report;
    }
    report.tests = file
        .tests
        .iter()
        .map(|t| run::run_test(engine, &file, &rules, t))
        .collect();
    report
}

/// Compiles the rule files under test: every rule by name, and every problem
/// (compile errors, the same rule name in two files).
fn compile_rules(
    engine: &RuleEngine,
    paths: &[PathBuf],
) -> (BTreeMap<String, Arc<Rule>>, Vec<Diagnostic>) {
    let mut rules: BTreeMap<String, Arc<Rule>> = BTreeMap::new();
    let mut problems = Vec::new();
    for path in crate::rule_files(paths) {
        match engine.compile_file(&path) {
            Ok(f) => {
                for r in f.rules {
                    if let Some(first) = rules.get(&r.name) {
                        problems.push(Diagnostic {
                            file: r.file.clone(),
                            line: r.line,
                            col: r.col,
                            rule: Some(r.name.clone()),
                            message: format!(
                                "a rule with this name is already defined at {}:{}:{}; rule names must be unique",
                                first.file.display(),
                                first.line,
                                first.col
                            ),
                        });
                    } else {
                        rules.insert(r.name.clone(), r);
                    }
                }
            }
            Err(diags) => problems.extend(diags),
        }
    }
    (rules, problems)
}
