//! SMTP delivery with lettre: `smtp://` upgrades with STARTTLS when the server offers it,
//! `smtps://` uses TLS from the first byte; user and password come from the URL.

use std::time::Duration;

use anyhow::{bail, Context};
use futures_util::future::BoxFuture;
use lettre::message::{header::ContentType, Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use percent_encoding::percent_decode_str;

use super::{html_body, text_body, CodeMessage, MailError, Mailer};

/// Longest time one delivery may take, connection included.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

pub struct SmtpMailer {
    /// `None` when `mail.smtp_url` is unset: every send then fails with a clear error.
    transport: Option<AsyncSmtpTransport<Tokio1Executor>>,
    from: Mailbox,
    subject: String,
}

impl SmtpMailer {
    /// # Errors
    /// An invalid SMTP URL or sender address.
    pub fn new(url: Option<&str>, from: &str, subject: String) -> anyhow::Result<Self> {
        let from: Mailbox = from.parse().with_context(|| format!("mail.from {from:?} is not an email address"))?;
        let transport = url.map(transport).transpose()?;
        if transport.is_none() {
            tracing::warn!("mail.smtp_url is not set; email codes cannot be sent");
        }
        Ok(Self { transport, from, subject })
    }
}

fn transport(text: &str) -> anyhow::Result<AsyncSmtpTransport<Tokio1Executor>> {
    let url = url::Url::parse(text).context("mail.smtp_url is not a URL")?;
    let host = url.host_str().context("mail.smtp_url has no host")?.to_string();
    let parameters = TlsParameters::new(host.clone()).context("building the TLS parameters for SMTP")?;
    let (tls, default_port) = match url.scheme() {
        "smtp" => (Tls::Opportunistic(parameters), 587),
        "smtps" => (Tls::Wrapper(parameters), 465),
        other => bail!("mail.smtp_url must start with smtp:// or smtps://, not {other}://"),
    };

    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
        .port(url.port().unwrap_or(default_port))
        .tls(tls)
        .timeout(Some(SEND_TIMEOUT));
    if !url.username().is_empty() {
        let user = percent_decode_str(url.username()).decode_utf8_lossy().into_owned();
        let password = percent_decode_str(url.password().unwrap_or_default()).decode_utf8_lossy().into_owned();
        builder = builder.credentials(Credentials::new(user, password));
    }
    Ok(builder.build())
}

/// Describes an SMTP failure by its kind and reply code only, because the server's reply text may
/// quote the recipient's address.
fn describe(error: &lettre::transport::smtp::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_tls() {
        "TLS failure"
    } else if error.is_permanent() {
        "permanent rejection"
    } else if error.is_transient() {
        "temporary rejection"
    } else {
        "connection or protocol failure"
    };
    match error.status() {
        Some(code) => format!("{kind} (reply {code})"),
        None => kind.to_string(),
    }
}

impl Mailer for SmtpMailer {
    fn send_code<'a>(&'a self, message: CodeMessage<'a>) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            let transport = self.transport.as_ref().ok_or_else(|| MailError("mail.smtp_url is not set".into()))?;
            let to: Mailbox = message.to.as_str().parse().map_err(|_| MailError("the recipient is not a mailbox".into()))?;
            let email = Message::builder()
                .message_id(None)
                .from(self.from.clone())
                .to(to)
                .subject(&self.subject)
                .multipart(
                    MultiPart::alternative()
                        .singlepart(SinglePart::builder().header(ContentType::TEXT_PLAIN).body(text_body(&message)))
                        .singlepart(SinglePart::builder().header(ContentType::TEXT_HTML).body(html_body(&message))),
                )
                .map_err(|error| MailError(format!("building the message failed: {error}")))?;

            match tokio::time::timeout(SEND_TIMEOUT, transport.send(email)).await {
                Ok(Ok(_)) => Ok(()),
                Ok(Err(error)) => Err(MailError(format!("SMTP delivery failed: {}", describe(&error)))),
                Err(_) => Err(MailError(format!("SMTP delivery timed out after {} s", SEND_TIMEOUT.as_secs()))),
            }
        })
    }
}
