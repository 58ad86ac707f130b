//! Alert severities, matching PagerDuty's four levels.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// How bad an alert is. Ordered from least (`Info`) to most severe (`Critical`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record; nobody needs to act.
    Info,
    /// Needs attention during working hours.
    Warning,
    /// Something failed; act soon.
    Error,
    /// Page someone now.
    Critical,
}

impl Severity {
    /// The lowercase name used in labels and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Severity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "info" => Ok(Severity::Info),
            "warning" => Ok(Severity::Warning),
            "error" => Ok(Severity::Error),
            "critical" => Ok(Severity::Critical),
            other => Err(format!(
                "invalid severity '{other}': use critical, error, warning or info"
            )),
        }
    }
}
