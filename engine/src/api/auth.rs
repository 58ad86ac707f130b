//! Access control for the HTTP API: bearer tokens from config, each with a role.
//!
//! Roles are ordered `read < operate < admin`. Every request is classified by
//! [`classify`]: `/healthz` is open, `/metrics` is open unless `metrics_auth` is set,
//! webhook sources authenticate themselves (per-source token or HMAC), `GET`/`HEAD`
//! (the event stream included) need `read`, acknowledging, silencing and acting on
//! remediation need `operate`, and every other change (config reload, anything not
//! listed) needs `admin`: a new endpoint is locked down until it is classified.
//!
//! Tokens are kept only as SHA-256 digests and compared in constant time; their text
//! never reaches a log line or a `Debug` string.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use crate::config::Problem;

/// What a token may do. Ordered: each role may do everything of the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// `GET` endpoints and the event stream.
    Read,
    /// `read`, plus acks, silences, approving and running actions.
    Operate,
    /// Everything, config reload included.
    Admin,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Read => "read",
            Role::Operate => "operate",
            Role::Admin => "admin",
        })
    }
}

/// A secret string: `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `s`.
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    /// The secret text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Where a secret comes from in config: an environment variable or a file (the
/// secret itself never sits in the config file).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SecretSource {
    /// Name of an environment variable holding the secret.
    pub env: Option<String>,
    /// A file holding the secret (surrounding whitespace is trimmed).
    pub file: Option<PathBuf>,
}

impl SecretSource {
    /// Reads the secret; `what` names it in errors (e.g. `token 'oncall'`). Relative
    /// files are resolved against `base`.
    pub fn resolve(&self, what: &str, env_key: &str, base: &Path) -> Result<Secret, String> {
        let file_key = env_key.replace("_env", "_file");
        let text = match (&self.env, &self.file) {
            (Some(_), Some(_)) => {
                return Err(format!(
                    "{what}: set either '{env_key}' or '{file_key}', not both"
                ));
            }
            (None, None) => {
                return Err(format!("{what}: set '{env_key}' or '{file_key}'"));
            }
            (Some(var), None) => std::env::var(var).map_err(|_| {
                format!("{what}: the environment variable '{var}' is not set or not UTF-8")
            })?,
            (None, Some(path)) => {
                let path = if path.is_absolute() {
                    path.clone()
                } else {
                    base.join(path)
                };
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("{what}: cannot read '{}': {e}", path.display()))?
            }
        };
        let text = text.trim();
        if text.len() < 16 {
            return Err(format!(
                "{what}: the secret is {} characters long; use at least 16 (e.g. `openssl rand -hex 32`)",
                text.len()
            ));
        }
        Ok(Secret::new(text))
    }
}

/// One `[[server.token]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenEntry {
    /// Who holds the token (shown in logs and audit rows, never the token).
    pub name: String,
    /// What the token may do.
    pub role: Role,
    /// Environment variable holding the token.
    pub token_env: Option<String>,
    /// File holding the token.
    pub token_file: Option<PathBuf>,
}

/// `[server.tls]`: serve HTTPS with these PEM files.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsEntry {
    /// Certificate chain (PEM), leaf first.
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The caller a request was authenticated as; handlers find it in the request's
/// extensions (e.g. to fill an ack's `by`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// The token's name (`anonymous` when the API is open).
    pub name: String,
    /// The token's role.
    pub role: Role,
}

struct Token {
    name: String,
    role: Role,
    digest: [u8; 32],
}

/// The access rules of a running API.
pub struct Auth {
    tokens: Vec<Token>,
    metrics_auth: bool,
}

impl fmt::Debug for Auth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field(
                "tokens",
                &self
                    .tokens
                    .iter()
                    .map(|t| format!("{}:{}", t.name, t.role))
                    .collect::<Vec<_>>(),
            )
            .field("metrics_auth", &self.metrics_auth)
            .finish()
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, b);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

impl Auth {
    /// An API without tokens: everything open (only allowed on loopback).
    pub fn open() -> Self {
        Self {
            tokens: Vec::new(),
            metrics_auth: false,
        }
    }

    /// Access rules from resolved `(name, role, token)` triples.
    pub fn new(tokens: Vec<(String, Role, Secret)>, metrics_auth: bool) -> Self {
        Self {
            tokens: tokens
                .into_iter()
                .map(|(name, role, secret)| Token {
                    name,
                    role,
                    digest: sha256(secret.expose().as_bytes()),
                })
                .collect(),
            metrics_auth,
        }
    }

