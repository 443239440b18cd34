//! Integration tests: reqwest against `spawn()`.

mod auth;
mod bulk;
mod composite;
mod consistency;
mod describe;
mod determinism;
mod field_types;
mod ingest;
mod ingest_switches;
mod mutations;
mod objects;
mod optional_objects;
mod query;
mod rest_writes;
mod util;
mod wire;
