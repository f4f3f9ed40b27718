use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{error_code, header, set_cookies, Creds, TestApp};

const EMAIL: &str = "ada@example.com";

async fn events(app: &TestApp, kind: &str) -> Vec<Value> {
    let pool = app.db().await;
    let payloads: Vec<String> = sqlx::query_scalar("SELECT payload FROM outbox WHERE kind = $1 ORDER BY created_at")
        .bind(kind)
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    payloads.iter().map(|payload| serde_json::from_str(payload).unwrap()).collect()
}

#[tokio::test]
async fn code_is_mailed_and_never_stored_or_in_the_subject() {
    let app = TestApp::spawn().await;

    assert_eq!(app.send_code(" Ada@Example.com ").await.status(), 200);
    let code = app.mail.code_after(EMAIL, 0).await;

    assert_eq!(code.len(), 8);
    let message = &app.mail.messages_to(EMAIL)[0];
    let subject = message.data.lines().find(|line| line.starts_with("Subject:")).unwrap();
    assert_eq!(subject, "Subject: Your sign-in code");
    assert!(message.data.contains("From: Doorman <auth@example.com>"));
    assert!(message.data.contains("text/html"), "an HTML part is sent too");
    assert!(message.data.lines().any(|line| line.starts_with("Message-ID: <")), "{}", message.data);
    let stored: Vec<Option<String>> =
        sqlx::query_scalar("SELECT value_hash FROM verifications").fetch_all(&app.db().await).await.unwrap();
    assert_eq!(stored.len(), 1);
    assert!(!stored[0].as_deref().unwrap().contains(&code));
}

#[tokio::test]
async fn new_email_creates_a_verified_user() {
    let app = TestApp::spawn().await;
    let code = app.code_for(EMAIL).await;

    let response = app.sign_in_code(&Creds::None, EMAIL, &code).await;

    assert_eq!(response.status(), 200);
    assert_eq!(set_cookies(&response).len(), 1);
    assert!(header(&response, "set-auth-token").is_some());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["email"], EMAIL);
    assert_eq!(body["user"]["emailVerified"], true);
    assert_eq!(body["user"]["isAnonymous"], false);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn code_works_only_once() {
    let app = TestApp::spawn().await;
    let code = app.code_for(EMAIL).await;
    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &code).await.status(), 200);

    let response = app.sign_in_code(&Creds::None, EMAIL, &code).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "INVALID_OTP");
}

#[tokio::test]
async fn known_email_signs_in_to_the_same_user() {
    let app = TestApp::spawn().await;
    let first = app.sign_in_with_code(&Creds::None, EMAIL).await;

    let second = app.sign_in_with_code(&Creds::None, EMAIL).await;

    assert_eq!(first.user_id, second.user_id);
    assert_ne!(first.token, second.token);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 2);
}

#[tokio::test]
async fn guest_is_promoted_by_code_sign_in() {
    let app = TestApp::spawn().await;

    for (index, mode) in ["cookie", "bearer"].into_iter().enumerate() {
        let guest = app.guest().await;
        let creds = if mode == "cookie" { guest.cookie() } else { guest.bearer() };
        let email = format!("user{index}@example.com");

        let real = app.sign_in_with_code(&creds, &email).await;

        assert_ne!(real.token, guest.token, "{mode}: promotion issues a new token");
        assert_eq!(app.session_body(&guest.bearer()).await, Value::Null, "{mode}: the guest token is dead");
        let body = app.session_body(&real.bearer()).await;
        assert_eq!(body["user"]["isAnonymous"], false);
        let count = app.count(&format!("SELECT COUNT(*) FROM users WHERE id = '{}'", guest.user_id)).await;
        assert_eq!(count, 0, "{mode}: the guest user is deleted");
        let promoted = events(&app, "user.promoted").await;
        assert_eq!(promoted.len(), index + 1);
        assert_eq!(promoted[index], json!({ "anonymousUserId": guest.user_id, "userId": real.user_id, "method": "email-otp" }));
    }
    assert!(events(&app, "user.deleted").await.is_empty(), "a promoted guest gets no user.deleted event");
}

#[tokio::test]
async fn racing_promotions_record_one_event() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let first_code = app.code_for("first@example.com").await;
    let second_code = app.code_for("second@example.com").await;
    let creds = guest.cookie();

    let (first, second) = tokio::join!(
        app.sign_in_code(&creds, "first@example.com", &first_code),
        app.sign_in_code(&creds, "second@example.com", &second_code),
    );

    assert_eq!(first.status(), 200, "the loser of the race still signs in");
    assert_eq!(second.status(), 200);
    assert_eq!(events(&app, "user.promoted").await.len(), 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM users WHERE is_anonymous").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 2);
}