    /// Resolves `[[server.token]]` entries (reading env vars and files) into rules.
    /// Each problem points at its entry.
    pub fn from_config(
        entries: &[toml::Spanned<TokenEntry>],
        metrics_auth: bool,
        base: &Path,
    ) -> Result<Self, Vec<Problem>> {
        let mut problems = Vec::new();
        let mut tokens: Vec<(String, Role, Secret)> = Vec::new();
        for e in entries {
            let span = e.span();
            let t = e.get_ref();
            if t.name.trim().is_empty() {
                problems.push(Problem::at(span.clone(), "[[server.token]] needs a 'name'"));
                continue;
            }
            if tokens.iter().any(|(n, _, _)| *n == t.name) {
                problems.push(Problem::at(
                    span.clone(),
                    format!("token name '{}' is used twice", t.name),
                ));
                continue;
            }
            let src = SecretSource {
                env: t.token_env.clone(),
                file: t.token_file.clone(),
            };
            match src.resolve(&format!("token '{}'", t.name), "token_env", base) {
                Ok(s) => {
                    if tokens.iter().any(|(_, _, other)| *other == s) {
                        problems.push(Problem::at(
                            span.clone(),
                            format!(
                                "token '{}' has the same secret as another token: give each its own",
                                t.name
                            ),
                        ));
                        continue;
                    }
                    tokens.push((t.name.clone(), t.role, s));
                }
                Err(m) => problems.push(Problem::at(span.clone(), m)),
            }
        }
        if metrics_auth && entries.is_empty() {
            problems.push(Problem::general(
                "[server].metrics_auth needs at least one [[server.token]]",
            ));
        }
        if problems.is_empty() {
            Ok(Self::new(tokens, metrics_auth))
        } else {
            Err(problems)
        }
    }

    /// How many tokens are configured.
    pub fn token_count(&self) -> usize {
        self.tokens.len()
    }

    /// True when no token is configured (the API is open).
    pub fn is_open(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token matching `presented`, checking every token so the time taken does
    /// not tell which one matched.
    fn lookup(&self, presented: &str) -> Option<&Token> {
        let d = sha256(presented.as_bytes());
        let mut found = None;
        for t in &self.tokens {
            if constant_time_eq(&t.digest, &d) {
                found = Some(t);
            }
        }
        found
    }

    /// Decides a request: `Ok(caller)` or the error response.
    pub fn decide(
        &self,
        method: &Method,
        path: &str,
        authorization: Option<&HeaderValue>,
    ) -> Result<Caller, Box<Response>> {
        let need = match classify(method, path) {
            Access::Open => return Ok(anonymous()),
            Access::Metrics if !self.metrics_auth => return Ok(anonymous()),
            Access::Metrics => Role::Read,
            Access::SelfAuthenticated => return Ok(anonymous()),
            Access::Role(r) => r,
        };
        if self.is_open() {
            return Ok(Caller {
                name: "anonymous".into(),
                role: Role::Admin,
            });
        }
        let Some(value) = authorization else {
            return Err(unauthorized(
                "missing bearer token: send 'Authorization: Bearer TOKEN'",
            ));
        };
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, rest) = v.split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty());
        let Some(token) = token else {
            return Err(unauthorized(
                "malformed Authorization header: send 'Authorization: Bearer TOKEN'",
            ));
        };
        let Some(t) = self.lookup(token) else {
            return Err(unauthorized("unknown or revoked token"));
        };
        if t.role < need {
            return Err(Box::new(
                error(
                    StatusCode::FORBIDDEN,
                    &format!(
                        "token '{}' has role '{}'; {method} {path} needs '{need}'",
                        t.name, t.role
                    ),
                )
                .into_response(),
            ));
        }
        Ok(Caller {
            name: t.name.clone(),
            role: t.role,
        })
    }
}

fn anonymous() -> Caller {
    Caller {
        name: "anonymous".into(),
        role: Role::Read,
    }
}

fn error(status: StatusCode, reason: &str) -> (StatusCode, axum::Json<serde_json::Value>) {
    (status, axum::Json(serde_json::json!({ "error": reason })))
}

fn unauthorized(reason: &str) -> Box<Response> {
    let mut r = error(StatusCode::UNAUTHORIZED, reason).into_response();
    r.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"warden\""),
    );
    Box::new(r)
}

/// What a request needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Nothing (`/healthz`).
    Open,
    /// `/metrics`: open unless `metrics_auth`, then `read`.
    Metrics,
    /// The handler checks its own credentials (webhook sources).
    SelfAuthenticated,
    /// A bearer token with at least this role.
    Role(Role),
}

