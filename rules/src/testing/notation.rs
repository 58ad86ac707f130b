//! The compact notations of rule test files: series selectors
//! (`name{label="value", ...}`) and value sequences (`1+1x10 _ stale 5x3`).
//!
//! Values follow promtool's expanding notation:
//!
//! | written | expands to |
//! |---|---|
//! | `7`, `-2.5`, `1e3`, `NaN`, `Inf`, `-Inf` | that one value |
//! | `a+bxn` | `a a+b a+2b … a+nb` (n+1 values) |
//! | `a-bxn` | `a a-b … a-nb` (n+1 values) |
//! | `axn` | `a` repeated n+1 times (`a+0xn`) |
//! | `_` | no sample at this step |
//! | `_xn` | no sample for n steps |
//! | `stale` | a staleness marker: the series ends here (until its next sample) |
//!
//! Step `i` of a series is at `i × interval` from the start of the test.

use warden_engine::model::{Labels, MetricName};

use crate::vector::{is_label_name, is_metric_name};

/// One step of an input series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step {
    /// A sample with this value.
    Value(f64),
    /// No sample.
    Missing,
    /// A staleness marker.
    Stale,
}

/// Expands a value sequence; the error names the token that is wrong.
pub fn expand_values(text: &str) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    for token in text.split_whitespace() {
        expand_token(token, &mut out)
            .map_err(|why| format!("invalid value '{token}' in '{}': {why}", text.trim()))?;
        if out.len() > MAX_STEPS {
            return Err(format!(
                "'{}' expands to more than {MAX_STEPS} values; use a longer interval",
                text.trim()
            ));
        }
    }
    Ok(out)
}

/// More steps than any rule test needs (a week at 10 s is 60,480).
const MAX_STEPS: usize = 1_000_000;

const VALUE_HELP: &str = "write a number, 'a+bxn', 'a-bxn', 'axn', '_', '_xn' or 'stale'";

fn expand_token(token: &str, out: &mut Vec<Step>) -> Result<(), String> {
    if token == "_" {
        out.push(Step::Missing);
        return Ok(());
    }
    if token == "stale" {
        out.push(Step::Stale);
        return Ok(());
    }
    if let Some(n) = token.strip_prefix("_x") {
        let n = count(n)?;
        out.extend(std::iter::repeat_n(Step::Missing, n));
        return Ok(());
    }
    let Some((head, n)) = token.rsplit_once('x') else {
        out.push(Step::Value(number(token)?));
        return Ok(());
    };
    let n = count(n)?;
    // `head` is `a`, `a+b` or `a-b`; a sign right at the start (or after an
    // exponent's `e`) belongs to the number.
    let split = head
        .char_indices()
        .skip(1)
        .filter(|&(i, c)| (c == '+' || c == '-') && !matches!(head.as_bytes()[i - 1], b'e' | b'E'))
        .map(|(i, _)| i)
        .last();
    let (start, step) = match split {
        Some(i) => {
            let step = number(&head[i + 1..])?;
            let step = if &head[i..=i] == "-" { -step } else { step };
            (number(&head[..i])?, step)
        }
        None => (number(head)?, 0.0),
    };
    // Multiplying (not adding up) keeps long ramps free of rounding drift.
    out.extend((0..=n).map(|k| Step::Value(start + step * k as f64)));
    Ok(())
}

fn count(n: &str) -> Result<usize, String> {
    n.parse::<usize>()
        .map_err(|_| format!("'{n}' is not a whole number of repetitions; {VALUE_HELP}"))
}

fn number(s: &str) -> Result<f64, String> {
    match s {
        "NaN" | "nan" => return Ok(f64::NAN),
        "Inf" | "+Inf" | "inf" | "+inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        _ => {}
    }
    if s.is_empty()
        || !s
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
    {
        return Err(format!("'{s}' is not a number; {VALUE_HELP}"));
    }
    s.parse::<f64>()
        .map_err(|_| format!("'{s}' is not a number; {VALUE_HELP}"))
}

/// A parsed `name{label="value", ...}`; both parts are optional.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesSpec {
    /// The metric name, when written.
    pub name: Option<MetricName>,
    /// The labels.
    pub labels: Labels,
}

