//! The checks an upload passes before any write: origin, session, guest, device and body, each
//! with its status and code.

use doorman::config::ByteSize;
use reqwest::Response;
use serde_json::{json, Value};

use super::fixture::{ada_on_fresh_schema, batch, cookie, put, spawn_app, upload, upload_request, SyncSchema, Writer};
use crate::sync::sync_token;
use crate::harness::{error_code, Creds, TestApp, TRUSTED_ORIGIN};

/// Asserts that `response` has `status` and the error `code`.
async fn assert_error(response: Response, status: u16, code: &str, case: &str) {
    assert_eq!(response.status(), status, "{case}");
    assert_eq!(error_code(response).await, code, "{case}");
}

fn one_note() -> Value {
    batch(vec![put("notes", "n1", json!({ "title": "One" }))])
}

#[tokio::test]
async fn untrusted_origin_is_rejected() {
    let (schema, app, ada) = ada_on_fresh_schema().await;

    let bearer = upload_request(&app).bearer_auth(&ada.session.signed);
    let with_cookie = upload_request(&app).header("cookie", cookie(&app, &ada.session.signed));
    for (label, request) in [("bearer", bearer), ("cookie", with_cookie)] {
        let response = request.header("origin", "https://evil.example").header("x-device-id", &ada.device).json(&one_note()).send();
        assert_error(response.await.unwrap(), 403, "ORIGIN_NOT_ALLOWED", label).await;
    }

    let anonymous = upload_request(&app).header("origin", "https://evil.example").json(&one_note()).send().await.unwrap();
    assert_error(anonymous, 403, "ORIGIN_NOT_ALLOWED", "the origin is checked before the session").await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new());
}

#[tokio::test]
async fn cookie_needs_trusted_origin_or_referer() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let with_cookie = || upload_request(&app).header("cookie", cookie(&app, &ada.session.signed)).header("x-device-id", &ada.device);

    let bare = with_cookie().json(&one_note()).send().await.unwrap();
    assert_error(bare, 403, "MISSING_OR_NULL_ORIGIN", "a cookie without Origin or Referer").await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new());

    let passing = [
        ("origin", TRUSTED_ORIGIN.to_string()),
        ("origin", app.origin.clone()),
        ("referer", format!("{}/notes", app.origin)),
        ("sec-fetch-site", "same-origin".to_string()),
    ];
    for (name, value) in passing {
        let response = with_cookie().header(name, value.as_str()).json(&one_note()).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}: {value}");
    }

    let foreign = with_cookie().header("referer", "https://evil.example/notes").json(&one_note()).send().await.unwrap();
    assert_eq!(foreign.status(), 403, "a cookie with an untrusted Referer");

    let bearer_only = upload_request(&app).bearer_auth(&ada.session.signed).header("x-device-id", &ada.device);
    let response = bearer_only.json(&one_note()).send().await.unwrap();
    assert_eq!(response.status(), 200, "a bearer request needs no origin");
}

#[tokio::test]
async fn missing_or_invalid_session_is_401() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let forged = Creds::Bearer(format!("{}.{}", "a".repeat(32), "A".repeat(43) + "="));

    for (label, creds) in [("no credentials", Creds::None), ("forged bearer", forged)] {
        assert_error(upload(&app, &creds, Some(&ada.device), &one_note()).await, 401, "UNAUTHORIZED", label).await;
    }
    assert_eq!(app.revoke_sessions(&ada.session.bearer()).await.status(), 200);
    for (label, creds) in [("revoked bearer", ada.session.bearer()), ("revoked cookie", ada.session.cookie())] {
        assert_error(upload(&app, &creds, Some(&ada.device), &one_note()).await, 401, "UNAUTHORIZED", label).await;
    }
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new());
}

#[tokio::test]
async fn guest_is_rejected_even_with_empty_batch() {
    let schema = SyncSchema::create().await;
    let app = spawn_app(&schema, |_| {}).await;
    let guest = app.guest().await;

    for (label, creds) in [("cookie", guest.cookie()), ("bearer", guest.bearer())] {
        let response = upload(&app, &creds, Some("guest-phone"), &batch(vec![])).await;
        assert_error(response, 403, "ANONYMOUS_SYNC_FORBIDDEN", label).await;
        let response = upload(&app, &creds, None, &batch(vec![])).await;
        assert_error(response, 403, "ANONYMOUS_SYNC_FORBIDDEN", "the guest check comes before the device check").await;
    }
}

