//! Loading a rule file: compile once, check the calls, run the top level once to
//! collect its `rule(name, #{...})` calls, and validate each rule's keys.
//!
//! A file loads whole or not at all: any problem (syntax, an unknown function, a
//! bad key in any rule, an error at the top level) rejects the file with every
//! problem found, so the daemon keeps running the previous version.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Array, Dynamic, Engine, FnPtr, Map, NativeCallContext, Position};
use warden_engine::model::{Labels, Severity};

use crate::context::{LoadGuard, with_load};
use crate::diag::{Diagnostic, Phase, did_you_mean};
use crate::rule::{Rule, RuleFile};
use crate::vector::{RhaiRes, is_label_name, is_metric_name};
use crate::{RuleEngine, lint};

/// The keys a rule's map may have.
const KEYS: [&str; 10] = [
    "severity",
    "pending_for",
    "keep_firing_for",
    "every",
    "labels",
    "summary",
    "description",
    "runbook",
    "remediate",
    "when",
];

/// A rule as its `rule(...)` call gave it, before it is tied to the file's AST.
pub(crate) struct RuleDraft {
    name: String,
    severity: Severity,
    pending_for: Duration,
    keep_firing_for: Duration,
    every: Option<Duration>,
    labels: Labels,
    summary: Option<String>,
    description: Option<String>,
    runbook: Option<String>,
    remediate: Vec<String>,
    when: FnPtr,
    pos: Position,
}

/// Registers `rule(name, #{...})`, which only works while a file is loaded.
pub(crate) fn register(engine: &mut Engine, max_map: usize) {
    engine.register_fn(
        "rule",
        move |ctx: NativeCallContext, name: Dynamic, spec: Dynamic| -> RhaiRes<()> {
            let pos = ctx.call_position();
            with_load(|cx| match parse_rule(&name, spec, max_map, pos) {
                Ok(d) if cx.rules.iter().any(|r| r.name == d.name) => {
                    let msg = "another rule in this file has the same name; rule names must be unique within a file";
                    cx.diags.push(Diagnostic::at(&cx.file, pos, Some(&d.name), msg));
                }
                Ok(d) => cx.rules.push(d),
                Err((rule, msgs)) => {
                    for m in msgs {
                        cx.diags.push(Diagnostic::at(&cx.file, pos, rule.as_deref(), m));
                    }
                }
            })
            .ok_or_else(|| {
                "rule() registers a rule while its file loads; it cannot be called from inside `when`"
                    .into()
            })
        },
    );
}

type Problems = (Option<String>, Vec<String>);

