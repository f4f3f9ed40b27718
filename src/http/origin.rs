//! Trusted origins: the CSRF origin check, the sign-in Fetch Metadata check, callback URLs.

use axum::http::{header, HeaderMap};
use url::Url;

use super::error::ApiError;

/// One entry of the trusted origins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OriginPattern {
    /// `scheme://host[:port]`, compared with default ports filled in.
    Exact { scheme: String, host: String, port: Option<u16> },
    /// `*.example.com` (http or https) or `https://*.example.com[:port]`: any subdomain.
    Subdomains { scheme: Option<String>, suffix: String, port: Option<u16> },
    /// A custom scheme without a host, such as `myapp://`: any origin of that scheme.
    Scheme(String),
}

impl OriginPattern {
    /// Parses an exact origin, a custom scheme (`tauri://localhost`, `myapp://`) or a `*.` pattern.
    ///
    /// # Errors
    /// A reason, for a value that is none of these.
    pub fn parse(pattern: &str) -> Result<Self, String> {
        let pattern = pattern.trim().to_ascii_lowercase();
        if let Some(rest) = pattern.strip_prefix("*.") {
            return Self::subdomains(None, rest.trim_end_matches('/'));
        }
        let Some((scheme, rest)) = pattern.split_once("://") else {
            return Err("expected an origin such as https://app.example.com, a scheme such as myapp://, or *.example.com".into());
        };
        if scheme.is_empty() || !scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) {
            return Err(format!("invalid scheme {scheme:?}"));
        }
        let rest = rest.trim_end_matches('/');
        if rest.is_empty() {
            return Ok(Self::Scheme(scheme.to_string()));
        }
        if rest.contains('*') && !rest.starts_with("*.") {
            return Err("a wildcard stands only at the start of the host, as in https://*.example.com".into());
        }
        if let Some(rest) = rest.strip_prefix("*.") {
            return Self::subdomains(Some(scheme.to_string()), rest);
        }

        let url = Url::parse(&format!("{scheme}://{rest}")).map_err(|error| error.to_string())?;
        if url.path() != "/" && !url.path().is_empty() || url.query().is_some() {
            return Err("an origin has no path or query".into());
        }
        let host = url.host_str().ok_or("the origin has no host")?.to_string();
        Ok(Self::Exact { scheme: scheme.to_string(), host, port: url.port_or_known_default() })
    }

    fn subdomains(scheme: Option<String>, rest: &str) -> Result<Self, String> {
        let (suffix, port) = match rest.rsplit_once(':') {
            Some((host, port)) => (host, Some(port.parse::<u16>().map_err(|_| format!("invalid port {port:?}"))?)),
            None => (rest, None),
        };
        if suffix.is_empty() || suffix.contains('*') || suffix.contains('/') {
            return Err("a wildcard pattern looks like *.example.com".into());
        }
        let port = port.or_else(|| match scheme.as_deref() {
            Some("https") => Some(443),
            Some("http") => Some(80),
            _ => None,
        });
        Ok(Self::Subdomains { scheme, suffix: suffix.to_string(), port })
    }

    fn matches(&self, origin: &Url) -> bool {
        let scheme = origin.scheme();
        let host = origin.host_str().unwrap_or_default().to_ascii_lowercase();
        let port = origin.port_or_known_default();
        match self {
            Self::Exact { scheme: s, host: h, port: p } => s == scheme && *h == host && *p == port,
            Self::Subdomains { scheme: s, suffix, port: p } => {
                let scheme_matches = match s {
                    Some(s) => s == scheme,
                    None => matches!(scheme, "http" | "https"),
                };
                let host_matches = host.len() > suffix.len() + 1
                    && host.ends_with(suffix.as_str())
                    && host.as_bytes()[host.len() - suffix.len() - 1] == b'.';
                scheme_matches && host_matches && (p.is_none() || *p == port)
            }
            Self::Scheme(s) => s == scheme,
        }
    }
}

/// The origin of `server.base_url` plus `server.trusted_origins`.
#[derive(Debug, Clone)]
pub struct TrustedOrigins {
    patterns: Vec<OriginPattern>,
}

