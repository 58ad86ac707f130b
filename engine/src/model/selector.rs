//! Series selectors: a metric name plus label matchers, as in PromQL's
//! `name{a="x", b=~"y|z"}`.

use std::fmt;

use regex::Regex;

use super::{Labels, MetricName};

/// Why a selector was refused.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum SelectorError {
    /// The regular expression does not compile.
    #[error("invalid regex '{pattern}': {reason}")]
    Regex {
        /// The pattern as written.
        pattern: String,
        /// The regex crate's message.
        reason: String,
    },
}

/// How a matcher compares a label value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MatchOp {
    /// `=`: equal.
    Eq,
    /// `!=`: not equal.
    Ne,
    /// `=~`: the whole value matches the regex.
    Re,
    /// `!~`: the whole value does not match the regex.
    Nre,
}

/// One label matcher. A missing label has the value `""`, as in Prometheus.
#[derive(Debug, Clone)]
pub struct Matcher {
    /// The label name.
    pub name: String,
    /// The comparison.
    pub op: MatchOp,
    /// The value or pattern as written.
    pub value: String,
    regex: Option<Regex>,
}

impl PartialEq for Matcher {
    fn eq(&self, o: &Self) -> bool {
        self.name == o.name && self.op == o.op && self.value == o.value
    }
}

impl Matcher {
    /// A matcher; regexes are anchored at both ends, as in PromQL.
    pub fn new(
        name: impl Into<String>,
        op: MatchOp,
        value: impl Into<String>,
    ) -> Result<Self, SelectorError> {
        let value = value.into();
        let regex = match op {
            MatchOp::Re | MatchOp::Nre => Some(Regex::new(&format!("^(?:{value})$")).map_err(
                |e| SelectorError::Regex {
                    pattern: value.clone(),
                    reason: e.to_string(),
                },
            )?),
            _ => None,
        };
        Ok(Self {
            name: name.into(),
            op,
            value,
            regex,
        })
    }

    /// An equality matcher.
    pub fn eq(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            op: MatchOp::Eq,
            value: value.into(),
            regex: None,
        }
    }

    /// True when `labels` satisfy this matcher.
    pub fn matches(&self, labels: &Labels) -> bool {
        let v = labels.get(&self.name).unwrap_or("");
        match self.op {
            MatchOp::Eq => v == self.value,
            MatchOp::Ne => v != self.value,
            MatchOp::Re => self.regex.as_ref().is_some_and(|r| r.is_match(v)),
            MatchOp::Nre => !self.regex.as_ref().is_some_and(|r| r.is_match(v)),
        }
    }
}

/// A metric name with label matchers.
#[derive(Debug, Clone, PartialEq)]
pub struct Selector {
    /// The metric name.
    pub metric: MetricName,
    /// All must match.
    pub matchers: Vec<Matcher>,
}

impl Selector {
    /// Every series of `metric`.
    pub fn metric(metric: MetricName) -> Self {
        Self {
            metric,
            matchers: Vec::new(),
        }
    }

    /// This selector with one more matcher.
    pub fn with(mut self, m: Matcher) -> Self {
        self.matchers.push(m);
        self
    }

    /// True when a series with `labels` is selected (the metric name is checked by
    /// the caller, which indexes by it).
    pub fn matches(&self, labels: &Labels) -> bool {
        self.matchers.iter().all(|m| m.matches(labels))
    }

    /// The labels fixed by equality matchers, used to label `absent()` results.
    pub fn equality_labels(&self) -> Labels {
        let pairs = self
            .matchers
            .iter()
            .filter(|m| m.op == MatchOp::Eq)
            .map(|m| (m.name.clone(), m.value.clone()));
        Labels::new(pairs).unwrap_or_default()
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.metric)?;
        if self.matchers.is_empty() {
            return Ok(());
        }
        f.write_str("{")?;
        for (i, m) in self.matchers.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let op = match m.op {
                MatchOp::Eq => "=",
                MatchOp::Ne => "!=",
                MatchOp::Re => "=~",
                MatchOp::Nre => "!~",
            };
            write!(f, "{}{}{:?}", m.name, op, m.value)?;
        }
        f.write_str("}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_follow_promql() {
        let l = Labels::new([("job", "api"), ("env", "prod")]).unwrap();
        assert!(Matcher::eq("job", "api").matches(&l));
        assert!(
            Matcher::new("job", MatchOp::Re, "api|web")
                .unwrap()
                .matches(&l)
        );
        assert!(
            !Matcher::new("job", MatchOp::Re, "ap").unwrap().matches(&l),
            "anchored"
        );
        assert!(
            Matcher::new("zone", MatchOp::Eq, "").unwrap().matches(&l),
            "missing = empty"
        );
        assert!(
            Matcher::new("env", MatchOp::Nre, "dev|test")
                .unwrap()
                .matches(&l)
        );
        assert!(
            !Matcher::new("env", MatchOp::Ne, "prod")
                .unwrap()
                .matches(&l)
        );
        assert!(Matcher::new("x", MatchOp::Re, "(").is_err());
    }
}
