//! The notification commands: silences, acks and un-acks against a running daemon;
//! `routes test` and `notify test|preview` straight from a config file. Exit 0 on
//! success, 1 when the daemon or a receiver refuses (the reason is printed) or
//! cannot be reached, 2 for usage errors.

use std::process::ExitCode;

use serde_json::{Value, json};
use warden_engine::model::{Alert, AlertState, Annotations, Fingerprint, Labels, Severity, now_ms};
use warden_engine::notify::matchers::parse_matcher;
use warden_engine::ports::{NoMemo, Notification, NotifiedAlert, NotifyReason};

use crate::cli::{AckArgs, ApiArgs, NotifyCommand, RoutesCommand, SilenceCommand, UnackArgs};
use crate::config::{self, Overrides};

fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

fn finish(r: Result<String, String>) -> ExitCode {
    match r {
        Ok(out) => {
            print!("{out}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("warden: {e}");
            ExitCode::from(1)
        }
    }
}

fn who(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

async fn call(
    api: &ApiArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let url = format!("{}{path}", api.url.trim_end_matches('/'));
    let mut rb = client.request(method, &url);
    if let Some(t) = &api.token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("cannot reach warden at {}: {e}", api.url))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(v)
    } else {
        Err(format!(
            "{} {}",
            status.as_u16(),
            v["error"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| v.to_string())
        ))
    }
}

fn time(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        }
    }
}

fn silence_table(rows: &[Value]) -> String {
    let mut out = format!(
        "{:<16}  {:<8}  {:<20}  {:<20}  {:<10}  {}\n",
        "ID", "STATE", "STARTS", "ENDS", "BY", "MATCHERS / COMMENT"
    );
    for r in rows {
        let m: Vec<&str> = r["matchers_text"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        out.push_str(&format!(
            "{:<16}  {:<8}  {:<20}  {:<20}  {:<10}  {} {}\n",
            r["id"].as_str().unwrap_or("?"),
            r["state"].as_str().unwrap_or("?"),
            time(r["starts_at"].as_i64()),
            time(r["ends_at"].as_i64()),
            r["created_by"].as_str().unwrap_or(""),
            m.join(","),
            r["comment"]
                .as_str()
                .map(|c| format!("— {c}"))
                .unwrap_or_default()
        ));
    }
    out
}

fn show(api: &ApiArgs, v: &Value, text: String) -> String {
    if api.json {
        format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default())
    } else {
        text
    }
}

/// `warden silence add|list|expire`.
pub fn silence(c: SilenceCommand) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return finish(Err(e)),
    };
    finish(rt.block_on(async move {
        match c {
            SilenceCommand::Add {
                matchers,
                duration,
                comment,
                by,
                api,
            } => {
                let mut m = serde_json::Map::new();
                for t in &matchers {
                    let p = parse_matcher(t)?;
                    let op = warden_engine::notify::matchers::op_text(p.op);
                    let v = if op == "=" {
                        json!(p.value)
                    } else {
                        json!({"op": op, "value": p.value})
                    };
                    m.insert(p.name, v);
                }
                let body = json!({
                    "matchers": m, "duration": duration, "comment": comment, "created_by": who(by),
                });
                let v = call(&api, reqwest::Method::POST, "/api/v1/silences", Some(body)).await?;
                let text = format!(
                    "silence {} until {}\n",
                    v["id"].as_str().unwrap_or("?"),
                    time(v["ends_at"].as_i64())
                );
                Ok(show(&api, &v, text))
            }
            SilenceCommand::List { all, api } => {
                let v = call(&api, reqwest::Method::GET, "/api/v1/silences", None).await?;
                let rows: Vec<Value> = v
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|r| all || r["state"] != "expired")
                    .collect();
                Ok(show(
                    &api,
                    &Value::Array(rows.clone()),
                    silence_table(&rows),
                ))
            }
            SilenceCommand::Expire { id, api } => {
                let v = call(
                    &api,
                    reqwest::Method::DELETE,
                    &format!("/api/v1/silences/{id}"),
                    None,
                )
                .await?;
                Ok(show(&api, &v, format!("silence {id} expired\n")))
            }
        }
    }))
}

/// `warden ack`.
pub fn ack(a: AckArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return finish(Err(e)),
    };
    finish(rt.block_on(async move {
        let mut body = json!({"by": who(a.by), "comment": a.comment});
        if let Some(e) = &a.expires {
            let d = warden_engine::duration::parse(e)?;
            body["expires_at"] = json!(now_ms() + d.as_millis() as i64);
        }
        let v = call(
            &a.api,
            reqwest::Method::POST,
            &format!("/api/v1/alerts/{}/ack", a.fingerprint),
            Some(body),
        )
        .await?;
        let text = format!(
            "acknowledged {} by {}\n",
            a.fingerprint,
            v["by"].as_str().unwrap_or("?")
        );
        Ok(show(&a.api, &v, text))
    }))
}

/// `warden unack`.
pub fn unack(a: UnackArgs) -> ExitCode {
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return finish(Err(e)),
    };
    finish(rt.block_on(async move {
        let v = call(
            &a.api,
            reqwest::Method::DELETE,
            &format!("/api/v1/alerts/{}/ack", a.fingerprint),
            None,
        )
        .await?;
        Ok(show(
            &a.api,
            &v,
            format!("{} is no longer acknowledged\n", a.fingerprint),
        ))
    }))
}

