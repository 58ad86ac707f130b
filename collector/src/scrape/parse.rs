//! warden's own parser of the Prometheus text exposition format (0.0.4) and of
//! OpenMetrics 1.0 text: line by line, tolerant, with an error per bad line.
//!
//! # Why not a crate
//! The obvious crate, prometheus-parse 0.2.5 (last released 2023-12), splits label
//! lists at `,` and `=` and matches lines with `\w+` regexes. Measured on real
//! exporter output it cuts `device="srv:/export,x"` at the comma and loses the next
//! label, never unescapes `\\` `\"` `\n`, silently drops lines with `:` in the
//! metric name, `}` inside a label value or empty braces `{}`, keeps the space of
//! `a="1", b="2"` in the label name, stamps samples without a timestamp with the
//! parse time, and never reports an error. openmetrics-parser 0.5.1 is correct on
//! those but all-or-nothing: two families without `# TYPE`, a `# TYPE` after its
//! samples, a duplicate series, CRLF line ends or a missing final newline reject
//! the whole payload, so one odd line would blank a whole target. Both stay in the
//! test suite as oracles where they are right, and in the benchmark as baselines.
//!
//! # What is accepted
//! - Lines end in `\n`; a `\r` before it is dropped; the last line needs no `\n`.
//! - `# HELP`, `# TYPE`, `# UNIT` and other comments; `# TYPE` may come anywhere
//!   (it types the samples after it). `# EOF` ends an OpenMetrics payload.
//! - Samples: `name{label="value",…} value [timestamp]`. Names
//!   `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names `[a-zA-Z_][a-zA-Z0-9_]*`; spaces
//!   around `{`, `=`, `,` and `}`; a trailing comma; empty braces. Label values are
//!   unescaped (`\\`, `\"`, `\n`; another escaped character is kept with its
//!   backslash, as Prometheus' own parser would refuse it but the value is still
//!   worth having). Values are floats, `NaN`, `+Inf`, `-Inf`.
//! - Timestamps: integer milliseconds in the Prometheus format, float seconds in
//!   OpenMetrics. An OpenMetrics exemplar (` # {…} value [ts]`) is skipped.
//!
//! A line that does not parse is reported as a [`ParseError`] (line, column, what
//! is wrong) and left out; every other line is kept. A line with invalid UTF-8 is
//! one such error. Parsing never panics (property-tested).

use std::borrow::Cow;
use std::collections::HashMap;

/// Which text format the payload is in; it decides how timestamps are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4: timestamps in integer milliseconds.
    Prometheus,
    /// OpenMetrics 1.0 text: timestamps in float seconds, `# EOF` at the end.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` header announces; Prometheus text unless it says
    /// `application/openmetrics-text`.
    pub fn from_content_type(content_type: Option<&str>) -> Self {
        match content_type {
            Some(ct) if ct.trim_start().starts_with("application/openmetrics-text") => {
                Format::OpenMetrics
            }
            _ => Format::Prometheus,
        }
    }
}

/// The type a `# TYPE` line gives a family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// `counter`.
    Counter,
    /// `gauge`.
    Gauge,
    /// `histogram`: `_bucket{le}`, `_sum`, `_count` series.
    Histogram,
    /// `gaugehistogram` (OpenMetrics): `_bucket{le}`, `_gsum`, `_gcount` series.
    GaugeHistogram,
    /// `summary`: `{quantile}`, `_sum`, `_count` series.
    Summary,
    /// `info` (OpenMetrics): `_info` series of value 1.
    Info,
    /// `stateset` (OpenMetrics).
    StateSet,
    /// `untyped`/`unknown`, or no `# TYPE` line.
    Untyped,
}

