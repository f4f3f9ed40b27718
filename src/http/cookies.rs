//! Cookie names, attributes and the signed session value, in Better Auth's format.

use axum::http::header::{self, HeaderMap, HeaderValue};
use percent_encoding::{percent_decode_str, utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

/// Characters `encodeURIComponent` leaves as they are; every other byte is percent-encoded.
const URI_COMPONENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// Length of a standard, padded base64 HMAC-SHA256 signature.
const SIGNATURE_LENGTH: usize = 44;

/// Names and attributes of the cookies Doorman sets.
#[derive(Debug, Clone)]
pub struct CookieSettings {
    /// `Secure` and the `__Secure-` prefix, on when `base_url` is https.
    secure: bool,
    session_token: String,
    session_data: String,
    dont_remember: String,
}

impl CookieSettings {
    pub fn new(prefix: &str, secure: bool) -> Self {
        let name = |cookie: &str| {
            let secure_prefix = if secure { "__Secure-" } else { "" };
            format!("{secure_prefix}{prefix}.{cookie}")
        };
        Self {
            secure,
            session_token: name("session_token"),
            session_data: name("session_data"),
            dont_remember: name("dont_remember"),
        }
    }

    pub fn session_token_name(&self) -> &str {
        &self.session_token
    }

    /// Returns the `Set-Cookie` value that stores a signed session value for `max_age` seconds.
    pub fn set_session(&self, signed_value: &str, max_age: u64) -> HeaderValue {
        let value = utf8_percent_encode(signed_value, URI_COMPONENT);
        self.serialize(&self.session_token, &value.to_string(), max_age)
    }

    /// `Set-Cookie` values that clear the session cookies, in Better Auth's order.
    pub fn clear_session(&self) -> [HeaderValue; 3] {
        [
            self.serialize(&self.session_token, "", 0),
            self.serialize(&self.session_data, "", 0),
            self.serialize(&self.dont_remember, "", 0),
        ]
    }

    fn serialize(&self, name: &str, value: &str, max_age: u64) -> HeaderValue {
        let secure = if self.secure { "; Secure" } else { "" };
        let cookie = format!("{name}={value}; Max-Age={max_age}; Path=/; HttpOnly{secure}; SameSite=Lax");
        HeaderValue::from_str(&cookie).expect("cookie names and encoded values are visible ASCII")
    }

    /// Reads the signed session value from the `Cookie` headers, as Better Auth does: the first
    /// cookie of that exact name wins, surrounding quotes are stripped, a value with `%` is
    /// percent-decoded, and a value whose signature part is not 44 characters ending in `=` counts
    /// as absent.
    pub fn read_session(&self, headers: &HeaderMap) -> Option<String> {
        let raw = find_cookie(headers, &self.session_token)?;
        let raw = raw.trim_matches('"');
        let value = if raw.contains('%') {
            percent_decode_str(raw).decode_utf8().ok()?.into_owned()
        } else {
            raw.to_string()
        };

        let (token, signature) = value.rsplit_once('.')?;
        let well_formed = !token.is_empty() && signature.len() == SIGNATURE_LENGTH && signature.ends_with('=');
        well_formed.then_some(value)
    }
}

fn find_cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|line| line.split(';'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| key.trim() == name)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIGNED: &str = "hFWVJavIOEiT8nzM4sUjQLkGLDWwQNJt.2a+ep62c/MHEIXn33Tao8kCJZeT5FYv44Be292979Mc=";

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        headers
    }

    #[test]
    fn set_cookie_matches_better_auth_format() {
        let cookies = CookieSettings::new("better-auth", false);
        let value = cookies.set_session(SIGNED, 604_800);
        assert_eq!(
            value.to_str().unwrap(),
            "better-auth.session_token=hFWVJavIOEiT8nzM4sUjQLkGLDWwQNJt.2a%2Bep62c%2FMHEIXn33Tao8kCJZeT5FYv44Be292979Mc%3D; \
             Max-Age=604800; Path=/; HttpOnly; SameSite=Lax"
        );
    }

    #[test]
    fn secure_cookies_carry_prefix_and_attribute() {
        let cookies = CookieSettings::new("doorman", true);
        let value = cookies.set_session(SIGNED, 10);
        let text = value.to_str().unwrap();
        assert!(text.starts_with("__Secure-doorman.session_token="));
        assert!(text.contains("; HttpOnly; Secure; SameSite=Lax"));
    }

    #[test]
    fn clearing_sets_three_empty_cookies() {
        let cookies = CookieSettings::new("doorman", false);
        let cleared = cookies.clear_session();
        assert_eq!(cleared[0].to_str().unwrap(), "doorman.session_token=; Max-Age=0; Path=/; HttpOnly; SameSite=Lax");
        assert!(cleared[1].to_str().unwrap().starts_with("doorman.session_data=;"));
        assert!(cleared[2].to_str().unwrap().starts_with("doorman.dont_remember=;"));
    }

    #[test]
    fn reads_encoded_and_plain_values() {
        let cookies = CookieSettings::new("doorman", false);
        let encoded = utf8_percent_encode(SIGNED, URI_COMPONENT).to_string();
        assert_eq!(cookies.read_session(&headers(&format!("other=1; doorman.session_token={encoded}"))).as_deref(), Some(SIGNED));
        assert_eq!(cookies.read_session(&headers(&format!("doorman.session_token=\"{SIGNED}\""))).as_deref(), Some(SIGNED));
    }

    #[test]
    fn first_cookie_of_the_name_wins() {
        let cookies = CookieSettings::new("doorman", false);
        let line = format!("doorman.session_token={SIGNED}; doorman.session_token=other.value");
        assert_eq!(cookies.read_session(&headers(&line)).as_deref(), Some(SIGNED));
    }

    #[test]
    fn malformed_values_count_as_absent() {
        let cookies = CookieSettings::new("doorman", false);
        for line in [
            "doorman.session_token=",
            "doorman.session_token=nodot",
            "doorman.session_token=.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
            "doorman.session_token=abc.short=",
            "doorman.session_token=abc%ZZ",
            "__Secure-doorman.session_token=abc.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        ] {
            assert_eq!(cookies.read_session(&headers(line)), None, "{line}");
        }
    }
}
