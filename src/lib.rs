//! Doorman: an authentication server for apps whose users start as anonymous guests, speaking
//! Better Auth's HTTP protocol.
//!
//! [`Doorman::start`] returns the axum router and a [`Handle`] that owns the store and background
//! tasks. The `doorman` binary is a thin command line over the same call.

mod app;
pub mod captcha;
pub mod cli;
pub mod config;
pub mod core;
pub mod http;
pub mod mail;
pub mod server;
pub mod redis_store;
pub mod store;
pub mod telemetry;

pub use app::{Doorman, Handle};
