//! Label matchers as users write them in routes, silences, inhibitions and
//! maintenance windows: an equality map (`{ severity = "critical" }`), a regex map
//! (`match_re`), or Alertmanager-style strings (`'env!="dev"'`, `'job=~"pg.*"'`).

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::model::{Labels, MatchOp, Matcher};

/// All of these must match (an empty list matches everything).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Matchers(pub Vec<Matcher>);

impl Matchers {
    /// True when every matcher matches `labels`.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.0.iter().all(|m| m.matches(labels))
    }

    /// True when there is no matcher.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Builds matchers from the three ways config files write them.
    pub fn from_parts(
        eq: &BTreeMap<String, String>,
        re: &BTreeMap<String, String>,
        texts: &[String],
    ) -> Result<Self, String> {
        let mut out = Vec::new();
        for (k, v) in eq {
            check_name(k)?;
            out.push(Matcher::eq(k.clone(), v.clone()));
        }
        for (k, v) in re {
            check_name(k)?;
            out.push(Matcher::new(k.clone(), MatchOp::Re, v.clone()).map_err(|e| e.to_string())?);
        }
        for t in texts {
            out.push(parse_matcher(t)?);
        }
        Ok(Self(out))
    }

    /// The matchers as `name="value"` strings.
    pub fn texts(&self) -> Vec<String> {
        self.0.iter().map(matcher_text).collect()
    }

    /// True when some matcher can only match alerts with a given label (a silence
    /// that matches everything is refused).
    pub fn is_selective(&self) -> bool {
        self.0.iter().any(|m| !m.matches(&Labels::empty()))
    }
}

impl fmt::Display for Matchers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{{{}}}", self.texts().join(", "))
    }
}

fn check_name(k: &str) -> Result<(), String> {
    if crate::model::Labels::new([(k, "x")]).is_err() {
        return Err(format!(
            "invalid label name '{k}': use letters, digits and '_'"
        ));
    }
    Ok(())
}

/// The operator text of `op`.
pub fn op_text(op: MatchOp) -> &'static str {
    match op {
        MatchOp::Eq => "=",
        MatchOp::Ne => "!=",
        MatchOp::Re => "=~",
        MatchOp::Nre => "!~",
    }
}

/// `name="value"` with the value quoted as JSON.
pub fn matcher_text(m: &Matcher) -> String {
    format!(
        "{}{}{}",
        m.name,
        op_text(m.op),
        serde_json::Value::String(m.value.clone())
    )
}

/// Parses `name="value"`, `name!="value"`, `name=~"re"` or `name!~"re"` (the value
/// may also be unquoted).
pub fn parse_matcher(text: &str) -> Result<Matcher, String> {
    let t = text.trim();
    let name_end = t
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(t.len());
    let (name, rest) = t.split_at(name_end);
    let rest = rest.trim_start();
    let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
        (MatchOp::Re, v)
    } else if let Some(v) = rest.strip_prefix("!~") {
        (MatchOp::Nre, v)
    } else if let Some(v) = rest.strip_prefix("!=") {
        (MatchOp::Ne, v)
    } else if let Some(v) = rest.strip_prefix('=') {
        (MatchOp::Eq, v)
    } else {
        return Err(format!(
            "invalid matcher '{text}': write name=\"value\", name!=\"value\", name=~\"regex\" or name!~\"regex\""
        ));
    };
    if name.is_empty() {
        return Err(format!(
            "invalid matcher '{text}': the label name is missing"
        ));
    }
    check_name(name)?;
    let value = value.trim();
    let value = if value.starts_with('"') {
        serde_json::from_str::<String>(value).map_err(|_| {
            format!("invalid matcher '{text}': the quoted value is not closed or has a bad escape")
        })?
    } else {
        value.to_string()
    };
    Matcher::new(name, op, value).map_err(|e| format!("invalid matcher '{text}': {e}"))
}

/// Matchers on the API: an object whose values are either a string (equality) or
/// `{"op": "=~", "value": "..."}`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum ApiMatcherValue {
    /// Equality.
    Equal(String),
    /// Any operator.
    Op {
        /// `=`, `!=`, `=~` or `!~`.
        op: String,
        /// The value or regex.
        value: String,
    },
}

/// Converts API matchers into [`Matchers`].
pub fn from_api(m: &BTreeMap<String, ApiMatcherValue>) -> Result<Matchers, String> {
    let mut out = Vec::new();
    for (name, v) in m {
        check_name(name)?;
        let (op, value) = match v {
            ApiMatcherValue::Equal(s) => (MatchOp::Eq, s.clone()),
            ApiMatcherValue::Op { op, value } => {
                let op = match op.as_str() {
                    "=" => MatchOp::Eq,
                    "!=" => MatchOp::Ne,
                    "=~" => MatchOp::Re,
                    "!~" => MatchOp::Nre,
                    o => {
                        return Err(format!(
                            "invalid operator '{o}' for '{name}': use =, !=, =~ or !~"
                        ));
                    }
                };
                (op, value.clone())
            }
        };
        out.push(Matcher::new(name.clone(), op, value).map_err(|e| e.to_string())?);
    }
    Ok(Matchers(out))
}

/// Converts [`Matchers`] into the API form (several matchers on one name keep the
/// last; the text form in `matchers_text` has them all).
pub fn to_api(m: &Matchers) -> BTreeMap<String, ApiMatcherValue> {
    m.0.iter()
        .map(|m| {
            let v = match m.op {
                MatchOp::Eq => ApiMatcherValue::Equal(m.value.clone()),
                op => ApiMatcherValue::Op {
                    op: op_text(op).to_string(),
                    value: m.value.clone(),
                },
            };
            (m.name.clone(), v)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_four_operators() {
        let l = Labels::new([("env", "prod"), ("job", "pg-1")]).unwrap();
        for (t, want) in [
            (r#"env="prod""#, true),
            (r#"env!="prod""#, false),
            (r#"job=~"pg-.*""#, true),
            (r#"job!~"pg-.*""#, false),
            ("env = prod", true),
            (r#"zone="""#, true),
        ] {
            assert_eq!(parse_matcher(t).unwrap().matches(&l), want, "{t}");
        }
        assert!(parse_matcher("env").is_err());
        assert!(parse_matcher(r#"="x""#).is_err());
        assert!(parse_matcher(r#"job=~"(""#).is_err());
        assert!(parse_matcher(r#"env="open"#).is_err());
    }

    #[test]
    fn text_round_trips() {
        let m = parse_matcher(r#"job=~"a\"b""#).unwrap();
        assert_eq!(parse_matcher(&matcher_text(&m)).unwrap(), m);
    }

    #[test]
    fn api_form() {
        let v: BTreeMap<String, ApiMatcherValue> =
            serde_json::from_str(r#"{"a":"1","b":{"op":"=~","value":"x|y"}}"#).unwrap();
        let m = from_api(&v).unwrap();
        assert!(m.matches(&Labels::new([("a", "1"), ("b", "y")]).unwrap()));
        assert_eq!(to_api(&m), v);
        assert!(!Matchers::default().is_selective());
        assert!(m.is_selective());
        let bad: BTreeMap<String, ApiMatcherValue> =
            serde_json::from_str(r#"{"a":{"op":"<","value":"1"}}"#).unwrap();
        assert!(from_api(&bad).is_err());
    }
}
