use std::time::Duration;

use doorman::core::secret::Secret;
use doorman::core::token::{SessionToken, TokenSigner};
use serde_json::Value;

use crate::harness::{error_code, header, set_cookies, Creds, TestApp, SECRET};

const DAY: Duration = Duration::from_secs(86_400);

#[tokio::test]
async fn get_session_without_credentials_is_null() {
    let app = TestApp::spawn().await;

    let response = app.get_session(&Creds::None).await;

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "cache-control").as_deref(), Some("no-store"));
    assert_eq!(header(&response, "content-type").as_deref(), Some("application/json"));
    assert_eq!(response.text().await.unwrap(), "null");
}

#[tokio::test]
async fn get_session_reads_cookie_and_bearer() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    for creds in [guest.cookie(), guest.bearer()] {
        let body = app.session_body(&creds).await;
        assert_eq!(body["user"]["id"], guest.user_id.as_str());
        assert_eq!(body["session"]["token"], guest.token.as_str());
        assert_eq!(body["session"]["userId"], guest.user_id.as_str());
        assert_eq!(body["user"]["isAnonymous"], true);
    }
}

#[tokio::test]
async fn sessions_table_holds_no_raw_token() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let stored: Vec<String> = sqlx::query_scalar("SELECT token_hash FROM sessions").fetch_all(&app.db().await).await.unwrap();

    assert_eq!(stored.len(), 1);
    assert_ne!(stored[0], guest.token);
    assert!(!stored[0].contains(&guest.token));
    assert_eq!(stored[0], SessionToken::parse(&guest.token).unwrap().hash().0);
    let dump: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM sessions WHERE id = $1 OR user_id = $1 OR ip_address = $1 OR user_agent = $1",
    )
    .bind(&guest.token)
    .fetch_one(&app.db().await)
    .await
    .unwrap();
    assert_eq!(dump, 0);
}

#[tokio::test]
async fn forged_cookie_reads_null_without_clearing() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let forger = TokenSigner::new(&Secret::new("another-secret-another-secret-another-secret"), &[]);
    let forged = forger.sign(&SessionToken::parse(&guest.token).unwrap());

    let response = app.get_session(&Creds::Cookie(forged.clone())).await;

    assert!(set_cookies(&response).is_empty());
    assert_eq!(response.text().await.unwrap(), "null");
    assert_eq!(app.session_body(&Creds::Bearer(forged)).await, Value::Null);
}

#[tokio::test]
async fn raw_bearer_token_is_refused_by_default() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    assert_eq!(app.session_body(&Creds::Bearer(guest.token.clone())).await, Value::Null);
}

#[tokio::test]
async fn raw_bearer_token_works_when_signatures_are_optional() {
    let app = TestApp::spawn_with(|config| config.session.bearer_require_signature = false).await;
    let guest = app.guest().await;

    let body = app.session_body(&Creds::Bearer(guest.token.clone())).await;

    assert_eq!(body["user"]["id"], guest.user_id.as_str());
}

#[tokio::test]
async fn bearer_wins_over_cookie() {
    let app = TestApp::spawn().await;
    let first = app.guest().await;
    let second = app.guest().await;

    let response = app
        .client
        .get(app.url("/get-session"))
        .header("cookie", format!("doorman.session_token={}", crate::harness::encode(&first.signed)))
        .header("authorization", format!("Bearer {}", second.signed))
        .send()
        .await
        .unwrap();

    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], second.user_id.as_str());
}

#[tokio::test]
async fn bearer_mode_off_ignores_authorization_and_sends_no_token_header() {
    let app = TestApp::spawn_with(|config| config.session.bearer = false).await;

    let response = app.sign_in_anonymous(&Creds::None).await;
    assert!(header(&response, "set-auth-token").is_none());
    let token = response.json::<Value>().await.unwrap()["token"].as_str().unwrap().to_string();
    let signed = TokenSigner::new(&Secret::new(SECRET), &[]).sign(&SessionToken::parse(&token).unwrap());

    assert_eq!(app.session_body(&Creds::Bearer(signed.clone())).await, Value::Null);
    assert_ne!(app.session_body(&Creds::Cookie(signed)).await, Value::Null);
}

#[tokio::test]
async fn cookie_signed_under_previous_secret_still_reads() {
    let old_secret = "the-previous-secret-the-previous-secret-0123";
    let app = TestApp::spawn_with(|config| config.secrets = vec![Secret::new(old_secret)]).await;
    let guest = app.guest().await;
    let old_signer = TokenSigner::new(&Secret::new(old_secret), &[]);
    let old_cookie = old_signer.sign(&SessionToken::parse(&guest.token).unwrap());
    assert_ne!(old_cookie, guest.signed, "the current secret signs new values");

    let body = app.session_body(&Creds::Cookie(old_cookie)).await;

    assert_eq!(body["user"]["id"], guest.user_id.as_str());
}