impl MetricType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "counter" => MetricType::Counter,
            "gauge" => MetricType::Gauge,
            "histogram" => MetricType::Histogram,
            "gaugehistogram" => MetricType::GaugeHistogram,
            "summary" => MetricType::Summary,
            "info" => MetricType::Info,
            "stateset" => MetricType::StateSet,
            "untyped" | "unknown" => MetricType::Untyped,
            _ => return None,
        })
    }

    /// The series-name suffixes a family of this type may have.
    fn suffixes(self) -> &'static [&'static str] {
        match self {
            MetricType::Counter => &["_total", "_created"],
            MetricType::Histogram => &["_bucket", "_sum", "_count", "_created"],
            MetricType::GaugeHistogram => &["_bucket", "_gsum", "_gcount"],
            MetricType::Summary => &["_sum", "_count", "_created"],
            MetricType::Info => &["_info"],
            MetricType::Gauge | MetricType::StateSet | MetricType::Untyped => &[],
        }
    }
}

/// One sample as written in the payload.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedSample<'a> {
    /// The series' metric name (`http_request_duration_seconds_bucket`).
    pub name: &'a str,
    /// The labels in the order written, values unescaped.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    /// The value.
    pub value: f64,
    /// The sample's own timestamp in Unix milliseconds, if it has one.
    pub timestamp_ms: Option<i64>,
    /// The type of its family (from `# TYPE`), `Untyped` without one.
    pub kind: MetricType,
}

/// One line that could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    /// 1-based byte column where the problem is.
    pub col: usize,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}:{}: {}", self.line, self.col, self.message)
    }
}

/// What a payload held: the good samples and an error per bad line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exposition<'a> {
    /// Every sample that parsed, in payload order.
    pub samples: Vec<ParsedSample<'a>>,
    /// Every line that did not, in payload order.
    pub errors: Vec<ParseError>,
}

/// Parses a whole payload. Never fails: bad lines become [`ParseError`]s.
pub fn parse(body: &[u8], format: Format) -> Exposition<'_> {
    let mut out = Exposition::default();
    let mut types: HashMap<&str, MetricType> = HashMap::new();
    for (i, raw) in body.split(|&b| b == b'\n').enumerate() {
        let line_no = i + 1;
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let line = match std::str::from_utf8(raw) {
            Ok(l) => l,
            Err(e) => {
                out.errors.push(ParseError {
                    line: line_no,
                    col: e.valid_up_to() + 1,
                    message: "invalid UTF-8".into(),
                });
                continue;
            }
        };
        let trimmed = line.trim_start_matches([' ', '\t']);
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            match comment_line(comment) {
                Comment::Type(name, kind) => {
                    types.insert(name, kind);
                }
                Comment::BadType(what) => out.errors.push(ParseError {
                    line: line_no,
                    col: 1,
                    message: format!("unknown metric type '{what}'"),
                }),
                Comment::Eof => break,
                Comment::Other => {}
            }
            continue;
        }
        let indent = line.len() - trimmed.len();
        match sample_line(trimmed, format) {
            Ok(mut s) => {
                s.kind = family_type(&types, s.name);
                out.samples.push(s);
            }
            Err((at, message)) => out.errors.push(ParseError {
                line: line_no,
                col: indent + at + 1,
                message,
            }),
        }
    }
    out
}

enum Comment<'a> {
    Type(&'a str, MetricType),
    BadType(&'a str),
    Eof,
    Other,
}

/// Reads the text after `#`.
fn comment_line(c: &str) -> Comment<'_> {
    let mut words = c.split_ascii_whitespace();
    match words.next() {
        Some("TYPE") => match (words.next(), words.next()) {
            (Some(name), Some(kind)) => match MetricType::parse(kind) {
                Some(k) => Comment::Type(name, k),
                None => Comment::BadType(kind),
            },
            _ => Comment::Other,
        },
        Some("EOF") if words.next().is_none() => Comment::Eof,
        _ => Comment::Other,
    }
}

