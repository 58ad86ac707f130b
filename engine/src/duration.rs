//! Durations as users write them: `"500ms"`, `"30s"`, `"5m"`, `"1h30m"`, `"15d"`.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Parses a duration written like `"30s"`, `"5m"`, `"1h30m"` or `"15d"`.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration: write e.g. '30s', '5m', '1h'".into());
    }
    if t.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "duration '{s}' has no unit: write e.g. '{t}s' or '{t}m'"
        ));
    }
    humantime::parse_duration(t).map_err(|e| {
        format!("invalid duration '{s}' ({e}): write e.g. '30s', '5m', '1h30m', '15d'")
    })
}

/// Formats a duration compactly (`90s` → `1m30s`).
pub fn format(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [
        ("d", 86_400_000u64),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
        ("ms", 1),
    ] {
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// A duration in config files, parsed from a string such as `"30s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse(&s)
            .map(HumanDuration)
            .map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_prometheus_style() {
        assert_eq!(parse("30s").unwrap(), Duration::from_secs(30));
        assert_eq!(parse("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("15d").unwrap(), Duration::from_secs(15 * 86400));
        assert_eq!(parse("500ms").unwrap(), Duration::from_millis(500));
        assert!(parse("30").unwrap_err().contains("no unit"));
        assert!(parse("fast").is_err());
        assert!(parse("").is_err());
    }

    #[test]
    fn formats_compactly() {
        assert_eq!(format(Duration::from_secs(90)), "1m30s");
        assert_eq!(format(Duration::from_millis(1500)), "1s500ms");
        assert_eq!(format(Duration::ZERO), "0s");
    }
}
