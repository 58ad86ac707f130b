//! Reading a rule test file (TOML or YAML) into checked, typed tests.
//!
//! Parsing is strict (unknown keys are errors), and every problem is collected
//! with `file:line:col` before anything runs. Syntax and type errors come with the
//! parser's position. Checks after parsing (a bad duration, a value sequence that
//! does not expand, an unknown rule) are placed by finding the key and its value
//! in the text, counting repeated pairs in document order; the serde YAML parser
//! has no spans of its own, and one way for both formats keeps them alike.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use warden_engine::model::{AlertState, Labels, MetricName};

use super::notation::{SeriesSpec, Step, expand_values, parse_series};
use crate::diag::Diagnostic;

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFile {
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    tests: Vec<RawTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTest {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    freshness: Option<String>,
    #[serde(default)]
    input_series: Vec<RawSeries>,
    #[serde(default)]
    alert_rule_test: Vec<RawAlertTest>,
    #[serde(default)]
    expr_test: Vec<RawExprTest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSeries {
    series: String,
    values: Scalar,
}

/// A string, or a number or bool written without quotes (`status: 429`,
/// `values: 5` in YAML), as text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

fn texts(m: BTreeMap<String, Scalar>) -> BTreeMap<String, String> {
    m.into_iter().map(|(k, v)| (k, v.0)).collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<RawExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, Scalar>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, Scalar>,
    #[serde(default)]
    state: Option<String>,
    #[serde(default)]
    value: Option<f64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<RawSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSample {
    #[serde(default)]
    labels: Option<LabelsSpec>,
    value: f64,
}

/// A sample's labels: `'name{a="b"}'` as in promtool, or a map `{ a = "b" }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum LabelsSpec {
    Text(String),
    Map(BTreeMap<String, Scalar>),
}

/// A checked test file, ready to run.
#[derive(Debug)]
pub(crate) struct TestFile {
    pub path: PathBuf,
    pub rule_files: Vec<PathBuf>,
    pub evaluation_interval: Duration,
    pub tests: Vec<Test>,
}

/// One `[[tests]]` entry.
#[derive(Debug)]
pub(crate) struct Test {
    pub name: String,
    pub interval: Duration,
    pub freshness: Duration,
    pub input: Vec<InputSeriesSpec>,
    pub alert_tests: Vec<AlertTest>,
    pub expr_tests: Vec<ExprTest>,
}

#[derive(Debug)]
pub(crate) struct InputSeriesSpec {
    pub name: MetricName,
    pub labels: Labels,
    pub steps: Vec<Step>,
}

#[derive(Debug)]
pub(crate) struct AlertTest {
    pub eval_time: Duration,
    pub alertname: String,
    pub expected: Vec<ExpAlert>,
    pub at: (usize, usize),
}

#[derive(Debug, Clone)]
pub(crate) struct ExpAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub value: Option<f64>,
}

#[derive(Debug)]
pub(crate) struct ExprTest {
    pub expr: String,
    pub eval_time: Duration,
    pub expected: Vec<ExpSample>,
    pub at: (usize, usize),
}

#[derive(Debug, Clone)]
pub(crate) struct ExpSample {
    pub name: Option<MetricName>,
    pub labels: Labels,
    pub value: f64,
}

/// The promtool default.
const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(60);

/// True for the file names `warden rules test` reads from a directory.
pub fn is_test_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("toml" | "yaml" | "yml")
    )
}

fn is_yaml(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml")
    )
}

/// Reads and checks the test file at `path`; `Err` holds every problem found.
pub(crate) fn load(path: &Path) -> Result<TestFile, Vec<Diagnostic>> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        vec![diag(
            path,
            (0, 0),
            format!("cannot read the test file: {e}"),
        )]
    })?;
    let raw = parse(path, &src).map_err(|d| vec![d])?;
    check(path, &src, raw)
}

fn diag(file: &Path, (line, col): (usize, usize), message: String) -> Diagnostic {
    Diagnostic {
        file: file.to_path_buf(),
        line,
        col,
        rule: None,
        message,
    }
}

fn parse(path: &Path, src: &str) -> Result<RawFile, Diagnostic> {
    if is_yaml(path) {
        yaml_serde::from_str::<RawFile>(src).map_err(|e| {
            let at = e
                .location()
                .map(|l| (l.line(), l.column()))
                .unwrap_or((0, 0));
            let msg = e.to_string();
            // The message ends with " at line L column C"; the position is ours.
            let msg = match msg.rfind(" at line ") {
                Some(i) => msg[..i].to_string(),
                None => msg,
            };
            diag(path, at, msg)
        })
    } else {
        toml::from_str::<RawFile>(src).map_err(|e| {
            let at = e
                .span()
                .map(|s| warden_engine::config::line_col(src, s.start))
                .unwrap_or((0, 0));
            diag(path, at, e.message().trim().to_string())
        })
    }
}

