//! JWT signing keys: generation, encryption at rest, the key ring, and compact JWS signing.
//!
//! Keys are Ed25519 (`EdDSA`), RSA (`RS256`) or P-256 (`ES256`). The private part is stored encrypted with XChaCha20-Poly1305 under a
//! key derived from the secret; older secrets still decrypt, so a secret rotation keeps the keys.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use ed25519_dalek::Signer;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use rsa::signature::SignatureEncoding;
use rsa::traits::PublicKeyParts;
use rand::rngs::OsRng;
use rand::RngCore;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use super::secret::Secret;
use super::time::Millis;
use super::token::derive_key;
use crate::store::KeyRecord;

/// HKDF label of the key that encrypts private signing keys at rest.
const ENCRYPTION_LABEL: &[u8] = b"doorman private-key encryption v1";
/// Prefix of the stored ciphertext format: `v1.` and base64url of the nonce and the ciphertext.
const CIPHERTEXT_PREFIX: &str = "v1.";

/// The ring a key belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Signs `/token` JWTs, published at `/jwks` under the base path.
    General,
    /// Signs sync tokens, published only at the sync gateway's JWKS.
    Sync,
}

impl Purpose {
    pub fn name(self) -> &'static str {
        match self {
            Purpose::General => "general",
            Purpose::Sync => "sync",
        }
    }
}

/// Encrypts private keys under the current secret and decrypts under any configured secret.
pub struct KeyCipher {
    keys: Vec<Zeroizing<[u8; 32]>>,
}

impl KeyCipher {
    pub fn new(current: &Secret, older: &[Secret]) -> Self {
        let keys = std::iter::once(current).chain(older).map(|secret| derive_key(secret, ENCRYPTION_LABEL)).collect();
        Self { keys }
    }

    /// Returns `v1.` and base64url of a random 24-byte nonce followed by the ciphertext.
    pub fn encrypt(&self, plaintext: &[u8]) -> String {
        let cipher = XChaCha20Poly1305::new(self.keys[0].as_ref().into());
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let ciphertext = cipher.encrypt(XNonce::from_slice(&nonce), plaintext).expect("XChaCha20-Poly1305 encrypts any input");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{CIPHERTEXT_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed))
    }

    /// Decrypts a value of [`KeyCipher::encrypt`] with the first secret that opens it.
    pub fn decrypt(&self, text: &str) -> Option<Zeroizing<Vec<u8>>> {
        let sealed = URL_SAFE_NO_PAD.decode(text.strip_prefix(CIPHERTEXT_PREFIX)?).ok()?;
        if sealed.len() < 24 {
            return None;
        }
        let (nonce, ciphertext) = sealed.split_at(24);
        self.keys.iter().find_map(|key| {
            XChaCha20Poly1305::new(key.as_ref().into())
                .decrypt(XNonce::from_slice(nonce), ciphertext)
                .ok()
                .map(Zeroizing::new)
        })
    }
}

/// Algorithms a signing key may use.
pub const ED25519: &str = "EdDSA";
pub const RS256: &str = "RS256";
pub const ES256: &str = "ES256";
/// Bits of generated RSA keys.
const RSA_BITS: usize = 2048;

enum KeyMaterial {
    Ed25519(ed25519_dalek::SigningKey),
    Rsa(Box<rsa::RsaPrivateKey>),
    P256(p256::ecdsa::SigningKey),
}

/// A private signing key with its key id.
pub struct SigningKey {
    pub kid: String,
    material: KeyMaterial,
}

