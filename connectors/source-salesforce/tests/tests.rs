//! source-salesforce integration tests.

mod cli;
mod emulator;
mod faults;
mod formula;
mod objects;
mod quota;
mod resume;
