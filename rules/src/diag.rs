//! Diagnostics: every problem with a rule file as `file:line:col: rule "name": message`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rhai::{EvalAltResult, ParseError, Position};

use crate::Limits;

/// One problem with a rule file, at compile, load or evaluation time.
///
/// Displays as `rules/pg.rhai:12:9: rule "PgLag": unknown function 'rate_over'
/// (did you mean 'rate'?)`; the `rule "…": ` part is left out when no rule is known,
/// and `:line:col` when the position is unknown (`line` 0).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct Diagnostic {
    /// The rule file (as given to the compiler).
    pub file: PathBuf,
    /// 1-based line; 0 when unknown.
    pub line: usize,
    /// 1-based column; 0 when unknown.
    pub col: usize,
    /// The rule's name, when the problem belongs to one rule.
    pub rule: Option<String>,
    /// What is wrong and what to change.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}:{}", self.line, self.col)?;
        }
        f.write_str(": ")?;
        if let Some(rule) = &self.rule {
            write!(f, "rule \"{rule}\": ")?;
        }
        f.write_str(&self.message)
    }
}

impl Diagnostic {
    /// A diagnostic at a Rhai position.
    pub(crate) fn at(
        file: &Path,
        pos: Position,
        rule: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_path_buf(),
            line: pos.line().unwrap_or(0),
            col: pos.position().unwrap_or(0),
            rule: rule.map(str::to_string),
            message: message.into(),
        }
    }

    /// A syntax error in `src` (Rhai's compile errors do not name the file).
    pub(crate) fn from_parse(file: &Path, src: &str, err: &ParseError) -> Self {
        let mut d = Self::at(file, err.position(), None, err.err_type().to_string());
        if let Some(word) = word_at(src, d.line, d.col)
            && KEYWORD_KEYS.contains(&word)
        {
            let instead = if word == "for" {
                "; the pending time is 'pending_for'"
            } else {
                ""
            };
            d.message = format!(
                "'{word}' is a Rhai keyword, so it cannot be a map key without quotes (write \"{word}\"){instead}"
            );
        }
        d
    }

    /// This diagnostic placed at `line:col` when it has no position of its own.
    pub(crate) fn or_at(mut self, line: usize, col: usize) -> Self {
        if self.line == 0 {
            (self.line, self.col) = (line, col);
        }
        self
    }

    /// A runtime error during `phase`, framed with the innermost position Rhai knows.
    pub(crate) fn from_eval(
        file: &Path,
        rule: Option<&str>,
        err: &EvalAltResult,
        limits: &Limits,
        phase: Phase,
    ) -> Self {
        let inner = err.unwrap_inner();
        let pos = if inner.position().is_none() {
            err.position()
        } else {
            inner.position()
        };
        Self::at(file, pos, rule, eval_message(inner, limits, phase))
    }
}

/// Rhai's message for `err` without its position suffix, or ours for the limits.
/// Rhai keywords people write as map keys (RULES.md).
const KEYWORD_KEYS: [&str; 12] = [
    "for", "match", "default", "with", "case", "if", "else", "while", "loop", "do", "in", "switch",
];

/// The identifier starting at 1-based `line:col` of `src`.
fn word_at(src: &str, line: usize, col: usize) -> Option<&str> {
    let text = src.lines().nth(line.checked_sub(1)?)?;
    let start = text.char_indices().nth(col.checked_sub(1)?)?.0;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

/// What was running when an error happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// A file's top level, while loading.
    Load,
    /// A rule's `when`, or an expression.
    Eval,
}

fn eval_message(err: &EvalAltResult, limits: &Limits, phase: Phase) -> String {
    let (what, budget) = match phase {
        Phase::Load => ("the file's top level", limits.load_budget),
        Phase::Eval => ("rule", limits.time_budget),
    };
    match err {
        EvalAltResult::ErrorRuntime(d, _) if d.is_string() => d.to_string(),
        EvalAltResult::ErrorTerminated(..) => format!(
            "{what} exceeded its time budget of {}; make it cheaper (a narrower selector, a shorter window, no loop over every series)",
            fmt_duration(budget)
        ),
        EvalAltResult::ErrorTooManyOperations(_) => format!(
            "{what} exceeded its limit of {} operations; look for a runaway loop",
            limits.max_operations
        ),
        EvalAltResult::ErrorStackOverflow(_) => format!(
            "calls nested deeper than {} levels; look for runaway recursion",
            limits.max_call_levels
        ),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => format!(
            "no function matches {sig}; check the number and types of the arguments (numbers, \"5m\"-style duration strings, vectors)"
        ),
        other => {
            let text = other.to_string();
            let suffix = format!(" ({})", other.position());
            match text.strip_suffix(&suffix) {
                Some(t) if !other.position().is_none() => t.to_string(),
                _ => text,
            }
        }
    }
}

/// `250ms`, `1s`.
pub(crate) fn fmt_duration(d: Duration) -> String {
    warden_engine::duration::format(d)
}

/// Levenshtein distance between `a` and `b`, by characters.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate `name` was most likely meant as, if any is close enough.
///
/// A candidate equal to `name` with one `_`-separated part removed wins
/// (`rate_over` → `rate`, `avg_over_time` → `avg_over`); otherwise the closest by
/// edit distance, within about a third of the name's length.
pub(crate) fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
) -> Option<&'a str> {
    let parts: Vec<&str> = name.split('_').collect();
    if parts.len() > 1 {
        for skip in (0..parts.len()).rev() {
            let shorter: Vec<&str> = parts
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, p)| *p)
                .collect();
            let shorter = shorter.join("_");
            if let Some(c) = candidates.clone().into_iter().find(|c| *c == shorter) {
                return Some(c);
            }
        }
    }
    // A word short of a candidate: `pending` → `pending_for`.
    let mut longer = candidates.clone().into_iter().filter(|c| {
        c.strip_prefix(name)
            .is_some_and(|rest| rest.starts_with('_'))
    });
    if let (Some(c), None) = (longer.next(), longer.next()) {
        return Some(c);
    }
    let max = 1 + name.chars().count() / 3;
    candidates
        .into_iter()
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, _)| *d <= max)
        .min()
        .map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_follows_file_line_col() {
        let d = Diagnostic {
            file: "rules/pg.rhai".into(),
            line: 12,
            col: 9,
            rule: Some("PgLag".into()),
            message: "unknown function 'rate_over' (did you mean 'rate'?)".into(),
        };
        assert_eq!(
            d.to_string(),
            "rules/pg.rhai:12:9: rule \"PgLag\": unknown function 'rate_over' (did you mean 'rate'?)"
        );
        let d = Diagnostic {
            rule: None,
            line: 0,
            ..d
        };
        assert_eq!(
            d.to_string(),
            "rules/pg.rhai: unknown function 'rate_over' (did you mean 'rate'?)"
        );
    }

    #[test]
    fn suggestions() {
        let names = ["rate", "avg_over", "max_over", "series", "increase"];
        assert_eq!(did_you_mean("rate_over", names), Some("rate"));
        assert_eq!(did_you_mean("avg_over_time", names), Some("avg_over"));
        assert_eq!(did_you_mean("serie", names), Some("series"));
        assert_eq!(did_you_mean("incraese", names), Some("increase"));
        assert_eq!(did_you_mean("frobnicate", names), None);
        assert_eq!(did_you_mean("avg", names), Some("avg_over"));
        assert_eq!(
            did_you_mean("pending", ["pending_for", "every"]),
            Some("pending_for")
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
    }
}
