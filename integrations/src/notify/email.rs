//! The email notifier (lettre, async SMTP): one mail per notification, with a
//! text and an HTML body. `smtp://` is plain SMTP (with `starttls = true`,
//! STARTTLS is required), `smtps://` is implicit TLS; AUTH with `username` and
//! `password` (or `password_env` / `password_file`). SMTP 4xx answers and
//! connection failures are retried; 5xx answers are permanent.

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart, header};
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use serde::Deserialize;
use warden_engine::model::AlertState;
use warden_engine::ports::{
    BoxFuture, DeliveryMemo, Notification, Notifier, NotifyError, NotifyReason,
};

use super::console::rfc3339;
use super::secret::{self, Secret};
use super::template;

/// `[[notifier.email]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    /// The receiver's name for routes.
    pub name: String,
    /// The server: `smtp://host:port` or `smtps://host:port`.
    pub smtp: String,
    /// Require STARTTLS on `smtp://`. Default `false`.
    #[serde(default)]
    pub starttls: bool,
    /// AUTH user name.
    #[serde(default)]
    pub username: Option<String>,
    /// AUTH password (or `password_env` / `password_file`).
    #[serde(default)]
    pub password: Option<String>,
    /// Environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
    /// File holding the password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// Sender, e.g. `warden <warden@example.org>`.
    pub from: String,
    /// Recipients.
    pub to: Vec<String>,
    /// Subject template. Default `[FIRING:2] alertname {group labels}`.
    #[serde(default)]
    pub subject: Option<String>,
    /// Accept any server certificate (self-signed test servers only). Default `false`.
    #[serde(default)]
    pub tls_insecure: bool,
    /// Send resolved notifications. Default `true`.
    #[serde(default = "yes")]
    pub send_resolved: bool,
}

fn yes() -> bool {
    true
}

/// Sends mail.
pub struct EmailNotifier {
    name: String,
    from: Mailbox,
    to: Vec<Mailbox>,
    subject: String,
    send_resolved: bool,
    transport: AsyncSmtpTransport<Tokio1Executor>,
    password: Option<Secret>,
}

