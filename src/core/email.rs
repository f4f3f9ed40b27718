//! Email addresses as Doorman accepts them: trimmed, lower-cased, plausibly deliverable.

use std::fmt;

/// Longest accepted address, in bytes (the SMTP path limit).
const MAX_EMAIL_BYTES: usize = 254;

/// A trimmed, lower-cased email address with a local part, an `@` and a dotted domain.
///
/// Addresses under the `.invalid` top-level domain, which can never receive mail and which guests'
/// placeholder addresses use, are rejected. `Debug` hides the address, which is personal data.
#[derive(Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// # Errors
    /// A reason, for text that is not an acceptable address.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let email = text.trim().to_lowercase();
        if email.is_empty() || email.len() > MAX_EMAIL_BYTES {
            return Err("the email must have 1 to 254 characters");
        }
        let Some((local, domain)) = email.rsplit_once('@') else {
            return Err("the email has no @");
        };
        let valid_local = !local.is_empty() && local.len() <= 64 && !local.contains('@');
        let labels: Vec<&str> = domain.split('.').collect();
        let valid_domain = labels.len() >= 2
            && labels.iter().all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_alphanumeric() || c == '-')
            });
        let printable = email.chars().all(|c| !c.is_whitespace() && !c.is_control() && !"<>()[],;:\"\\".contains(c));
        if !valid_local || !valid_domain || !printable {
            return Err("the email is not a valid address");
        }
        if labels.last() == Some(&"invalid") {
            return Err("addresses under .invalid cannot receive mail");
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_lower_cases() {
        assert_eq!(Email::parse("  Ada.Lovelace@Example.COM ").unwrap().as_str(), "ada.lovelace@example.com");
    }

    #[test]
    fn accepts_plus_and_subdomains() {
        assert!(Email::parse("ada+doorman@mail.example.co.uk").is_ok());
    }

    #[test]
    fn rejects_malformed_addresses() {
        for text in ["", "ada", "ada@", "@example.com", "ada@example", "ada@-example.com", "a b@example.com", "ada@exa mple.com", "<ada@example.com>"] {
            assert!(Email::parse(text).is_err(), "{text:?}");
        }
    }

    #[test]
    fn rejects_the_invalid_domain() {
        assert!(Email::parse("abc@anonymous.invalid").is_err());
        assert!(Email::parse("abc@x.INVALID").is_err());
    }

    #[test]
    fn rejects_overlong_addresses() {
        let text = format!("{}@example.com", "a".repeat(250));
        assert!(Email::parse(&text).is_err());
    }

    #[test]
    fn debug_hides_the_address() {
        assert!(!format!("{:?}", Email::parse("ada@example.com").unwrap()).contains("ada"));
    }
}
