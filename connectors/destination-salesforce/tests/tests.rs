//! destination-salesforce integration tests.

mod cli;
