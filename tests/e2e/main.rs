//! End-to-end tests across crates: the connector binaries run as black boxes (through `testkit`),
//! plus static checks of the files that ship with them.
//!
//! - `spec`: both binaries print a spec that keeps Airbyte's config keys; the spec files follow
//!   Airbyte's spec rules.
//! - `dockerfiles`: the Dockerfiles follow the Airbyte image conventions.

mod dockerfiles;
mod fidelity;
mod pyairbyte;
mod spec;
