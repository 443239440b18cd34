//! Integration tests: reqwest against `spawn()`.

mod auth;
mod bulk;
mod composite;
mod describe;
mod determinism;
mod ingest;
mod ingest_switches;
mod objects;
mod optional_objects;
mod query;
mod util;
mod wire;
