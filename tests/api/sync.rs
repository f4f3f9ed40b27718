use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::Response;
use serde_json::Value;

use crate::harness::{encode, error_code, Creds, Signed, TestApp, TRUSTED_ORIGIN};

const POWERSYNC_URL: &str = "https://sync.example.com";

async fn app_with_sync() -> TestApp {
    TestApp::spawn_with(|config| {
        config.sync.powersync_url = Some(POWERSYNC_URL.into());
        config.sync.max_devices = 2;
    })
    .await
}

fn root_url(app: &TestApp, path: &str) -> String {
    format!("{}/powersync{path}", app.origin)
}

/// Requests a sync token with `creds` and the given device id.
pub async fn sync_token(app: &TestApp, creds: &Creds, device: Option<&str>) -> Response {
    let mut request = app.client.get(root_url(app, "/token"));
    request = match creds {
        Creds::None => request,
        Creds::Cookie(signed) => request.header("cookie", format!("{}={}", app.cookie_name(), encode(signed))),
        Creds::Bearer(signed) => request.bearer_auth(signed),
    };
    if let Some(device) = device {
        request = request.header("x-device-id", device).header("x-device-name", "Ada's laptop");
    }
    request.send().await.unwrap()
}

async fn real_user(app: &TestApp, email: &str) -> Signed {
    app.sign_in_with_code(&Creds::None, email).await
}

fn claims(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    let decode = |part: &str| -> Value { serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap() };
    (decode(parts[0]), decode(parts[1]))
}

#[tokio::test]
async fn sync_routes_are_not_found_without_powersync_url() {
    let app = TestApp::spawn().await;
    let real = real_user(&app, "ada@example.com").await;

    for path in ["/token", "/jwks"] {
        let response = app.client.get(root_url(&app, path)).bearer_auth(&real.signed).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        assert_eq!(error_code(response).await, "NOT_FOUND");
    }
}

#[tokio::test]
async fn real_user_gets_a_sync_token_by_cookie_and_bearer() {
    let app = app_with_sync().await;
    let real = real_user(&app, "ada@example.com").await;
    let jwks: Value = app.client.get(root_url(&app, "/jwks")).send().await.unwrap().json().await.unwrap();

    for creds in [real.cookie(), real.bearer()] {
        let response = sync_token(&app, &creds, Some("laptop-1")).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["powerSyncUrl"], POWERSYNC_URL);
        let (header, claims) = claims(body["token"].as_str().unwrap());

        assert_eq!(header["alg"], "EdDSA");
        assert!(jwks["keys"].as_array().unwrap().iter().any(|key| key["kid"] == header["kid"]), "signed by a published sync key");
        assert_eq!(claims["sub"], real.user_id.as_str());
        assert_eq!(claims["user_id"], real.user_id.as_str());
        assert_eq!(claims["aud"], "powersync");
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 3600);
        assert_eq!(body["expiresAt"].as_str().unwrap().len(), 24);
    }
    let name: String = sqlx::query_scalar("SELECT name FROM devices WHERE id = 'laptop-1'").fetch_one(&app.db().await).await.unwrap();
    assert_eq!(name, "Ada's laptop");
}

#[tokio::test]
async fn general_and_sync_keys_never_mix() {
    let app = app_with_sync().await;
    let real = real_user(&app, "ada@example.com").await;
    let sync_jwks: Value = app.client.get(root_url(&app, "/jwks")).send().await.unwrap().json().await.unwrap();
    let general_jwks: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();
    let general: Value = app.get("/token", &real.bearer()).await.json().await.unwrap();
    let (general_header, _) = claims(general["token"].as_str().unwrap());

    let sync_kids: Vec<&Value> = sync_jwks["keys"].as_array().unwrap().iter().map(|key| &key["kid"]).collect();
    let general_kids: Vec<&Value> = general_jwks["keys"].as_array().unwrap().iter().map(|key| &key["kid"]).collect();
    assert_eq!(sync_kids.len(), 1);
    assert!(!sync_kids.contains(&&general_header["kid"]), "a /token JWT finds no key in the sync JWKS");
    assert!(sync_kids.iter().all(|kid| !general_kids.contains(kid)), "no sync key is in the general JWKS");
}

