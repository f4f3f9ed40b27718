//! The rules of Doorman: sessions, the anonymous lifecycle, profiles. No HTTP types and no SQL.

pub mod account;
pub mod email;
pub mod events;
pub mod jwt;
pub mod keys;
pub mod auth;
pub mod bot_check;
pub mod codes;
pub mod error;
pub mod otp;
pub mod random;
pub mod rate_limit;
pub mod secret;
pub mod session;
pub mod sync;
pub mod time;
pub mod token;
pub mod upload;
