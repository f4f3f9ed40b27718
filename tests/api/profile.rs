use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{error_code, set_cookies, TestApp};

#[tokio::test]
async fn update_user_changes_name_and_image() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.update_user(&guest.cookie(), json!({ "name": "Ada", "image": "https://example.com/ada.png" })).await;

    assert_eq!(response.status(), 200);
    assert_eq!(set_cookies(&response).len(), 1, "a profile change re-issues the session cookie");
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "status": true }));
    let body = app.session_body(&guest.bearer()).await;
    assert_eq!(body["user"]["name"], "Ada");
    assert_eq!(body["user"]["image"], "https://example.com/ada.png");
}

#[tokio::test]
async fn update_user_clears_image_with_null() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    app.update_user(&guest.bearer(), json!({ "image": "https://example.com/ada.png" })).await;

    let response = app.update_user(&guest.bearer(), json!({ "image": null })).await;

    assert_eq!(response.status(), 200);
    assert_eq!(app.session_body(&guest.bearer()).await["user"]["image"], Value::Null);
}

#[tokio::test]
async fn update_user_rejects_email() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.update_user(&guest.bearer(), json!({ "email": "new@example.com" })).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "EMAIL_CAN_NOT_BE_UPDATED");
}

#[tokio::test]
async fn update_user_rejects_setting_is_anonymous() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.update_user(&guest.bearer(), json!({ "name": "x", "isAnonymous": true })).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "FIELD_NOT_ALLOWED");

    let response = app.update_user(&guest.bearer(), json!({ "isAnonymous": false })).await;
    assert_eq!(error_code(response).await, "NO_FIELDS_TO_UPDATE", "a falsy server-owned field is dropped");
    assert_eq!(app.session_body(&guest.bearer()).await["user"]["isAnonymous"], true);
}

#[tokio::test]
async fn update_user_drops_server_owned_fields() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.update_user(&guest.bearer(), json!({ "name": "Ada", "emailVerified": true, "id": "other" })).await;

    assert_eq!(response.status(), 200);
    let body = app.session_body(&guest.bearer()).await;
    assert_eq!(body["user"]["emailVerified"], false);
    assert_eq!(body["user"]["id"], guest.user_id.as_str());
}

#[tokio::test]
async fn update_user_without_fields_is_rejected() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.update_user(&guest.bearer(), json!({})).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "NO_FIELDS_TO_UPDATE");
}

#[tokio::test]
async fn update_user_enforces_field_limits() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let cases = [
        json!({ "name": "x".repeat(257) }),
        json!({ "name": 42 }),
        json!({ "image": "javascript:alert(1)" }),
        json!({ "image": format!("https://example.com/{}", "a".repeat(2048)) }),
        json!({ "image": ["https://example.com/a.png"] }),
    ];

    for body in cases {
        let response = app.update_user(&guest.bearer(), body.clone()).await;
        assert_eq!(response.status(), 400, "{body}");
        assert_eq!(error_code(response).await, "VALIDATION_ERROR", "{body}");
    }
    assert_eq!(app.session_body(&guest.bearer()).await["user"]["name"], "Anonymous");
}

#[tokio::test]
async fn delete_user_deletes_a_real_user() {
    let app = TestApp::spawn().await;
    let real = app.real_user("ada@example.com").await;

    let response = app.delete_user(&real.cookie()).await;

    assert_eq!(response.status(), 200);
    assert_eq!(set_cookies(&response).len(), 3);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({ "success": true, "message": "User deleted" }));
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 0);
    assert_eq!(app.count("SELECT COUNT(*) FROM sessions").await, 0);
}

#[tokio::test]
async fn guest_cannot_use_delete_user() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;

    let response = app.delete_user(&guest.bearer()).await;

    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "ANONYMOUS_USER_CANNOT_DELETE");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn delete_user_requires_a_fresh_session() {
    let app = TestApp::spawn().await;
    let real = app.real_user("ada@example.com").await;

    app.clock.advance(Duration::from_secs(86_401));
    let response = app.delete_user(&real.bearer()).await;

    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "SESSION_EXPIRED");
    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}

#[tokio::test]
async fn delete_user_refuses_password_and_token() {
    let app = TestApp::spawn().await;
    let real = app.real_user("ada@example.com").await;

    let response = app.post_json("/delete-user", &real.bearer(), json!({ "password": "hunter2" })).await;
    assert_eq!(response.status(), 400);
    assert_eq!(error_code(response).await, "CREDENTIAL_ACCOUNT_NOT_FOUND");

    let response = app.post_json("/delete-user", &real.bearer(), json!({ "token": "abc" })).await;
    assert_eq!(response.status(), 404);
    assert_eq!(error_code(response).await, "INVALID_TOKEN");

    assert_eq!(app.count("SELECT COUNT(*) FROM users").await, 1);
}
