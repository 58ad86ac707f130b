//! Metric names and label sets, validated once when they are made.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a metric name or label set was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LabelsError {
    /// The metric name does not match `[a-zA-Z_:][a-zA-Z0-9_:]*`.
    #[error(
        "invalid metric name '{0}': use letters, digits, '_' and ':', not starting with a digit"
    )]
    MetricName(String),
    /// The label name does not match `[a-zA-Z_][a-zA-Z0-9_]*`.
    #[error("invalid label name '{0}': use letters, digits and '_', not starting with a digit")]
    LabelName(String),
    /// The same label name was given twice with different values.
    #[error("label '{0}' given twice")]
    Duplicate(String),
}

/// A Prometheus-style metric name (`[a-zA-Z_:][a-zA-Z0-9_:]*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct MetricName(String);

impl MetricName {
    /// Validates `name` as a metric name.
    pub fn new(name: impl Into<String>) -> Result<Self, LabelsError> {
        let name = name.into();
        if is_metric_name(&name) {
            Ok(Self(name))
        } else {
            Err(LabelsError::MetricName(name))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MetricName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for MetricName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        MetricName::new(s).map_err(serde::de::Error::custom)
    }
}

/// True when `s` is a valid metric name.
pub fn is_metric_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// True when `s` is a valid label name.
pub fn is_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A label set: names validated, sorted by name, each name at most once.
///
/// Empty values are dropped, as in Prometheus, where a label with an empty value is
/// the same as no label.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Labels(Vec<(String, String)>);

impl Labels {
    /// An empty label set.
    pub fn empty() -> Self {
        Self(Vec::new())
    }

    /// Builds a label set from pairs; names are validated, duplicates refused.
    pub fn new<K, V, I>(pairs: I) -> Result<Self, LabelsError>
    where
        K: Into<String>,
        V: Into<String>,
        I: IntoIterator<Item = (K, V)>,
    {
        let mut v: Vec<(String, String)> = Vec::new();
        for (k, val) in pairs {
            let (k, val) = (k.into(), val.into());
            if !is_label_name(&k) {
                return Err(LabelsError::LabelName(k));
            }
            if val.is_empty() {
                continue;
            }
            v.push((k, val));
        }
        v.sort();
        for w in v.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(LabelsError::Duplicate(w[0].0.clone()));
            }
        }
        Ok(Self(v))
    }

    /// The value of label `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| k.as_str().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_str())
    }

    /// Sets `name` to `value` (replacing any value; an empty value removes it).
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), LabelsError> {
        if !is_label_name(name) {
            return Err(LabelsError::LabelName(name.to_string()));
        }
        match self.0.binary_search_by(|(k, _)| k.as_str().cmp(name)) {
            Ok(i) if value.is_empty() => {
                self.0.remove(i);
            }
            Ok(i) => self.0[i].1 = value.to_string(),
            Err(_) if value.is_empty() => {}
            Err(i) => self.0.insert(i, (name.to_string(), value.to_string())),
        }
        Ok(())
    }

    /// Removes label `name`.
    pub fn remove(&mut self, name: &str) {
        self.0.retain(|(k, _)| k != name);
    }

    /// This set with every label of `other` added, `other` winning on conflicts.
    pub fn merged(&self, other: &Labels) -> Labels {
        let mut out = self.clone();
        for (k, v) in other.iter() {
            // Names in `other` are already valid.
            let _ = out.set(k, v);
        }
        out
    }

    /// Only the labels named in `keep`.
    pub fn keep_only(&self, keep: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// Every label except those named in `drop`.
    pub fn without(&self, drop: &[&str]) -> Labels {
        Labels(
            self.0
                .iter()
                .filter(|(k, _)| !drop.contains(&k.as_str()))
                .cloned()
                .collect(),
        )
    }

    /// The pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// Number of labels.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there is no label.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A canonical text form, `{a="1",b="2"}`, used as a key and in logs.
    pub fn to_key(&self) -> String {
        let mut s = String::with_capacity(2 + self.0.len() * 16);
        s.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            s.push_str(k);
            s.push_str("=\"");
            for c in v.chars() {
                match c {
                    '\\' => s.push_str("\\\\"),
                    '"' => s.push_str("\\\""),
                    '\n' => s.push_str("\\n"),
                    c => s.push(c),
                }
            }
            s.push('"');
        }
        s.push('}');
        s
    }
}

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_key())
    }
}

impl Serialize for Labels {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let m = std::collections::BTreeMap::<String, String>::deserialize(d)?;
        Labels::new(m).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_sorted_and_validated() {
        let l = Labels::new([("b", "2"), ("a", "1")]).unwrap();
        assert_eq!(l.to_key(), r#"{a="1",b="2"}"#);
        assert_eq!(l.get("a"), Some("1"));
        assert_eq!(l.get("c"), None);
        assert!(matches!(
            Labels::new([("1a", "x")]),
            Err(LabelsError::LabelName(_))
        ));
        assert!(matches!(
            Labels::new([("a", "x"), ("a", "y")]),
            Err(LabelsError::Duplicate(_))
        ));
    }

    #[test]
    fn empty_values_mean_no_label() {
        let mut l = Labels::new([("a", ""), ("b", "2")]).unwrap();
        assert_eq!(l.len(), 1);
        l.set("b", "").unwrap();
        assert!(l.is_empty());
    }

    #[test]
    fn merged_prefers_other_and_escapes_keys() {
        let a = Labels::new([("a", "1"), ("b", "x\"y")]).unwrap();
        let b = Labels::new([("a", "2")]).unwrap();
        let m = a.merged(&b);
        assert_eq!(m.to_key(), r#"{a="2",b="x\"y"}"#);
        assert_eq!(m.keep_only(&["b"]).len(), 1);
        assert_eq!(m.without(&["b"]).to_key(), r#"{a="2"}"#);
    }

    #[test]
    fn metric_names() {
        assert!(MetricName::new("job:http_requests:rate5m").is_ok());
        assert!(MetricName::new("9x").is_err());
        assert!(MetricName::new("").is_err());
    }
}
