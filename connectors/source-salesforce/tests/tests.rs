//! source-salesforce integration tests.

mod cli;
mod emulator;
