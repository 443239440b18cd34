//! source-salesforce binary.
fn main() {}