/// Finds where keys and values are written, for checks made after parsing.
struct Locator<'a> {
    src: &'a str,
    seen: HashMap<(String, String), usize>,
}

impl<'a> Locator<'a> {
    fn new(src: &'a str) -> Self {
        Self {
            src,
            seen: HashMap::new(),
        }
    }

    /// The position of the next `key = value` (TOML) or `key: value` (YAML) not
    /// yet located, at the value (its opening quote); `(0, 0)` when it cannot be found (an escaped
    /// string, say).
    fn next(&mut self, key: &str, value: &str) -> (usize, usize) {
        let n = self
            .seen
            .entry((key.to_string(), value.to_string()))
            .or_insert(0);
        let nth = *n;
        *n += 1;
        let pattern = format!(
            r#"(?m)(?:^|[\s{{,\-])"?{}"?\s*[=:]\s*((?:'''|"""|['"])?{})"#,
            regex::escape(key),
            regex::escape(value)
        );
        let Ok(re) = regex::Regex::new(&pattern) else {
            return (0, 0);
        };
        re.captures_iter(self.src)
            .filter_map(|c| c.get(1))
            .nth(nth)
            .map(|m| warden_engine::config::line_col(self.src, m.start()))
            .unwrap_or((0, 0))
    }
}

fn duration(text: &str) -> Result<Duration, String> {
    warden_engine::duration::parse(text)
}

