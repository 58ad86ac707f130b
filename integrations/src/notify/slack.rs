//! The Slack notifier, with Block Kit messages built from slack-morphism's models:
//! an incoming webhook, or the Web API (`chat.postMessage` with a bot token).
//!
//! With the Web API a firing notification is one message per group; the channel
//! and `ts` of that message are stored in the receiver's memo before the row is
//! marked delivered, with the alerts it lists. A resolve or an acknowledgement then
//! updates that message (`chat.update`) and replies in its thread instead of
//! posting anew; a retry of a row that was already posted updates instead of
//! re-posting. What remains: a crash after Slack accepted a post and before its
//! `ts` was stored posts the message again on retry. Incoming webhooks cannot
//! update messages, so there a resolve is a new message.
//!
//! Transport is reqwest (shared timeouts, redaction, `Retry-After`); errors are
//! classified as Slack documents them: `invalid_payload`, `no_text`,
//! `channel_not_found`, `invalid_auth`, … are permanent; 429 (`ratelimited`) and 5xx
//! are retried.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use slack_morphism::prelude::*;
use warden_engine::model::{AlertState, Severity};
use warden_engine::ports::{
    ActionNote, BoxFuture, DeliveryMemo, Notification, NotifiedAlert, Notifier, NotifyError,
    NotifyReason,
};

use super::http;
use super::secret::{self, Secret};
use super::template;

/// `[[notifier.slack]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// The receiver's name for routes.
    pub name: String,
    /// Incoming webhook URL (or `webhook_url_env` / `webhook_url_file`).
    #[serde(default)]
    pub webhook_url: Option<String>,
    /// Environment variable holding the webhook URL.
    #[serde(default)]
    pub webhook_url_env: Option<String>,
    /// File holding the webhook URL.
    #[serde(default)]
    pub webhook_url_file: Option<PathBuf>,
    /// Bot token `xoxb-…` for the Web API (or `token_env` / `token_file`).
    #[serde(default)]
    pub token: Option<String>,
    /// Environment variable holding the token.
    #[serde(default)]
    pub token_env: Option<String>,
    /// File holding the token.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// Channel (id or `#name`) for the Web API.
    #[serde(default)]
    pub channel: Option<String>,
    /// The Web API base. Default `https://slack.com/api`.
    #[serde(default = "default_api_url")]
    pub api_url: String,
    /// Title template (see the template module). Default
    /// `[FIRING:2] alertname {group labels}`.
    #[serde(default)]
    pub title: Option<String>,
    /// Send resolved notifications. Default `true`.
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn default_api_url() -> String {
    "https://slack.com/api".into()
}
fn yes() -> bool {
    true
}

#[derive(Debug)]
enum Mode {
    Webhook(Secret),
    Api { token: Secret, channel: String },
}

/// Posts to Slack.
#[derive(Debug)]
pub struct SlackNotifier {
    name: String,
    mode: Mode,
    api_url: String,
    title: String,
    send_resolved: bool,
    client: reqwest::Client,
}

/// An alert line of a posted message, kept to re-render the message on update.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Line {
    /// The alert.
    pub fingerprint: String,
    /// `firing`, `resolved` or `acknowledged`.
    pub status: String,
    /// The rendered line.
    pub text: String,
    /// Who acknowledged, with the comment.
    #[serde(default)]
    pub note: String,
}

/// A posted message as the memo keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Posted {
    /// Channel id.
    pub channel: String,
    /// Message ts.
    pub ts: String,
    /// Its title.
    pub title: String,
    /// Its alerts.
    pub lines: Vec<Line>,
    /// The silence hint under it.
    #[serde(default)]
    pub hint: String,
    /// The colour of its bar.
    #[serde(default)]
    pub colour: String,
}

/// The colour of the attachment bar.
pub fn colour(status: AlertState, worst: Option<Severity>) -> &'static str {
    match (status, worst) {
        (AlertState::Resolved, _) => "#2eb886",
        (_, Some(Severity::Critical)) => "#d00000",
        (_, Some(Severity::Error)) => "#e8590c",
        (_, Some(Severity::Warning)) => "#f2c744",
        _ => "#439fe0",
    }
}

