//! `warden rules check`: everything that can be found in rule files without
//! running a rule against data.
//!
//! Compiling a file finds syntax errors, unknown functions, wrong argument counts
//! and literal arguments of the wrong type, unknown keys, an invalid severity or
//! duration, and duplicate names within the file (see `load` and `lint`). On top
//! of that, this module checks across files and against the config:
//! - a rule name defined in two files;
//! - a placeholder in `summary`, `description` or `runbook` naming a label the
//!   rule's alerts can never carry (see `shape`);
//! - a `remediate` entry naming an action the config does not define.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use crate::shape::{Shape, Shapes, placeholders};
use crate::{Diagnostic, RuleEngine, RuleFile};

/// What to check rule files against.
#[derive(Debug, Clone, Default)]
pub struct CheckOptions {
    /// The action names the config defines; `None` skips the `remediate` check.
    pub actions: Option<BTreeSet<String>>,
}

/// What checking gave.
#[derive(Debug, Clone, Default)]
pub struct CheckReport {
    /// Files checked.
    pub files: usize,
    /// Rules found in the files that compiled.
    pub rules: usize,
    /// Every problem, by file then position.
    pub diagnostics: Vec<Diagnostic>,
}

/// Checks the rule files `files` (as [`rule_files`](crate::rule_files) lists them).
pub fn check_files(engine: &RuleEngine, files: &[PathBuf], opts: &CheckOptions) -> CheckReport {
    let mut report = CheckReport {
        files: files.len(),
        ..CheckReport::default()
    };
    let mut seen: BTreeMap<String, (PathBuf, usize, usize)> = BTreeMap::new();
    for path in files {
        let file = match engine.compile_file(path) {
            Ok(f) => f,
            Err(diags) => {
                report.diagnostics.extend(diags);
                continue;
            }
        };
        report.rules += file.rules.len();
        let mut diags = lint_file(&file, opts);
        for r in &file.rules {
            match seen.get(&r.name) {
                Some((f, line, col)) => diags.push(Diagnostic {
                    file: r.file.clone(),
                    line: r.line,
                    col: r.col,
                    rule: Some(r.name.clone()),
                    message: format!(
                        "a rule with this name is already defined at {}:{line}:{col}; rule names must be unique across files (they name the alerts)",
                        f.display()
                    ),
                }),
                None => {
                    seen.insert(r.name.clone(), (r.file.clone(), r.line, r.col));
                }
            }
        }
        diags.sort_by_key(|d| (d.line, d.col));
        report.diagnostics.extend(diags);
    }
    report
}

/// The checks of one compiled file that loading does not make.
pub fn lint_file(file: &RuleFile, opts: &CheckOptions) -> Vec<Diagnostic> {
    let shapes = Shapes::new(&file.ast);
    let mut out = Vec::new();
    for rule in &file.rules {
        let at = |message: String| Diagnostic {
            file: rule.file.clone(),
            line: rule.line,
            col: rule.col,
            rule: Some(rule.name.clone()),
            message,
        };
        let shape = shapes.of_fn(rule.when.fn_name(), rule.when.curry().len());
        for (key, template) in [
            ("summary", &rule.summary),
            ("description", &rule.description),
            ("runbook", &rule.runbook),
        ] {
            let Some(template) = template else { continue };
            let mut reported = BTreeSet::new();
            for name in placeholders(template) {
                let always = name == "alertname" || name == "severity";
                if always || rule.labels.get(&name).is_some() || !shape.lacks(&name) {
                    continue;
                }
                if !reported.insert(name.clone()) {
                    continue;
                }
                let why = match &shape {
                    Shape::Exactly(keep) if keep.is_empty() => {
                        "`when` returns a bool, a number or an aggregation without labels"
                            .to_string()
                    }
                    Shape::Exactly(keep) => format!(
                        "`when` keeps only the labels {}",
                        keep.iter()
                            .map(|k| format!("'{k}'"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => format!("`when` drops the label '{name}'"),
                };
                out.push(at(format!(
                    "{key}: placeholder '{{{{{name}}}}}' names a label this rule's alerts never have ({why}); keep the label in `when` (e.g. sum_by(v, [\"{name}\"])) or add it to `labels`"
                )));
            }
        }
        if let Some(actions) = &opts.actions {
            for name in &rule.remediate {
                if !actions.contains(name) {
                    let hint = match crate::diag::did_you_mean(name, actions.iter().map(String::as_str)) {
                        Some(s) => format!(" (did you mean '{s}'?)"),
                        None if actions.is_empty() => {
                            "; the config defines no actions ([[action.exec]], [[action.restart]], …)".to_string()
                        }
                        None => format!(
                            "; the config defines {}",
                            actions.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(", ")
                        ),
                    };
                    out.push(at(format!(
                        "remediate: no action named '{name}' in the config{hint}"
                    )));
                }
            }
        }
    }
    out
}
