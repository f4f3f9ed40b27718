//! Route handlers, one module per resource.

pub mod anonymous;
pub mod email_otp;
pub mod jwt;
pub mod meta;
pub mod session;
pub mod sync;
pub mod user;
