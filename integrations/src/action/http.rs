//! `[[action.http]]`: call an API: method, URL, headers, a templated JSON body
//! and the statuses that mean success.
//!
//! ```toml
//! # Kubernetes: set a deployment's replicas through its scale subresource
//! [[action.http]]
//! name = "k8s-scale-web"
//! method = "PATCH"
//! url = "https://k8s.example.org:6443/apis/apps/v1/namespaces/prod/deployments/{{deployment}}/scale"
//! content_type = "application/merge-patch+json"
//! bearer_token_file = "/var/run/secrets/warden/k8s-token"
//! body = { spec = { replicas = "{{replicas}}" } }
//! expected_status = [200]
//! ```
//!
//! Placeholders in the URL are percent-encoded (only letters, digits, `-._~:`
//! pass as they are), so a label cannot change the host, the path's shape or the
//! query. In the body, string values are templated and placed as JSON strings; a
//! string that is exactly one placeholder whose value is a number becomes a JSON
//! number (`"{{replicas}}"` gives `3`). Header values may hold placeholders but
//! no control characters. Tokens given with `bearer_token_env`/`_file` never
//! appear in the audit log.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use reqwest::Method;
use toml::Spanned;
use warden_engine::config::Problem;
use warden_engine::duration::HumanDuration;
use warden_engine::ports::{
    Action, ActionContext, ActionError, ActionOutcome, ActionRequest, BoxFuture,
};
use warden_engine::template::Template;

use super::exec::{check_max_output, check_timeout};
use super::process::{safe_env, shown};

/// Default `timeout` of a call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

warden_engine::action_config! {
    /// `[[action.http]]`: one API call.
    pub struct HttpConfig {
        /// The action's name. Required.
        pub name: Spanned<String>,
        /// The URL, `http://` or `https://`; placeholders are percent-encoded.
        /// Required.
        pub url: Spanned<Template>,
        /// The method. Default `"POST"`.
        #[serde(default)]
        pub method: Option<Spanned<String>>,
        /// Extra headers; values may hold placeholders.
        #[serde(default)]
        pub headers: Option<Spanned<BTreeMap<String, Template>>>,
        /// An environment variable holding a bearer token (`Authorization: Bearer …`),
        /// read at each call.
        #[serde(default)]
        pub bearer_token_env: Option<Spanned<String>>,
        /// A file holding a bearer token, read at each call.
        #[serde(default)]
        pub bearer_token_file: Option<Spanned<PathBuf>>,
        /// The body: a table or array sent as JSON (string values templated), or
        /// a string sent as it is after templating.
        #[serde(default)]
        pub body: Option<Spanned<toml::Value>>,
        /// The body's content type. Default `"application/json"`.
        #[serde(default)]
        pub content_type: Option<Spanned<String>>,
        /// Statuses that mean success. Default: any 2xx.
        #[serde(default)]
        pub expected_status: Option<Spanned<Vec<i64>>>,
        /// How long the call may take. Default `"10s"`.
        #[serde(default)]
        pub timeout: Option<Spanned<HumanDuration>>,
        /// Most bytes of the response body kept. Default 16384.
        #[serde(default)]
        pub max_output_bytes: Option<Spanned<i64>>,
    }
}

/// The body, its strings parsed as templates.
#[derive(Debug, Clone)]
enum Body {
    Json(serde_json::Value),
    Text(Template),
}

/// Where the bearer token comes from. It is read at each call, so a rotated
/// token (Kubernetes projected service account tokens are) is picked up.
#[derive(Debug, Clone)]
enum Token {
    Env(String),
    File(PathBuf),
}

impl Token {
    fn read(&self) -> Result<String, ActionError> {
        let t = match self {
            Token::Env(v) => std::env::var(v).map_err(|_| {
                ActionError::Failed(format!(
                    "environment variable '{v}' (bearer_token_env) is not set"
                ))
            })?,
            Token::File(p) => std::fs::read_to_string(p).map_err(|e| {
                ActionError::Failed(format!("cannot read the token file '{}': {e}", p.display()))
            })?,
        };
        let t = t.trim().to_string();
        if t.is_empty() {
            return Err(ActionError::Failed("the bearer token is empty".into()));
        }
        Ok(t)
    }
}