fn alert_line(a: &NotifiedAlert) -> String {
    let al = &a.alert;
    let summary = al
        .annotations
        .get("summary")
        .filter(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| al.name.clone());
    let labels = al.labels.without(&["alertname", "severity"]);
    let mut s = format!(
        "*{}* `{}` {} value={}",
        al.severity,
        summary,
        labels,
        short(al.value)
    );
    if let Some(rb) = al.annotations.get("runbook").filter(|r| !r.is_empty()) {
        s.push_str(&format!(" <{rb}|runbook>"));
    }
    s
}

fn short(v: f64) -> String {
    if v.is_finite() && v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else if v.is_finite() {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        v.to_string()
    }
}

fn silence_hint(n: &Notification) -> String {
    let mut m: Vec<String> = n
        .group_labels
        .iter()
        .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.to_string())))
        .collect();
    if m.is_empty()
        && let Some(a) = n.alerts.first()
    {
        m.push(format!(
            "alertname={}",
            serde_json::Value::String(a.alert.name.clone())
        ));
    }
    format!(
        "Silence: `warden silence add {} --duration 2h --comment \"…\"`",
        m.join(" ")
    )
}

fn status_icon(status: &str) -> &'static str {
    match status {
        "resolved" => ":white_check_mark:",
        "acknowledged" => ":eyes:",
        _ => ":rotating_light:",
    }
}

/// Renders a message: a title, one line per alert, and a silence hint.
fn content(title: &str, lines: &[Line], colour: &str, hint: &str) -> SlackMessageContent {
    let mut blocks: Vec<SlackBlock> = vec![
        SlackSectionBlock::new()
            .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                format!("*{title}*"),
            )))
            .into(),
    ];
    // A section holds at most 3000 characters; lines are grouped to fit.
    let mut chunk = String::new();
    let flush = |chunk: &mut String, blocks: &mut Vec<SlackBlock>| {
        if !chunk.is_empty() {
            blocks.push(
                SlackSectionBlock::new()
                    .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                        std::mem::take(chunk),
                    )))
                    .into(),
            );
        }
    };
    let shown = lines.len().min(40);
    for l in &lines[..shown] {
        let mut text = format!(
            "{} {}",
            status_icon(&l.status),
            http::truncate(&l.text, 600)
        );
        if !l.note.is_empty() {
            text.push_str(&format!(" — _{}_", http::truncate(&l.note, 300)));
        }
        if chunk.len() + text.len() + 1 > 2900 {
            flush(&mut chunk, &mut blocks);
        }
        if !chunk.is_empty() {
            chunk.push('\n');
        }
        chunk.push_str(&text);
    }
    if lines.len() > shown {
        chunk.push_str(&format!("\n…and {} more", lines.len() - shown));
    }
    flush(&mut chunk, &mut blocks);
    blocks.push(
        SlackContextBlock::new(vec![SlackContextBlockElement::MarkDown(
            SlackBlockMarkDownText::new(hint.to_string()),
        )])
        .into(),
    );
    let attachment = SlackMessageAttachment::new()
        .with_color(colour.to_string())
        .with_fallback(title.to_string())
        .with_blocks(blocks);
    SlackMessageContent::new()
        .with_text(title.to_string())
        .with_attachments(vec![attachment])
}

fn classify_api_error(error: &str) -> NotifyError {
    let retryable = [
        "ratelimited",
        "rate_limited",
        "fatal_error",
        "internal_error",
        "service_unavailable",
        "request_timeout",
    ];
    if retryable.contains(&error) {
        NotifyError::Retryable {
            reason: format!("slack: {error}"),
            retry_after: None,
        }
    } else {
        NotifyError::Permanent {
            reason: format!("slack: {error}"),
        }
    }
}

