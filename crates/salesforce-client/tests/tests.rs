//! Integration tests for `salesforce-client`.
//!
//! - `conformance`: behaviour tests written once against `&Backend`, run against the local
//!   emulator always and against a real org when `SALESFORCE_*` credentials are set.
//! - `faults`: emulator-only tests that inject failures (retries, 401 refresh, limits, broken
//!   result streams).

mod backend;
mod conformance;
mod faults;
