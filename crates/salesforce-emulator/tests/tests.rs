//! Integration tests: reqwest against `spawn()`.

mod auth;
mod bulk;
mod composite;
mod describe;
mod determinism;
mod ingest;
mod query;
mod util;
