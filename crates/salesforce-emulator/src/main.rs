//! `salesforce-emulator` binary.
fn main() {}
