//! source-salesforce integration tests.

mod cli;