fn parse_rule(
    name: &Dynamic,
    spec: Dynamic,
    max_map: usize,
    pos: Position,
) -> Result<RuleDraft, Problems> {
    let Ok(name) = name.clone().into_immutable_string() else {
        let msg = format!(
            "rule(): the first argument must be the rule's name as a string, not {}",
            name.type_name()
        );
        return Err((None, vec![msg]));
    };
    let name = name.to_string();
    let mut errs = Vec::new();
    if !is_metric_name(&name) {
        errs.push(format!(
            "invalid rule name '{name}': use letters, digits, '_' and ':', not starting with a digit"
        ));
    }
    let Some(spec) = spec.clone().try_cast::<Map>() else {
        errs.push(format!(
            "rule(): the second argument must be a map #{{ severity: …, when: || … }}, not {}",
            spec.type_name()
        ));
        return Err((Some(name), errs));
    };
    if spec.len() > max_map {
        errs.push(format!(
            "the rule's map has {} keys; the limit is {max_map}",
            spec.len()
        ));
        return Err((Some(name), errs));
    }
    for key in spec.keys() {
        if !KEYS.contains(&key.as_str()) {
            errs.push(unknown_key(key));
        }
    }
    let mut text = |key: &str| -> Option<String> {
        let v = spec.get(key)?;
        match v.clone().into_immutable_string() {
            Ok(s) => Some(s.to_string()),
            Err(t) => {
                errs.push(format!("'{key}' must be a string, not {t}"));
                None
            }
        }
    };
    let severity = text("severity");
    let pending_for = text("pending_for");
    let keep_firing_for = text("keep_firing_for");
    let every = text("every");
    let summary = text("summary");
    let description = text("description");
    let runbook = text("runbook");

    let severity = match severity {
        Some(s) => s.parse::<Severity>().map_err(|e| errs.push(e)).ok(),
        None if !spec.contains_key("severity") => {
            errs.push(
                "missing 'severity': add severity: \"critical\" (or error, warning, info)".into(),
            );
            None
        }
        None => None,
    };
    let mut duration = |key: &str, text: Option<String>, allow_zero: bool| -> Option<Duration> {
        let d = warden_engine::duration::parse(&text?)
            .map_err(|e| errs.push(format!("'{key}': {e}")))
            .ok()?;
        if d.is_zero() && !allow_zero {
            errs.push(format!("'{key}' must be longer than 0"));
            return None;
        }
        Some(d)
    };
    let pending_for = duration("pending_for", pending_for, true).unwrap_or_default();
    let keep_firing_for = duration("keep_firing_for", keep_firing_for, true).unwrap_or_default();
    let every = duration("every", every, false);
    let labels = spec
        .get("labels")
        .map(|l| {
            rule_labels(l, max_map)
                .map_err(|e| errs.push(e))
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let remediate = spec
        .get("remediate")
        .map(|r| remediate(r).map_err(|e| errs.push(e)).unwrap_or_default())
        .unwrap_or_default();
    let when = match spec.get("when") {
        None => {
            errs.push(
                "missing 'when': add when: || <condition>, e.g. when: || series(\"up\") == 0"
                    .into(),
            );
            None
        }
        Some(w) => match w.clone().try_cast::<FnPtr>() {
            Some(f) => Some(f),
            None => {
                errs.push(format!(
                    "'when' must be a closure (when: || <condition>), not {}",
                    w.type_name()
                ));
                None
            }
        },
    };
    match (severity, when) {
        (Some(severity), Some(when)) if errs.is_empty() => Ok(RuleDraft {
            name,
            severity,
            pending_for,
            keep_firing_for,
            every,
            labels,
            summary,
            description,
            runbook,
            remediate,
            when,
            pos,
        }),
        _ => Err((Some(name), errs)),
    }
}

fn unknown_key(key: &str) -> String {
    if key == "for" {
        return "unknown key 'for': the pending time is 'pending_for' ('for' is a Rhai keyword)"
            .into();
    }
    let hint = match did_you_mean(key, KEYS) {
        Some(k) => format!(" (did you mean '{k}'?)"),
        None => format!("; the keys are {}", KEYS.join(", ")),
    };
    format!("unknown key '{key}'{hint}")
}

fn rule_labels(v: &Dynamic, max_map: usize) -> Result<Labels, String> {
    let Some(map) = v.clone().try_cast::<Map>() else {
        return Err(format!(
            "'labels' must be a map #{{ team: \"db\" }}, not {}",
            v.type_name()
        ));
    };
    if map.len() > max_map {
        return Err(format!(
            "'labels' has {} entries; the limit is {max_map}",
            map.len()
        ));
    }
    let mut pairs = Vec::with_capacity(map.len());
    for (k, v) in &map {
        if k == "alertname" || k == "severity" {
            return Err(format!(
                "label '{k}' is set by warden (from the rule's name and its 'severity' key); remove it from 'labels'"
            ));
        }
        if !is_label_name(k) {
            return Err(format!(
                "invalid label name '{k}': use letters, digits and '_', not starting with a digit"
            ));
        }
        if !(v.is_string() || v.is_int() || v.is_float() || v.is_bool()) {
            return Err(format!(
                "label '{k}' must be a string, not {}",
                v.type_name()
            ));
        }
        pairs.push((k.to_string(), v.to_string()));
    }
    Labels::new(pairs).map_err(|e| e.to_string())
}

fn remediate(v: &Dynamic) -> Result<Vec<String>, String> {
    if v.is_string() {
        return Ok(vec![v.to_string()]);
    }
    let err = || {
        format!(
            "'remediate' must be a list of action names [\"restart-api\"], not {}",
            v.type_name()
        )
    };
    let arr = v.clone().try_cast::<Array>().ok_or_else(err)?;
    arr.iter()
        .map(|a| {
            a.clone()
                .into_immutable_string()
                .map(|s| s.to_string())
                .map_err(|_| err())
        })
        .collect()
}

/// Compiles `src` (named `path` in messages) into a [`RuleFile`].
pub(crate) fn compile(
    re: &RuleEngine,
    path: &Path,
    src: &str,
) -> Result<RuleFile, Vec<Diagnostic>> {
    let ast = re
        .engine
        .compile(src)
        .map_err(|e| vec![Diagnostic::from_parse(path, src, &e)])?;
    let problems = lint::check(&ast, &re.known, path);
    if !problems.is_empty() {
        return Err(problems);
    }
    let ast = Arc::new(ast);
    let guard = LoadGuard::enter(path.to_path_buf(), Instant::now() + re.limits.load_budget);
    let run = re.engine.run_ast(&ast);
    let cx = guard.finish();
    let (drafts, mut diags) = cx.map(|c| (c.rules, c.diags)).unwrap_or_default();
    if let Err(e) = run {
        diags.push(Diagnostic::from_eval(
            path,
            None,
            &e,
            &re.limits,
            Phase::Load,
        ));
    }
    let anon: HashSet<(String, usize)> = ast
        .iter_functions()
        .map(|f| (f.name.to_string(), f.params.len()))
        .collect();
    for d in &drafts {
        let takes_none = anon.contains(&(d.when.fn_name().to_string(), d.when.curry().len()));
        if !takes_none {
            diags.push(Diagnostic::at(
                path,
                d.pos,
                Some(&d.name),
                "'when' must be a closure without parameters defined in this file: when: || <condition>",
            ));
        }
    }
    if !diags.is_empty() {
        diags.sort_by_key(|d| (d.line, d.col));
        return Err(diags);
    }
    let rules = drafts
        .into_iter()
        .map(|d| {
            Arc::new(Rule {
                name: d.name,
                severity: d.severity,
                pending_for: d.pending_for,
                keep_firing_for: d.keep_firing_for,
                every: d.every,
                labels: d.labels,
                summary: d.summary,
                description: d.description,
                runbook: d.runbook,
                remediate: d.remediate,
                file: path.to_path_buf(),
                line: d.pos.line().unwrap_or(0),
                col: d.pos.position().unwrap_or(0),
                when: d.when,
                ast: ast.clone(),
            })
        })
        .collect();
    Ok(RuleFile {
        path: path.to_path_buf(),
        rules,
        ast,
    })
}
