//! Shared helpers for end-to-end tests: running connector binaries and capturing their stdout.
