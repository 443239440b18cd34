//! The Airbyte source for Salesforce, a drop-in replacement for Airbyte's `source-salesforce`
//! (same config keys, same stream names, Airbyte's state forms accepted).
//!
//! The major components are:
//!
//! - [`config`]: the raw config as Airbyte writes it and its validation into [`config::Config`];
//! - [`discovery`]: which objects are streams, their JSON schemas, primary keys and cursors;
//! - [`state`]: the per-stream state we write and the Airbyte state forms we migrate;
//! - `changes`: before the streams start, batched `/composite` calls that fetch first pages and
//!   ask Salesforce which resumed streams changed at all (getUpdated / getDeleted);
//! - [`checkpoint`]: the tie-safe checkpoint rule over cursor-ordered rows;
//! - [`convert`]: REST JSON and Bulk CSV values → typed JSON through per-column plans;
//! - [`formula`]: the scheduled re-read of formula fields (`formula_refresh_schedule`), whose
//!   values change without moving the cursor;
//! - [`merge`]: joining the column-chunk queries of a wide object read through REST;
//! - [`plan`]: one stream's plan: fields, API, time range and SOQL;
//! - `rerun`: where a REST query stands, to run it again for exactly the rest of its rows when
//!   Salesforce loses its query locator (a page broke off, `INVALID_QUERY_LOCATOR`);
//! - [`stream`]: reading one stream and reporting it (records, checkpoints, statuses);
//! - [`source`]: the [`airbyte_protocol::Connector`] implementation (check, discover, read) and
//!   the orchestration of the streams.

mod changes;
pub mod checkpoint;
pub mod config;
pub mod convert;
pub mod discovery;
pub mod formula;
pub mod merge;
pub mod plan;
mod rerun;
pub mod source;
pub mod state;
pub mod stream;
