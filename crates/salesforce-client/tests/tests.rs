//! Conformance tests for the client against the emulator.
