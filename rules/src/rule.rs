//! The public results: compiled rules and what evaluating them gives.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rhai::{AST, FnPtr};
use warden_engine::model::{Annotations, Labels, MetricName, Severity};

use crate::vector::Element;

/// One compiled rule file: its rules share the file's compiled AST.
pub struct RuleFile {
    /// The file, as given to the compiler.
    pub path: PathBuf,
    /// The rules, in the order the file registers them.
    pub rules: Vec<Arc<Rule>>,
    /// The compiled file; every rule's `when` runs against it.
    pub(crate) ast: Arc<AST>,
}

impl RuleFile {
    /// The rule named `name`, if the file has one.
    pub fn rule(&self, name: &str) -> Option<&Arc<Rule>> {
        self.rules.iter().find(|r| r.name == name)
    }
}

impl fmt::Debug for RuleFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RuleFile")
            .field("path", &self.path)
            .field("rules", &self.rules)
            .field("functions", &self.ast.iter_functions().count())
            .finish()
    }
}

/// One alerting rule, as registered by a `rule(name, #{...})` call.
pub struct Rule {
    /// The rule's name (the `alertname` label).
    pub name: String,
    /// How bad it is when it fires (the `severity` label).
    pub severity: Severity,
    /// How long an instance must stay active before it fires (`pending_for`; 0 fires at once).
    pub pending_for: Duration,
    /// How long a firing instance keeps firing after it stops being returned.
    pub keep_firing_for: Duration,
    /// Its own evaluation interval, or `None` for `[rules].interval`.
    pub every: Option<Duration>,
    /// Labels added to every instance (they win over the series' labels).
    pub labels: Labels,
    /// Template of the `summary` annotation.
    pub summary: Option<String>,
    /// Template of the `description` annotation.
    pub description: Option<String>,
    /// Template of the `runbook` annotation (usually a URL).
    pub runbook: Option<String>,
    /// Names of the actions (from the config) to run when it fires.
    pub remediate: Vec<String>,
    /// The file that registered it.
    pub file: PathBuf,
    /// 1-based line of its `rule(` call.
    pub line: usize,
    /// 1-based column of its `rule(` call.
    pub col: usize,
    pub(crate) when: FnPtr,
    pub(crate) ast: Arc<AST>,
}

impl fmt::Debug for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rule")
            .field("name", &self.name)
            .field("severity", &self.severity)
            .field("pending_for", &self.pending_for)
            .field("keep_firing_for", &self.keep_firing_for)
            .field("every", &self.every)
            .field("labels", &self.labels)
            .field("file", &self.file)
            .field("line", &self.line)
            .field("col", &self.col)
            .finish_non_exhaustive()
    }
}

/// What one evaluation of a rule found.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The active instances (an empty list: nothing is wrong).
    pub instances: Vec<Instance>,
    /// Every metric the rule read, sorted, so the daemon can re-evaluate it as soon
    /// as one of them gets a sample.
    pub metrics_read: Vec<MetricName>,
}

/// One active alert instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The element's labels + the rule's labels + `alertname` + `severity`.
    pub labels: Labels,
    /// The element's value (1 for a `true` result).
    pub value: f64,
    /// Rendered `summary`, `description` and `runbook` (those the rule has).
    pub annotations: Annotations,
}

/// The value of an expression evaluated with
/// [`RuleEngine::eval_expr`](crate::RuleEngine::eval_expr).
#[derive(Debug, Clone, PartialEq)]
pub enum ExprValue {
    /// A vector (also an array of elements).
    Vector(Vec<Element>),
    /// A number.
    Scalar(f64),
    /// A bool.
    Bool(bool),
    /// `()`.
    Unit,
    /// Any other value (a string, a map, …), as Rhai displays it.
    Other(String),
}