impl TrustedOrigins {
    /// # Errors
    /// A pattern that does not parse, with the reason.
    pub fn new(base_url: &str, extra: &[String]) -> Result<Self, String> {
        let base = Url::parse(base_url).map_err(|error| format!("server.base_url: {error}"))?;
        let mut patterns = vec![OriginPattern::parse(&base.origin().ascii_serialization())?];
        for pattern in extra {
            patterns.push(OriginPattern::parse(pattern).map_err(|reason| format!("{pattern:?}: {reason}"))?);
        }
        Ok(Self { patterns })
    }

    /// True when `origin` (an `Origin` value, or any URL whose origin counts) is trusted.
    pub fn is_trusted(&self, origin: &str) -> bool {
        match Url::parse(origin.trim()) {
            Ok(url) => self.patterns.iter().any(|pattern| pattern.matches(&url)),
            Err(_) => false,
        }
    }

    /// The rule for state-changing requests that carry a cookie: `Origin`, else `Referer`, must be
    /// trusted; `Sec-Fetch-Site: same-origin` also passes.
    ///
    /// # Errors
    /// `MissingOrNullOrigin` or `InvalidOrigin`.
    pub fn check_request_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if header_text(headers, "sec-fetch-site") == Some("same-origin") {
            return Ok(());
        }
        let origin = header_text(headers, header::ORIGIN.as_str())
            .filter(|origin| !origin.is_empty() && *origin != "null")
            .or_else(|| header_text(headers, header::REFERER.as_str()).filter(|referer| !referer.is_empty()));
        match origin {
            None => Err(ApiError::MissingOrNullOrigin),
            Some(origin) if self.is_trusted(origin) => Ok(()),
            Some(_) => Err(ApiError::InvalidOrigin),
        }
    }

    /// Applies the extra rule of sign-in routes, which a browser can reach by a plain form post.
    ///
    /// A request with a cookie follows the origin rule. Otherwise, when Fetch Metadata headers are
    /// present, a cross-site navigation is rejected and any other browser request needs a trusted
    /// origin. Otherwise a present `Origin` or `Referer` must be trusted. A request with none of
    /// these headers comes from a non-browser client and passes.
    ///
    /// # Errors
    /// `CrossSiteNavigationLoginBlocked`, `MissingOrNullOrigin` or `InvalidOrigin`.
    pub fn check_sign_in(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if headers.contains_key(header::COOKIE) {
            return self.check_request_origin(headers);
        }
        let site = header_text(headers, "sec-fetch-site");
        let mode = header_text(headers, "sec-fetch-mode");
        let has_fetch_metadata = site.is_some() || mode.is_some() || headers.contains_key("sec-fetch-dest");
        if has_fetch_metadata {
            if site == Some("cross-site") && mode == Some("navigate") {
                return Err(ApiError::CrossSiteNavigationLoginBlocked);
            }
            return self.check_request_origin(headers);
        }
        if headers.contains_key(header::ORIGIN) || headers.contains_key(header::REFERER) {
            return self.check_request_origin(headers);
        }
        Ok(())
    }

    /// A callback URL must be a path on this server (one leading `/`, no backslash, no control
    /// characters, no encoded slashes) or an absolute URL of a trusted origin.
    ///
    /// # Errors
    /// `InvalidCallbackUrl`.
    pub fn check_callback_url(&self, url: &str) -> Result<(), ApiError> {
        let relative = url.starts_with('/')
            && !url.starts_with("//")
            && !url.contains('\\')
            && !url.chars().any(char::is_control)
            && !url.to_ascii_lowercase().contains("%2f")
            && !url.to_ascii_lowercase().contains("%5c");
        if relative || self.is_trusted(url) {
            Ok(())
        } else {
            Err(ApiError::InvalidCallbackUrl)
        }
    }
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::trim)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn trusted() -> TrustedOrigins {
        let extra = ["https://app.example.com", "*.example.org", "https://*.example.net:8443", "tauri://localhost", "myapp://"];
        TrustedOrigins::new("http://127.0.0.1:3000", &extra.map(String::from)).unwrap()
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        headers
    }

    #[test]
    fn base_url_origin_is_trusted() {
        assert!(trusted().is_trusted("http://127.0.0.1:3000"));
        assert!(!trusted().is_trusted("http://127.0.0.1:3001"));
        assert!(!trusted().is_trusted("https://127.0.0.1:3000"));
    }

    #[test]
    fn exact_origin_matches_with_default_port() {
        assert!(trusted().is_trusted("https://app.example.com"));
        assert!(trusted().is_trusted("https://app.example.com:443"));
        assert!(!trusted().is_trusted("http://app.example.com"));
        assert!(!trusted().is_trusted("https://app.example.com.evil.com"));
    }

    #[test]
    fn subdomain_pattern_matches_only_subdomains() {
        assert!(trusted().is_trusted("https://a.example.org"));
        assert!(trusted().is_trusted("http://a.b.example.org"));
        assert!(!trusted().is_trusted("https://example.org"));
        assert!(!trusted().is_trusted("https://evilexample.org"));
        assert!(trusted().is_trusted("https://x.example.net:8443"));
        assert!(!trusted().is_trusted("https://x.example.net"));
    }

    #[test]
    fn custom_schemes_match() {
        assert!(trusted().is_trusted("tauri://localhost"));
        assert!(!trusted().is_trusted("tauri://elsewhere"));
        assert!(trusted().is_trusted("myapp://anything"));
    }

    #[test]
    fn garbage_is_not_trusted() {
        for origin in ["", "null", "not a url", "javascript:alert(1)"] {
            assert!(!trusted().is_trusted(origin), "{origin}");
        }
    }

    #[test]
    fn bad_patterns_are_rejected() {
        for pattern in ["example.com", "https://*", "*.", "https://app.example.com/path", "://x"] {
            assert!(OriginPattern::parse(pattern).is_err(), "{pattern}");
        }
    }

    #[test]
    fn request_origin_prefers_origin_then_referer() {
        let origins = trusted();
        assert!(origins.check_request_origin(&headers(&[("origin", "https://app.example.com")])).is_ok());
        assert!(origins.check_request_origin(&headers(&[("referer", "https://app.example.com/page?x=1")])).is_ok());
        assert!(matches!(origins.check_request_origin(&headers(&[])), Err(ApiError::MissingOrNullOrigin)));
        assert!(matches!(origins.check_request_origin(&headers(&[("origin", "null")])), Err(ApiError::MissingOrNullOrigin)));
        assert!(matches!(
            origins.check_request_origin(&headers(&[("origin", "https://evil.com")])),
            Err(ApiError::InvalidOrigin)
        ));
        assert!(origins.check_request_origin(&headers(&[("sec-fetch-site", "same-origin")])).is_ok());
    }

    #[test]
    fn sign_in_check_blocks_cross_site_navigation() {
        let origins = trusted();
        let navigation = headers(&[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "navigate")]);
        assert!(matches!(origins.check_sign_in(&navigation), Err(ApiError::CrossSiteNavigationLoginBlocked)));
    }

    #[test]
    fn sign_in_check_lets_plain_clients_through() {
        assert!(trusted().check_sign_in(&headers(&[])).is_ok());
    }

    #[test]
    fn sign_in_check_requires_trusted_origin_from_browsers() {
        let origins = trusted();
        let cors = headers(&[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "cors")]);
        assert!(matches!(origins.check_sign_in(&cors), Err(ApiError::MissingOrNullOrigin)));
        let trusted_cors = headers(&[("sec-fetch-site", "cross-site"), ("sec-fetch-mode", "cors"), ("origin", "https://app.example.com")]);
        assert!(origins.check_sign_in(&trusted_cors).is_ok());
        assert!(matches!(origins.check_sign_in(&headers(&[("origin", "https://evil.com")])), Err(ApiError::InvalidOrigin)));
    }

    #[test]
    fn callback_urls_must_be_relative_or_trusted() {
        let origins = trusted();
        for url in ["/", "/dashboard?x=1", "https://app.example.com/welcome"] {
            assert!(origins.check_callback_url(url).is_ok(), "{url}");
        }
        for url in ["//evil.com", "https://evil.com/", "/\\evil.com", "/%2F%2Fevil.com", "javascript:alert(1)", "relative"] {
            assert!(origins.check_callback_url(url).is_err(), "{url}");
        }
    }
}