#[tokio::test]
async fn session_refreshes_after_update_age() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let first = app.session_body(&guest.bearer()).await;

    app.clock.advance(DAY + Duration::from_secs(60));
    let response = app.get_session(&guest.cookie()).await;

    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 1, "a refresh re-issues the cookie");
    assert!(cookies[0].contains("Max-Age=604800"));
    assert_eq!(header(&response, "set-auth-token").as_deref(), Some(guest.signed.as_str()));
    let body: Value = response.json().await.unwrap();
    assert!(body["session"]["expiresAt"].as_str() > first["session"]["expiresAt"].as_str());
}

#[tokio::test]
async fn session_is_not_refreshed_before_update_age() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    app.clock.advance(DAY / 2);
    let response = app.get_session(&guest.cookie()).await;

    assert!(set_cookies(&response).is_empty());
    assert!(header(&response, "set-auth-token").is_none());
}

#[tokio::test]
async fn disable_refresh_leaves_session_alone() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    app.clock.advance(2 * DAY);
    let response = app.get("/get-session?disableRefresh=true", &guest.bearer()).await;

    assert!(header(&response, "set-auth-token").is_none());
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["user"]["id"], guest.user_id.as_str());
}

#[tokio::test]
async fn expired_session_is_refused_and_deleted() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    app.clock.advance(7 * DAY + Duration::from_secs(1));
    let response = app.get_session(&guest.cookie()).await;

    let cookies = set_cookies(&response);
    assert_eq!(cookies.len(), 3, "an expired session clears the cookies");
    assert!(cookies.iter().all(|cookie| cookie.contains("Max-Age=0")));
    assert_eq!(response.text().await.unwrap(), "null");
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn session_past_absolute_lifetime_is_refused_and_deleted() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    // Reading every six days keeps sliding the expiry, until the 30-day cap ends the session.
    for _ in 0..4 {
        app.clock.advance(6 * DAY);
        assert_ne!(app.session_body(&guest.bearer()).await, Value::Null);
    }
    app.clock.advance(6 * DAY + Duration::from_secs(1));

    assert_eq!(app.session_body(&guest.bearer()).await, Value::Null);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn expired_session_is_refused_by_authenticated_routes() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    app.clock.advance(8 * DAY);
    let response = app.list_sessions(&guest.bearer()).await;

    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "UNAUTHORIZED");
}

#[tokio::test]
async fn sweep_deletes_expired_sessions() {
    let app = TestApp::spawn().await;
    app.guest().await;
    app.guest().await;

    app.clock.advance(8 * DAY);
    let counts = app.handle().sweep().await.unwrap();

    assert_eq!(counts.sessions, 2);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn sign_out_deletes_session_and_clears_cookies() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.sign_out(&guest.cookie()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(set_cookies(&response).len(), 3);
    assert_eq!(response.json::<Value>().await.unwrap(), serde_json::json!({ "success": true }));
    assert_eq!(app.session_body(&guest.bearer()).await, Value::Null);
}

#[tokio::test]
async fn sign_out_without_session_succeeds() {
    let app = TestApp::spawn().await;

    let response = app.sign_out(&Creds::None).await;

    assert_eq!(response.status(), 200);
    assert_eq!(set_cookies(&response).len(), 3);
}

#[tokio::test]
async fn sign_out_rejects_untrusted_callback_url() {
    let app = TestApp::spawn().await;

    let response = app.post_json("/sign-out", &Creds::None, serde_json::json!({ "callbackURL": "https://evil.example/" })).await;

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "INVALID_CALLBACK_URL");
}

/// Signs the same real user in twice, returning both sessions.
async fn two_sessions(app: &TestApp) -> (crate::harness::Signed, crate::harness::Signed) {
    let first = app.real_user("ada@example.com").await;
    let token = SessionToken::generate();
    let now = app.clock.now();
    let pool = app.db().await;
    crate::harness::insert_session(&pool, &first.user_id, &token, (now + 7 * DAY).0, now.0 + 1).await;
    pool.close().await;
    let signed = TokenSigner::new(&Secret::new(SECRET), &[]).sign(&token);
    let second = crate::harness::Signed { token: token.expose().to_string(), signed, user_id: first.user_id.clone() };
    (first, second)
}

#[tokio::test]
async fn list_sessions_shows_own_token_and_handles_for_others() {
    let app = TestApp::spawn().await;
    let (first, second) = two_sessions(&app).await;

    let response = app.list_sessions(&first.bearer()).await;

    assert_eq!(response.status(), 200);
    let sessions: Vec<Value> = response.json().await.unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["token"], first.token.as_str());
    let handle = sessions[1]["token"].as_str().unwrap();
    assert_ne!(handle, second.token, "another session's live token must never be shown");
    assert_eq!(handle, sessions[1]["id"].as_str().unwrap());
}

#[tokio::test]
async fn revocation_handle_grants_no_access() {
    let app = TestApp::spawn().await;
    let (first, _second) = two_sessions(&app).await;
    let sessions: Vec<Value> = app.list_sessions(&first.bearer()).await.json().await.unwrap();
    let handle = sessions[1]["token"].as_str().unwrap().to_string();

    assert_eq!(app.session_body(&Creds::Bearer(handle)).await, Value::Null);
}