/// The http action.
#[derive(Debug, Clone)]
pub struct HttpAction {
    name: String,
    method: Method,
    url: Template,
    headers: BTreeMap<String, Template>,
    token: Option<Token>,
    body: Option<Body>,
    content_type: String,
    expected: Vec<u16>,
    max_output: usize,
    client: reqwest::Client,
}

/// Percent-encodes everything but `A-Z a-z 0-9 - . _ ~ :`.
pub fn encode_url_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn toml_to_json(v: &toml::Value, path: &str, problems: &mut Vec<String>) -> serde_json::Value {
    match v {
        toml::Value::String(s) => {
            if let Err(e) = Template::parse(s) {
                problems.push(format!("body{path}: {e}"));
            }
            serde_json::Value::String(s.clone())
        }
        toml::Value::Integer(i) => serde_json::json!(i),
        toml::Value::Float(f) => serde_json::json!(f),
        toml::Value::Boolean(b) => serde_json::json!(b),
        toml::Value::Datetime(d) => serde_json::Value::String(d.to_string()),
        toml::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| toml_to_json(x, &format!("{path}[{i}]"), problems))
                .collect(),
        ),
        toml::Value::Table(t) => serde_json::Value::Object(
            t.iter()
                .map(|(k, x)| (k.clone(), toml_to_json(x, &format!("{path}.{k}"), problems)))
                .collect(),
        ),
    }
}

fn render_json(
    v: &serde_json::Value,
    req: &ActionRequest,
) -> Result<serde_json::Value, ActionError> {
    Ok(match v {
        serde_json::Value::String(s) => {
            let t = Template::parse(s).map_err(ActionError::Refused)?;
            let text = t
                .render(|n| req.var(n))
                .map_err(|e| ActionError::Refused(e.to_string()))?;
            match t.single_var() {
                Some(_) => match text.parse::<i64>() {
                    Ok(i) => serde_json::json!(i),
                    Err(_) => match text.parse::<f64>() {
                        Ok(f) if f.is_finite() => serde_json::json!(f),
                        _ => serde_json::Value::String(text),
                    },
                },
                None => serde_json::Value::String(text),
            }
        }
        serde_json::Value::Array(a) => serde_json::Value::Array(
            a.iter()
                .map(|x| render_json(x, req))
                .collect::<Result<_, _>>()?,
        ),
        serde_json::Value::Object(o) => serde_json::Value::Object(
            o.iter()
                .map(|(k, x)| Ok((k.clone(), render_json(x, req)?)))
                .collect::<Result<_, ActionError>>()?,
        ),
        other => other.clone(),
    })
}