fn load(path: &std::path::Path) -> Result<config::Config, ExitCode> {
    config::load(path, &Overrides::default()).map_err(|errors| {
        for e in &errors {
            eprintln!("{e}");
        }
        ExitCode::from(1)
    })
}

/// `warden routes test`.
pub fn routes(c: RoutesCommand) -> ExitCode {
    let RoutesCommand::Test { config, labels } = c;
    let mut pairs = Vec::new();
    for l in &labels {
        let Some((k, v)) = l.split_once('=') else {
            eprintln!("warden: invalid label '{l}': write name=value");
            return ExitCode::from(2);
        };
        pairs.push((k.trim().to_string(), v.trim().to_string()));
    }
    let labels = match Labels::new(pairs) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("warden: {e}");
            return ExitCode::from(2);
        }
    };
    let cfg = match load(&config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let tree = &cfg.notify.routes;
    for idx in tree.matching(&labels) {
        let r = tree.get(idx);
        let group_by = match &r.group_by {
            None => "...".to_string(),
            Some(g) => g.join(","),
        };
        eprintln!(
            "route {} ({}): receivers {}; group_by [{group_by}] group {}; group_wait {} group_interval {} repeat_interval {}{}",
            r.name,
            r.path,
            r.receivers.join(","),
            r.group_labels(&labels),
            warden_engine::duration::format(r.timing.group_wait),
            warden_engine::duration::format(r.timing.group_interval),
            warden_engine::duration::format(r.timing.repeat_interval),
            r.escalate
                .iter()
                .map(|(after, rs)| format!(
                    "; after {} also {}",
                    warden_engine::duration::format(*after),
                    rs.join(",")
                ))
                .collect::<String>()
        );
    }
    let receivers = tree.receivers(&labels);
    if receivers.is_empty() {
        println!("(no receiver)");
    } else {
        println!("{}", receivers.join("\n"));
    }
    ExitCode::SUCCESS
}

fn sample(status: AlertState) -> Notification {
    let labels = Labels::new([
        ("alertname", "WardenTestNotification"),
        ("severity", "info"),
        ("instance", "warden-test"),
    ])
    .unwrap_or_default();
    let mut annotations = Annotations::new();
    annotations.insert(
        "summary".into(),
        "Test notification from warden: this receiver works".into(),
    );
    annotations.insert(
        "runbook".into(),
        "https://example.org/runbooks/warden-test".into(),
    );
    let now = now_ms();
    let alert = Alert {
        name: "WardenTestNotification".into(),
        state: status,
        severity: Severity::Info,
        fingerprint: Fingerprint::of("WardenTestNotification", &labels),
        labels: labels.clone(),
        annotations,
        value: 1.0,
        since: now,
        fired_at: Some(now),
    };
    Notification {
        id: 0,
        receiver: String::new(),
        reason: if status == AlertState::Resolved {
            NotifyReason::Resolved
        } else {
            NotifyReason::Test
        },
        group_key: "warden-test".into(),
        group_labels: labels.keep_only(&["alertname"]),
        alerts: vec![NotifiedAlert {
            ended_at: (status == AlertState::Resolved).then_some(now),
            ..NotifiedAlert::of(alert, status, None)
        }],
        created_at: now,
    }
}

/// `warden notify test|preview`.
pub fn notify(c: NotifyCommand) -> ExitCode {
    let (path, receiver, send) = match c {
        NotifyCommand::Test { config, receiver } => (config, receiver, true),
        NotifyCommand::Preview { config, receiver } => (config, receiver, false),
    };
    let cfg = match load(&path) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(n) = cfg.notifiers.iter().find(|n| n.name() == receiver) else {
        let names: Vec<&str> = cfg.notifiers.iter().map(|n| n.name()).collect();
        eprintln!(
            "warden: no receiver '{receiver}' in {} (known: {})",
            path.display(),
            if names.is_empty() {
                "none".to_string()
            } else {
                names.join(", ")
            }
        );
        return ExitCode::from(1);
    };
    let mut notes = vec![sample(AlertState::Firing), sample(AlertState::Resolved)];
    for note in &mut notes {
        note.receiver = receiver.clone();
    }
    if !send {
        for note in &notes {
            println!(
                "--- {} ({})\n{}\n",
                note.reason.as_str(),
                n.kind(),
                n.preview(note)
            );
        }
        return ExitCode::SUCCESS;
    }
    let rt = match runtime() {
        Ok(r) => r,
        Err(e) => return finish(Err(e)),
    };
    let timeout = cfg.notify.delivery.timeout;
    finish(rt.block_on(async move {
        for note in &notes {
            match tokio::time::timeout(timeout, n.notify(note, &NoMemo)).await {
                Ok(Ok(())) => println!("{}: {} accepted", receiver, note.reason.as_str()),
                Ok(Err(e)) => return Err(format!("{receiver}: {e}")),
                Err(_) => return Err(format!("{receiver}: no answer within {timeout:?}")),
            }
        }
        Ok(String::new())
    }))
}