impl std::fmt::Debug for EmailNotifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmailNotifier")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl EmailNotifier {
    /// Builds the notifier from its config.
    pub fn new(c: &EmailConfig) -> Result<Self, String> {
        let url = reqwest::Url::parse(&c.smtp).map_err(|e| {
            format!(
                "invalid smtp '{}': {e}: write smtp://host:port or smtps://host:port",
                c.smtp
            )
        })?;
        let host = url
            .host_str()
            .ok_or("the smtp URL has no host")?
            .to_string();
        let implicit = match url.scheme() {
            "smtp" => false,
            "smtps" => true,
            s => return Err(format!("smtp scheme must be smtp or smtps, not '{s}'")),
        };
        let port = url.port().unwrap_or(if implicit {
            465
        } else if c.starttls {
            587
        } else {
            25
        });
        let params = || {
            TlsParameters::builder(host.clone())
                .dangerous_accept_invalid_certs(c.tls_insecure)
                .dangerous_accept_invalid_hostnames(c.tls_insecure)
                .build_rustls()
                .map_err(|e| format!("TLS setup: {e}"))
        };
        let tls = if implicit {
            Tls::Wrapper(params()?)
        } else if c.starttls {
            Tls::Required(params()?)
        } else {
            Tls::None
        };
        let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(Duration::from_secs(10)));
        let password = secret::resolve(
            "password",
            c.password.as_ref(),
            c.password_env.as_ref(),
            c.password_file.as_ref(),
        )?;
        match (&c.username, &password) {
            (Some(u), Some(p)) => {
                b = b
                    .credentials(Credentials::new(u.clone(), p.expose().to_string()))
                    .authentication(vec![Mechanism::Plain])
            }
            (Some(_), None) => return Err("'username' needs 'password' (or _env/_file)".into()),
            (None, Some(_)) => return Err("'password' needs 'username'".into()),
            (None, None) => {}
        }
        let from: Mailbox = c
            .from
            .parse()
            .map_err(|e| format!("invalid from '{}': {e}", c.from))?;
        if c.to.is_empty() {
            return Err("'to' needs at least one address".into());
        }
        let to =
            c.to.iter()
                .map(|t| {
                    t.parse::<Mailbox>()
                        .map_err(|e| format!("invalid to '{t}': {e}"))
                })
                .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            name: c.name.clone(),
            from,
            to,
            subject: c
                .subject
                .clone()
                .unwrap_or_else(|| template::DEFAULT_TITLE.to_string()),
            send_resolved: c.send_resolved,
            transport: b.build(),
            password,
        })
    }

    /// Subject, text body and HTML body of `n`.
    pub fn render(&self, n: &Notification) -> (String, String, String) {
        let mut subject = template::render_line(&self.subject, n);
        match n.reason {
            NotifyReason::Acknowledged => subject = format!("[ACKNOWLEDGED] {subject}"),
            NotifyReason::Flapping => subject = format!("[FLAPPING] {subject}"),
            NotifyReason::Escalation => subject = format!("[ESCALATED] {subject}"),
            NotifyReason::Test => subject = format!("[TEST] {subject}"),
            _ => {}
        }
        let mut text = format!("{subject}\nReason: {}\n\n", n.reason.as_str());
        let mut html = format!(
            "<html><body><h2>{}</h2><p>Reason: {}</p><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\
             <tr><th>Status</th><th>Alert</th><th>Labels</th><th>Value</th><th>Since</th><th>Summary</th></tr>",
            esc(&subject),
            esc(n.reason.as_str())
        );
        for a in &n.alerts {
            let al = &a.alert;
            let status = match (a.status, &a.acknowledged) {
                (AlertState::Resolved, _) => "RESOLVED".to_string(),
                (_, Some(ack)) => format!("ACKNOWLEDGED by {} ({})", ack.by, ack.comment),
                _ => "FIRING".to_string(),
            };
            let labels = al.labels.without(&["alertname"]).to_string();
            let summary = al.annotations.get("summary").cloned().unwrap_or_default();
            let since = rfc3339(al.fired_at.unwrap_or(al.since));
            text.push_str(&format!(
                "{status} {} {labels}\n  value: {}\n  since: {since}\n",
                al.name, al.value
            ));
            if !summary.is_empty() {
                text.push_str(&format!("  summary: {summary}\n"));
            }
            if let Some(d) = al.annotations.get("description").filter(|d| !d.is_empty()) {
                text.push_str(&format!("  description: {d}\n"));
            }
            let mut runbook_html = String::new();
            if let Some(rb) = al.annotations.get("runbook").filter(|r| !r.is_empty()) {
                text.push_str(&format!("  runbook: {rb}\n"));
                runbook_html = format!(" <a href=\"{}\">runbook</a>", esc(rb));
            }
            text.push('\n');
            html.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}{}</td></tr>",
                esc(&status),
                esc(&al.name),
                esc(&labels),
                al.value,
                esc(&since),
                esc(&summary),
                runbook_html
            ));
        }
        let hint = format!(
            "To silence: warden silence add {} --duration 2h --comment \"...\"",
            n.group_labels
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.to_string())))
                .collect::<Vec<_>>()
                .join(" ")
        );
        text.push_str(&hint);
        text.push('\n');
        html.push_str(&format!(
            "</table><p><small>{}</small></p></body></html>",
            esc(&hint)
        ));
        (subject, text, html)
    }

    fn message(&self, n: &Notification) -> Result<Message, NotifyError> {
        let (subject, text, html) = self.render(n);
        let mut b = Message::builder().from(self.from.clone()).subject(subject);
        for t in &self.to {
            b = b.to(t.clone());
        }
        if n.id != 0 {
            // Threads a group's mails together in mail clients.
            let group = warden_engine::model::Fingerprint::of(&n.group_key, &Default::default());
            b = b.header(header::InReplyTo::from(format!("<{group}@warden>")));
        }
        b.multipart(MultiPart::alternative_plain_html(text, html))
            .map_err(|e| NotifyError::Permanent {
                reason: format!("cannot build the mail: {e}"),
            })
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Notifier for EmailNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "email"
    }

    fn send_resolved(&self) -> bool {
        self.send_resolved
    }

    fn notify<'a>(
        &'a self,
        n: &'a Notification,
        _memo: &'a dyn DeliveryMemo,
    ) -> BoxFuture<'a, Result<(), NotifyError>> {
        Box::pin(async move {
            let msg = self.message(n)?;
            match self.transport.send(msg).await {
                Ok(_) => Ok(()),
                Err(e) => {
                    let mut reason = format!("smtp: {e}");
                    if let Some(p) = &self.password {
                        reason = p.scrub(&reason);
                    }
                    if e.is_permanent() {
                        Err(NotifyError::Permanent { reason })
                    } else {
                        Err(NotifyError::Retryable {
                            reason,
                            retry_after: None,
                        })
                    }
                }
            }
        })
    }

    fn preview(&self, n: &Notification) -> String {
        let (subject, text, _) = self.render(n);
        let to: Vec<String> = self.to.iter().map(|t| t.to_string()).collect();
        format!(
            "From: {}\nTo: {}\nSubject: {subject}\n\n{text}",
            self.from,
            to.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notify::test_support::{alert, note};
    use crate::testing::{SmtpMode, SmtpServer};
    use warden_engine::ports::NoMemo;

    fn notifier(url: &str, extra: &str) -> EmailNotifier {
        let cfg: EmailConfig = toml::from_str(&format!(
            "name = \"team\"\nsmtp = \"{url}\"\nfrom = \"warden <warden@example.org>\"\nto = [\"oncall@example.org\", \"lead@example.org\"]\n{extra}"
        ))
        .unwrap();
        EmailNotifier::new(&cfg).unwrap()
    }

    fn wait_for_mails(s: &SmtpServer, n: usize) -> Vec<String> {
        for _ in 0..100 {
            let m = s.mails();
            if m.len() >= n {
                return m;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        s.mails()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn plain_starttls_and_implicit_tls_with_auth() {
        let nt = note(
            3,
            NotifyReason::FirstNotification,
            vec![
                (alert("DiskFull", "db-1"), AlertState::Firing, false),
                (alert("DiskFull", "db-2"), AlertState::Resolved, false),
            ],
        );
        let plain = SmtpServer::start(SmtpMode::Plain);
        notifier(&format!("smtp://127.0.0.1:{}", plain.port), "")
            .notify(&nt, &NoMemo)
            .await
            .unwrap();
        let m = wait_for_mails(&plain, 1);
        assert_eq!(m.len(), 1, "one mail per notification");
        let mail = &m[0];
        assert!(
            mail.contains("X-Envelope-To: oncall@example.org,lead@example.org"),
            "{mail}"
        );
        assert!(
            mail.contains("Subject: [FIRING:1] DiskFull {cluster=\"c1\"}"),
            "{mail}"
        );
        assert!(mail.contains("multipart/alternative"));
        assert!(mail.contains("text/plain") && mail.contains("text/html"));
        assert!(
            mail.contains("FIRING DiskFull") && mail.contains("RESOLVED DiskFull"),
            "{mail}"
        );

        let auth = "username = \"warden\"\npassword = \"s3cret\"\ntls_insecure = true\n";
        let st = SmtpServer::start(SmtpMode::StartTls);
        notifier(
            &format!("smtp://127.0.0.1:{}", st.port),
            &format!("starttls = true\n{auth}"),
        )
        .notify(&nt, &NoMemo)
        .await
        .unwrap();
        assert_eq!(wait_for_mails(&st, 1).len(), 1);
        // Without STARTTLS the server refuses: a permanent SMTP error.
        let refused = notifier(&format!("smtp://127.0.0.1:{}", st.port), "")
            .notify(&nt, &NoMemo)
            .await;
        assert!(refused.is_err());

        let imp = SmtpServer::start(SmtpMode::Implicit);
        notifier(&format!("smtps://127.0.0.1:{}", imp.port), auth)
            .notify(&nt, &NoMemo)
            .await
            .unwrap();
        assert_eq!(wait_for_mails(&imp, 1).len(), 1);
        // Wrong credentials: refused, and the password never shows in the error.
        let bad = notifier(
            &format!("smtp://127.0.0.1:{}", st.port),
            "starttls = true\nusername = \"warden\"\npassword = \"wrongpass\"\ntls_insecure = true\n",
        );
        match tokio::time::timeout(std::time::Duration::from_secs(5), bad.notify(&nt, &NoMemo))
            .await
        {
            Ok(Err(NotifyError::Permanent { reason })) => {
                assert!(
                    reason.contains("535") || reason.contains("credentials"),
                    "{reason}"
                );
                assert!(!reason.contains("wrongpass"), "{reason}")
            }
            r => panic!("bad credentials are a permanent failure: {r:?}"),
        }
        // A self-signed certificate is refused unless told otherwise.
        let strict = notifier(
            &format!("smtps://127.0.0.1:{}", imp.port),
            "username = \"warden\"\npassword = \"s3cret\"\n",
        );
        assert!(matches!(
            strict.notify(&nt, &NoMemo).await,
            Err(NotifyError::Retryable { .. })
        ));
        // Nobody listening: retryable.
        let down = notifier("smtp://127.0.0.1:9", "");
        assert!(matches!(
            down.notify(&nt, &NoMemo).await,
            Err(NotifyError::Retryable { .. })
        ));
    }

    #[test]
    fn config_errors() {
        let bad = |extra: &str| {
            let cfg: EmailConfig = toml::from_str(&format!(
                "name = \"t\"\nfrom = \"a@b.c\"\nto = [\"x@y.z\"]\n{extra}"
            ))
            .unwrap();
            EmailNotifier::new(&cfg).unwrap_err()
        };
        assert!(bad("smtp = \"http://x\"").contains("smtp or smtps"));
        assert!(bad("smtp = \"smtp://x\"\nusername = \"u\"").contains("password"));
    }
}
