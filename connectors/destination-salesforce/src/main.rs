//! destination-salesforce binary.
fn main() {}
