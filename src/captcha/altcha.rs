//! The built-in proof of work, in the ALTCHA protocol version 2 (as the `altcha` 3.x widget and
//! `altcha-lib` 2.x speak it) with PBKDF2/SHA-256 key derivation. It needs no third party.
//!
//! A challenge is `{parameters, signature}`: a random nonce and salt, the PBKDF2 cost, the key
//! length, a hex key prefix and an expiry, signed with HMAC-SHA256 over the parameters' JSON with
//! sorted keys. The client searches a counter whose key, PBKDF2(nonce ‖ counter as big-endian u32,
//! salt), starts with the prefix, and answers with the base64 JSON `{challenge, solution: {counter,
//! derivedKey}}` in `x-captcha-response`.

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::future::BoxFuture;
use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

use super::{CaptchaVerifier, Verdict};
use crate::core::secret::Secret;
use crate::core::time::Clock;
use crate::core::token::derive_key;

/// HKDF label of the key that signs challenges.
const CHALLENGE_LABEL: &[u8] = b"doorman altcha challenge v1";
const ALGORITHM: &str = "PBKDF2/SHA-256";
/// Bytes of the derived key.
const KEY_LENGTH: usize = 32;
/// Hex prefix the derived key must start with: one byte, so one counter in 256 solves on average.
const KEY_PREFIX: &str = "00";
/// Most key derivations running at once; each is CPU-bound work off the async threads.
const MAX_CONCURRENT_DERIVATIONS: usize = 4;
/// Maximum accepted PBKDF2 cost, whatever a challenge contains.
pub const MAX_COST: u32 = 1_000_000;

/// Issues and verifies signed proof-of-work challenges.
pub struct Altcha {
    key: Zeroizing<[u8; 32]>,
    cost: u32,
    ttl: Duration,
    clock: Clock,
    derivations: Arc<Semaphore>,
}

impl Altcha {
    pub fn new(secret: &Secret, cost: u32, ttl: Duration, clock: Clock) -> Self {
        Self {
            key: derive_key(secret, CHALLENGE_LABEL),
            cost: cost.clamp(1, MAX_COST),
            ttl,
            clock,
            derivations: Arc::new(Semaphore::new(MAX_CONCURRENT_DERIVATIONS)),
        }
    }

    /// A new signed challenge.
    pub fn challenge(&self) -> Value {
        let expires_at = (self.clock.now() + self.ttl).0 / 1000;
        let parameters = json!({
            "algorithm": ALGORITHM,
            "nonce": random_hex(16),
            "salt": random_hex(16),
            "cost": self.cost,
            "keyLength": KEY_LENGTH,
            "keyPrefix": KEY_PREFIX,
            "expiresAt": expires_at,
        });
        let signature = self.sign(&parameters);
        json!({ "parameters": parameters, "signature": signature })
    }

    /// Hex HMAC-SHA256 of the parameters' JSON; `serde_json` writes object keys sorted.
    fn sign(&self, parameters: &Value) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC accepts keys of any length");
        mac.update(parameters.to_string().as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Checks a payload's challenge (signature, algorithm, cost, expiry) without deriving a key,
    /// and returns the parsed payload.
    fn check_challenge(&self, token: &str) -> Result<Payload, String> {
        let bytes = STANDARD.decode(token.trim()).map_err(|_| "the payload is not base64".to_string())?;
        let value: Value = serde_json::from_slice(&bytes).map_err(|_| "the payload is not JSON".to_string())?;
        let parameters = value["challenge"]["parameters"].clone();
        let signature = value["challenge"]["signature"].as_str().ok_or("the challenge has no signature")?;
        if !bool::from(self.sign(&parameters).as_bytes().ct_eq(signature.as_bytes())) {
            return Err("the challenge signature is invalid".into());
        }
        let expires_at = parameters["expiresAt"].as_i64().ok_or("the challenge has no expiry")?;
        if expires_at * 1000 < self.clock.now().0 {
            return Err("the challenge expired".into());
        }
        let cost = parameters["cost"].as_u64().and_then(|cost| u32::try_from(cost).ok()).ok_or("invalid cost")?;
        if parameters["algorithm"] != ALGORITHM || cost > MAX_COST || parameters["keyLength"] != KEY_LENGTH {
            return Err("the challenge parameters are not Doorman's".into());
        }

        let solution = &value["solution"];
        let counter = solution["counter"].as_u64().and_then(|counter| u32::try_from(counter).ok()).ok_or("invalid counter")?;
        let derived = solution["derivedKey"].as_str().ok_or("the solution has no derived key")?.to_string();
        Ok(Payload {
            signature: signature.to_string(),
            nonce: unhex(parameters["nonce"].as_str().unwrap_or_default()).ok_or("invalid nonce")?,
            salt: unhex(parameters["salt"].as_str().unwrap_or_default()).ok_or("invalid salt")?,
            prefix: parameters["keyPrefix"].as_str().unwrap_or_default().to_string(),
            cost,
            counter,
            derived,
        })
    }
}

struct Payload {
    signature: String,
    nonce: Vec<u8>,
    salt: Vec<u8>,
    prefix: String,
    cost: u32,
    counter: u32,
    derived: String,
}

impl CaptchaVerifier for Altcha {
    /// The challenge's signature, so one challenge is spent at its first attempt, pass or fail.
    fn claim_id(&self, token: &str) -> Result<String, String> {
        let payload = self.check_challenge(token)?;
        Ok(hex(&Sha256::digest(payload.signature.as_bytes())))
    }

