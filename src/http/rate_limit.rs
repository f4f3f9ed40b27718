//! Per-address rate limits on routes, counted before any handler work, so a flood costs no store
//! or provider calls. `OPTIONS` requests and the `/health` and `/ready` probes are never counted.

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::client_address;
use super::state::AppState;
use crate::core::rate_limit::{ip_key, Decision, Rule};

/// Path of anonymous sign-in under the base path; its handler counts its rules itself, after the
/// origin and enabled checks.
pub const ANONYMOUS_SIGN_IN: &str = "/sign-in/anonymous";

/// The rules of a path: `relative` is the path under the base path, `None` for root routes.
pub fn rules_for(relative: Option<&str>) -> &'static [Rule] {
    match relative {
        Some(ANONYMOUS_SIGN_IN) => &[Rule::SignIn, Rule::GuestCreate],
        Some(path) if path.starts_with("/sign-in/") || path.starts_with("/email-otp/") || path == "/captcha/challenge" => {
            &[Rule::SignIn]
        }
        _ => &[Rule::SessionRead],
    }
}

/// Counts the request against its rules and returns 429 `RATE_LIMITED` past any of them.
pub async fn limit_requests(State(state): State<AppState>, request: Request, next: Next) -> Response {
    // Probes must keep responding during a Redis outage and from a shared address.
    let probe = matches!(request.uri().path(), "/health" | "/ready");
    if request.method() == Method::OPTIONS || probe || state.limiter.is_none() {
        return next.run(request).await;
    }
    let relative = request.uri().path().strip_prefix(state.base_path.as_str()).filter(|rest| rest.starts_with('/'));
    if relative == Some(ANONYMOUS_SIGN_IN) {
        return next.run(request).await;
    }

    let key = client_key(&state, &request);
    if let Err(error) = check(&state, rules_for(relative), &key).await {
        return error.into_response();
    }
    next.run(request).await
}

/// The limiter key of the request's client: its address, IPv6 by /64.
pub fn client_key(state: &AppState, request: &Request) -> String {
    client_address(state, request.extensions(), request.headers()).map(ip_key).unwrap_or_default()
}

/// Counts one hit of `key` under each rule, stopping at the first that is exhausted.
///
/// # Errors
/// `RateLimited` with the time until the exhausted rule's window closes, or 503 when the shared
/// limiter cannot be reached.
pub async fn check(state: &AppState, rules: &[Rule], key: &str) -> Result<(), ApiError> {
    let Some(limiter) = &state.limiter else { return Ok(()) };
    for rule in rules {
        if let Decision::Limited { limit, retry_after } = limiter.hit(*rule, key).await? {
            tracing::debug!(rule = rule.name(), "rate limit reached");
            return Err(ApiError::RateLimited { limit, retry_after });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_rules() {
        assert_eq!(rules_for(Some("/sign-in/anonymous")), &[Rule::SignIn, Rule::GuestCreate]);
        assert_eq!(rules_for(Some("/sign-in/email-otp")), &[Rule::SignIn]);
        assert_eq!(rules_for(Some("/email-otp/send-verification-otp")), &[Rule::SignIn]);
        assert_eq!(rules_for(Some("/captcha/challenge")), &[Rule::SignIn]);
        assert_eq!(rules_for(Some("/get-session")), &[Rule::SessionRead]);
        assert_eq!(rules_for(Some("/sign-inx")), &[Rule::SessionRead]);
        assert_eq!(rules_for(None), &[Rule::SessionRead]);
    }
}
