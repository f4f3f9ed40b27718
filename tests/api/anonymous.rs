use serde_json::Value;

use crate::harness::{error_code, header, set_cookies, Creds, TestApp};

#[tokio::test]
async fn anonymous_sign_in_returns_guest_cookie_and_bearer() {
    let app = TestApp::spawn().await;

    let response = app.sign_in_anonymous(&Creds::None).await;

    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1);
    assert!(cookies[0].starts_with("doorman.session_token="));
    assert!(cookies[0].ends_with("; Max-Age=604800; Path=/; HttpOnly; SameSite=Lax"), "{}", cookies[0]);
    let bearer = header(&response, "set-auth-token").expect("set-auth-token");
    assert_eq!(header(&response, "access-control-expose-headers").as_deref(), Some("set-auth-token"));

    let body: Value = response.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    assert_eq!(token.len(), 32);
    assert!(bearer.starts_with(&format!("{token}.")));
    let user = &body["user"];
    assert_eq!(user["isAnonymous"], true);
    assert_eq!(user["name"], "Anonymous");
    assert_eq!(user["emailVerified"], false);
    assert_eq!(user["image"], Value::Null);
    let id = user["id"].as_str().unwrap();
    assert_eq!(user["email"], format!("{}@anonymous.invalid", id.to_lowercase()));
}

#[tokio::test]
async fn dates_on_the_wire_have_three_fractional_digits() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let body = app.session_body(&guest.bearer()).await;

    for date in [&body["session"]["expiresAt"], &body["session"]["createdAt"], &body["user"]["createdAt"]] {
        let text = date.as_str().unwrap();
        assert_eq!(text.len(), 24, "{text}");
        assert_eq!(&text[19..20], ".");
        assert!(text.ends_with('Z'));
    }
}

#[tokio::test]
async fn guest_cannot_sign_in_anonymously_again() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    for creds in [guest.cookie(), guest.bearer()] {
        let response = app.sign_in_anonymous(&creds).await;
        assert_eq!(response.status(), 400);
        assert_eq!(error_code(response).await, "ANONYMOUS_USERS_CANNOT_SIGN_IN_AGAIN_ANONYMOUSLY");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn real_session_gets_already_authenticated_untouched() {
    let app = TestApp::spawn().await;
    let real = app.real_user("ada@example.com").await;
    // Old enough that a get-session would refresh it, so an accidental refresh would show.
    app.clock.advance(std::time::Duration::from_secs(2 * 86_400));
    let before: (i64, i64) = sqlx::query_as("SELECT expires_at, updated_at FROM sessions")
        .fetch_one(&app.db().await)
        .await
        .unwrap();

    for creds in [real.cookie(), real.bearer()] {
        let response = app.sign_in_anonymous(&creds).await;
        assert_eq!(response.status(), 400);
        assert!(set_cookies(&response).is_empty(), "the session cookie must not change");
        assert!(header(&response, "set-auth-token").is_none());
        assert_eq!(error_code(response).await, "ALREADY_AUTHENTICATED");
    }

    let after: (i64, i64) = sqlx::query_as("SELECT expires_at, updated_at FROM sessions")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(before, after, "the real session must be neither changed nor refreshed");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 1);
}

#[tokio::test]
async fn anonymous_sign_in_is_not_found_when_disabled() {
    let app = TestApp::spawn_with(|config| config.anonymous.enabled = false).await;

    let response = app.sign_in_anonymous(&Creds::None).await;

    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "NOT_FOUND");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn origin_check_comes_before_the_enabled_check() {
    let app = TestApp::spawn_with(|config| config.anonymous.enabled = false).await;

    let response = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("origin", "https://evil.example")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "INVALID_ORIGIN");
}

#[tokio::test]
async fn stale_cookie_does_not_block_anonymous_sign_in() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    assert_eq!(app.delete_anonymous_user(&guest.bearer()).await.status(), 200);

    let response = app.sign_in_anonymous(&guest.cookie()).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn guest_deletes_itself() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.delete_anonymous_user(&guest.cookie()).await;

    assert_eq!(response.status(), 200);
    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 3);
    assert!(cookies.iter().all(|cookie| cookie.contains("Max-Age=0")));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "success": true }));
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
    assert_eq!(app.session_body(&guest.bearer()).await, Value::Null);
}

#[tokio::test]
async fn real_user_cannot_use_delete_anonymous_user() {
    let app = TestApp::spawn().await;
    let real = app.real_user("ada@example.com").await;

    let response = app.delete_anonymous_user(&real.bearer()).await;

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "USER_IS_NOT_ANONYMOUS");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn delete_anonymous_user_needs_a_session() {
    let app = TestApp::spawn().await;

    let response = app.delete_anonymous_user(&Creds::None).await;

    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "UNAUTHORIZED");
}

