//! Alerts: identity, state and what users see of them.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{Labels, Severity, Timestamp};

/// Rendered texts of an alert: `summary`, `description`, `runbook`, and any others.
pub type Annotations = BTreeMap<String, String>;

/// An alert's identity: a stable 64-bit hash of rule name + labels.
///
/// It is the PagerDuty `dedup_key`, the Slack thread key and the outbox
/// idempotency key, so it must never change between releases: it is FNV-1a over
/// the rule name and the canonical label text, which depends on nothing else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fingerprint(pub u64);

impl Fingerprint {
    /// The fingerprint of the alert instance of `rule` with `labels`.
    pub fn of(rule: &str, labels: &Labels) -> Self {
        const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
        const PRIME: u64 = 0x0000_0100_0000_01b3;
        let mut h = OFFSET;
        let mut feed = |bytes: &[u8]| {
            for b in bytes {
                h ^= u64::from(*b);
                h = h.wrapping_mul(PRIME);
            }
        };
        feed(rule.as_bytes());
        feed(&[0xff]);
        for (k, v) in labels.iter() {
            feed(k.as_bytes());
            feed(&[0xfe]);
            feed(v.as_bytes());
            feed(&[0xff]);
        }
        Fingerprint(h)
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl FromStr for Fingerprint {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        u64::from_str_radix(s, 16)
            .map(Fingerprint)
            .map_err(|_| format!("invalid fingerprint '{s}': expected 16 hex digits"))
    }
}

impl Serialize for Fingerprint {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Fingerprint {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Where an alert instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AlertState {
    /// The condition holds, but not yet for `pending_for`.
    Pending,
    /// The condition has held for `pending_for` (or is held by `keep_firing_for`).
    Firing,
    /// It was firing and has stopped.
    Resolved,
}

impl AlertState {
    /// The lowercase name used in the API and the store.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

impl FromStr for AlertState {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pending" => Ok(AlertState::Pending),
            "firing" => Ok(AlertState::Firing),
            "resolved" => Ok(AlertState::Resolved),
            o => Err(format!("invalid alert state '{o}'")),
        }
    }
}

impl fmt::Display for AlertState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One active (pending or firing) alert instance, as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// The rule's name (also the `alertname` label).
    pub name: String,
    /// Pending or firing.
    pub state: AlertState,
    /// The severity (also the `severity` label).
    pub severity: Severity,
    /// All labels: the series', the rule's, `alertname` and `severity`.
    pub labels: Labels,
    /// Rendered `summary`, `description`, `runbook`.
    pub annotations: Annotations,
    /// The value of the newest evaluation.
    pub value: f64,
    /// Identity of this instance.
    pub fingerprint: Fingerprint,
    /// When the instance became active (pending); never moves while active.
    pub since: Timestamp,
    /// When it started firing, if it has.
    pub fired_at: Option<Timestamp>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_is_stable() {
        let l = Labels::new([("instance", "db-1"), ("severity", "critical")]).unwrap();
        // Pinned: changing the hash would re-page every open incident.
        assert_eq!(
            Fingerprint::of("PgLag", &l).to_string(),
            format!("{:016x}", Fingerprint::of("PgLag", &l).0)
        );
        assert_ne!(Fingerprint::of("PgLag", &l), Fingerprint::of("PgLag2", &l));
        let fp = Fingerprint::of("PgLag", &l);
        assert_eq!(fp.to_string().parse::<Fingerprint>().unwrap(), fp);
        assert_eq!(
            Fingerprint::of("a", &Labels::empty()).to_string(),
            "089bc907b544c769"
        );
    }
}