impl SlackNotifier {
    /// Builds the notifier from its config.
    pub fn new(c: &SlackConfig) -> Result<Self, String> {
        let hook = secret::resolve(
            "webhook_url",
            c.webhook_url.as_ref(),
            c.webhook_url_env.as_ref(),
            c.webhook_url_file.as_ref(),
        )?;
        let token = secret::resolve(
            "token",
            c.token.as_ref(),
            c.token_env.as_ref(),
            c.token_file.as_ref(),
        )?;
        let mode = match (hook, token) {
            (Some(_), Some(_)) => {
                return Err("give either 'webhook_url' or 'token' + 'channel', not both".into());
            }
            (Some(h), None) => {
                reqwest::Url::parse(h.expose()).map_err(|_| "invalid webhook_url".to_string())?;
                Mode::Webhook(h)
            }
            (None, Some(t)) => {
                let channel = c
                    .channel
                    .clone()
                    .filter(|c| !c.is_empty())
                    .ok_or("the Web API needs 'channel'")?;
                Mode::Api { token: t, channel }
            }
            (None, None) => {
                return Err("slack needs 'webhook_url' (or _env/_file), or 'token' (or _env/_file) and 'channel'".into());
            }
        };
        reqwest::Url::parse(&c.api_url).map_err(|e| format!("invalid api_url: {e}"))?;
        Ok(Self {
            name: c.name.clone(),
            mode,
            api_url: c.api_url.trim_end_matches('/').to_string(),
            title: c
                .title
                .clone()
                .unwrap_or_else(|| template::DEFAULT_TITLE.to_string()),
            send_resolved: c.send_resolved,
            client: http::client()?,
        })
    }

    fn scrub(&self, s: &str) -> String {
        match &self.mode {
            Mode::Webhook(h) => h.scrub(&http::redact_urls(s)),
            Mode::Api { token, .. } => token.scrub(s),
        }
    }

    fn title_of(&self, n: &Notification) -> String {
        let t = template::render_line(&self.title, n);
        match n.reason {
            NotifyReason::Acknowledged => format!("[ACKNOWLEDGED] {t}"),
            NotifyReason::Flapping => format!("[FLAPPING] {t}"),
            NotifyReason::Escalation => format!("[ESCALATED] {t}"),
            NotifyReason::Test => format!("[TEST] {t}"),
            _ => t,
        }
    }

    fn lines_of(alerts: &[&NotifiedAlert]) -> Vec<Line> {
        alerts
            .iter()
            .map(|a| {
                let (status, note) = match (&a.acknowledged, a.status) {
                    (_, AlertState::Resolved) => ("resolved".to_string(), String::new()),
                    (Some(ack), _) => (
                        "acknowledged".to_string(),
                        format!("acknowledged by {}: {}", ack.by, ack.comment),
                    ),
                    _ => ("firing".to_string(), String::new()),
                };
                Line {
                    fingerprint: a.alert.fingerprint.to_string(),
                    status,
                    text: alert_line(a),
                    note,
                }
            })
            .collect()
    }

    /// The message a notification posts (title and content).
    pub fn message(&self, n: &Notification) -> SlackMessageContent {
        let all: Vec<&NotifiedAlert> = n.alerts.iter().collect();
        let worst = n.alerts.iter().map(|a| a.alert.severity).max();
        content(
            &self.title_of(n),
            &Self::lines_of(&all),
            colour(n.status(), worst),
            &silence_hint(n),
        )
    }