#[tokio::test]
async fn guest_is_refused_on_every_path() {
    let app = app_with_sync().await;
    let guest = app.guest().await;

    for creds in [guest.cookie(), guest.bearer()] {
        let response = sync_token(&app, &creds, Some("laptop-1")).await;
        assert_eq!(response.status(), 403);
        assert_eq!(error_code(response).await, "ANONYMOUS_SYNC_FORBIDDEN");
    }
    assert_eq!(app.count("SELECT COUNT(*) FROM devices").await, 0, "a guest registers no device");
}

#[tokio::test]
async fn missing_revoked_or_forged_sessions_get_401() {
    let app = app_with_sync().await;
    let real = real_user(&app, "ada@example.com").await;
    assert_eq!(app.revoke_sessions(&real.bearer()).await.status(), 200);

    for creds in [Creds::None, real.bearer(), Creds::Bearer(format!("{}.{}", "a".repeat(32), "A".repeat(43) + "="))] {
        let response = sync_token(&app, &creds, Some("laptop-1")).await;
        assert_eq!(response.status(), 401);
        assert_eq!(error_code(response).await, "UNAUTHORIZED");
    }
}

#[tokio::test]
async fn untrusted_origin_is_refused_first() {
    let app = app_with_sync().await;
    let real = real_user(&app, "ada@example.com").await;

    let response = app
        .client
        .get(root_url(&app, "/token"))
        .bearer_auth(&real.signed)
        .header("origin", "https://evil.example")
        .header("x-device-id", "laptop-1")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(error_code(response).await, "ORIGIN_NOT_ALLOWED");

    let trusted = app
        .client
        .get(root_url(&app, "/token"))
        .bearer_auth(&real.signed)
        .header("origin", TRUSTED_ORIGIN)
        .header("x-device-id", "laptop-1")
        .send()
        .await
        .unwrap();
    assert_eq!(trusted.status(), 200);
}

#[tokio::test]
async fn device_checks_produce_their_codes() {
    let app = app_with_sync().await;
    let ada = real_user(&app, "ada@example.com").await;
    let bob = real_user(&app, "bob@example.com").await;

    let cases = [(None, 400, "DEVICE_ID_REQUIRED"), (Some("has space"), 400, "INVALID_DEVICE_ID"), (Some(""), 400, "INVALID_DEVICE_ID")];
    for (device, status, code) in cases {
        let response = sync_token(&app, &ada.bearer(), device).await;
        assert_eq!(response.status(), status, "{device:?}");
        assert_eq!(error_code(response).await, code, "{device:?}");
    }

    assert_eq!(sync_token(&app, &ada.bearer(), Some("ada-phone")).await.status(), 200);
    let taken = sync_token(&app, &bob.bearer(), Some("ada-phone")).await;
    assert_eq!(taken.status(), 409);
    assert_eq!(error_code(taken).await, "DEVICE_ID_TAKEN");

    let handle_store = app.handle().store();
    assert!(handle_store.revoke_device("ada-phone", app.clock.now()).await.unwrap());
    let disconnected = sync_token(&app, &ada.bearer(), Some("ada-phone")).await;
    assert_eq!(disconnected.status(), 403);
    assert_eq!(error_code(disconnected).await, "DEVICE_DISCONNECTED");

    assert_eq!(sync_token(&app, &ada.bearer(), Some("ada-laptop")).await.status(), 200);
    assert_eq!(sync_token(&app, &ada.bearer(), Some("ada-tablet")).await.status(), 200);
    let limited = sync_token(&app, &ada.bearer(), Some("ada-watch")).await;
    assert_eq!(limited.status(), 409);
    assert_eq!(error_code(limited).await, "DEVICE_LIMIT_REACHED");
    assert_eq!(sync_token(&app, &ada.bearer(), Some("ada-laptop")).await.status(), 200, "known devices keep working");
}

async fn app_with_alg(alg: &'static str) -> TestApp {
    TestApp::spawn_with(move |config| {
        config.sync.powersync_url = Some(POWERSYNC_URL.into());
        config.sync.alg = alg.into();
        if alg == "HS256" {
            config.sync.hs256_secret = Some(doorman::core::secret::Secret::new(URL_SAFE_NO_PAD.encode([7u8; 32])));
            config.sync.hs256_kid = Some("powersync-inline".into());
        }
    })
    .await
}