    fn verify<'a>(&'a self, token: &'a str, _remote_ip: Option<&'a str>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            let payload = match self.check_challenge(token) {
                Ok(payload) => payload,
                Err(reason) => return Verdict::Rejected(reason),
            };
            let Ok(_permit) = self.derivations.clone().acquire_owned().await else {
                return Verdict::Unavailable("the derivation pool is closed".into());
            };
            let derived = tokio::task::spawn_blocking(move || {
                let mut password = payload.nonce.clone();
                password.extend_from_slice(&payload.counter.to_be_bytes());
                let mut key = [0u8; KEY_LENGTH];
                pbkdf2::pbkdf2_hmac::<Sha256>(&password, &payload.salt, payload.cost, &mut key);
                (hex(&key), payload)
            })
            .await;
            let Ok((computed, payload)) = derived else {
                return Verdict::Unavailable("the key derivation failed".into());
            };
            let matches: bool = computed.as_bytes().ct_eq(payload.derived.as_bytes()).into();
            if matches && computed.starts_with(&payload.prefix) {
                Verdict::Passed
            } else {
                Verdict::Rejected("wrong solution".into())
            }
        })
    }
}

impl CaptchaVerifier for Arc<Altcha> {
    fn claim_id(&self, token: &str) -> Result<String, String> {
        self.as_ref().claim_id(token)
    }

    fn verify<'a>(&'a self, token: &'a str, remote_ip: Option<&'a str>) -> BoxFuture<'a, Verdict> {
        self.as_ref().verify(token, remote_ip)
    }
}

fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    OsRng.fill_bytes(&mut buffer);
    hex(&buffer)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len()).step_by(2).map(|index| u8::from_str_radix(text.get(index..index + 2)?, 16).ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::Millis;

    fn altcha(clock: &Clock) -> Altcha {
        Altcha::new(&Secret::new("a-secret-of-at-least-thirty-two-bytes!!"), 10, Duration::from_secs(300), clock.clone())
    }

    /// Finds a counter the way a client does and returns the widget's payload.
    fn solve(challenge: &Value) -> String {
        let parameters = &challenge["parameters"];
        let nonce = unhex(parameters["nonce"].as_str().unwrap()).unwrap();
        let salt = unhex(parameters["salt"].as_str().unwrap()).unwrap();
        let cost = parameters["cost"].as_u64().unwrap() as u32;
        for counter in 0u32.. {
            let mut password = nonce.clone();
            password.extend_from_slice(&counter.to_be_bytes());
            let mut key = [0u8; KEY_LENGTH];
            pbkdf2::pbkdf2_hmac::<Sha256>(&password, &salt, cost, &mut key);
            if key[0] == 0 {
                let payload = json!({ "challenge": challenge, "solution": { "counter": counter, "derivedKey": hex(&key) } });
                return STANDARD.encode(payload.to_string());
            }
        }
        unreachable!()
    }

    #[tokio::test]
    async fn solved_challenge_passes() {
        let clock = Clock::manual(Millis(1_000_000));
        let altcha = altcha(&clock);
        let token = solve(&altcha.challenge());

        assert!(altcha.claim_id(&token).is_ok());
        assert_eq!(altcha.verify(&token, None).await, Verdict::Passed);
    }

    #[tokio::test]
    async fn tampered_or_expired_challenges_fail() {
        let clock = Clock::manual(Millis(1_000_000));
        let altcha = altcha(&clock);
        let challenge = altcha.challenge();
        let token = solve(&challenge);

        let mut tampered = challenge.clone();
        tampered["parameters"]["cost"] = json!(1);
        let forged = STANDARD.encode(json!({ "challenge": tampered, "solution": { "counter": 0, "derivedKey": "00" } }).to_string());
        assert!(altcha.claim_id(&forged).is_err());

        clock.advance(Duration::from_secs(301));
        assert!(altcha.claim_id(&token).is_err());
        assert!(matches!(altcha.verify(&token, None).await, Verdict::Rejected(_)));
    }

    #[tokio::test]
    async fn wrong_solution_fails() {
        let clock = Clock::manual(Millis(1_000_000));
        let altcha = altcha(&clock);
        let challenge = altcha.challenge();
        let wrong = STANDARD.encode(json!({ "challenge": challenge, "solution": { "counter": 7, "derivedKey": "00ff" } }).to_string());

        assert!(altcha.claim_id(&wrong).is_ok(), "a wrong solution still spends its challenge");
        assert!(matches!(altcha.verify(&wrong, None).await, Verdict::Rejected(_)));
        assert!(altcha.claim_id("not base64!").is_err());
    }
}
