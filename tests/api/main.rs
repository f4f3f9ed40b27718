//! Integration tests: every route and rule through real HTTP, on a fresh SQLite file per test, or
//! on a fresh PostgreSQL schema per test when `DOORMAN_TEST_DATABASE_URL` is set.

mod anonymous;
mod bad_input;
mod captcha;
mod email_otp;
mod harness;
mod jwt;
mod origin;
mod postgres;
mod process;
mod profile;
mod proxy;
mod redis;
mod sessions;
mod siteverify;
mod smtp;
mod sync;
mod upload;
