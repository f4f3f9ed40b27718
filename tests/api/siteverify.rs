//! A local siteverify server that follows Cloudflare Turnstile's published contract, including its
//! dummy secrets, plus modes for outages. Doorman reaches it through `captcha.verify_url`.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};

/// Always passes the dummy token.
pub const PASSING_SECRET: &str = "1x0000000000000000000000000000000AA";
/// Always fails with `invalid-input-response`.
pub const FAILING_SECRET: &str = "2x0000000000000000000000000000000AA";
/// Always answers `timeout-or-duplicate`.
pub const SPENT_SECRET: &str = "3x0000000000000000000000000000000AA";
/// Never answers.
pub const HANGING_SECRET: &str = "test-hang";
/// Answers 500 to the first request of each idempotency key, then passes.
pub const FLAKY_SECRET: &str = "test-flaky";
/// Answers `invalid-input-secret`, as for a misconfigured secret.
pub const WRONG_SECRET: &str = "test-wrong-secret";
/// The token the dummy sitekeys produce.
pub const DUMMY_TOKEN: &str = "XXXX.DUMMY.TOKEN.XXXX";

#[derive(Clone, Default)]
struct Shared {
    requests: Arc<Mutex<Vec<Value>>>,
    seen_keys: Arc<Mutex<HashSet<String>>>,
}

pub struct Siteverify {
    pub address: SocketAddr,
    shared: Shared,
}

impl Siteverify {
    pub async fn start() -> Self {
        let shared = Shared::default();
        let router = Router::new().route("/siteverify", post(verify)).with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { address, shared }
    }

    pub fn url(&self) -> String {
        format!("http://{}/siteverify", self.address)
    }

    /// Every request body received, JSON or form, as JSON.
    pub fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().unwrap().clone()
    }
}

async fn verify(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let is_json = headers.get("content-type").and_then(|value| value.to_str().ok()).is_some_and(|kind| kind.starts_with("application/json"));
    let fields: Value = if is_json {
        serde_json::from_slice(&body).unwrap_or(Value::Null)
    } else {
        let pairs: serde_json::Map<String, Value> = url::form_urlencoded::parse(&body)
            .map(|(key, value)| (key.into_owned(), Value::from(value.into_owned())))
            .collect();
        Value::Object(pairs)
    };
    shared.requests.lock().unwrap().push(fields.clone());

    let secret = fields["secret"].as_str().unwrap_or_default();
    let token = fields["response"].as_str().unwrap_or_default();
    let failure = |code: &str| Json(json!({ "success": false, "error-codes": [code] })).into_response();
    match secret {
        PASSING_SECRET if token == DUMMY_TOKEN => passed(),
        PASSING_SECRET => failure("invalid-input-response"),
        FAILING_SECRET => failure("invalid-input-response"),
        SPENT_SECRET => failure("timeout-or-duplicate"),
        WRONG_SECRET => failure("invalid-input-secret"),
        HANGING_SECRET => {
            tokio::time::sleep(Duration::from_secs(120)).await;
            passed()
        }
        FLAKY_SECRET => {
            let key = fields["idempotency_key"].as_str().unwrap_or_default().to_string();
            if shared.seen_keys.lock().unwrap().insert(key) {
                StatusCode::INTERNAL_SERVER_ERROR.into_response()
            } else {
                passed()
            }
        }
        _ => failure("invalid-input-secret"),
    }
}

fn passed() -> Response {
    Json(json!({ "success": true, "challenge_ts": "2026-12-04T00:00:00.000Z", "hostname": "localhost", "error-codes": [], "action": "" }))
        .into_response()
}