impl HttpConfig {
    /// Checks the entry.
    pub fn build(&self, span: Range<usize>, problems: &mut Vec<Problem>) -> Option<HttpAction> {
        let before = problems.len();
        let url_text = self.url.get_ref().to_string();
        let probe = self
            .url
            .get_ref()
            .render(|_| Some("x".into()))
            .unwrap_or_default();
        match reqwest::Url::parse(&probe) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {}
            _ => problems.push(Problem::at(
                self.url.span(),
                format!("'url' '{url_text}' is not an http:// or https:// URL"),
            )),
        }
        let method = match &self.method {
            None => Method::POST,
            Some(m) => match Method::from_bytes(m.get_ref().to_ascii_uppercase().as_bytes()) {
                Ok(m) => m,
                Err(_) => {
                    problems.push(Problem::at(
                        m.span(),
                        format!("'method' '{}' is not an HTTP method", m.get_ref()),
                    ));
                    Method::POST
                }
            },
        };
        let headers = self
            .headers
            .as_ref()
            .map(|h| {
                for k in h.get_ref().keys() {
                    if reqwest::header::HeaderName::from_bytes(k.as_bytes()).is_err() {
                        problems.push(Problem::at(
                            h.span(),
                            format!("'headers' has '{k}', which is not a header name"),
                        ));
                    }
                }
                h.get_ref().clone()
            })
            .unwrap_or_default();
        let token = match (&self.bearer_token_env, &self.bearer_token_file) {
            (Some(_), Some(f)) => {
                problems.push(Problem::at(
                    f.span(),
                    "set either 'bearer_token_env' or 'bearer_token_file', not both",
                ));
                None
            }
            (Some(e), None) if e.get_ref().trim().is_empty() => {
                problems.push(Problem::at(e.span(), "'bearer_token_env' is empty"));
                None
            }
            (Some(e), None) => Some(Token::Env(e.get_ref().clone())),
            (None, Some(f)) => Some(Token::File(f.get_ref().clone())),
            (None, None) => None,
        };
        let body = self.body.as_ref().map(|b| match b.get_ref() {
            toml::Value::String(s) => match Template::parse(s) {
                Ok(t) => Body::Text(t),
                Err(e) => {
                    problems.push(Problem::at(b.span(), format!("'body': {e}")));
                    Body::Text(Template::literal(""))
                }
            },
            v => {
                let mut errs = Vec::new();
                let json = toml_to_json(v, "", &mut errs);
                for e in errs {
                    problems.push(Problem::at(b.span(), e));
                }
                Body::Json(json)
            }
        });
        let expected = match &self.expected_status {
            None => (200..300).collect(),
            Some(list) => {
                let mut out = Vec::new();
                for s in list.get_ref() {
                    if (100..=599).contains(s) {
                        out.push(*s as u16);
                    } else {
                        problems.push(Problem::at(
                            list.span(),
                            format!("'expected_status' has {s}, which is not an HTTP status"),
                        ));
                    }
                }
                if out.is_empty() && list.get_ref().is_empty() {
                    problems.push(Problem::at(list.span(), "'expected_status' is empty"));
                }
                out
            }
        };
        let timeout = check_timeout("timeout", &self.timeout, DEFAULT_TIMEOUT, problems);
        let max_output = check_max_output(&self.max_output_bytes, problems);
        if problems.len() > before {
            return None;
        }
        // reqwest is built without a crypto provider; the binary installs ring
        // first thing, and this makes library users and tests work the same way.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = match reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
        {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::at(
                    span,
                    format!("cannot build an HTTP client: {e}"),
                ));
                return None;
            }
        };
        Some(HttpAction {
            name: self.name.get_ref().clone(),
            method,
            url: self.url.get_ref().clone(),
            headers,
            token,
            body,
            content_type: self
                .content_type
                .as_ref()
                .map(|c| c.get_ref().clone())
                .unwrap_or_else(|| "application/json".into()),
            expected,
            max_output,
            client,
        })
    }
}

/// A request as rendered: what is sent, and what the audit log shows.
struct Rendered {
    url: String,
    headers: Vec<(String, String)>,
    body: Option<String>,
    args: serde_json::Value,
}

impl HttpAction {
    fn render(&self, req: &ActionRequest) -> Result<Rendered, ActionError> {
        let url = self
            .url
            .render_with(|v| req.var(v), encode_url_value)
            .map_err(|e| ActionError::Refused(e.to_string()))?;
        let mut headers = Vec::new();
        for (k, t) in &self.headers {
            let v = t
                .render(|n| req.var(n))
                .map_err(|e| ActionError::Refused(e.to_string()))?;
            if !safe_env(&v) {
                return Err(ActionError::Refused(format!(
                    "header '{k}' would be {}, which is not a safe header value",
                    shown(&v)
                )));
            }
            headers.push((k.clone(), v));
        }
        let (body, shown_body) = match &self.body {
            None => (None, serde_json::Value::Null),
            Some(Body::Json(j)) => {
                let r = render_json(j, req)?;
                (Some(r.to_string()), r)
            }
            Some(Body::Text(t)) => {
                let r = t
                    .render(|n| req.var(n))
                    .map_err(|e| ActionError::Refused(e.to_string()))?;
                (Some(r.clone()), serde_json::Value::String(r))
            }
        };
        let mut shown_headers: BTreeMap<String, String> = headers
            .iter()
            .map(|(k, v)| {
                let redact = k.eq_ignore_ascii_case("authorization")
                    || k.to_ascii_lowercase().contains("token")
                    || k.to_ascii_lowercase().contains("key");
                (
                    k.clone(),
                    if redact {
                        "<redacted>".into()
                    } else {
                        v.clone()
                    },
                )
            })
            .collect();
        if self.token.is_some() {
            shown_headers.insert("Authorization".into(), "Bearer <redacted>".into());
        }
        let mut args = serde_json::json!({ "method": self.method.as_str(), "url": url });
        if !shown_headers.is_empty() {
            args["headers"] = serde_json::json!(shown_headers);
        }
        if body.is_some() {
            args["body"] = shown_body;
        }
        Ok(Rendered {
            url,
            headers,
            body,
            args,
        })
    }
}