    async fn webhook(&self, url: &Secret, body: &SlackMessageContent) -> Result<(), NotifyError> {
        let resp = self
            .client
            .post(url.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| http::network_error(&e, |s| self.scrub(s)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if status.is_success() {
            return Ok(());
        }
        Err(match http::status_error(status, &headers, &text) {
            NotifyError::Retryable {
                reason,
                retry_after,
            } => NotifyError::Retryable {
                reason: self.scrub(&reason),
                retry_after,
            },
            NotifyError::Permanent { reason } => NotifyError::Permanent {
                reason: self.scrub(&reason),
            },
            e => e,
        })
    }

    async fn call<T: Serialize>(
        &self,
        token: &Secret,
        method: &str,
        body: &T,
    ) -> Result<Value, NotifyError> {
        let resp = self
            .client
            .post(format!("{}/{method}", self.api_url))
            .bearer_auth(token.expose())
            .json(body)
            .send()
            .await
            .map_err(|e| http::network_error(&e, |s| self.scrub(s)))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            return Err(match http::status_error(status, &headers, &text) {
                NotifyError::Permanent { reason } => NotifyError::Permanent {
                    reason: self.scrub(&reason),
                },
                e => e,
            });
        }
        let v: Value = serde_json::from_str(&text).map_err(|_| NotifyError::Retryable {
            reason: format!("slack {method}: the answer is not JSON"),
            retry_after: None,
        })?;
        if v["ok"].as_bool() == Some(true) {
            Ok(v)
        } else {
            Err(classify_api_error(
                v["error"].as_str().unwrap_or("unknown_error"),
            ))
        }
    }

    async fn post_or_update(
        &self,
        token: &Secret,
        default_channel: &str,
        memo: &dyn DeliveryMemo,
        row: i64,
        posted: Posted,
    ) -> Result<(), NotifyError> {
        let body = content(&posted.title, &posted.lines, &posted.colour, &posted.hint);
        let row_key = format!("row:{row}");
        let existing = if row != 0 {
            memo.get(&row_key).await
        } else {
            None
        };
        let (channel, ts) = match existing.and_then(|v| {
            v.split_once(' ')
                .map(|(c, t)| (c.to_string(), t.to_string()))
        }) {
            Some((channel, ts)) => {
                // Posted before a crash or a failed step: update, do not post again.
                let req = SlackApiChatUpdateRequest::new(
                    SlackChannelId(channel.clone()),
                    body,
                    SlackTs(ts.clone()),
                );
                self.call(token, "chat.update", &req).await?;
                (channel, ts)
            }
            None => {
                let req = SlackApiChatPostMessageRequest::new(
                    SlackChannelId(default_channel.to_string()),
                    body,
                );
                let v = self.call(token, "chat.postMessage", &req).await?;
                let channel = v["channel"].as_str().unwrap_or(default_channel).to_string();
                let ts = v["ts"].as_str().unwrap_or_default().to_string();
                if row != 0 {
                    let _ = memo.put(&row_key, &format!("{channel} {ts}")).await;
                }
                (channel, ts)
            }
        };
        self.remember(
            memo,
            Posted {
                channel,
                ts,
                ..posted
            },
        )
        .await;
        Ok(())
    }

    async fn remember(&self, memo: &dyn DeliveryMemo, p: Posted) {
        let at = format!("{} {}", p.channel, p.ts);
        for l in &p.lines {
            if l.status != "resolved" {
                let _ = memo.put(&format!("fp:{}", l.fingerprint), &at).await;
            }
        }
        if let Ok(json) = serde_json::to_string(&p) {
            let _ = memo.put(&format!("msg:{at}"), &json).await;
        }
    }

    /// Resolves and acks: update each message that announced the alerts, reply in
    /// its thread; alerts with no known message get a new one.
    async fn update_known(
        &self,
        token: &Secret,
        channel: &str,
        memo: &dyn DeliveryMemo,
        n: &Notification,
        changed: &[&NotifiedAlert],
    ) -> Result<(), NotifyError> {
        let mut by_msg: BTreeMap<String, Vec<&NotifiedAlert>> = BTreeMap::new();
        let mut unknown: Vec<&NotifiedAlert> = Vec::new();
        for a in changed {
            match memo.get(&format!("fp:{}", a.alert.fingerprint)).await {
                Some(at) => by_msg.entry(at).or_default().push(a),
                None => unknown.push(a),
            }
        }
        for (at, alerts) in by_msg {
            let Some(mut posted) = memo
                .get(&format!("msg:{at}"))
                .await
                .and_then(|j| serde_json::from_str::<Posted>(&j).ok())
            else {
                unknown.extend(alerts);
                continue;
            };
            let fresh = Self::lines_of(&alerts);
            for l in &mut posted.lines {
                if let Some(f) = fresh.iter().find(|f| f.fingerprint == l.fingerprint) {
                    l.status = f.status.clone();
                    l.note = f.note.clone();
                }
            }
            let all_resolved = posted.lines.iter().all(|l| l.status == "resolved");
            let worst = n.alerts.iter().map(|a| a.alert.severity).max();
            let status = if all_resolved {
                AlertState::Resolved
            } else {
                AlertState::Firing
            };
            posted.colour = colour(status, worst).to_string();
            if posted.hint.is_empty() {
                posted.hint = silence_hint(n);
            }
            let body = content(&posted.title, &posted.lines, &posted.colour, &posted.hint);
            let req = SlackApiChatUpdateRequest::new(
                SlackChannelId(posted.channel.clone()),
                body,
                SlackTs(posted.ts.clone()),
            );
            self.call(token, "chat.update", &req).await?;
            let reply_key = format!("row:{}:reply:{}", n.id, posted.ts);
            if n.id == 0 || memo.get(&reply_key).await.is_none() {
                let text: Vec<String> = fresh
                    .iter()
                    .map(|l| {
                        let what = if l.status == "resolved" {
                            "Resolved"
                        } else {
                            "Acknowledged"
                        };
                        let mut s = format!("{} {what}: {}", status_icon(&l.status), l.text);
                        if !l.note.is_empty() {
                            s.push_str(&format!(" — {}", l.note));
                        }
                        s
                    })
                    .collect();
                let req = SlackApiChatPostMessageRequest::new(
                    SlackChannelId(posted.channel.clone()),
                    SlackMessageContent::new().with_text(http::truncate(&text.join("\n"), 3000)),
                )
                .with_thread_ts(SlackTs(posted.ts.clone()));
                self.call(token, "chat.postMessage", &req).await?;
                if n.id != 0 {
                    let _ = memo.put(&reply_key, "1").await;
                }
            }
            self.remember(memo, posted).await;
        }
        if !unknown.is_empty() {
            let worst = unknown.iter().map(|a| a.alert.severity).max();
            let status = if unknown.iter().all(|a| a.status == AlertState::Resolved) {
                AlertState::Resolved
            } else {
                AlertState::Firing
            };
            let posted = Posted {
                channel: String::new(),
                ts: String::new(),
                title: self.title_of(n),
                lines: Self::lines_of(&unknown),
                hint: silence_hint(n),
                colour: colour(status, worst).to_string(),
            };
            self.post_or_update(token, channel, memo, n.id, posted)
                .await?;
        }
        Ok(())
    }
}

/// The message recording a remediation attempt: the summary, the reason and who
/// decided, coloured by outcome.
pub fn action_message(note: &ActionNote) -> SlackMessageContent {
    let icon = match note.state.as_str() {
        "succeeded" => ":white_check_mark:",
        "dry_run" => ":memo:",
        "pending_approval" => ":raised_hand:",
        _ => ":warning:",
    };
    let mut text = format!("{icon} {}", note.summary);
    if !note.rule.is_empty() {
        text.push_str(&format!(" — for *{}*", note.rule));
    }
    if let Some(r) = &note.reason {
        text.push_str(&format!("\n_{}_", http::truncate(r, 600)));
    }
    if let Some(b) = &note.by {
        text.push_str(&format!("\nby {b}"));
    }
    if note.state == "pending_approval" {
        text.push_str(&format!(
            "\nApprove: `warden actions approve {}` · deny: `warden actions deny {}`",
            note.id, note.id
        ));
    }
    SlackMessageContent::new()
        .with_text(http::truncate(&note.summary, 3000))
        .with_blocks(vec![
            SlackSectionBlock::new()
                .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                    http::truncate(&text, 2900),
                )))
                .into(),
        ])
}

