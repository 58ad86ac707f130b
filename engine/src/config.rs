//! The engine's part of the config file (`[server]`, `[store]`, `[rules]`) and the
//! error type every part of the config reports with.
//!
//! Parsing is strict (`deny_unknown_fields`): a typo must fail, not fall back to a
//! default. Values are checked while they are parsed where possible, so the TOML
//! parser reports their position; checks across fields return a [`Problem`] with
//! the span of the entry.

use std::ops::Range;
use std::path::PathBuf;

use serde::Deserialize;

use crate::duration::HumanDuration;

/// One thing wrong with a config file, found after parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Byte range in the file the problem is about, if known.
    pub span: Option<Range<usize>>,
    /// What is wrong and what to do about it, values in single quotes.
    pub message: String,
}

impl Problem {
    /// A problem at `span`.
    pub fn at(span: Range<usize>, message: impl Into<String>) -> Self {
        Self {
            span: Some(span),
            message: message.into(),
        }
    }

    /// A problem with no position.
    pub fn general(message: impl Into<String>) -> Self {
        Self {
            span: None,
            message: message.into(),
        }
    }
}

/// `[server]`: the HTTP API.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address to listen on. Default `127.0.0.1:9470`.
    #[serde(default = "default_listen")]
    pub listen: toml::Spanned<String>,
    /// `[[server.token]]`: bearer tokens and their roles. Without any, the API is
    /// open and only listens on loopback.
    #[serde(default)]
    pub token: Vec<toml::Spanned<crate::api::auth::TokenEntry>>,
    /// Require a `read` token for `/metrics` too. Default `false`.
    #[serde(default)]
    pub metrics_auth: bool,
    /// `[server.tls]`: serve HTTPS.
    #[serde(default)]
    pub tls: Option<toml::Spanned<crate::api::auth::TlsEntry>>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: toml::Spanned::new(0..0, default_listen_str()),
            token: Vec::new(),
            metrics_auth: false,
            tls: None,
        }
    }
}

fn default_listen_str() -> String {
    "127.0.0.1:9470".into()
}

fn default_listen() -> toml::Spanned<String> {
    toml::Spanned::new(0..0, default_listen_str())
}

/// `[store]`: the SQLite file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Path of the database file. Default `warden.db` (relative to the working
    /// directory).
    #[serde(default = "default_store_path")]
    pub path: PathBuf,
    /// How long samples are kept. Default `15d`.
    #[serde(default = "default_retention")]
    pub retention: HumanDuration,
    /// How much recent data is kept in memory for rules and queries. Default `1h`.
    #[serde(default = "default_head")]
    pub head: HumanDuration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: default_store_path(),
            retention: default_retention(),
            head: default_head(),
        }
    }
}

fn default_store_path() -> PathBuf {
    PathBuf::from("warden.db")
}

fn default_retention() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(15 * 86_400))
}

fn default_head() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(3_600))
}

/// `[rules]`: where the rule files are and how often rules run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesConfig {
    /// Files or directories of `*.rhai`, relative to the config file.
    #[serde(default)]
    pub paths: Vec<toml::Spanned<PathBuf>>,
    /// Default evaluation interval. Default `10s`.
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// Also load the built-in host rule pack. Default `false` with a config file.
    #[serde(default)]
    pub builtin_host: bool,
    /// Also run `Watchdog`, an info alert that always fires, for receivers that
    /// expect one (a dead man's switch on their side). Default `false`.
    #[serde(default)]
    pub watchdog: bool,
}

impl Default for RulesConfig {
    fn default() -> Self {
        Self {
            paths: Vec::new(),
            interval: default_interval(),
            builtin_host: false,
            watchdog: false,
        }
    }
}

fn default_interval() -> HumanDuration {
    HumanDuration(std::time::Duration::from_secs(10))
}

/// Converts a byte offset in `text` to a 1-based `(line, column)`; the column counts
/// characters.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..text.floor_char_boundary(offset)];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_is_one_based() {
        let t = "a = 1\nbé = 2\n";
        assert_eq!(line_col(t, 0), (1, 1));
        assert_eq!(line_col(t, 6), (2, 1));
        assert_eq!(line_col(t, 9), (2, 3));
        assert_eq!(line_col(t, 1000), (3, 1));
    }
}
