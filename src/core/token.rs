//! Session tokens, their stored hash, and the signed form that cookies and bearer headers carry.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine;
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::random;
use super::secret::Secret;

/// A raw session token: 32 characters of `[A-Za-z0-9]` from the OS random generator.
///
/// Only its SHA-256 ([`TokenHash`]) is stored, and `Debug` never prints it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionToken(Secret);

impl SessionToken {
    /// Draws a new token from the OS random generator.
    pub fn generate() -> Self {
        Self(Secret::new(random::alphanumeric(random::ID_LENGTH)))
    }

    /// Accepts a string of exactly 32 characters of `[A-Za-z0-9]`; anything else is no token.
    pub fn parse(value: &str) -> Option<Self> {
        let well_formed =
            value.len() == random::ID_LENGTH && value.bytes().all(|b| b.is_ascii_alphanumeric());
        well_formed.then(|| Self(Secret::new(value)))
    }

    /// The raw token, for the response that hands it to its owner.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    /// The SHA-256 of the token, the only form that reaches the store.
    pub fn hash(&self) -> TokenHash {
        TokenHash::of(self.expose())
    }
}

impl fmt::Debug for SessionToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionToken([redacted])")
    }
}

/// Lower-case hex SHA-256 of a token, as stored in `sessions.token_hash`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(pub String);

impl TokenHash {
    fn of(value: &str) -> Self {
        let digest = Sha256::digest(value.as_bytes());
        let hex = digest.iter().map(|byte| format!("{byte:02x}")).collect();
        Self(hex)
    }
}

/// HKDF label of the key that signs session cookies and bearer values.
const SESSION_SIGNATURE_LABEL: &[u8] = b"doorman session-token signature v1";

/// Signs and verifies `token.signature` values under keys derived from the configured secrets.
///
/// The first key comes from the current secret and is the only one that signs; keys from older
/// secrets still verify, so rotating the secret signs nobody out.
pub struct TokenSigner {
    keys: Vec<Zeroizing<[u8; 32]>>,
}

impl TokenSigner {
    /// Derives one signing key per secret, current first.
    pub fn new(current: &Secret, older: &[Secret]) -> Self {
        let keys = std::iter::once(current)
            .chain(older)
            .map(|secret| derive_key(secret, SESSION_SIGNATURE_LABEL))
            .collect();
        Self { keys }
    }

    /// Returns `token.base64(HMAC-SHA256(key, token))` with standard, padded base64 (44 characters).
    pub fn sign(&self, token: &SessionToken) -> String {
        let signature = mac(&self.keys[0], token.expose());
        format!("{}.{}", token.expose(), STANDARD.encode(signature))
    }

    /// Checks a `token.signature` value in constant time against every configured key.
    ///
    /// The signature may use the standard or the URL-safe base64 alphabet, as Better Auth's bearer
    /// plugin accepts. Returns `None` for a malformed value, a malformed token or a forged signature.
    pub fn verify(&self, value: &str) -> Option<SessionToken> {
        let (token, signature) = value.rsplit_once('.')?;
        let token = SessionToken::parse(token)?;
        let presented = decode_signature(signature)?;

        let mut matched = subtle::Choice::from(0);
        for key in &self.keys {
            matched |= mac(key, token.expose()).ct_eq(&presented);
        }
        bool::from(matched).then_some(token)
    }
}

fn decode_signature(signature: &str) -> Option<[u8; 32]> {
    let bytes = STANDARD
        .decode(signature)
        .or_else(|_| URL_SAFE.decode(signature))
        .or_else(|_| URL_SAFE_NO_PAD.decode(signature))
        .ok()?;
    bytes.try_into().ok()
}

fn mac(key: &[u8; 32], message: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Derives a 32-byte key for one purpose from a secret with HKDF-SHA256, the label as `info`.
pub fn derive_key(secret: &Secret, label: &[u8]) -> Zeroizing<[u8; 32]> {
    let hkdf = Hkdf::<Sha256>::new(None, secret.expose().as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    hkdf.expand(label, key.as_mut()).expect("32 bytes is a valid HKDF-SHA256 output length");
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(current: &str, older: &[&str]) -> TokenSigner {
        let older: Vec<Secret> = older.iter().map(|s| Secret::new(*s)).collect();
        TokenSigner::new(&Secret::new(current), &older)
    }

    #[test]
    fn signed_value_round_trips() {
        let signer = signer("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        let token = SessionToken::generate();

        let value = signer.sign(&token);

        assert_eq!(value.len(), 32 + 1 + 44);
        assert!(value.ends_with('='));
        assert_eq!(signer.verify(&value), Some(token));
    }

    #[test]
    fn forged_signature_is_refused() {
        let signer = signer("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        let other = self::signer("another-secret-of-at-least-thirty-two-bytes", &[]);
        let token = SessionToken::generate();

        assert_eq!(signer.verify(&other.sign(&token)), None);
    }

    #[test]
    fn signature_for_another_token_is_refused() {
        let signer = signer("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        let first = signer.sign(&SessionToken::generate());
        let second = SessionToken::generate();
        let (_, signature) = first.rsplit_once('.').unwrap();

        assert_eq!(signer.verify(&format!("{}.{signature}", second.expose())), None);
    }

    #[test]
    fn signature_under_the_raw_secret_is_refused() {
        let secret = "a-secret-of-at-least-thirty-two-bytes!!";
        let token = SessionToken::generate();
        let mut raw = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        raw.update(token.expose().as_bytes());
        let value = format!("{}.{}", token.expose(), STANDARD.encode(raw.finalize().into_bytes()));

        assert_eq!(signer(secret, &[]).verify(&value), None, "cookies are signed with a derived key, not the secret");
    }

    #[test]
    fn older_secret_still_verifies() {
        let before = signer("the-old-secret-of-at-least-thirty-two-bytes", &[]);
        let after = signer("the-new-secret-of-at-least-thirty-two-bytes", &["the-old-secret-of-at-least-thirty-two-bytes"]);
        let token = SessionToken::generate();

        assert_eq!(after.verify(&before.sign(&token)), Some(token.clone()));
        assert_ne!(after.sign(&token), before.sign(&token));
    }

    #[test]
    fn url_safe_signature_is_accepted() {
        let signer = signer("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        let token = SessionToken::generate();
        let value = signer.sign(&token).replace('+', "-").replace('/', "_");

        assert_eq!(signer.verify(&value), Some(token));
    }

    #[test]
    fn malformed_values_are_refused() {
        let signer = signer("a-secret-of-at-least-thirty-two-bytes!!", &[]);
        for value in ["", ".", "abc", "abc.def", "short.AAAA", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!.AAAA"] {
            assert_eq!(signer.verify(value), None, "{value:?}");
        }
    }

    #[test]
    fn token_parse_requires_32_alphanumerics() {
        assert!(SessionToken::parse(&"a".repeat(32)).is_some());
        assert!(SessionToken::parse(&"a".repeat(31)).is_none());
        assert!(SessionToken::parse(&"a".repeat(33)).is_none());
        assert!(SessionToken::parse(&format!("{}-", "a".repeat(31))).is_none());
    }

    #[test]
    fn hash_is_hex_sha256() {
        let token = SessionToken::parse("hFWVJavIOEiT8nzM4sUjQLkGLDWwQNJt").unwrap();
        let hash = token.hash();
        assert_eq!(hash.0.len(), 64);
        assert!(!hash.0.contains(token.expose()));
    }

    #[test]
    fn debug_hides_the_token() {
        let token = SessionToken::generate();
        assert!(!format!("{token:?}").contains(token.expose()));
    }
}