/// The type of the family `name` belongs to: its own `# TYPE`, or that of the
/// name without a suffix its family type allows (`x_bucket` → `x` histogram).
fn family_type(types: &HashMap<&str, MetricType>, name: &str) -> MetricType {
    if let Some(t) = types.get(name) {
        return *t;
    }
    for suffix in [
        "_bucket", "_sum", "_count", "_total", "_created", "_gsum", "_gcount", "_info",
    ] {
        if let Some(base) = name.strip_suffix(suffix)
            && let Some(t) = types.get(base)
            && t.suffixes().contains(&suffix)
        {
            return *t;
        }
    }
    MetricType::Untyped
}

type LineResult<'a> = Result<ParsedSample<'a>, (usize, String)>;

/// Reads one sample line (no leading blanks, no line end). Errors carry the byte
/// offset in `line`.
fn sample_line(line: &str, format: Format) -> LineResult<'_> {
    let b = line.as_bytes();
    let name_end = b
        .iter()
        .position(|&c| !(c.is_ascii_alphanumeric() || c == b'_' || c == b':'))
        .unwrap_or(b.len());
    let name = &line[..name_end];
    if name.is_empty() || b[0].is_ascii_digit() {
        let msg = if b.first() == Some(&b'{') {
            "a metric name must come before '{' (quoted UTF-8 names are not supported)"
        } else {
            "expected a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
        };
        return Err((0, msg.into()));
    }
    let mut pos = name_end;
    let mut labels = Vec::new();
    let brace = skip_blanks(b, pos);
    if b.get(brace) == Some(&b'{') {
        pos = label_set(line, brace + 1, &mut labels)?;
    }
    let after = skip_blanks(b, pos);
    if after == pos && after < b.len() {
        return Err((pos, "expected a space before the value".into()));
    }
    pos = after;
    let (value_text, end) = word(line, pos);
    if value_text.is_empty() {
        return Err((pos, "expected a value".into()));
    }
    let value = parse_value(value_text)
        .ok_or_else(|| (pos, format!("invalid value '{}'", shorten(value_text))))?;
    pos = skip_blanks(b, end);

    let mut timestamp_ms = None;
    if pos < b.len() && b[pos] != b'#' {
        let (ts_text, end) = word(line, pos);
        timestamp_ms = Some(
            parse_timestamp(ts_text, format)
                .ok_or_else(|| (pos, format!("invalid timestamp '{}'", shorten(ts_text))))?,
        );
        pos = skip_blanks(b, end);
    }
    // ` # {...} 1.0` is an OpenMetrics exemplar; it is not a sample of its own.
    if pos < b.len() && b[pos] != b'#' {
        return Err((pos, "unexpected text after the sample".into()));
    }
    Ok(ParsedSample {
        name,
        labels,
        value,
        timestamp_ms,
        kind: MetricType::Untyped,
    })
}

/// Reads labels after `{` up to and including `}`; returns the offset after `}`.
fn label_set<'a>(
    line: &'a str,
    mut pos: usize,
    labels: &mut Vec<(&'a str, Cow<'a, str>)>,
) -> Result<usize, (usize, String)> {
    let b = line.as_bytes();
    loop {
        pos = skip_blanks(b, pos);
        match b.get(pos) {
            None => return Err((pos, "missing '}' after the labels".into())),
            Some(b'}') => return Ok(pos + 1),
            Some(_) => {}
        }
        let start = pos;
        if !(b[pos].is_ascii_alphabetic() || b[pos] == b'_') {
            return Err((pos, "expected a label name ([a-zA-Z_][a-zA-Z0-9_]*)".into()));
        }
        while pos < b.len() && (b[pos].is_ascii_alphanumeric() || b[pos] == b'_') {
            pos += 1;
        }
        let name = &line[start..pos];
        pos = skip_blanks(b, pos);
        if b.get(pos) != Some(&b'=') {
            return Err((pos, format!("expected '=' after label name '{name}'")));
        }
        pos = skip_blanks(b, pos + 1);
        if b.get(pos) != Some(&b'"') {
            return Err((
                pos,
                format!("expected '\"' to open the value of label '{name}'"),
            ));
        }
        let (value, next) = quoted(line, pos + 1).ok_or_else(|| {
            (
                pos,
                format!("the value of label '{name}' is not closed with '\"'"),
            )
        })?;
        if labels.iter().any(|(n, _)| *n == name) {
            return Err((start, format!("label '{name}' is given twice")));
        }
        labels.push((name, value));
        pos = skip_blanks(b, next);
        match b.get(pos) {
            Some(b',') => pos += 1,
            Some(b'}') => return Ok(pos + 1),
            _ => return Err((pos, "expected ',' or '}' after a label".into())),
        }
    }
}