/// Parses `name{a="b", c="d"}` (PromQL's series notation, equality only).
pub fn parse_series(text: &str) -> Result<SeriesSpec, String> {
    let t = text.trim();
    let (name, rest) = match t.find('{') {
        Some(i) => (t[..i].trim(), Some(&t[i..])),
        None => (t, None),
    };
    let name = if name.is_empty() {
        None
    } else if is_metric_name(name) {
        Some(MetricName::new(name).map_err(|e| e.to_string())?)
    } else {
        return Err(format!(
            "invalid metric name '{name}' in '{t}': use letters, digits, '_' and ':', not starting with a digit"
        ));
    };
    let mut pairs: Vec<(String, String)> = Vec::new();
    if let Some(rest) = rest {
        let inner = rest
            .strip_prefix('{')
            .and_then(|r| r.strip_suffix('}'))
            .ok_or_else(|| format!("'{t}': the labels must end with '}}'"))?;
        let mut chars = inner.chars().peekable();
        loop {
            while chars.peek().is_some_and(|c| c.is_whitespace() || *c == ',') {
                chars.next();
            }
            if chars.peek().is_none() {
                break;
            }
            let mut key = String::new();
            while let Some(&c) = chars.peek() {
                if c == '=' || c.is_whitespace() {
                    break;
                }
                key.push(c);
                chars.next();
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if !is_label_name(&key) {
                return Err(format!(
                    "invalid label name '{key}' in '{t}': use letters, digits and '_', not starting with a digit"
                ));
            }
            if chars.next() != Some('=') {
                return Err(format!(
                    "'{t}': label '{key}' needs a value: {key}=\"value\" (only '=' matchers in test series)"
                ));
            }
            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                chars.next();
            }
            if chars.next() != Some('"') {
                return Err(format!(
                    "'{t}': the value of '{key}' must be in double quotes: {key}=\"value\""
                ));
            }
            let mut value = String::new();
            let mut closed = false;
            while let Some(c) = chars.next() {
                match c {
                    '"' => {
                        closed = true;
                        break;
                    }
                    '\\' => match chars.next() {
                        Some('n') => value.push('\n'),
                        Some(c) => value.push(c),
                        None => break,
                    },
                    c => value.push(c),
                }
            }
            if !closed {
                return Err(format!("'{t}': the value of '{key}' has no closing '\"'"));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(format!("'{t}': label '{key}' is given twice"));
            }
            pairs.push((key, value));
            match chars.peek() {
                None | Some(',') => {}
                Some(c) if c.is_whitespace() => {}
                Some(c) => {
                    return Err(format!(
                        "'{t}': unexpected '{c}' after a label value; separate labels with ','"
                    ));
                }
            }
        }
    }
    let labels = Labels::new(pairs).map_err(|e| format!("'{t}': {e}"))?;
    Ok(SeriesSpec { name, labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(text: &str) -> Vec<Step> {
        expand_values(text).unwrap_or_else(|e| panic!("{e}"))
    }

    fn v(xs: &[f64]) -> Vec<Step> {
        xs.iter().map(|x| Step::Value(*x)).collect()
    }

    #[test]
    fn expands_promtool_notation() {
        assert_eq!(values("1+1x3"), v(&[1.0, 2.0, 3.0, 4.0]));
        assert_eq!(values("10-2x2"), v(&[10.0, 8.0, 6.0]));
        assert_eq!(values("-2+4x2"), v(&[-2.0, 2.0, 6.0]));
        assert_eq!(values("-2-1x1"), v(&[-2.0, -3.0]));
        assert_eq!(values("5x2"), v(&[5.0, 5.0, 5.0]));
        assert_eq!(values("1e3+1e2x1"), v(&[1000.0, 1100.0]));
        assert_eq!(values("1e-3x1"), v(&[0.001, 0.001]));
        assert_eq!(
            values("0 0 _ 5x1 stale"),
            vec![
                Step::Value(0.0),
                Step::Value(0.0),
                Step::Missing,
                Step::Value(5.0),
                Step::Value(5.0),
                Step::Stale
            ]
        );
        assert_eq!(values("_x3"), vec![Step::Missing; 3]);
        let special = values("NaN Inf -Inf");
        assert!(matches!(special[0], Step::Value(x) if x.is_nan()));
        assert_eq!(special[1..], v(&[f64::INFINITY, f64::NEG_INFINITY]));
        let Some(Step::Value(last)) = values("0.1+0.1x29").pop() else {
            panic!("no value")
        };
        assert!((last - 3.0).abs() < 1e-12, "{last}");
    }

    #[test]
    fn bad_values_say_which_token() {
        let e = expand_values("1 2 3+ax4").unwrap_err();
        assert!(e.starts_with("invalid value '3+ax4' in '1 2 3+ax4'"), "{e}");
        let e = expand_values("1x").unwrap_err();
        assert!(e.contains("'' is not a whole number"), "{e}");
        let e = expand_values("abc").unwrap_err();
        assert!(e.contains("'abc' is not a number"), "{e}");
        assert!(expand_values("1x99999999").is_err());
    }

    #[test]
    fn parses_series() {
        let s = parse_series(r#"up{job="api", instance="a:1"}"#).unwrap();
        assert_eq!(s.name.unwrap().as_str(), "up");
        assert_eq!(s.labels.to_string(), r#"{instance="a:1",job="api"}"#);
        let s = parse_series(r#"{msg="say \"hi\"\n", x="{,}"}"#).unwrap();
        assert_eq!(s.name, None);
        assert_eq!(s.labels.get("msg"), Some("say \"hi\"\n"));
        assert_eq!(s.labels.get("x"), Some("{,}"));
        assert!(parse_series("up").unwrap().labels.is_empty());
        assert!(parse_series("up{}").unwrap().labels.is_empty());
        for (bad, why) in [
            ("9up", "invalid metric name '9up'"),
            ("up{job=api}", "double quotes"),
            ("up{job=\"a\"", "must end with '}'"),
            ("up{job!=\"a\"}", "invalid label name 'job!'"),
            ("up{job=\"a\", job=\"b\"}", "given twice"),
            ("up{job=\"a}", "no closing"),
            ("up{job=\"a\" x}", "needs a value"),
        ] {
            let e = parse_series(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