#[tokio::test]
async fn promotion_into_existing_account_keeps_its_sessions() {
    let app = TestApp::spawn().await;
    let existing = app.sign_in_with_code(&Creds::None, EMAIL).await;
    let guest = app.guest().await;

    let promoted = app.sign_in_with_code(&guest.cookie(), EMAIL).await;

    assert_eq!(promoted.user_id, existing.user_id);
    assert_eq!(app.session_body(&existing.bearer()).await["user"]["id"], existing.user_id.as_str());
    assert_eq!(app.session_body(&guest.bearer()).await, Value::Null);
}

#[tokio::test]
async fn code_sign_in_strips_an_unverified_user() {
    let app = TestApp::spawn().await;
    let squatter = app.real_user(EMAIL).await;
    let pool = app.db().await;
    sqlx::query("UPDATE users SET email_verified = FALSE WHERE id = $1").bind(&squatter.user_id).execute(&pool).await.unwrap();
    sqlx::query("INSERT INTO accounts (id, user_id, provider_id, account_id, created_at) VALUES ('a1', $1, 'github', '42', 0)")
        .bind(&squatter.user_id)
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let owner = app.sign_in_with_code(&Creds::None, EMAIL).await;

    assert_eq!(owner.user_id, squatter.user_id);
    assert_eq!(app.session_body(&squatter.bearer()).await, Value::Null, "sessions from before the proof are gone");
    assert_eq!(app.count("SELECT COUNT(*) FROM accounts").await, 0, "accounts from before the proof are gone");
    assert_eq!(app.session_body(&owner.bearer()).await["user"]["emailVerified"], true);
}

#[tokio::test]
async fn fourth_wrong_code_burns_until_expiry_even_after_resend() {
    // The per-address failure limit would answer 429 before this test has shown the burn.
    let app = TestApp::spawn_with(|config| config.rate_limit.enabled = false).await;
    let code = app.code_for(EMAIL).await;
    let wrong = if code == "00000000" { "11111111" } else { "00000000" };

    for attempt in 1..=3 {
        let response = app.sign_in_code(&Creds::None, EMAIL, wrong).await;
        assert_eq!(response.status(), 400, "try {attempt}");
        assert_eq!(error_code(response).await, "INVALID_OTP");
    }
    let fourth = app.sign_in_code(&Creds::None, EMAIL, wrong).await;
    assert_eq!(fourth.status(), 403);
    assert_eq!(error_code(fourth).await, "TOO_MANY_ATTEMPTS");
    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &code).await.status(), 403, "the right code is burned too");

    assert_eq!(app.send_code(EMAIL).await.status(), 200, "a resend answers as usual");
    let newest = app.mail.messages_to(EMAIL).len();
    assert_eq!(newest, 1, "no code is mailed while the code is burned");
    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &code).await.status(), 403);

    app.clock.advance(Duration::from_secs(601));
    let fresh = app.code_for(EMAIL).await;
    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &fresh).await.status(), 200, "a code after the expiry works");
}

#[tokio::test]
async fn resend_keeps_the_try_count_and_expiry() {
    let app = TestApp::spawn_with(|config| config.rate_limit.enabled = false).await;
    let first = app.code_for(EMAIL).await;
    let wrong = if first == "00000000" { "11111111" } else { "00000000" };
    app.sign_in_code(&Creds::None, EMAIL, wrong).await;
    app.sign_in_code(&Creds::None, EMAIL, wrong).await;

    app.clock.advance(Duration::from_secs(300));
    let second = app.code_for(EMAIL).await;
    app.sign_in_code(&Creds::None, EMAIL, wrong).await;

    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &second).await.status(), 403, "three wrong tries burned it");
    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &first).await.status(), 403);
}

#[tokio::test]
async fn resent_code_replaces_the_old_one() {
    let app = TestApp::spawn().await;
    let first = app.code_for(EMAIL).await;
    let second = app.code_for(EMAIL).await;

    if first != second {
        assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &first).await.status(), 400);
    }
    assert_eq!(app.sign_in_code(&Creds::None, EMAIL, &second).await.status(), 200);
}