impl Action for HttpAction {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "http"
    }

    fn run<'a>(
        &'a self,
        req: &'a ActionRequest,
        cx: &'a ActionContext,
    ) -> BoxFuture<'a, Result<ActionOutcome, ActionError>> {
        Box::pin(async move {
            let r = self.render(req)?;
            if req.dry_run {
                return Ok(ActionOutcome {
                    ok: true,
                    status: None,
                    args: r.args,
                    output: format!("dry run: would {} {}", self.method, r.url),
                });
            }
            let mut rb = self.client.request(self.method.clone(), &r.url);
            for (k, v) in &r.headers {
                rb = rb.header(k, v);
            }
            if let Some(t) = &self.token {
                rb = rb.bearer_auth(t.read()?);
            }
            if let Some(b) = r.body {
                rb = rb
                    .header(reqwest::header::CONTENT_TYPE, &self.content_type)
                    .body(b);
            }
            let resp = tokio::select! {
                r = rb.send() => r,
                _ = cx.cancel.cancelled() => return Err(ActionError::Failed("warden stopped during the call".into())),
            };
            let mut resp = match resp {
                Ok(resp) => resp,
                Err(e) => {
                    let mut msg = e.to_string();
                    let mut src = std::error::Error::source(&e);
                    while let Some(s) = src {
                        msg.push_str(": ");
                        msg.push_str(&s.to_string());
                        src = s.source();
                    }
                    return Err(ActionError::Failed(msg));
                }
            };
            let status = resp.status().as_u16();
            let mut body = Vec::new();
            let mut cut = false;
            while let Ok(Some(chunk)) = resp.chunk().await {
                let room = self.max_output.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
                if chunk.len() > room {
                    cut = true;
                    break;
                }
            }
            let mut output = format!("HTTP {status}\n{}", String::from_utf8_lossy(&body));
            if cut {
                output.push_str("\n[response truncated]");
            }
            Ok(ActionOutcome {
                ok: self.expected.contains(&status),
                status: Some(i32::from(status)),
                args: r.args,
                output,
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_values_cannot_change_the_url_shape() {
        assert_eq!(encode_url_value("web-1"), "web-1");
        assert_eq!(encode_url_value("10.0.0.1:80"), "10.0.0.1:80");
        assert_eq!(encode_url_value("../x?y#z"), "..%2Fx%3Fy%23z");
        assert_eq!(encode_url_value("evil.com/@"), "evil.com%2F%40");
    }

    #[test]
    fn body_placeholders_become_numbers_when_alone() {
        let req = ActionRequest {
            id: 1,
            rule: "R".into(),
            labels: warden_engine::model::Labels::new([("deployment", "web \"x\"")]).unwrap(),
            value: None,
            vars: [("replicas".to_string(), "3".to_string())].into(),
            dry_run: false,
        };
        let body = serde_json::json!({
            "spec": { "replicas": "{{replicas}}" },
            "note": "scaled {{deployment}} to {{replicas}}",
        });
        let r = render_json(&body, &req).unwrap();
        assert_eq!(r["spec"]["replicas"], serde_json::json!(3));
        assert_eq!(r["note"], "scaled web \"x\" to 3");
        assert!(r.to_string().contains(r#"web \"x\""#), "escaped as JSON");
    }
}
