use reqwest::Method;
use serde_json::json;

use crate::harness::{encode, error_code, header, Creds, TestApp, TRUSTED_ORIGIN};

#[tokio::test]
async fn cookie_write_without_origin_is_refused() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app
        .client
        .post(app.url("/sign-out"))
        .header("cookie", format!("{}={}", app.cookie_name(), encode(&guest.signed)))
        .json(&json!({}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "MISSING_OR_NULL_ORIGIN");
    assert_ne!(app.session_body(&guest.bearer()).await, serde_json::Value::Null, "the session survives");
}

#[tokio::test]
async fn cookie_write_from_untrusted_origin_is_refused() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    for (name, value) in [("origin", "https://evil.example"), ("referer", "https://evil.example/page"), ("origin", "null")] {
        let response = app
            .client
            .post(app.url("/revoke-sessions"))
            .header("cookie", format!("{}={}", app.cookie_name(), encode(&guest.signed)))
            .header(name, value)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
    }
    assert_ne!(app.session_body(&guest.bearer()).await, serde_json::Value::Null);
}

#[tokio::test]
async fn cookie_write_from_trusted_origins_passes() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    for (name, value) in [("origin", TRUSTED_ORIGIN.to_string()), ("referer", format!("{}/settings", app.origin))] {
        let response = app
            .client
            .post(app.url("/update-user"))
            .header("cookie", format!("{}={}", app.cookie_name(), encode(&guest.signed)))
            .header(name, value.as_str())
            .json(&json!({ "name": "Ada" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{name}: {value}");
    }
}

#[tokio::test]
async fn same_origin_fetch_metadata_passes() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app
        .client
        .post(app.url("/update-user"))
        .header("cookie", format!("{}={}", app.cookie_name(), encode(&guest.signed)))
        .header("sec-fetch-site", "same-origin")
        .json(&json!({ "name": "Ada" }))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn bearer_write_needs_no_origin() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.update_user(&Creds::Bearer(guest.signed.clone()), json!({ "name": "Ada" })).await;

    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn sign_in_blocks_cross_site_navigation() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "navigate")
        .header("sec-fetch-dest", "document")
        .json(&json!({}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "CROSS_SITE_NAVIGATION_LOGIN_BLOCKED");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
}

#[tokio::test]
async fn sign_in_from_browser_needs_trusted_origin() {
    let app = TestApp::spawn().await;

    let refused = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "cors")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    let accepted = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("sec-fetch-site", "cross-site")
        .header("sec-fetch-mode", "cors")
        .header("origin", TRUSTED_ORIGIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 200);
}

#[tokio::test]
async fn preflight_from_trusted_origin_allows_credentials() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .request(Method::OPTIONS, app.url("/sign-in/anonymous"))
        .header("origin", TRUSTED_ORIGIN)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type, authorization")
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some(TRUSTED_ORIGIN));
    assert_eq!(header(&response, "access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(header(&response, "access-control-allow-methods").as_deref(), Some("POST"));
    assert_eq!(header(&response, "access-control-allow-headers").as_deref(), Some("content-type, authorization"));
    assert_eq!(header(&response, "access-control-max-age").as_deref(), Some("600"));
    assert!(header(&response, "vary").unwrap().contains("Origin"));
}

#[tokio::test]
async fn preflight_from_untrusted_origin_has_no_cors_headers() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .request(Method::OPTIONS, app.url("/sign-in/anonymous"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();

    let cors: Vec<_> = response.headers().keys().filter(|name| name.as_str().starts_with("access-control-")).collect();
    assert!(cors.is_empty(), "{cors:?}");
}

#[tokio::test]
async fn wildcard_trusted_origin_matches_subdomains() {
    let app = TestApp::spawn_with(|config| config.server.trusted_origins = vec!["*.example.org".into()]).await;

    let allowed = app.client.get(app.url("/ok")).header("origin", "https://a.example.org").send().await.unwrap();
    let refused = app.client.get(app.url("/ok")).header("origin", "https://example.org.evil.com").send().await.unwrap();

    assert_eq!(header(&allowed, "access-control-allow-origin").as_deref(), Some("https://a.example.org"));
    assert!(header(&refused, "access-control-allow-origin").is_none());
}

#[tokio::test]
async fn responses_to_trusted_origin_expose_set_auth_token() {
    let app = TestApp::spawn().await;

    let response = app
        .client
        .post(app.url("/sign-in/anonymous"))
        .header("origin", TRUSTED_ORIGIN)
        .json(&json!({}))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    assert_eq!(header(&response, "access-control-allow-origin").as_deref(), Some(TRUSTED_ORIGIN));
    assert_eq!(header(&response, "access-control-allow-credentials").as_deref(), Some("true"));
    assert_eq!(header(&response, "access-control-expose-headers").as_deref(), Some("set-auth-token"));
    assert!(header(&response, "vary").unwrap().contains("Origin"));
}