#[tokio::test]
async fn session_stores_client_address_and_user_agent() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("user-agent", "doorman-tests/1.0")
        .header("x-forwarded-for", "203.0.113.50")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (ip, agent): (String, String) = sqlx::query_as("SELECT ip_address, user_agent FROM sessions")
        .fetch_one(&app.db().await)
        .await
        .unwrap();
    assert_eq!(ip, "127.0.0.1", "a header from an untrusted peer must be ignored");
    assert_eq!(agent, "doorman-tests/1.0");
}

#[tokio::test]
async fn trusted_proxy_supplies_client_address() {
    let app = TestApp::spawn_with(|config| config.server.trusted_proxies = vec!["127.0.0.0/8".parse().unwrap()]).await;

    let response = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("x-forwarded-for", "198.51.100.1, 203.0.113.50")
        .json(&serde_json::json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let ip: String = sqlx::query_scalar("SELECT ip_address FROM sessions").fetch_one(&app.db().await).await.unwrap();
    assert_eq!(ip, "203.0.113.50");
}

#[tokio::test]
async fn https_base_url_gives_secure_prefixed_cookie() {
    let app = TestApp::spawn_with(|config| config.server.base_url = Some("https://auth.example.com".into())).await;

    let response = app.sign_in_anonymous(&Creds::None).await;

    assert_eq!(response.status(), 200);
    let cookie = &set_cookies(&response)[0];
    assert!(cookie.starts_with("__Secure-doorman.session_token="), "{cookie}");
    assert!(cookie.ends_with("; Path=/; HttpOnly; Secure; SameSite=Lax"), "{cookie}");
}

#[tokio::test]
async fn sign_in_is_limited_per_address() {
    let app = TestApp::spawn().await;
    for _ in 0..10 {
        assert_eq!(app.sign_in_anonymous(&Creds::None).await.status(), 200);
    }

    let limited = app.sign_in_anonymous(&Creds::None).await;

    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("60"));
    assert_eq!(header(&limited, "ratelimit-limit").as_deref(), Some("10"));
    assert_eq!(header(&limited, "ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&limited, "ratelimit-reset").as_deref(), Some("60"));
    assert_eq!(error_code(limited).await, "RATE_LIMITED");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 10, "a limited request writes nothing");

    app.clock.advance(std::time::Duration::from_secs(60));
    assert_eq!(app.sign_in_anonymous(&Creds::None).await.status(), 200, "the window closes");
}

#[tokio::test]
async fn guest_creation_is_limited_per_hour() {
    let app = TestApp::spawn_with(|config| {
        let rule = doorman::config::RateRule { max: 1000, window: "60s".parse().unwrap() };
        config.rate_limit.rules.insert("sign_in".into(), rule);
    })
    .await;
    for _ in 0..30 {
        assert_eq!(app.sign_in_anonymous(&Creds::None).await.status(), 200);
    }

    let limited = app.sign_in_anonymous(&Creds::None).await;

    assert_eq!(limited.status(), 429);
    assert_eq!(header(&limited, "ratelimit-limit").as_deref(), Some("30"));
    assert_eq!(header(&limited, "retry-after").as_deref(), Some("3600"));
}

#[tokio::test]
async fn session_reads_are_limited_but_preflights_are_not() {
    let app = TestApp::spawn_with(|config| {
        let rule = doorman::config::RateRule { max: 3, window: "60s".parse().unwrap() };
        config.rate_limit.rules.insert("session_read".into(), rule);
    })
    .await;
    for _ in 0..10 {
        let preflight = app
            .client
            .request(reqwest::Method::OPTIONS, app.url("/get-session"))
            .header("origin", crate::harness::TRUSTED_ORIGIN)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(preflight.status(), 204);
    }
    for _ in 0..3 {
        assert_eq!(app.get_session(&Creds::None).await.status(), 200);
    }

    let limited = app.get_session(&Creds::None).await;

    assert_eq!(limited.status(), 429);
    assert_eq!(error_code(limited).await, "RATE_LIMITED");
    for probe in ["/health", "/ready"] {
        let response = app.client.get(format!("{}{probe}", app.origin)).send().await.unwrap();
        assert_eq!(response.status(), 200, "{probe} is never limited");
    }
}

#[tokio::test]
async fn limits_can_be_switched_off() {
    let app = TestApp::spawn_with(|config| config.rate_limit.enabled = false).await;

    for _ in 0..15 {
        assert_eq!(app.sign_in_anonymous(&Creds::None).await.status(), 200);
    }
}