#[tokio::test]
async fn device_checks_produce_their_codes() {
    let (schema, app, ada) = ada_on_fresh_schema().await;
    let bob = Writer::sign_in(&app, "bob@example.com", "bob-phone").await;
    let creds = ada.session.bearer();

    assert_error(upload(&app, &creds, None, &one_note()).await, 400, "DEVICE_ID_REQUIRED", "no device").await;
    let too_long = "d".repeat(129);
    for device in ["", "has space", "a/b", "é", too_long.as_str()] {
        assert_error(upload(&app, &creds, Some(device), &one_note()).await, 400, "INVALID_DEVICE_ID", device).await;
    }
    let cases = [("never-registered", 403, "DEVICE_NOT_REGISTERED"), (bob.device.as_str(), 409, "DEVICE_ID_TAKEN")];
    for (device, status, code) in cases {
        assert_error(upload(&app, &creds, Some(device), &one_note()).await, status, code, device).await;
    }

    assert!(app.handle().store().revoke_device(&ada.device, app.clock.now()).await.unwrap());
    let revoked = upload(&app, &creds, Some(&ada.device), &one_note()).await;
    assert_error(revoked, 403, "DEVICE_DISCONNECTED", "a revoked device").await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new());

    let longest = "D".repeat(128);
    assert_eq!(sync_token(&app, &creds, Some(&longest)).await.status(), 200);
    let response = upload(&app, &creds, Some(&longest), &one_note()).await;
    assert_eq!(response.status(), 200, "128 characters is a valid device id");
}

#[tokio::test]
async fn device_is_checked_before_body() {
    let (_schema, app, ada) = ada_on_fresh_schema().await;

    let response = upload(&app, &ada.session.bearer(), Some("never-registered"), &json!({ "operations": "none" })).await;

    assert_error(response, 403, "DEVICE_NOT_REGISTERED", "an unregistered device with an invalid body").await;
}

/// Sends `body` with `content_type` by bearer from `writer`'s device.
async fn upload_raw(app: &TestApp, writer: &Writer, content_type: &str, body: String) -> Response {
    let request = upload_request(app).bearer_auth(&writer.session.signed).header("x-device-id", &writer.device);
    request.header("content-type", content_type).body(body).send().await.unwrap()
}

#[tokio::test]
async fn body_checks_produce_their_codes() {
    let schema = SyncSchema::create().await;
    let app = spawn_app(&schema, |config| {
        config.sync.max_body = ByteSize(2048);
        config.sync.max_operations = 3;
    })
    .await;
    let ada = Writer::sign_in(&app, "ada@example.com", "ada-laptop").await;
    let json = "application/json";

    let plain = upload_raw(&app, &ada, "text/plain", one_note().to_string()).await;
    assert_eq!(plain.status(), 415, "a text/plain body");
    assert_eq!(upload_raw(&app, &ada, json, "{\"operations\": [".into()).await.status(), 400, "invalid JSON");
    for body in [json!({}), json!({ "operations": {} }), json!({ "operations": "PUT" }), json!({ "operations": null })] {
        let response = upload_raw(&app, &ada, json, body.to_string()).await;
        assert_error(response, 400, "VALIDATION_ERROR", &body.to_string()).await;
    }

    let large = batch(vec![put("notes", "big", json!({ "title": "x".repeat(3000) }))]);
    assert_error(upload_raw(&app, &ada, json, large.to_string()).await, 413, "PAYLOAD_TOO_LARGE", "past max_body").await;
    let four = batch((1..=4).map(|index| put("notes", &format!("n{index}"), json!({}))).collect());
    assert_error(upload_raw(&app, &ada, json, four.to_string()).await, 413, "PAYLOAD_TOO_LARGE", "past max_operations").await;
    assert_eq!(schema.rows("notes").await, Vec::<Value>::new(), "a rejected body writes nothing");

    let empty = upload_raw(&app, &ada, json, batch(vec![]).to_string()).await;
    assert_eq!(empty.status(), 200, "an empty batch");
    assert_eq!(empty.json::<Value>().await.unwrap(), json!({ "applied": 0, "rejected": [] }));

    let three = batch((1..=3).map(|index| put("notes", &format!("n{index}"), json!({}))).collect());
    let response = upload_raw(&app, &ada, json, three.to_string()).await;
    assert_eq!(response.status(), 200, "max_operations operations pass");
    assert_eq!(schema.rows("notes").await.len(), 3);
}

#[tokio::test]
async fn upload_is_not_found_without_database_url() {
    let schema = SyncSchema::create().await;
    let app = spawn_app(&schema, |config| config.sync.database_url = None).await;
    let ada = app.sign_in_with_code(&Creds::None, "ada@example.com").await;

    assert_eq!(sync_token(&app, &ada.bearer(), Some("ada-laptop")).await.status(), 200);
    let response = upload(&app, &ada.bearer(), Some("ada-laptop"), &one_note()).await;
    assert_error(response, 404, "NOT_FOUND", "upload without sync.database_url").await;
}
