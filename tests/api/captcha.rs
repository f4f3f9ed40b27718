use std::time::{Duration, Instant};

use doorman::config::CaptchaProvider;
use doorman::core::secret::Secret;
use serde_json::json;

use crate::harness::{error_code, TestApp};
use crate::siteverify::{self, Siteverify, DUMMY_TOKEN};

async fn app_with(secret: &str) -> (TestApp, Siteverify) {
    let provider = Siteverify::start().await;
    let url = provider.url();
    let secret = secret.to_string();
    let app = TestApp::spawn_with(move |config| {
        config.captcha.provider = CaptchaProvider::Turnstile;
        config.captcha.secret = Some(Secret::new(secret));
        config.captcha.verify_url = Some(url);
    })
    .await;
    (app, provider)
}

async fn sign_in_with_token(app: &TestApp, token: Option<&str>) -> reqwest::Response {
    let mut request = app.client.post(app.url("/sign-in/anonymous")).json(&json!({}));
    if let Some(token) = token {
        request = request.header("x-captcha-response", token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn missing_token_is_rejected_before_any_write() {
    let (app, provider) = app_with(siteverify::PASSING_SECRET).await;

    let response = sign_in_with_token(&app, None).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "MISSING_CAPTCHA_RESPONSE");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    assert!(provider.requests().is_empty());
}

#[tokio::test]
async fn passing_token_creates_a_guest() {
    let (app, provider) = app_with(siteverify::PASSING_SECRET).await;

    let response = sign_in_with_token(&app, Some(DUMMY_TOKEN)).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE is_anonymous").await, 1);
    let sent = &provider.requests()[0];
    assert_eq!(sent["secret"], siteverify::PASSING_SECRET);
    assert_eq!(sent["response"], DUMMY_TOKEN);
    assert_eq!(sent["remoteip"], "127.0.0.1");
    assert_eq!(sent["idempotency_key"].as_str().unwrap().len(), 36);
}

#[tokio::test]
async fn failing_and_spent_tokens_get_403() {
    for secret in [siteverify::FAILING_SECRET, siteverify::SPENT_SECRET] {
        let (app, _provider) = app_with(secret).await;

        let response = sign_in_with_token(&app, Some(DUMMY_TOKEN)).await;

        assert_eq!(response.status(), 403, "{secret}");
        assert_eq!(error_code(response).await, "CAPTCHA_VERIFICATION_FAILED");
        assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    }
}

#[tokio::test]
async fn token_passes_once_even_when_sent_concurrently() {
    let (app, _provider) = app_with(siteverify::PASSING_SECRET).await;

    let (first, second, third) = tokio::join!(
        sign_in_with_token(&app, Some(DUMMY_TOKEN)),
        sign_in_with_token(&app, Some(DUMMY_TOKEN)),
        sign_in_with_token(&app, Some(DUMMY_TOKEN)),
    );

    let statuses = [first.status().as_u16(), second.status().as_u16(), third.status().as_u16()];
    assert_eq!(statuses.iter().filter(|status| **status == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|status| **status == 403).count(), 2, "{statuses:?}");
    assert_eq!(sign_in_with_token(&app, Some(DUMMY_TOKEN)).await.status(), 403, "a later resend fails too");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn silent_provider_gives_503_within_the_budget() {
    let (app, _provider) = app_with(siteverify::HANGING_SECRET).await;
    let started = Instant::now();

    let response = sign_in_with_token(&app, Some(DUMMY_TOKEN)).await;

    assert_eq!(response.status(), 503);
    assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    assert_eq!(error_code(response).await, "CAPTCHA_UNAVAILABLE");
    assert_eq!(app.count("SELECT COUNT(*) FROM spent_tokens").await, 0, "the claim is released");
}

#[tokio::test]
async fn provider_error_is_retried_once_with_the_same_key() {
    let (app, provider) = app_with(siteverify::FLAKY_SECRET).await;

    let response = sign_in_with_token(&app, Some(DUMMY_TOKEN)).await;

    assert_eq!(response.status(), 200);
    let requests = provider.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0]["idempotency_key"], requests[1]["idempotency_key"]);
}

#[tokio::test]
async fn misconfigured_secret_gives_503() {
    let (app, _provider) = app_with(siteverify::WRONG_SECRET).await;

    let response = sign_in_with_token(&app, Some(DUMMY_TOKEN)).await;

    assert_eq!(response.status(), 503);
    assert_eq!(error_code(response).await, "CAPTCHA_UNAVAILABLE");
}

#[tokio::test]
async fn code_sending_is_guarded_too() {
    let (app, _provider) = app_with(siteverify::PASSING_SECRET).await;
    let body = json!({ "email": "ada@example.com", "type": "sign-in" });

    let missing = app.client.post(app.url("/email-otp/send-verification-otp")).json(&body).send().await.unwrap();
    assert_eq!(missing.status(), 400);
    assert_eq!(error_code(missing).await, "MISSING_CAPTCHA_RESPONSE");
    assert!(app.mail.messages().is_empty());

    let sent = app
        .client
        .post(app.url("/email-otp/send-verification-otp"))
        .header("x-captcha-response", DUMMY_TOKEN)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(sent.status(), 200);
}

#[tokio::test]
async fn rate_limit_comes_before_the_provider() {
    let (app, provider) = app_with(siteverify::FAILING_SECRET).await;
    for index in 0..10 {
        let response = sign_in_with_token(&app, Some(&format!("token-{index}"))).await;
        assert_eq!(response.status(), 403);
    }

    let limited = sign_in_with_token(&app, Some("token-10")).await;

    assert_eq!(limited.status(), 429);
    assert_eq!(provider.requests().len(), 10, "a limited request costs no provider call");
}

#[tokio::test]
async fn hcaptcha_is_asked_with_a_form() {
    let provider = Siteverify::start().await;
    let url = provider.url();
    let app = TestApp::spawn_with(move |config| {
        config.captcha.provider = CaptchaProvider::Hcaptcha;
        config.captcha.secret = Some(Secret::new(siteverify::PASSING_SECRET));
        config.captcha.verify_url = Some(url);
    })
    .await;

    let response = sign_in_with_token(&app, Some(DUMMY_TOKEN)).await;

    assert_eq!(response.status(), 200);
    let sent = &provider.requests()[0];
    assert_eq!(sent["response"], DUMMY_TOKEN);
    assert!(sent.get("idempotency_key").is_none(), "hCaptcha takes no idempotency key");
}

mod altcha {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use doorman::config::CaptchaProvider;
    use serde_json::{json, Value};
    use sha2::Sha256;

    use crate::harness::{error_code, Creds, TestApp};

    async fn app() -> TestApp {
        TestApp::spawn_with(|config| {
            config.captcha.provider = CaptchaProvider::Altcha;
            config.captcha.altcha_cost = 10;
        })
        .await
    }

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len()).step_by(2).map(|index| u8::from_str_radix(&text[index..index + 2], 16).unwrap()).collect()
    }

    /// Searches the counter as a client does and returns the widget's payload.
    fn solve(challenge: &Value) -> (String, u32) {
        let parameters = &challenge["parameters"];
        let nonce = unhex(parameters["nonce"].as_str().unwrap());
        let salt = unhex(parameters["salt"].as_str().unwrap());
        let cost = parameters["cost"].as_u64().unwrap() as u32;
        for counter in 0u32.. {
            let mut password = nonce.clone();
            password.extend_from_slice(&counter.to_be_bytes());
            let mut key = [0u8; 32];
            pbkdf2::pbkdf2_hmac::<Sha256>(&password, &salt, cost, &mut key);
            if key[0] == 0 {
                let derived: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
                let payload = json!({ "challenge": challenge, "solution": { "counter": counter, "derivedKey": derived } });
                return (STANDARD.encode(payload.to_string()), counter);
            }
        }
        unreachable!()
    }

    async fn sign_in(app: &TestApp, token: &str) -> reqwest::Response {
        app.client.post(app.url("/sign-in/anonymous")).header("x-captcha-response", token).json(&json!({})).send().await.unwrap()
    }

    #[tokio::test]
    async fn challenge_route_is_not_found_for_other_providers() {
        let app = TestApp::spawn().await;

        let response = app.get("/captcha/challenge", &Creds::None).await;

        assert_eq!(response.status(), 404);
    }

    #[tokio::test]
    async fn solved_challenge_signs_a_guest_in_once() {
        let app = app().await;
        let challenge: Value = app.get("/captcha/challenge", &Creds::None).await.json().await.unwrap();
        assert_eq!(challenge["parameters"]["algorithm"], "PBKDF2/SHA-256");
        let (token, _) = solve(&challenge);

        assert_eq!(sign_in(&app, &token).await.status(), 200);

        let replayed = sign_in(&app, &token).await;
        assert_eq!(replayed.status(), 403);
        assert_eq!(error_code(replayed).await, "CAPTCHA_VERIFICATION_FAILED");
    }

    #[tokio::test]
    async fn wrong_solution_spends_its_challenge() {
        let app = app().await;
        let challenge: Value = app.get("/captcha/challenge", &Creds::None).await.json().await.unwrap();
        let (token, counter) = solve(&challenge);
        let wrong = json!({ "challenge": challenge, "solution": { "counter": counter + 1, "derivedKey": "00ab" } });

        let refused = sign_in(&app, &STANDARD.encode(wrong.to_string())).await;
        assert_eq!(refused.status(), 403);

        assert_eq!(sign_in(&app, &token).await.status(), 403, "the challenge was spent by the wrong try");
        assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    }

    #[tokio::test]
    async fn tampered_challenge_is_refused() {
        let app = app().await;
        let mut challenge: Value = app.get("/captcha/challenge", &Creds::None).await.json().await.unwrap();
        challenge["parameters"]["cost"] = json!(1);
        let (token, _) = solve(&challenge);

        let response = sign_in(&app, &token).await;

        assert_eq!(response.status(), 403);
        assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    }
}
