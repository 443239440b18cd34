//! destination-salesforce integration tests.
