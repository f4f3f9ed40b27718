//! Profile changes a signed-in user may make to itself.

use std::fmt;

/// Longest accepted `name`, in characters.
pub const MAX_NAME_CHARS: usize = 256;
/// Longest accepted `image` URL, in bytes.
pub const MAX_IMAGE_BYTES: usize = 2048;

/// A validated profile change; fields left `None` stay as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProfileUpdate {
    pub name: Option<String>,
    /// `Some(None)` removes the image.
    pub image: Option<Option<String>>,
}

/// A profile field that breaks its limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidField {
    pub field: &'static str,
    pub reason: String,
}

impl fmt::Display for InvalidField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

impl ProfileUpdate {
    /// Checks the limits: `name` at most 256 characters; `image` an absolute http or https URL of
    /// at most 2 KiB, or `None` to remove it.
    ///
    /// # Errors
    /// The first field that breaks its limit.
    pub fn new(name: Option<String>, image: Option<Option<String>>) -> Result<Self, InvalidField> {
        if let Some(name) = &name {
            if name.chars().count() > MAX_NAME_CHARS {
                return Err(InvalidField { field: "name", reason: format!("must be at most {MAX_NAME_CHARS} characters") });
            }
            if name.chars().any(char::is_control) {
                return Err(InvalidField { field: "name", reason: "must not contain control characters".into() });
            }
        }
        if let Some(Some(image)) = &image {
            check_image_url(image)?;
        }
        Ok(Self { name, image })
    }

    pub fn is_empty(&self) -> bool {
        self.name.is_none() && self.image.is_none()
    }
}

fn check_image_url(image: &str) -> Result<(), InvalidField> {
    let invalid = |reason: String| InvalidField { field: "image", reason };
    if image.len() > MAX_IMAGE_BYTES {
        return Err(invalid(format!("must be at most {MAX_IMAGE_BYTES} bytes")));
    }
    match url::Url::parse(image) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Ok(()),
        _ => Err(invalid("must be an absolute http or https URL".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_name_and_https_image() {
        let update = ProfileUpdate::new(Some("Ada".into()), Some(Some("https://example.com/a.png".into()))).unwrap();
        assert_eq!(update.name.as_deref(), Some("Ada"));
    }

    #[test]
    fn accepts_image_removal() {
        let update = ProfileUpdate::new(None, Some(None)).unwrap();
        assert_eq!(update.image, Some(None));
        assert!(!update.is_empty());
    }

    #[test]
    fn rejects_long_name() {
        let error = ProfileUpdate::new(Some("x".repeat(257)), None).unwrap_err();
        assert_eq!(error.field, "name");
    }

    #[test]
    fn accepts_name_of_256_multibyte_characters() {
        assert!(ProfileUpdate::new(Some("é".repeat(256)), None).is_ok());
    }

    #[test]
    fn rejects_control_characters_in_name() {
        assert!(ProfileUpdate::new(Some("a\u{0}b".into()), None).is_err());
    }

    #[test]
    fn rejects_non_http_image() {
        for image in ["javascript:alert(1)", "data:image/png;base64,AAAA", "/relative.png", "ftp://example.com/a.png"] {
            let error = ProfileUpdate::new(None, Some(Some(image.into()))).unwrap_err();
            assert_eq!(error.field, "image", "{image}");
        }
    }

    #[test]
    fn rejects_image_over_two_kib() {
        let image = format!("https://example.com/{}", "a".repeat(2048));
        assert!(ProfileUpdate::new(None, Some(Some(image))).is_err());
    }
}
