//! source-salesforce integration tests.