/// Classifies a request by method and path. Unknown changes need `admin`.
pub fn classify(method: &Method, path: &str) -> Access {
    let path = path.trim_end_matches('/');
    if path == "/healthz" {
        return Access::Open;
    }
    if path == "/metrics" {
        return Access::Metrics;
    }
    if *method == Method::GET || *method == Method::HEAD || *method == Method::OPTIONS {
        return Access::Role(Role::Read);
    }
    let segs: Vec<&str> = path.split('/').skip(1).collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["api", "v1", "webhook", source]) if !source.is_empty() => {
            Access::SelfAuthenticated
        }
        ("POST", ["api", "v2", "alerts"]) => Access::Role(Role::Operate),
        ("POST", ["api", "v1", "silences"]) | ("DELETE", ["api", "v1", "silences", _]) => {
            Access::Role(Role::Operate)
        }
        ("POST" | "DELETE", ["api", "v1", "alerts", _, "ack"]) => Access::Role(Role::Operate),
        ("POST", ["api", "v1", "actions", "run" | "pause" | "resume"]) => {
            Access::Role(Role::Operate)
        }
        ("POST", ["api", "v1", "actions", _, "approve" | "deny"]) => Access::Role(Role::Operate),
        _ => Access::Role(Role::Admin),
    }
}

/// The middleware: answers 401/403 with a JSON reason, or passes the request on with
/// its [`Caller`] in the extensions.
pub async fn check(State(auth): State<Arc<Auth>>, mut req: Request, next: Next) -> Response {
    match auth.decide(
        req.method(),
        req.uri().path(),
        req.headers().get(header::AUTHORIZATION),
    ) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(resp) => *resp,
    }
}