#[tokio::test]
async fn revoke_session_by_handle_ends_the_other_session() {
    let app = TestApp::spawn().await;
    let (first, second) = two_sessions(&app).await;
    let sessions: Vec<Value> = app.list_sessions(&first.bearer()).await.json().await.unwrap();
    let handle = sessions[1]["token"].as_str().unwrap().to_string();

    let response = app.revoke_session(&first.cookie(), &handle).await;

    assert_eq!(response.status(), 200);
    assert!(set_cookies(&response).is_empty(), "revoking another session keeps the caller's cookie");
    assert_eq!(response.json::<Value>().await.unwrap(), serde_json::json!({ "status": true }));
    assert_eq!(app.session_body(&second.bearer()).await, Value::Null);
    assert_ne!(app.session_body(&first.bearer()).await, Value::Null);
}

#[tokio::test]
async fn revoke_session_by_token_ends_that_session() {
    let app = TestApp::spawn().await;
    let (first, second) = two_sessions(&app).await;

    let response = app.revoke_session(&first.bearer(), &second.token).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.session_body(&second.bearer()).await, Value::Null);
}

#[tokio::test]
async fn revoke_own_session_clears_cookies() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.revoke_session(&guest.cookie(), &guest.token).await;

    assert_eq!(set_cookies(&response).len(), 3);
    assert_eq!(app.session_body(&guest.bearer()).await, Value::Null);
}

#[tokio::test]
async fn revoke_session_cannot_touch_another_users_session() {
    let app = TestApp::spawn().await;
    let attacker = app.guest().await;
    let victim = app.guest().await;
    let victim_id: String = sqlx::query_scalar("SELECT id FROM sessions WHERE user_id = $1")
        .bind(&victim.user_id)
        .fetch_one(&app.db().await)
        .await
        .unwrap();

    for reference in [victim.token.as_str(), victim_id.as_str()] {
        let response = app.revoke_session(&attacker.bearer(), reference).await;
        assert_eq!(response.status(), 200);
    }

    assert_ne!(app.session_body(&victim.bearer()).await, Value::Null);
}

#[tokio::test]
async fn revoke_session_requires_a_token_field() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.post_json("/revoke-session", &guest.bearer(), serde_json::json!({})).await;

    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "VALIDATION_ERROR");
    assert!(body["message"].as_str().unwrap().contains("token"), "{body}");
}

#[tokio::test]
async fn revoke_sessions_ends_all_and_clears_cookies() {
    let app = TestApp::spawn().await;
    let (first, second) = two_sessions(&app).await;

    let response = app.revoke_sessions(&first.cookie()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(set_cookies(&response).len(), 3);
    assert_eq!(app.session_body(&first.bearer()).await, Value::Null);
    assert_eq!(app.session_body(&second.bearer()).await, Value::Null);
}

#[tokio::test]
async fn revoke_other_sessions_keeps_the_current_one() {
    let app = TestApp::spawn().await;
    let (first, second) = two_sessions(&app).await;

    let response = app.revoke_other_sessions(&first.bearer()).await;

    assert_eq!(response.status(), 200);
    assert!(set_cookies(&response).is_empty());
    assert_ne!(app.session_body(&first.bearer()).await, Value::Null);
    assert_eq!(app.session_body(&second.bearer()).await, Value::Null);
}

#[tokio::test]
async fn list_sessions_requires_a_fresh_session() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    app.clock.advance(DAY + Duration::from_secs(1));
    let response = app.list_sessions(&guest.bearer()).await;

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "SESSION_NOT_FRESH");
}

#[tokio::test]
async fn routes_need_a_session() {
    let app = TestApp::spawn().await;

    let responses = [
        app.list_sessions(&Creds::None).await,
        app.revoke_session(&Creds::None, "x").await,
        app.revoke_sessions(&Creds::None).await,
        app.revoke_other_sessions(&Creds::None).await,
        app.update_user(&Creds::None, serde_json::json!({ "name": "x" })).await,
        app.delete_user(&Creds::None).await,
    ];

    for response in responses {
        assert_eq!(response.status(), 401, "{}", response.url());
        assert_eq!(error_code(response).await, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn migrations_of_a_newer_release_are_tolerated() {
    let app = TestApp::spawn().await;
    let pool = app.db().await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (99990101000000, 'from a newer release', TRUE, $1, 0)",
    )
    .bind(vec![0u8; 48])
    .execute(&pool)
    .await
    .unwrap();
    pool.close().await;

    let ready = app.client.get(format!("{}/ready", app.origin)).send().await.unwrap();
    assert_eq!(ready.status(), 200);

    let config = doorman::config::DatabaseConfig { url: app.database.url.clone(), ..Default::default() };
    let store = doorman::store::Store::open(&config).await.unwrap();
    store.migrate().await.expect("an older release still starts");
    store.close().await;
}