fn check(path: &Path, src: &str, raw: RawFile) -> Result<TestFile, Vec<Diagnostic>> {
    let mut loc = Locator::new(src);
    let mut problems = Vec::new();
    let base = path.parent().unwrap_or(Path::new(""));
    let mut problem = |at: (usize, usize), msg: String| problems.push(diag(path, at, msg));

    let mut rule_files = Vec::new();
    if raw.rule_files.is_empty() {
        problem(
            (1, 1),
            "'rule_files' is empty: name the rule files under test, e.g. rule_files = [\"../rules/\"]".into(),
        );
    }
    for f in &raw.rule_files {
        let resolved = base.join(f);
        if !resolved.exists() {
            let at = loc.next_in_list(f);
            problem(
                at,
                format!(
                    "rule file '{}' does not exist (paths are relative to the test file)",
                    resolved.display()
                ),
            );
        }
        rule_files.push(resolved);
    }
    let evaluation_interval = match &raw.evaluation_interval {
        None => DEFAULT_EVALUATION_INTERVAL,
        Some(t) => match duration(t) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                problem(
                    loc.next("evaluation_interval", t),
                    "'evaluation_interval' must be longer than 0".into(),
                );
                DEFAULT_EVALUATION_INTERVAL
            }
            Err(e) => {
                problem(
                    loc.next("evaluation_interval", t),
                    format!("'evaluation_interval': {e}"),
                );
                DEFAULT_EVALUATION_INTERVAL
            }
        },
    };
    if raw.tests.is_empty() {
        problem(
            (1, 1),
            "the file has no tests: add a [[tests]] table (TOML) or a 'tests:' list (YAML)".into(),
        );
    }

    let mut tests = Vec::new();
    for (ti, t) in raw.tests.into_iter().enumerate() {
        let name = t.name.clone().unwrap_or_else(|| format!("#{}", ti + 1));
        if let Some(n) = &t.name {
            loc.next("name", n);
        }
        let mut positive = |key: &str, text: &Option<String>, default: Duration| -> Duration {
            let Some(text) = text else { return default };
            match duration(text) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    problem(
                        loc.next(key, text),
                        format!("test \"{name}\": '{key}' must be longer than 0"),
                    );
                    default
                }
                Err(e) => {
                    problem(
                        loc.next(key, text),
                        format!("test \"{name}\": '{key}': {e}"),
                    );
                    default
                }
            }
        };
        let interval = positive("interval", &t.interval, evaluation_interval);
        let freshness = positive("freshness", &t.freshness, 2 * interval);

        let mut input: Vec<InputSeriesSpec> = Vec::new();
        for s in &t.input_series {
            let at = loc.next("series", &s.series);
            let vat = loc.next("values", &s.values.0);
            let spec = match parse_series(&s.series) {
                Ok(SeriesSpec {
                    name: Some(n),
                    labels,
                }) => Some((n, labels)),
                Ok(SeriesSpec { name: None, .. }) => {
                    problem(
                        at,
                        format!(
                            "test \"{name}\": input series '{}' has no metric name: write name{{label=\"value\"}}",
                            s.series
                        ),
                    );
                    None
                }
                Err(e) => {
                    problem(at, format!("test \"{name}\": {e}"));
                    None
                }
            };
            let steps = match expand_values(&s.values.0) {
                Ok(v) => Some(v),
                Err(e) => {
                    problem(vat, format!("test \"{name}\": {e}"));
                    None
                }
            };
            if let (Some((n, labels)), Some(steps)) = (spec, steps) {
                if input.iter().any(|i| i.name == n && i.labels == labels) {
                    problem(
                        at,
                        format!(
                            "test \"{name}\": input series '{}' is given twice",
                            s.series.trim()
                        ),
                    );
                    continue;
                }
                input.push(InputSeriesSpec {
                    name: n,
                    labels,
                    steps,
                });
            }
        }

        let has_checks = !t.alert_rule_test.is_empty() || !t.expr_test.is_empty();
        let mut alert_tests = Vec::new();
        for a in t.alert_rule_test {
            let at = loc.next("alertname", &a.alertname);
            let eval_time = match duration(&a.eval_time) {
                Ok(d) => d,
                Err(e) => {
                    problem(
                        loc.next("eval_time", &a.eval_time),
                        format!("test \"{name}\": 'eval_time': {e}"),
                    );
                    continue;
                }
            };
            let mut expected = Vec::new();
            for e in a.exp_alerts {
                let state = match e.state.as_deref() {
                    None | Some("firing") => AlertState::Firing,
                    Some("pending") => AlertState::Pending,
                    Some(other) => {
                        problem(
                            loc.next("state", other),
                            format!(
                                "test \"{name}\": state '{other}' is not an alert state: write \"firing\" (the default) or \"pending\""
                            ),
                        );
                        continue;
                    }
                };
                if let Some(k) = e
                    .exp_labels
                    .keys()
                    .find(|k| !crate::vector::is_label_name(k))
                {
                    problem(
                        at,
                        format!(
                            "test \"{name}\": alert \"{}\": invalid label name '{k}' in exp_labels",
                            a.alertname
                        ),
                    );
                    continue;
                }
                expected.push(ExpAlert {
                    labels: texts(e.exp_labels),
                    annotations: texts(e.exp_annotations),
                    state,
                    value: e.value,
                });
            }
            alert_tests.push(AlertTest {
                eval_time,
                alertname: a.alertname,
                expected,
                at,
            });
        }

        let mut expr_tests = Vec::new();
        for x in t.expr_test {
            let at = loc.next("expr", &x.expr);
            let eval_time = match duration(&x.eval_time) {
                Ok(d) => d,
                Err(e) => {
                    problem(
                        loc.next("eval_time", &x.eval_time),
                        format!("test \"{name}\": 'eval_time': {e}"),
                    );
                    continue;
                }
            };
            let mut expected = Vec::new();
            for s in x.exp_samples {
                let spec = match s.labels {
                    None => Ok(SeriesSpec {
                        name: None,
                        labels: Labels::empty(),
                    }),
                    Some(LabelsSpec::Text(t)) => parse_series(&t),
                    Some(LabelsSpec::Map(m)) => Labels::new(texts(m))
                        .map(|labels| SeriesSpec { name: None, labels })
                        .map_err(|e| e.to_string()),
                };
                match spec {
                    Ok(spec) => expected.push(ExpSample {
                        name: spec.name,
                        labels: spec.labels,
                        value: s.value,
                    }),
                    Err(e) => problem(
                        at,
                        format!("test \"{name}\": expression '{}': exp_samples: {e}", x.expr),
                    ),
                }
            }
            expr_tests.push(ExprTest {
                expr: x.expr,
                eval_time,
                expected,
                at,
            });
        }
        if !has_checks {
            problem(
                (0, 0),
                format!("test \"{name}\" checks nothing: add alert_rule_test or expr_test entries"),
            );
        }
        tests.push(Test {
            name,
            interval,
            freshness,
            input,
            alert_tests,
            expr_tests,
        });
    }
    if problems.is_empty() {
        Ok(TestFile {
            path: path.to_path_buf(),
            rule_files,
            evaluation_interval,
            tests,
        })
    } else {
        problems.sort_by_key(|d| (d.line, d.col));
        Err(problems)
    }
}

impl Locator<'_> {
    /// The position of list item `value` (an entry of `rule_files`).
    fn next_in_list(&mut self, value: &str) -> (usize, usize) {
        let n = self
            .seen
            .entry(("[]".to_string(), value.to_string()))
            .or_insert(0);
        let nth = *n;
        *n += 1;
        let pattern = format!(r#"(['"]?{})"#, regex::escape(value));
        let Ok(re) = regex::Regex::new(&pattern) else {
            return (0, 0);
        };
        let start = self.src.find("rule_files").unwrap_or(0);
        re.captures_iter(&self.src[start..])
            .filter_map(|c| c.get(1))
            .nth(nth)
            .map(|m| warden_engine::config::line_col(self.src, start + m.start()))
            .unwrap_or((0, 0))
    }
}