/// Wraps `router` in the access rules.
pub fn protect(router: axum::Router, auth: Arc<Auth>) -> axum::Router {
    router.layer(axum::middleware::from_fn_with_state(auth, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> Auth {
        Auth::new(
            vec![
                ("viewer".into(), Role::Read, Secret::new("r".repeat(20))),
                ("oncall".into(), Role::Operate, Secret::new("o".repeat(20))),
                ("root".into(), Role::Admin, Secret::new("a".repeat(20))),
            ],
            false,
        )
    }

    fn bearer(t: &str) -> HeaderValue {
        HeaderValue::from_str(&format!("Bearer {t}")).unwrap()
    }

    fn status(a: &Auth, m: Method, p: &str, h: Option<&HeaderValue>) -> u16 {
        match a.decide(&m, p, h) {
            Ok(_) => 200,
            Err(r) => r.status().as_u16(),
        }
    }

    #[test]
    fn every_route_is_classified() {
        use Access::*;
        let cases = [
            (Method::GET, "/healthz", Open),
            (Method::GET, "/metrics", Metrics),
            (Method::GET, "/api/v1/alerts", Role(super::Role::Read)),
            (Method::GET, "/api/v1/events", Role(super::Role::Read)),
            (Method::HEAD, "/api/v1/query", Role(super::Role::Read)),
            (
                Method::POST,
                "/api/v1/alerts/abc/ack",
                Role(super::Role::Operate),
            ),
            (
                Method::DELETE,
                "/api/v1/alerts/abc/ack",
                Role(super::Role::Operate),
            ),
            (Method::POST, "/api/v1/silences", Role(super::Role::Operate)),
            (
                Method::DELETE,
                "/api/v1/silences/7",
                Role(super::Role::Operate),
            ),
            (
                Method::POST,
                "/api/v1/actions/9/approve",
                Role(super::Role::Operate),
            ),
            (
                Method::POST,
                "/api/v1/actions/9/deny",
                Role(super::Role::Operate),
            ),
            (
                Method::POST,
                "/api/v1/actions/run",
                Role(super::Role::Operate),
            ),
            (
                Method::POST,
                "/api/v1/actions/pause",
                Role(super::Role::Operate),
            ),
            (Method::POST, "/api/v2/alerts", Role(super::Role::Operate)),
            (Method::POST, "/api/v1/webhook/ci", SelfAuthenticated),
            (Method::POST, "/api/v1/reload", Role(super::Role::Admin)),
            (Method::PUT, "/api/v1/silences", Role(super::Role::Admin)),
            (Method::DELETE, "/api/v1/alerts", Role(super::Role::Admin)),
            (Method::POST, "/api/v1/webhook/", Role(super::Role::Admin)),
        ];
        for (m, p, want) in cases {
            assert_eq!(classify(&m, p), want, "{m} {p}");
        }
    }

    #[test]
    fn missing_unknown_and_malformed_tokens_are_401() {
        let a = auth();
        assert_eq!(status(&a, Method::GET, "/api/v1/alerts", None), 401);
        assert_eq!(
            status(&a, Method::GET, "/api/v1/alerts", Some(&bearer("nope"))),
            401
        );
        let basic = HeaderValue::from_static("Basic dXNlcjpwYXNz");
        assert_eq!(status(&a, Method::GET, "/api/v1/alerts", Some(&basic)), 401);
        let empty = HeaderValue::from_static("Bearer ");
        assert_eq!(status(&a, Method::GET, "/api/v1/alerts", Some(&empty)), 401);
        let r = a.decide(&Method::GET, "/api/v1/alerts", None).unwrap_err();
        assert_eq!(
            r.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            "Bearer realm=\"warden\""
        );
    }

    #[test]
    fn roles_are_ordered() {
        let a = auth();
        let (r, o, ad) = (
            bearer(&"r".repeat(20)),
            bearer(&"o".repeat(20)),
            bearer(&"a".repeat(20)),
        );
        assert_eq!(status(&a, Method::GET, "/api/v1/alerts", Some(&r)), 200);
        assert_eq!(status(&a, Method::POST, "/api/v1/silences", Some(&r)), 403);
        assert_eq!(status(&a, Method::POST, "/api/v1/silences", Some(&o)), 200);
        assert_eq!(status(&a, Method::POST, "/api/v1/reload", Some(&o)), 403);
        assert_eq!(status(&a, Method::POST, "/api/v1/reload", Some(&ad)), 200);
        assert_eq!(status(&a, Method::POST, "/api/v1/silences", Some(&ad)), 200);
        let caller = a
            .decide(&Method::POST, "/api/v1/silences", Some(&o))
            .unwrap();
        assert_eq!(caller.name, "oncall");
        assert_eq!(caller.role, Role::Operate);
        // The scheme is case-insensitive, as RFC 9110 says.
        let lower = HeaderValue::from_str(&format!("bearer {}", "r".repeat(20))).unwrap();
        assert_eq!(status(&a, Method::GET, "/api/v1/alerts", Some(&lower)), 200);
    }

    #[test]
    fn healthz_is_open_and_metrics_only_when_configured() {
        let a = auth();
        assert_eq!(status(&a, Method::GET, "/healthz", None), 200);
        assert_eq!(status(&a, Method::GET, "/metrics", None), 200);
        let locked = Auth::new(
            vec![("v".into(), Role::Read, Secret::new("v".repeat(20)))],
            true,
        );
        assert_eq!(status(&locked, Method::GET, "/metrics", None), 401);
        assert_eq!(
            status(
                &locked,
                Method::GET,
                "/metrics",
                Some(&bearer(&"v".repeat(20)))
            ),
            200
        );
    }

    #[test]
    fn an_open_api_lets_everything_through() {
        let a = Auth::open();
        assert_eq!(status(&a, Method::POST, "/api/v1/reload", None), 200);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2hunter2hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let dbg = format!("{:?}", auth());
        assert!(!dbg.contains("rrrr"), "{dbg}");
        assert!(dbg.contains("viewer:read"), "{dbg}");
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }

    #[test]
    fn config_errors_point_at_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("t"), "short\n").unwrap();
        std::fs::write(dir.path().join("good"), format!("{}\n", "g".repeat(32))).unwrap();
        let text = r#"
[[token]]
name = "a"
role = "read"
token_file = "t"

[[token]]
name = "b"
role = "admin"

[[token]]
name = "c"
role = "admin"
token_file = "good"
token_env = "X"

[[token]]
name = "d"
role = "operate"
token_file = "good"
"#;
        #[derive(Deserialize)]
        struct F {
            token: Vec<toml::Spanned<TokenEntry>>,
        }
        let f: F = toml::from_str(text).unwrap();
        let errs = Auth::from_config(&f.token, false, dir.path()).unwrap_err();
        let msgs: Vec<&str> = errs.iter().map(|p| p.message.as_str()).collect();
        assert_eq!(errs.len(), 3, "{msgs:?}");
        assert!(msgs[0].contains("use at least 16"), "{msgs:?}");
        assert!(
            msgs[1].contains("set 'token_env' or 'token_file'"),
            "{msgs:?}"
        );
        assert!(msgs[2].contains("not both"), "{msgs:?}");
        let bad_role: Result<F, _> =
            toml::from_str("[[token]]\nname = \"x\"\nrole = \"god\"\ntoken_env = \"X\"\n");
        assert!(bad_role.is_err());
    }
}
