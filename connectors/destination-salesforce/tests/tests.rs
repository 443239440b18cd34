//! destination-salesforce integration tests: the binary run as a black box, against the local
//! Salesforce emulator where Salesforce is needed.

mod cli;
mod emulator;
mod s3;