#[tokio::test]
async fn resend_does_not_extend_the_expiry() {
    let app = TestApp::spawn().await;
    app.code_for(EMAIL).await;

    app.clock.advance(Duration::from_secs(540));
    let resent = app.code_for(EMAIL).await;
    app.clock.advance(Duration::from_secs(61));

    let response = app.sign_in_code(&Creds::None, EMAIL, &resent).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "OTP_EXPIRED");
}

#[tokio::test]
async fn known_and_unknown_emails_get_identical_send_answers() {
    let app = TestApp::spawn().await;
    app.sign_in_with_code(&Creds::None, "known@example.com").await;

    let known = app.send_code("known@example.com").await;
    let unknown = app.send_code("unknown@example.com").await;

    assert_eq!(known.status(), unknown.status());
    let headers = |response: &reqwest::Response| {
        let mut pairs: Vec<(String, String)> = response
            .headers()
            .iter()
            .filter(|(name, _)| !matches!(name.as_str(), "date" | "x-request-id"))
            .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_string()))
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(headers(&known), headers(&unknown));
    assert_eq!(known.bytes().await.unwrap(), unknown.bytes().await.unwrap());
}

#[tokio::test]
async fn invalid_emails_and_types_are_rejected() {
    let app = TestApp::spawn().await;

    for email in ["not-an-email", "x@anonymous.invalid", "abc@host.invalid", ""] {
        let response = app.send_code(email).await;
        assert_eq!(response.status(), 400, "{email:?}");
        assert_eq!(error_code(response).await, "INVALID_EMAIL", "{email:?}");
    }
    let response = app
        .post_json("/email-otp/send-verification-otp", &Creds::None, json!({ "email": EMAIL, "type": "forget-password" }))
        .await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "UNSUPPORTED_OTP_TYPE");
    let response = app.post_json("/email-otp/send-verification-otp", &Creds::None, json!({ "email": EMAIL })).await;
    assert_eq!(error_code(response).await, "VALIDATION_ERROR");
    let response = app.sign_in_code(&Creds::None, "x@anonymous.invalid", "12345678").await;
    assert_eq!(error_code(response).await, "INVALID_EMAIL");
    assert!(app.mail.messages().is_empty());
}

#[tokio::test]
async fn sending_is_limited_per_email() {
    let app = TestApp::spawn().await;
    for _ in 0..3 {
        assert_eq!(app.send_code(EMAIL).await.status(), 200);
    }

    let limited = app.send_code(EMAIL).await;

    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("600"));
    assert_eq!(header(&limited, "ratelimit-limit").as_deref(), Some("3"));
    assert_eq!(header(&limited, "ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(error_code(limited).await, "RATE_LIMITED");
    assert_eq!(app.send_code("other@example.com").await.status(), 200, "other emails are not affected");
}

#[tokio::test]
async fn failed_codes_are_limited_per_address() {
    let app = TestApp::spawn().await;
    for index in 0..5 {
        let response = app.sign_in_code(&Creds::None, &format!("u{index}@example.com"), "12345678").await;
        assert_eq!(response.status(), 400);
    }

    let limited = app.sign_in_code(&Creds::None, "u9@example.com", "12345678").await;

    assert_eq!(limited.status(), 429);
    assert_eq!(error_code(limited).await, "RATE_LIMITED");
}

#[tokio::test]
async fn mail_failure_answers_503() {
    let app = TestApp::spawn().await;
    app.mail.fail();

    for _ in 0..4 {
        let response = app.send_code(EMAIL).await;
        assert_eq!(response.status(), 503, "failed deliveries do not use up the send limit");
        assert_eq!(header(&response, "retry-after").as_deref(), Some("1"));
        assert_eq!(error_code(response).await, "EMAIL_DELIVERY_FAILED");
    }
}

#[tokio::test]
async fn deletions_write_user_deleted() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let real = app.sign_in_with_code(&Creds::None, EMAIL).await;

    assert_eq!(app.delete_anonymous_user(&guest.bearer()).await.status(), 200);
    assert_eq!(app.delete_user(&real.bearer()).await.status(), 200);

    let deleted = events(&app, "user.deleted").await;
    assert_eq!(deleted, vec![json!({ "userId": guest.user_id }), json!({ "userId": real.user_id })]);
}

#[tokio::test]
async fn code_session_blocks_anonymous_sign_in() {
    let app = TestApp::spawn().await;
    let real = app.sign_in_with_code(&Creds::None, EMAIL).await;

    let response = app.sign_in_anonymous(&real.cookie()).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "ALREADY_AUTHENTICATED");
}