impl SigningKey {
    /// Generates an Ed25519 key.
    pub fn generate(kid: String) -> Self {
        Self { kid, material: KeyMaterial::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)) }
    }

    /// Generates a key of `alg` (`EdDSA`, `RS256` or `ES256`); `None` for another algorithm.
    pub fn generate_with(alg: &str, kid: String) -> Option<Self> {
        let material = match alg {
            ED25519 => KeyMaterial::Ed25519(ed25519_dalek::SigningKey::generate(&mut OsRng)),
            RS256 => KeyMaterial::Rsa(Box::new(rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).ok()?)),
            ES256 => KeyMaterial::P256(p256::ecdsa::SigningKey::random(&mut OsRng)),
            _ => return None,
        };
        Some(Self { kid, material })
    }

    pub fn alg(&self) -> &'static str {
        match self.material {
            KeyMaterial::Ed25519(_) => ED25519,
            KeyMaterial::Rsa(_) => RS256,
            KeyMaterial::P256(_) => ES256,
        }
    }

    /// Rebuilds a key from its stored private bytes: the Ed25519 seed, the RSA key as PKCS#8 DER,
    /// or the P-256 scalar. `None` for another algorithm or malformed bytes.
    pub fn from_private(kid: String, alg: &str, private: &[u8]) -> Option<Self> {
        let material = match alg {
            ED25519 => KeyMaterial::Ed25519(ed25519_dalek::SigningKey::from_bytes(&private.try_into().ok()?)),
            RS256 => KeyMaterial::Rsa(Box::new(rsa::RsaPrivateKey::from_pkcs8_der(private).ok()?)),
            ES256 => KeyMaterial::P256(p256::ecdsa::SigningKey::from_slice(private).ok()?),
            _ => return None,
        };
        Some(Self { kid, material })
    }

    pub fn private_bytes(&self) -> Zeroizing<Vec<u8>> {
        match &self.material {
            KeyMaterial::Ed25519(key) => Zeroizing::new(key.to_bytes().to_vec()),
            KeyMaterial::Rsa(key) => Zeroizing::new(key.to_pkcs8_der().expect("RSA keys encode as PKCS#8").as_bytes().to_vec()),
            KeyMaterial::P256(key) => Zeroizing::new(key.to_bytes().to_vec()),
        }
    }

    /// The public key as a JWK with `alg`, `use` and `kid`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk = match &self.material {
            KeyMaterial::Ed25519(key) => {
                json!({ "kty": "OKP", "crv": "Ed25519", "x": URL_SAFE_NO_PAD.encode(key.verifying_key().as_bytes()) })
            }
            KeyMaterial::Rsa(key) => json!({
                "kty": "RSA",
                "n": URL_SAFE_NO_PAD.encode(key.n().to_bytes_be()),
                "e": URL_SAFE_NO_PAD.encode(key.e().to_bytes_be()),
            }),
            KeyMaterial::P256(key) => {
                let point = key.verifying_key().to_encoded_point(false);
                json!({
                    "kty": "EC",
                    "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(point.x().expect("uncompressed points have x")),
                    "y": URL_SAFE_NO_PAD.encode(point.y().expect("uncompressed points have y")),
                })
            }
        };
        jwk["alg"] = json!(self.alg());
        jwk["use"] = json!("sig");
        jwk["kid"] = json!(self.kid);
        jwk
    }

    /// Signs `claims` as a compact JWS with the header `{alg, kid, typ: "JWT"}`.
    pub fn sign_jwt(&self, claims: &Value) -> String {
        let header = json!({ "alg": self.alg(), "kid": self.kid, "typ": "JWT" });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = match &self.material {
            KeyMaterial::Ed25519(key) => key.sign(signing_input.as_bytes()).to_bytes().to_vec(),
            KeyMaterial::Rsa(key) => {
                let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key.as_ref().clone());
                rsa::signature::Signer::sign(&signer, signing_input.as_bytes()).to_vec()
            }
            KeyMaterial::P256(key) => {
                let signature: p256::ecdsa::Signature = rsa::signature::Signer::sign(key, signing_input.as_bytes());
                signature.to_bytes().to_vec()
            }
        };
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// The stored row of this key, its private part encrypted.
    pub fn to_record(&self, purpose: Purpose, cipher: &KeyCipher, now: Millis, activates_at: Millis) -> KeyRecord {
        KeyRecord {
            kid: self.kid.clone(),
            purpose: purpose.name().to_string(),
            alg: self.alg().to_string(),
            public_jwk: self.public_jwk().to_string(),
            private_key: cipher.encrypt(&self.private_bytes()),
            created_at: now,
            activates_at,
            retired_at: None,
        }
    }
}

/// The keys of one purpose at one instant: the key that signs, and the public keys to publish.
#[derive(Default)]
pub struct KeyRing {
    pub signing: Option<SigningKey>,
    pub published: Vec<Value>,
}

impl KeyRing {
    /// Builds the ring from stored rows. Every key not yet retired is published, including one whose
    /// activation is still ahead; the newest active key signs. A key that no configured secret
    /// decrypts is logged and skipped.
    pub fn load(records: &[KeyRecord], cipher: &KeyCipher, now: Millis) -> Self {
        let live: Vec<&KeyRecord> = records.iter().filter(|record| record.retired_at.is_none_or(|at| at > now.0)).collect();
        let published = live.iter().filter_map(|record| serde_json::from_str(&record.public_jwk).ok()).collect();

        let mut active: Vec<&&KeyRecord> = live.iter().filter(|record| record.activates_at <= now).collect();
        active.sort_by_key(|record| (record.activates_at, record.created_at));
        let signing = active.iter().rev().find_map(|record| {
            let key = cipher
                .decrypt(&record.private_key)
                .and_then(|private| SigningKey::from_private(record.kid.clone(), &record.alg, &private));
            if key.is_none() {
                tracing::error!(kid = %record.kid, "no configured secret decrypts this signing key; it is skipped");
            }
            key
        });
        Self { signing, published }
    }
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    use super::*;

    fn cipher(secret: &str, older: &[&str]) -> KeyCipher {
        let older: Vec<Secret> = older.iter().map(|s| Secret::new(*s)).collect();
        KeyCipher::new(&Secret::new(secret), &older)
    }

