//! Identifiers and tokens drawn from the operating system's random generator.

use rand::distributions::{Alphanumeric, DistString};
use rand::rngs::OsRng;

/// Length of ids and session tokens: 32 characters of `[A-Za-z0-9]`, as Better Auth makes them.
pub const ID_LENGTH: usize = 32;

/// Returns `length` characters of `[A-Za-z0-9]` from the OS random generator.
pub fn alphanumeric(length: usize) -> String {
    Alphanumeric.sample_string(&mut OsRng, length)
}

/// Returns a new opaque id for a user, session or verification row.
pub fn new_id() -> String {
    alphanumeric(ID_LENGTH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_32_alphanumeric_characters() {
        let id = new_id();
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn ids_differ() {
        assert_ne!(new_id(), new_id());
    }
}
