//! A local, faithful Salesforce API emulator.