    #[test]
    fn cipher_round_trips_and_older_secrets_decrypt() {
        let old = cipher("the-old-secret-of-at-least-thirty-two-bytes", &[]);
        let new = cipher("the-new-secret-of-at-least-thirty-two-bytes", &["the-old-secret-of-at-least-thirty-two-bytes"]);
        let sealed = old.encrypt(b"private key bytes");

        assert!(!sealed.contains("private"));
        assert_eq!(new.decrypt(&sealed).unwrap().as_slice(), b"private key bytes");
        assert!(cipher("an-unrelated-secret-of-at-least-thirty-two", &[]).decrypt(&sealed).is_none());
        assert!(new.decrypt("v1.AAAA").is_none());
        assert!(new.decrypt("garbage").is_none());
    }

    #[test]
    fn jwt_signature_verifies_with_the_published_key() {
        let key = SigningKey::generate("k1".into());
        let token = key.sign_jwt(&json!({ "sub": "user" }));
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);

        let jwk = key.public_jwk();
        let x: [u8; 32] = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap().try_into().unwrap();
        let verifying = VerifyingKey::from_bytes(&x).unwrap();
        let signature = Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).unwrap()).unwrap();
        assert!(verifying.verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature).is_ok());

        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({ "alg": "EdDSA", "kid": "k1", "typ": "JWT" }));
    }

    fn split(token: &str) -> (String, Vec<u8>, Value) {
        let (input, signature) = token.rsplit_once('.').unwrap();
        let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(input.split('.').next().unwrap()).unwrap()).unwrap();
        (input.to_string(), URL_SAFE_NO_PAD.decode(signature).unwrap(), header)
    }

    #[test]
    fn rs256_signature_verifies_with_the_published_key() {
        let key = SigningKey::generate_with(RS256, "r1".into()).unwrap();
        let (input, signature, header) = split(&key.sign_jwt(&json!({ "sub": "user" })));
        let jwk = key.public_jwk();
        let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap());
        let e = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(jwk["e"].as_str().unwrap()).unwrap());
        let verifying = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(rsa::RsaPublicKey::new(n, e).unwrap());
        let signature = rsa::pkcs1v15::Signature::try_from(signature.as_slice()).unwrap();

        assert_eq!(header["alg"], "RS256");
        assert!(rsa::signature::Verifier::verify(&verifying, input.as_bytes(), &signature).is_ok());
        let restored = SigningKey::from_private("r1".into(), RS256, &key.private_bytes()).unwrap();
        assert_eq!(restored.public_jwk(), jwk, "the stored private bytes rebuild the key");
    }

    #[test]
    fn es256_signature_verifies_with_the_published_key() {
        let key = SigningKey::generate_with(ES256, "e1".into()).unwrap();
        let (input, signature, header) = split(&key.sign_jwt(&json!({ "sub": "user" })));
        let jwk = key.public_jwk();
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
        let point = p256::EncodedPoint::from_affine_coordinates(x.as_slice().into(), y.as_slice().into(), false);
        let verifying = p256::ecdsa::VerifyingKey::from_encoded_point(&point).unwrap();
        let signature = p256::ecdsa::Signature::from_slice(&signature).unwrap();

        assert_eq!(header["alg"], "ES256");
        assert_eq!(jwk["crv"], "P-256");
        assert!(rsa::signature::Verifier::verify(&verifying, input.as_bytes(), &signature).is_ok());
        let restored = SigningKey::from_private("e1".into(), ES256, &key.private_bytes()).unwrap();
        assert_eq!(restored.public_jwk(), jwk);
    }

    #[test]
    fn ring_signs_with_the_newest_active_key_and_publishes_the_next() {
        let cipher = cipher("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        let old = SigningKey::generate("old".into()).to_record(Purpose::General, &cipher, Millis(0), Millis(0));
        let next = SigningKey::generate("next".into()).to_record(Purpose::General, &cipher, Millis(10), Millis(1_000));
        let mut retired = SigningKey::generate("gone".into()).to_record(Purpose::General, &cipher, Millis(0), Millis(0));
        retired.retired_at = Some(50);

        let before = KeyRing::load(&[old.clone(), next.clone(), retired.clone()], &cipher, Millis(100));
        let after = KeyRing::load(&[old, next, retired], &cipher, Millis(1_000));

        assert_eq!(before.signing.unwrap().kid, "old");
        assert_eq!(before.published.len(), 2, "the next key is published before it signs");
        assert_eq!(after.signing.unwrap().kid, "next");
    }

    #[test]
    fn stored_private_key_is_encrypted() {
        let cipher = cipher("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        let key = SigningKey::generate("k".into());
        let record = key.to_record(Purpose::Sync, &cipher, Millis(0), Millis(0));

        assert!(record.private_key.starts_with("v1."));
        assert!(!record.private_key.contains(&URL_SAFE_NO_PAD.encode(key.private_bytes().as_slice())));
        assert_eq!(record.purpose, "sync");
    }
}
