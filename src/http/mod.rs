//! The HTTP layer: Better Auth's routes, cookies, bearer values, origin rules and JSON errors.

pub mod client_ip;
pub mod cookies;
pub mod cors;
pub mod error;
pub mod extract;
pub mod middleware;
pub mod origin;
pub mod rate_limit;
pub mod routes;
pub mod state;
pub mod wire;

use axum::routing::{get, post, put};
use axum::Router;

use self::routes::{anonymous, email_otp, jwt, meta, session, sync, user};
pub use self::state::AppState;

/// Builds the router: auth routes under `base_path`, health and readiness at the root, a JSON 404
/// for everything else.
pub fn router(state: AppState, base_path: &str, sync_base_path: &str) -> Router {
    let auth = Router::new()
        .route("/sign-in/anonymous", post(anonymous::sign_in_anonymous))
        .route("/delete-anonymous-user", post(anonymous::delete_anonymous_user))
        .route("/email-otp/send-verification-otp", post(email_otp::send_verification_otp))
        .route("/sign-in/email-otp", post(email_otp::sign_in_email_otp))
        .route("/get-session", get(session::get_session))
        .route("/sign-out", post(session::sign_out))
        .route("/list-sessions", get(session::list_sessions))
        .route("/revoke-session", post(session::revoke_session))
        .route("/revoke-sessions", post(session::revoke_sessions))
        .route("/revoke-other-sessions", post(session::revoke_other_sessions))
        .route("/update-user", post(user::update_user))
        .route("/delete-user", post(user::delete_user))
        .route("/token", get(jwt::token))
        .route("/jwks", get(jwt::jwks))
        .route("/ok", get(meta::ok))
        .route("/captcha/challenge", get(meta::captcha_challenge))
        .method_not_allowed_fallback(meta::not_found)
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), middleware::origin_check));

    let mut root = Router::new().route("/health", get(meta::health)).route("/ready", get(meta::ready)).nest(base_path, auth);
    if let Some(routes) = &state.sync {
        let mut gateway = Router::new().route("/token", get(sync::token)).route("/jwks", get(sync::jwks));
        if routes.uploads.is_some() {
            gateway = gateway.route("/upload", put(sync::upload));
        }
        let gateway = gateway.method_not_allowed_fallback(meta::not_found);
        root = root.nest(sync_base_path, gateway);
    }

    root
        .fallback(meta::not_found)
        .method_not_allowed_fallback(meta::not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::time_limit))
        .layer(axum::middleware::from_fn_with_state(state.clone(), rate_limit::limit_requests))
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors::cors))
        .layer(axum::middleware::from_fn(middleware::request_span))
        .with_state(state)
}
