//! Delivery of sign-in codes: SMTP, or the console for development.

mod smtp;

use std::fmt;

use futures_util::future::BoxFuture;

pub use self::smtp::SmtpMailer;
use crate::config::{MailConfig, MailTransport};
use crate::core::email::Email;
use crate::core::otp::OtpCode;

/// A sign-in code on its way to an address.
pub struct CodeMessage<'a> {
    pub to: &'a Email,
    pub code: &'a OtpCode,
    /// Minutes the code stays valid, for the message text.
    pub valid_minutes: u64,
}

/// The reason a message was not delivered. The text names the failure, never the address or the code.
#[derive(Debug)]
pub struct MailError(pub String);

impl fmt::Display for MailError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for MailError {}

/// Sends sign-in codes.
pub trait Mailer: Send + Sync {
    fn send_code<'a>(&'a self, message: CodeMessage<'a>) -> BoxFuture<'a, Result<(), MailError>>;
}

/// Builds the configured mailer.
///
/// # Errors
/// An SMTP URL that is missing or invalid, or a `mail.from` that is not an address.
pub fn from_config(config: &MailConfig, default_from: &str) -> anyhow::Result<Box<dyn Mailer>> {
    let subject = config.subject.clone();
    match config.transport {
        MailTransport::Console => Ok(Box::new(ConsoleMailer { subject })),
        MailTransport::Smtp => {
            let from = config.from.clone().unwrap_or_else(|| default_from.to_string());
            Ok(Box::new(SmtpMailer::new(config.smtp_url.as_deref(), &from, subject)?))
        }
    }
}

/// "1 minute" or "N minutes".
fn validity(minutes: u64) -> String {
    if minutes == 1 {
        "1 minute".to_string()
    } else {
        format!("{minutes} minutes")
    }
}

/// The plain-text body of a code message.
pub fn text_body(message: &CodeMessage<'_>) -> String {
    format!(
        "Your sign-in code is {}\n\nIt is valid for {}. If you did not ask for it, ignore this message.\n",
        message.code.expose(),
        validity(message.valid_minutes)
    )
}

/// The HTML body of a code message.
pub fn html_body(message: &CodeMessage<'_>) -> String {
    format!(
        "<!doctype html><html><body><p>Your sign-in code is</p>\
         <p style=\"font-size:28px;font-weight:bold;letter-spacing:4px;font-family:monospace\">{}</p>\
         <p>It is valid for {}. If you did not ask for it, ignore this message.</p></body></html>",
        message.code.expose(),
        validity(message.valid_minutes)
    )
}

/// Prints each message to standard output, for development; logs go to standard error.
pub struct ConsoleMailer {
    subject: String,
}

impl Mailer for ConsoleMailer {
    fn send_code<'a>(&'a self, message: CodeMessage<'a>) -> BoxFuture<'a, Result<(), MailError>> {
        Box::pin(async move {
            println!("To: {}\nSubject: {}\n\n{}", message.to.as_str(), self.subject, text_body(&message));
            Ok(())
        })
    }
}
