//! What the HTTP notifiers share: one client, the classification of answers into
//! retryable and permanent failures, `Retry-After`, and URL redaction (webhook
//! URLs carry secrets).

use std::time::Duration;

use warden_engine::ports::NotifyError;

/// The client every HTTP notifier uses: rustls with the system's roots, no
/// redirects (a receiver that redirects is misconfigured, and a redirect could
/// leak the payload), and a connect timeout. The whole request is bounded by the
/// delivery timeout of the engine.
pub fn client() -> Result<reqwest::Client, String> {
    // reqwest is built without a crypto provider; the binary installs ring first
    // thing, and this makes library users and tests work the same way.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("warden/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `Retry-After` in seconds (or an HTTP date, treated as 60 s).
pub fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && s >= 0.0 => Some(Duration::from_secs_f64(s.min(86_400.0))),
        _ => Some(Duration::from_secs(60)),
    }
}

/// A network error (no answer): always retryable. `scrub` removes secrets.
pub fn network_error(e: &reqwest::Error, scrub: impl Fn(&str) -> String) -> NotifyError {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    NotifyError::Retryable {
        reason: scrub(&redact_urls(&msg)),
        retry_after: None,
    }
}

/// Classifies a non-2xx answer: 429 and 5xx (and 408) are retryable, honouring
/// `Retry-After`; other 4xx are permanent.
pub fn status_error(
    status: reqwest::StatusCode,
    headers: &reqwest::header::HeaderMap,
    body: &str,
) -> NotifyError {
    let body = truncate(body.trim(), 300);
    let reason = if body.is_empty() {
        format!("HTTP {status}")
    } else {
        format!("HTTP {status}: {body}")
    };
    if status == reqwest::StatusCode::TOO_MANY_REQUESTS
        || status == reqwest::StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
    {
        NotifyError::Retryable {
            reason,
            retry_after: retry_after(headers),
        }
    } else {
        NotifyError::Permanent { reason }
    }
}

/// `s` cut to at most `max` characters, with `…` when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Replaces the path and query of every URL in `s` with `…`, keeping scheme and
/// host, so a webhook URL's token never reaches a log.
pub fn redact_urls(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find("://") {
        let start = rest[..i]
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '+' || c == '.' || c == '-'))
            .map_or(0, |p| p + 1);
        out.push_str(&rest[..start]);
        let url = &rest[start..];
        let end = url
            .find(|c: char| c.is_whitespace() || c == ')' || c == '"' || c == '\'')
            .unwrap_or(url.len());
        let (u, tail) = url.split_at(end);
        let after_scheme = u.find("://").map_or(0, |p| p + 3);
        match u[after_scheme..].find('/') {
            Some(p) if after_scheme + p + 1 < u.len() => {
                out.push_str(&u[..after_scheme + p]);
                out.push_str("/…");
            }
            _ => out.push_str(u),
        }
        rest = tail;
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_paths() {
        assert_eq!(
            redact_urls(
                "error sending request for url (https://hooks.slack.com/services/T0/B0/secret): timed out"
            ),
            "error sending request for url (https://hooks.slack.com/…): timed out"
        );
        assert_eq!(redact_urls("http://127.0.0.1:9/"), "http://127.0.0.1:9/");
        assert_eq!(redact_urls("no url"), "no url");
    }

    #[test]
    fn statuses_are_classified() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("retry-after", "7".parse().unwrap());
        match status_error(reqwest::StatusCode::TOO_MANY_REQUESTS, &h, "slow down") {
            NotifyError::Retryable { retry_after, .. } => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)))
            }
            e => panic!("{e:?}"),
        }
        assert!(matches!(
            status_error(reqwest::StatusCode::BAD_GATEWAY, &Default::default(), ""),
            NotifyError::Retryable { .. }
        ));
        assert!(matches!(
            status_error(
                reqwest::StatusCode::BAD_REQUEST,
                &Default::default(),
                "invalid"
            ),
            NotifyError::Permanent { .. }
        ));
        assert_eq!(truncate("abcdef", 4), "abc…");
    }
}
