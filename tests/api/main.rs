//! Integration tests: every route and rule through real HTTP on a real SQLite file.

mod anonymous;
mod bad_input;
mod harness;
mod origin;
mod process;
mod profile;
mod sessions;
