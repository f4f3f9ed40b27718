//! One-time sign-in codes: generation, the stored HMAC, and the outcome of a try.

use std::fmt;

use hmac::{Hmac, Mac};
use rand::rngs::OsRng;
use rand::Rng;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::email::Email;
use super::secret::Secret;
use super::token::derive_key;

/// HKDF label of the key under which codes are stored.
const CODE_HMAC_LABEL: &[u8] = b"doorman one-time-code hmac v1";

/// A one-time code: `length` decimal digits from the OS random generator. `Debug` hides it.
#[derive(Clone, PartialEq, Eq)]
pub struct OtpCode(Zeroizing<String>);

impl OtpCode {
    pub fn generate(length: u32) -> Self {
        let digits: String = (0..length).map(|_| char::from(b'0' + OsRng.gen_range(0..10u8))).collect();
        Self(Zeroizing::new(digits))
    }

    /// The code, for the message that delivers it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OtpCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OtpCode([redacted])")
    }
}

/// The verification identifier of an email's sign-in code.
pub fn sign_in_identifier(email: &Email) -> String {
    format!("sign-in-otp:{}", email.as_str())
}

/// Computes and checks the stored form of codes: hex HMAC-SHA256 of `identifier:code` under a key
/// derived from the secret, so a leaked table reveals no code.
pub struct CodeHasher {
    key: Zeroizing<[u8; 32]>,
}

impl CodeHasher {
    pub fn new(secret: &Secret) -> Self {
        Self { key: derive_key(secret, CODE_HMAC_LABEL) }
    }

    pub fn hash(&self, identifier: &str, code: &str) -> String {
        self.mac(identifier, code).iter().map(|byte| format!("{byte:02x}")).collect()
    }

    /// Compares a candidate code with a stored hash in constant time.
    pub fn matches(&self, identifier: &str, candidate: &str, stored: &str) -> bool {
        let computed = self.hash(identifier, candidate);
        computed.as_bytes().ct_eq(stored.as_bytes()).into()
    }

    fn mac(&self, identifier: &str, code: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.key.as_ref()).expect("HMAC accepts keys of any length");
        mac.update(identifier.as_bytes());
        mac.update(b":");
        mac.update(code.as_bytes());
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_the_configured_number_of_digits() {
        for length in [6, 8, 10] {
            let code = OtpCode::generate(length);
            assert_eq!(code.expose().len(), length as usize);
            assert!(code.expose().chars().all(|c| c.is_ascii_digit()));
        }
    }

    #[test]
    fn codes_differ() {
        assert_ne!(OtpCode::generate(10), OtpCode::generate(10));
    }

    #[test]
    fn stored_hash_matches_only_its_code_and_identifier() {
        let hasher = CodeHasher::new(&Secret::new("a-secret-of-at-least-thirty-two-bytes!!"));
        let stored = hasher.hash("sign-in-otp:ada@example.com", "12345678");

        assert!(!stored.contains("12345678"));
        assert!(hasher.matches("sign-in-otp:ada@example.com", "12345678", &stored));
        assert!(!hasher.matches("sign-in-otp:ada@example.com", "12345679", &stored));
        assert!(!hasher.matches("sign-in-otp:bob@example.com", "12345678", &stored));
    }

    #[test]
    fn debug_hides_the_code() {
        let code = OtpCode::generate(8);
        assert!(!format!("{code:?}").contains(code.expose()));
    }
}
