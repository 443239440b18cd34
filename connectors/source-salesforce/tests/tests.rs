//! source-salesforce integration tests.

mod cli;
mod emulator;
mod quota;
