//! source-salesforce integration tests.

mod cli;
mod emulator;
mod faults;
mod objects;
mod quota;
mod resume;
