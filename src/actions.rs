//! `warden actions ...`: the remediation endpoints of a running daemon from the
//! command line. Exit 0 on success, 1 when the daemon refuses (the reason is
//! printed) or cannot be reached.

use std::process::ExitCode;

use serde_json::{Value, json};

use crate::cli::{ActionsArgs, ActionsCommand};

/// Who is asking, when `--by` is not given.
fn default_by(by: Option<String>) -> String {
    by.or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "cli".into())
}

fn ts(ms: Option<i64>) -> String {
    match ms {
        None => "-".into(),
        Some(ms) => {
            let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.max(0) as u64);
            humantime::format_rfc3339_seconds(t).to_string()
        }
    }
}

fn labels(v: &Value) -> String {
    match v.as_object() {
        Some(m) if !m.is_empty() => m
            .iter()
            .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
            .collect::<Vec<_>>()
            .join(","),
        _ => "-".into(),
    }
}

fn table(rows: &[Value]) -> String {
    let mut out = format!(
        "{:>5}  {:<16}  {:<18}  {:<24}  {:<20}  {:<8}  {}\n",
        "ID", "STATE", "ACTION", "TARGET", "STARTED", "VERIFIED", "REASON / BY"
    );
    for r in rows {
        let verified = match r["verified"].as_bool() {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let note = r["reason"]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                r["approved_by"]
                    .as_str()
                    .map(|b| format!("approved by {b}"))
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "{:>5}  {:<16}  {:<18}  {:<24}  {:<20}  {:<8}  {}\n",
            r["id"],
            r["state"].as_str().unwrap_or("?"),
            r["action"].as_str().unwrap_or("?"),
            labels(&r["target"]),
            ts(r["started_at"].as_i64().or(r["created_at"].as_i64())),
            verified,
            note
        ));
    }
    out
}

fn show(r: &Value) -> String {
    let mut out = String::new();
    for k in [
        "id",
        "state",
        "action",
        "kind",
        "rule",
        "fingerprint",
        "reason",
        "exit_status",
        "verified",
        "requested_by",
        "approved_by",
        "denied_by",
        "comment",
        "dry_run",
    ] {
        if !r[k].is_null() && r[k] != json!("") {
            let v = match &r[k] {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            };
            out.push_str(&format!("{k:<13} {v}\n"));
        }
    }
    out.push_str(&format!("{:<13} {}\n", "labels", labels(&r["labels"])));
    for k in ["created_at", "started_at", "ended_at", "expires_at"] {
        if let Some(ms) = r[k].as_i64() {
            out.push_str(&format!("{k:<13} {}\n", ts(Some(ms))));
        }
    }
    if !r["args"].is_null() {
        out.push_str(&format!("{:<13} {}\n", "args", r["args"]));
    }
    if let Some(o) = r["output"].as_str()
        && !o.is_empty()
    {
        out.push_str("output:\n");
        for l in o.lines() {
            out.push_str("  ");
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

fn status_text(s: &Value) -> String {
    let mut out = String::new();
    let state = if s["enabled"] == json!(false) {
        "disabled in the config".to_string()
    } else if s["paused"] == json!(true) {
        format!(
            "PAUSED by {}{}",
            s["paused_by"].as_str().unwrap_or("?"),
            s["comment"]
                .as_str()
                .map(|c| format!(" ({c})"))
                .unwrap_or_default()
        )
    } else {
        "active".into()
    };
    out.push_str(&format!("remediation: {state}\n"));
    if s["dry_run"] == json!(true) {
        out.push_str("dry run: every action only audits what it would run\n");
    }
    out.push_str(&format!("running: {}\n", s["running"]));
    for a in s["actions"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<20} {:<8} cooldown {} · {} per {} per {} · approval {} · verify {}\n",
            a["name"].as_str().unwrap_or("?"),
            a["kind"].as_str().unwrap_or("?"),
            a["cooldown"].as_str().unwrap_or("?"),
            a["max_attempts"],
            a["window"].as_str().unwrap_or("?"),
            a["target_by"]
                .as_array()
                .map(|t| t
                    .iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join("+"))
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "action".into()),
            if a["approval"] == json!(true) {
                "yes"
            } else {
                "no"
            },
            a["verify_within"].as_str().unwrap_or("off"),
        ));
    }
    out
}

async fn call(
    client: &reqwest::Client,
    args: &ActionsArgs,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let url = format!("{}{path}", args.url.trim_end_matches('/'));
    let mut rb = client.request(method, &url);
    if let Some(t) = &args.token {
        rb = rb.bearer_auth(t);
    }
    if let Some(b) = body {
        rb = rb.json(&b);
    }
    let resp = rb
        .send()
        .await
        .map_err(|e| format!("cannot reach warden at {}: {e}", args.url))?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    let v: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status.is_success() {
        Ok(v)
    } else {
        let reason = v["error"]
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        let mut msg = format!("{} {reason}", status.as_u16());
        if let Some(id) = v["attempt"]["id"].as_i64() {
            msg.push_str(&format!(" (audited as attempt {id})"));
        }
        Err(msg)
    }
}

async fn run(args: ActionsArgs) -> Result<String, String> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| e.to_string())?;
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    let (v, text): (Value, fn(&Value) -> String) = match &args.command {
        ActionsCommand::List {
            state,
            action,
            limit,
        } => {
            let mut q = format!("/api/v1/actions?limit={limit}");
            if let Some(s) = state {
                q.push_str(&format!("&state={s}"));
            }
            if let Some(a) = action {
                q.push_str(&format!("&action={a}"));
            }
            let v = call(&client, &args, get, &q, None).await?;
            (v, |v| table(v.as_array().map(Vec::as_slice).unwrap_or(&[])))
        }
        ActionsCommand::Show { id } => (
            call(&client, &args, get, &format!("/api/v1/actions/{id}"), None).await?,
            show,
        ),
        ActionsCommand::Approve(d) | ActionsCommand::Deny(d) => {
            let verb = if matches!(args.command, ActionsCommand::Approve(_)) {
                "approve"
            } else {
                "deny"
            };
            let body = json!({ "by": default_by(d.by.clone()), "comment": d.comment });
            (
                call(
                    &client,
                    &args,
                    post,
                    &format!("/api/v1/actions/{}/{verb}", d.id),
                    Some(body),
                )
                .await?,
                show,
            )
        }
        ActionsCommand::Run {
            action,
            labels,
            by,
            comment,
        } => {
            let labels: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let body = json!({
                "action": action,
                "labels": labels,
                "by": default_by(by.clone()),
                "comment": comment,
            });
            (
                call(&client, &args, post, "/api/v1/actions/run", Some(body)).await?,
                show,
            )
        }
        ActionsCommand::Pause(s) | ActionsCommand::Resume(s) => {
            let verb = if matches!(args.command, ActionsCommand::Pause(_)) {
                "pause"
            } else {
                "resume"
            };
            let body = json!({ "by": default_by(s.by.clone()), "comment": s.comment });
            (
                call(
                    &client,
                    &args,
                    post,
                    &format!("/api/v1/actions/{verb}"),
                    Some(body),
                )
                .await?,
                status_text,
            )
        }
        ActionsCommand::Status => (
            call(&client, &args, get, "/api/v1/actions/status", None).await?,
            status_text,
        ),
    };
    Ok(if args.json {
        serde_json::to_string_pretty(&v).unwrap_or_default() + "\n"
    } else {
        text(&v)
    })
}

/// Entry point of `warden actions`.
pub fn main(args: ActionsArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("warden: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(run(args)) {
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