/// Reads a quoted value starting after its `"`; returns it unescaped and the
/// offset after the closing `"`.
fn quoted(line: &str, start: usize) -> Option<(Cow<'_, str>, usize)> {
    let b = line.as_bytes();
    let mut pos = start;
    // Most values have no escapes: borrow them.
    while pos < b.len() {
        match b[pos] {
            b'"' => return Some((Cow::Borrowed(&line[start..pos]), pos + 1)),
            b'\\' => break,
            _ => pos += 1,
        }
    }
    let mut out = String::with_capacity(pos - start + 8);
    out.push_str(&line[start..pos]);
    let mut chunk = pos;
    while pos < b.len() {
        match b[pos] {
            b'"' => {
                out.push_str(&line[chunk..pos]);
                return Some((Cow::Owned(out), pos + 1));
            }
            b'\\' => {
                out.push_str(&line[chunk..pos]);
                match b.get(pos + 1) {
                    Some(b'\\') => out.push('\\'),
                    Some(b'"') => out.push('"'),
                    Some(b'n') => out.push('\n'),
                    // Kept as written; a multi-byte character after `\` is copied
                    // with the next chunk.
                    Some(_) => {
                        out.push('\\');
                        chunk = pos + 1;
                        pos += 1;
                        continue;
                    }
                    None => return None,
                }
                pos += 2;
                chunk = pos;
            }
            _ => pos += 1,
        }
    }
    None
}

fn skip_blanks(b: &[u8], mut pos: usize) -> usize {
    while pos < b.len() && (b[pos] == b' ' || b[pos] == b'\t') {
        pos += 1;
    }
    pos
}

/// The run of non-blank bytes at `pos`, and the offset after it.
fn word(line: &str, pos: usize) -> (&str, usize) {
    let b = line.as_bytes();
    let mut end = pos;
    while end < b.len() && b[end] != b' ' && b[end] != b'\t' {
        end += 1;
    }
    (&line[pos..end], end)
}

/// A sample value: a float, `NaN`, `+Inf`, `-Inf` (any case, as Go's parser).
fn parse_value(s: &str) -> Option<f64> {
    if let Ok(v) = s.parse::<f64>() {
        return Some(v);
    }
    // Go also reads hex integers written by some exporters (`0x1F`).
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let hex = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))?;
    let v = u64::from_str_radix(hex, 16).ok()? as f64;
    Some(if neg { -v } else { v })
}

fn parse_timestamp(s: &str, format: Format) -> Option<i64> {
    if let Ok(ms) = s.parse::<i64>() {
        return Some(match format {
            Format::Prometheus => ms,
            Format::OpenMetrics => ms.checked_mul(1000)?,
        });
    }
    let secs = s.parse::<f64>().ok().filter(|v| v.is_finite())?;
    let ms = match format {
        // A float in the Prometheus format is not allowed, but it can only mean ms.
        Format::Prometheus => secs,
        Format::OpenMetrics => secs * 1000.0,
    };
    (ms.abs() < 9.2e18).then_some(ms.round() as i64)
}

/// At most 40 characters of `s`, for messages.
fn shorten(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(40) {
        Some((i, _)) => Cow::Owned(format!("{}…", &s[..i])),
        None => Cow::Borrowed(s),
    }
}

#[cfg(test)]
#[path = "parse_tests.rs"]
mod tests;