#[tokio::test]
async fn rs256_and_es256_sync_keys_are_published() {
    for (alg, kty) in [("RS256", "RSA"), ("ES256", "EC")] {
        let app = app_with_alg(alg).await;
        let real = real_user(&app, "ada@example.com").await;

        let body: Value = sync_token(&app, &real.bearer(), Some("laptop-1")).await.json().await.unwrap();
        let (header, _) = claims(body["token"].as_str().unwrap());
        let jwks: Value = app.client.get(root_url(&app, "/jwks")).send().await.unwrap().json().await.unwrap();

        assert_eq!(header["alg"], alg);
        let key = jwks["keys"].as_array().unwrap().iter().find(|key| key["kid"] == header["kid"]).expect("the kid is published");
        assert_eq!(key["kty"], kty);
        assert_eq!(key["alg"], alg);
    }
}

#[tokio::test]
async fn hs256_sync_tokens_use_the_shared_key_and_publish_nothing_symmetric() {
    use hmac::{Hmac, Mac};

    let app = app_with_alg("HS256").await;
    let real = real_user(&app, "ada@example.com").await;

    let body: Value = sync_token(&app, &real.bearer(), Some("laptop-1")).await.json().await.unwrap();
    let token = body["token"].as_str().unwrap();
    let (header, claims) = claims(token);
    let (input, signature) = token.rsplit_once('.').unwrap();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&[7u8; 32]).unwrap();
    mac.update(input.as_bytes());

    assert_eq!(header["alg"], "HS256");
    assert_eq!(header["kid"], "powersync-inline");
    assert_eq!(claims["sub"], real.user_id.as_str());
    assert!(mac.verify_slice(&URL_SAFE_NO_PAD.decode(signature).unwrap()).is_ok(), "signed with the shared key");
    for path in ["/powersync/jwks", "/api/auth/jwks"] {
        let jwks: Value = app.client.get(format!("{}{path}", app.origin)).send().await.unwrap().json().await.unwrap();
        for key in jwks["keys"].as_array().unwrap() {
            assert_ne!(key["kty"], "oct", "{path} publishes no symmetric key");
            assert!(key.get("k").is_none());
        }
    }
}

#[tokio::test]
async fn sync_key_rotation_keeps_issued_tokens_valid() {
    let app = app_with_sync().await;
    let real = real_user(&app, "ada@example.com").await;
    let issue = || async {
        let body: Value = sync_token(&app, &real.bearer(), Some("laptop-1")).await.json().await.unwrap();
        body["token"].as_str().unwrap().to_string()
    };
    let sync_jwks = || async { app.client.get(root_url(&app, "/jwks")).send().await.unwrap().json::<Value>().await.unwrap() };
    let before = issue().await;
    let old_kid = claims(&before).0["kid"].clone();

    let secret = app.config.secret.clone().unwrap();
    let cipher = doorman::core::keys::KeyCipher::new(&secret, &[]);
    let grace = std::time::Duration::from_secs(900);
    let ttl = app.config.sync.token_ttl.get();
    let new = doorman::core::jwt::rotate(app.handle().store(), &cipher, doorman::core::keys::Purpose::Sync, "EdDSA", app.clock.now(), grace, ttl)
        .await
        .unwrap();
    app.handle().reload_keys().await.unwrap();

    assert_eq!(sync_jwks().await["keys"].as_array().unwrap().len(), 2, "the new key is published at once");
    assert_eq!(claims(&issue().await).0["kid"], old_kid, "the old key signs during the grace");

    app.clock.advance(grace + std::time::Duration::from_secs(1));
    app.handle().reload_keys().await.unwrap();
    assert_eq!(claims(&issue().await).0["kid"], new.kid.as_str(), "the new key signs after its activation");
    crate::jwt::verify(&before, &sync_jwks().await);

    app.clock.advance(ttl);
    app.handle().reload_keys().await.unwrap();
    let jwks = sync_jwks().await;
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|key| &key["kid"]).collect();
    assert_eq!(kids, [&Value::from(new.kid.as_str())], "the old key retires once its last token expired");
}
