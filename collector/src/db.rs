//! What the database and cluster collectors (`postgres`, `pgbouncer`, `mysql`,
//! `redis`, `sentinel`, `patroni`, `etcd`) share: secrets given inline, by
//! environment variable or by file; the `*_up` and `*_error_info` samples; a
//! run bounded by the time budget that keeps its connection only while it works.
//!
//! A target that is down, refuses the credentials or answers too slowly is data,
//! not a collector error: the run writes `KIND_up 0` and
//! `KIND_error_info{reason,message} 1` (with the reasons of [`crate::probe`]) and
//! none of its other metrics, so a down target drops out of `series()` at once.

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::model::{Labels, Sample};

use crate::common::SampleBuf;
use crate::probe::{self, Failure, Reason};

/// A password or other secret. `Debug` does not show it, so it never reaches a
/// log line or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The three ways to give one secret: `KEY = "…"`, `KEY_env = "VAR"`,
/// `KEY_file = "PATH"` (the file's content without its final newline).
#[derive(Debug, Clone, Copy)]
pub(crate) struct SecretKeys<'a> {
    /// The key's base name, for messages (`password`).
    pub key: &'static str,
    pub inline: Option<&'a Spanned<String>>,
    pub env: Option<&'a Spanned<String>>,
    pub file: Option<&'a Spanned<PathBuf>>,
}

impl SecretKeys<'_> {
    /// Where the secret comes from, `None` inside when none is given; the outer
    /// `None` when a problem was reported. The variable or file is read when a
    /// connection is opened, not here: a rotated password is picked up on the
    /// next connection, and `warden config check` works without the secrets.
    pub(crate) fn resolve(self, problems: &mut Vec<Problem>) -> Option<Option<SecretSource>> {
        let key = self.key;
        let given = [
            self.inline.map(Spanned::span),
            self.env.map(Spanned::span),
            self.file.map(Spanned::span),
        ];
        let mut spans = given.iter().flatten();
        if let (Some(_), Some(second)) = (spans.next(), spans.next()) {
            problems.push(Problem::at(
                second.clone(),
                format!("give only one of '{key}', '{key}_env' and '{key}_file'"),
            ));
            return None;
        }
        if let Some(var) = self.env
            && var.get_ref().trim().is_empty()
        {
            problems.push(Problem::at(
                var.span(),
                format!("'{key}_env' is empty: name an environment variable"),
            ));
            return None;
        }
        Some(if let Some(v) = self.inline {
            Some(SecretSource::Inline(Secret(v.get_ref().clone())))
        } else if let Some(var) = self.env {
            Some(SecretSource::Env(var.get_ref().clone()))
        } else {
            self.file.map(|f| SecretSource::File(f.get_ref().clone()))
        })
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone)]
pub(crate) enum SecretSource {
    Inline(Secret),
    Env(String),
    File(PathBuf),
}

impl SecretSource {
    /// The secret now: an unset variable or an unreadable file fails the run
    /// with `reason="auth"` and says which.
    pub(crate) fn read(&self) -> Result<Secret, Failure> {
        match self {
            SecretSource::Inline(s) => Ok(s.clone()),
            SecretSource::Env(var) => std::env::var(var).map(Secret).map_err(|_| {
                Failure::new(
                    Reason::Auth,
                    format!("password_env: the environment variable '{var}' is not set"),
                )
            }),
            SecretSource::File(path) => match std::fs::read_to_string(path) {
                Ok(text) => {
                    let text = text.strip_suffix('\n').unwrap_or(&text);
                    let text = text.strip_suffix('\r').unwrap_or(text);
                    Ok(Secret(text.to_string()))
                }
                Err(e) => Err(Failure::new(
                    Reason::Auth,
                    format!("password_file: cannot read '{}': {e}", path.display()),
                )),
            },
        }
    }
}

/// The keys every database entry has besides the common ones: the password in
/// its three forms. Flattening is not possible with spanned strict parsing, so
/// each config struct repeats these fields and hands them over here.
pub(crate) fn password<'a>(
    inline: &'a Option<Spanned<String>>,
    env: &'a Option<Spanned<String>>,
    file: &'a Option<Spanned<PathBuf>>,
) -> SecretKeys<'a> {
    SecretKeys {
        key: "password",
        inline: inline.as_ref(),
        env: env.as_ref(),
        file: file.as_ref(),
    }
}

/// The names of a kind's two outcome series.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Outcome {
    /// `pg_up`, `mysql_up`, …
    pub up: &'static str,
    /// `pg_error_info`, …
    pub error: &'static str,
}

impl Outcome {
    /// The samples of one run: on success `up 1` and what was collected; on
    /// failure `up 0` and the reason, and nothing else.
    pub(crate) fn samples(
        self,
        now: warden_engine::model::Timestamp,
        result: Result<Vec<Sample>, Failure>,
    ) -> Vec<Sample> {
        let mut out = SampleBuf::new(now);
        match result {
            Ok(samples) => {
                out.add(self.up, Labels::empty(), 1.0);
                let mut all = out.into_samples();
                all.extend(samples.into_iter().map(|mut s| {
                    s.ts = now;
                    s
                }));
                all
            }
            Err(f) => {
                out.add(self.up, Labels::empty(), 0.0);
                out.add(self.error, probe::error_labels(&f), 1.0);
                out.into_samples()
            }
        }
    }
}

/// Runs `work` within `budget`; a run that takes longer fails with
/// `reason="timeout"`.
pub(crate) async fn within<T>(
    budget: Duration,
    what: &str,
    work: impl Future<Output = Result<T, Failure>>,
) -> Result<T, Failure> {
    match tokio::time::timeout(budget, work).await {
        Ok(r) => r,
        Err(_) => Err(Failure::new(
            Reason::Timeout,
            format!("{what} did not answer within {}", HumanDuration(budget)),
        )),
    }
}

/// A value of a text result column as a number: `t`/`f`, `on`/`off`, `yes`/`no`
/// as 1/0, numbers as they are; `None` for NULL and anything else.
pub(crate) fn number(text: Option<&str>) -> Option<f64> {
    let t = text?.trim();
    match t.to_ascii_lowercase().as_str() {
        "t" | "true" | "on" | "yes" => Some(1.0),
        "f" | "false" | "off" | "no" => Some(0.0),
        _ => t.parse::<f64>().ok(),
    }
}

/// A label set from pairs whose names are literals of this crate.
pub(crate) fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    match Labels::new(pairs.iter().copied()) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(error = %e, "collector bug: invalid label name");
            Labels::empty()
        }
    }
}

/// Collects named samples before the run knows whether it succeeds.
#[derive(Default)]
pub(crate) struct Found {
    samples: Vec<Sample>,
}

impl Found {
    /// Adds one sample (its time is set when the run ends).
    pub(crate) fn add(&mut self, name: &'static str, labels: Labels, value: f64) {
        let mut buf = SampleBuf::new(0);
        buf.add(name, labels, value);
        self.samples.extend(buf.into_samples());
    }

    /// Adds a sample when the value is known.
    pub(crate) fn add_opt(&mut self, name: &'static str, labels: Labels, value: Option<f64>) {
        if let Some(v) = value {
            self.add(name, labels, v);
        }
    }

    /// A 1/0 sample.
    pub(crate) fn flag(&mut self, name: &'static str, labels: Labels, on: bool) {
        self.add(name, labels, if on { 1.0 } else { 0.0 });
    }

    pub(crate) fn into_samples(self) -> Vec<Sample> {
        self.samples
    }
}
