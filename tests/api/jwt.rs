use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use serde_json::Value;

use crate::harness::{error_code, Creds, TestApp};

fn decode(part: &str) -> Value {
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies `token` against the JWKS document and returns its header and claims.
pub fn verify(token: &str, jwks: &Value) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS has three parts");
    let header = decode(parts[0]);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|key| key["kid"] == header["kid"])
        .expect("the token's kid is published");
    let x: [u8; 32] = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap().try_into().unwrap();
    let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
        .expect("the signature verifies");
    (header, decode(parts[1]))
}

#[tokio::test]
async fn token_carries_only_the_documented_claims() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let jwks: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();

    for creds in [guest.cookie(), guest.bearer()] {
        let response = app.get("/token", &creds).await;
        assert_eq!(response.status(), 200);
        let body: Value = response.json().await.unwrap();

        let (header, claims) = verify(body["token"].as_str().unwrap(), &jwks);

        assert_eq!(header["alg"], "EdDSA");
        let mut names: Vec<&String> = claims.as_object().unwrap().keys().collect();
        names.sort();
        assert_eq!(names, ["aud", "exp", "iat", "isAnonymous", "iss", "sub"]);
        assert_eq!(claims["sub"], guest.user_id.as_str());
        assert_eq!(claims["isAnonymous"], true);
        assert_eq!(claims["iss"], app.origin.as_str());
        assert_eq!(claims["aud"], app.origin.as_str());
        assert_eq!(claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(), 900);
        assert_eq!(claims["iat"].as_i64().unwrap(), app.clock.now().0 / 1000);
    }
}

#[tokio::test]
async fn token_needs_a_session() {
    let app = TestApp::spawn().await;

    let response = app.get("/token", &Creds::None).await;

    assert_eq!(response.status(), 401);
    assert_eq!(error_code(response).await, "UNAUTHORIZED");
}

#[tokio::test]
async fn jwks_publishes_public_keys_only() {
    let app = TestApp::spawn().await;

    let jwks: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();

    let keys = jwks["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0]["kty"], "OKP");
    assert_eq!(keys[0]["crv"], "Ed25519");
    assert!(keys[0].get("d").is_none(), "no private part is published");
    let stored: Vec<String> = sqlx::query_scalar("SELECT private_key FROM signing_keys").fetch_all(&app.db().await).await.unwrap();
    assert_eq!(stored.len(), 2, "one general and one sync key");
    assert!(stored.iter().all(|key| key.starts_with("v1.")), "private keys are stored encrypted");
}

#[tokio::test]
async fn first_key_survives_a_restart_under_an_older_secret() {
    let app = TestApp::spawn().await;
    let before: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();
    let mut config = app.config.clone();

    // A second start with a rotated secret keeps the key, because the old secret still decrypts it.
    config.secrets = vec![config.secret.clone().unwrap()];
    config.secret = Some(doorman::core::secret::Secret::new("a-brand-new-secret-of-more-than-32-bytes"));
    let (_router, handle) = doorman::Doorman::start(config).await.expect("starting again");
    let keys = handle.store().signing_keys("general").await.unwrap();
    handle.shutdown().await;

    assert_eq!(keys.len(), 1);
    assert_eq!(before["keys"][0]["kid"], keys[0].kid.as_str());
}

#[tokio::test]
async fn rotation_publishes_first_then_signs_after_the_grace() {
    let app = TestApp::spawn().await;
    let guest = app.guest().await;
    let kid_of = |body: &Value| decode(body["token"].as_str().unwrap().split('.').next().unwrap())["kid"].clone();
    let before: Value = app.get("/token", &guest.bearer()).await.json().await.unwrap();
    let old_kid = kid_of(&before);

    let secret = app.config.secret.clone().unwrap();
    let cipher = doorman::core::keys::KeyCipher::new(&secret, &[]);
    let grace = std::time::Duration::from_secs(900);
    let new = doorman::core::jwt::rotate(app.handle().store(), &cipher, doorman::core::keys::Purpose::General, "EdDSA", app.clock.now(), grace, grace)
        .await
        .unwrap();
    app.handle().reload_keys().await.unwrap();

    let jwks: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 2, "the new key is published at once");
    let during: Value = app.get("/token", &guest.bearer()).await.json().await.unwrap();
    assert_eq!(kid_of(&during), old_kid, "the old key signs during the grace");

    app.clock.advance(grace + std::time::Duration::from_secs(1));
    app.handle().reload_keys().await.unwrap();
    let after: Value = app.get("/token", &guest.bearer()).await.json().await.unwrap();
    assert_eq!(kid_of(&after), new.kid.as_str(), "the new key signs after its activation");
    let jwks: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();
    verify(before["token"].as_str().unwrap(), &jwks);

    app.clock.advance(grace);
    app.handle().reload_keys().await.unwrap();
    let jwks: Value = app.get("/jwks", &Creds::None).await.json().await.unwrap();
    let kids: Vec<&Value> = jwks["keys"].as_array().unwrap().iter().map(|key| &key["kid"]).collect();
    assert_eq!(kids, [&Value::from(new.kid.as_str())], "the old key retires once its last token expired");
}