impl Notifier for SlackNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "slack"
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn action_note<'a>(&'a self, note: &'a ActionNote) -> BoxFuture<'a, Result<bool, NotifyError>> {
        Box::pin(async move {
            let body = action_message(note);
            match &self.mode {
                Mode::Webhook(url) => self.webhook(url, &body).await?,
                Mode::Api { token, channel } => {
                    let req = SlackApiChatPostMessageRequest::new(
                        SlackChannelId(channel.to_string()),
                        body,
                    );
                    self.call(token, "chat.postMessage", &req).await?;
                }
            }
            Ok(true)
        })
    }

    fn notify<'a>(
        &'a self,
        n: &'a Notification,
        memo: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            match &self.mode {
                Mode::Webhook(url) => self.webhook(url, &self.message(n)).await,
                Mode::Api { token, channel } => {
                    let announces = matches!(
                        n.reason,
                        NotifyReason::FirstNotification
                            | NotifyReason::NewAlertsInGroup
                            | NotifyReason::RepeatInterval
                            | NotifyReason::Escalation
                            | NotifyReason::Flapping
                            | NotifyReason::Test
                    );
                    let firing: Vec<&NotifiedAlert> = n.with_status(AlertState::Firing).collect();
                    if announces && !firing.is_empty() {
                        let worst = firing.iter().map(|a| a.alert.severity).max();
                        let posted = Posted {
                            channel: String::new(),
                            ts: String::new(),
                            title: self.title_of(n),
                            lines: Self::lines_of(&firing),
                            hint: silence_hint(n),
                            colour: colour(AlertState::Firing, worst).to_string(),
                        };
                        self.post_or_update(token, channel, memo, n.id, posted)
                            .await?;
                    }
                    let changed: Vec<&NotifiedAlert> = n
                        .alerts
                        .iter()
                        .filter(|a| {
                            a.status == AlertState::Resolved
                                || (n.reason == NotifyReason::Acknowledged
                                    && a.acknowledged.is_some())
                        })
                        .collect();
                    if !changed.is_empty() {
                        // Distinct from the row's own post, so a retry does not mix them.
                        let sub = Notification {
                            id: if announces { 0 } else { n.id },
                            ..n.clone()
                        };
                        self.update_known(token, channel, memo, &sub, &changed)
                            .await?;
                    }
                    Ok(())
                }
            }
        })
    }

    fn preview(&self, n: &Notification) -> String {
        let target = match &self.mode {
            Mode::Webhook(h) => {
                format!("POST {} (incoming webhook)", http::redact_urls(h.expose()))
            }
            Mode::Api { channel, .. } => {
                format!("POST {}/chat.postMessage to {channel}", self.api_url)
            }
        };
        format!(
            "{target}\n\n{}",
            serde_json::to_string_pretty(&self.message(n)).unwrap_or_default()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::test_support::{MemMemo, alert, note};
    use crate::testing::{self, Fault};
    use warden_engine::ports::NoMemo;

    fn api(url: &str, token: &str) -> SlackNotifier {
        let cfg: SlackConfig = toml::from_str(&format!(
            "name = \"ops\"\ntoken = \"{token}\"\nchannel = \"#alerts\"\napi_url = \"{url}/api\"\n"
        ))
        .unwrap();
        SlackNotifier::new(&cfg).unwrap()
    }

    fn hook(url: &str) -> SlackNotifier {
        let cfg: SlackConfig =
            toml::from_str(&format!("name = \"ops\"\nwebhook_url = \"{url}\"\n")).unwrap();
        SlackNotifier::new(&cfg).unwrap()
    }

    #[tokio::test]
    async fn incoming_webhook_posts_block_kit_and_classifies_errors() {
        let sl = testing::slack().await;
        let n = hook(&format!("{}/services/T0/B0/XYZSECRET", sl.url()));
        let nt = note(
            1,
            NotifyReason::FirstNotification,
            vec![(alert("DiskFull", "db-1"), AlertState::Firing, false)],
        );
        n.notify(&nt, &NoMemo).await.unwrap();
        let st = sl.state();
        assert!(st.rejected.is_empty(), "{:?}", st.rejected);
        let msg = &st.webhook_posts[0];
        assert_eq!(msg["text"], "[FIRING:1] DiskFull {cluster=\"c1\"}");
        let att = &msg["attachments"][0];
        assert_eq!(att["color"], "#d00000");
        let body = att["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(
            body.contains("DiskFull on db-1")
                && body.contains("value=97.5")
                && body.contains("runbook"),
            "{body}"
        );
        assert!(
            att["blocks"][2]["elements"][0]["text"]
                .as_str()
                .unwrap()
                .contains("warden silence add")
        );

        sl.fail_next(1, Fault::RateLimited(3));
        match n.notify(&nt, &NoMemo).await {
            Err(NotifyError::Retryable { retry_after, .. }) => {
                assert_eq!(retry_after, Some(std::time::Duration::from_secs(3)))
            }
            r => panic!("{r:?}"),
        }
        let gone = hook(&format!("{}/services/T0/B0/gone", sl.url()));
        match gone.notify(&nt, &NoMemo).await {
            Err(NotifyError::Permanent { reason }) => {
                assert!(reason.contains("channel_not_found"), "{reason}");
                assert!(!reason.contains("XYZSECRET"));
            }
            r => panic!("{r:?}"),
        }
    }

    #[tokio::test]
    async fn the_web_api_updates_the_message_on_ack_and_resolve() {
        let sl = testing::slack().await;
        let n = api(&sl.url(), "xoxb-1-secret");
        let memo = MemMemo::default();
        let a = alert("PgLag", "db-1");
        let b = alert("PgLag", "db-2");
        let fire = note(
            10,
            NotifyReason::FirstNotification,
            vec![
                (a.clone(), AlertState::Firing, false),
                (b.clone(), AlertState::Firing, false),
            ],
        );
        n.notify(&fire, &memo).await.unwrap();
        // A retry of the same row (the delivery was not recorded): no second post.
        n.notify(&fire, &memo).await.unwrap();
        let st = sl.state();
        assert_eq!((st.posts, st.updates), (1, 1), "{:?}", st.rejected);

        let ack = note(
            11,
            NotifyReason::Acknowledged,
            vec![(a.clone(), AlertState::Firing, true)],
        );
        n.notify(&ack, &memo).await.unwrap();
        let st = sl.state();
        assert_eq!((st.posts, st.updates, st.replies.len()), (1, 2, 1));
        let (ts, msg) = st.messages.iter().next().unwrap();
        let text = msg["attachments"][0]["blocks"][1]["text"]["text"]
            .as_str()
            .unwrap();
        assert!(
            text.contains(":eyes:") && text.contains("acknowledged by alice"),
            "{text}"
        );
        assert_eq!(&st.replies[0].0, ts);

        let resolve = note(
            12,
            NotifyReason::Resolved,
            vec![
                (a.clone(), AlertState::Resolved, false),
                (b.clone(), AlertState::Resolved, false),
            ],
        );
        n.notify(&resolve, &memo).await.unwrap();
        n.notify(&resolve, &memo).await.unwrap();
        let st = sl.state();
        assert_eq!(st.posts, 1, "resolves update, never re-post");
        assert_eq!(
            st.replies.len(),
            2,
            "one thread reply per row, even when retried"
        );
        let msg = st.messages.values().next().unwrap();
        assert_eq!(msg["attachments"][0]["color"], "#2eb886");
        assert!(st.rejected.is_empty(), "{:?}", st.rejected);
    }

    #[tokio::test]
    async fn web_api_errors() {
        let sl = testing::slack().await;
        let nt = note(
            1,
            NotifyReason::FirstNotification,
            vec![(alert("A", "1"), AlertState::Firing, false)],
        );
        match api(&sl.url(), "xoxp-user-token").notify(&nt, &NoMemo).await {
            Err(NotifyError::Permanent { reason }) => {
                assert!(reason.contains("invalid_auth"), "{reason}");
                assert!(!reason.contains("xoxp-user-token"));
            }
            r => panic!("{r:?}"),
        }
        let n = api(&sl.url(), "xoxb-ok");
        sl.fail_next(1, Fault::RateLimited(2));
        assert!(matches!(
            n.notify(&nt, &NoMemo).await,
            Err(NotifyError::Retryable { .. })
        ));
        sl.fail_next(1, Fault::ServerError(503));
        assert!(matches!(
            n.notify(&nt, &NoMemo).await,
            Err(NotifyError::Retryable { .. })
        ));
        assert!(n.notify(&nt, &NoMemo).await.is_ok());
        assert!(
            SlackNotifier::new(&toml::from_str("name = \"x\"\ntoken = \"xoxb\"\n").unwrap())
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_remediation_attempt_is_posted_as_a_note() {
        let sl = testing::slack().await;
        let n = hook(&format!("{}/services/T0/B0/XYZSECRET", sl.url()));
        let note = ActionNote {
            id: 4,
            action: "restart-web".into(),
            kind: "restart".into(),
            state: "pending_approval".into(),
            rule: "WebDown".into(),
            labels: warden_engine::model::Labels::new([("instance", "web-2")]).unwrap(),
            summary: "warden restart restart-web on {instance=\"web-2\"}: pending approval".into(),
            reason: None,
            by: None,
            at: 0,
        };
        assert!(n.action_note(&note).await.unwrap());
        let st = sl.state();
        assert!(st.rejected.is_empty(), "{:?}", st.rejected);
        let msg = &st.webhook_posts[0];
        assert!(msg["text"].as_str().unwrap().contains("pending approval"));
        let body = msg["blocks"][0]["text"]["text"].as_str().unwrap();
        assert!(body.contains("warden actions approve 4"), "{body}");
        assert!(body.contains("for *WebDown*"), "{body}");
    }
}
