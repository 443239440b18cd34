//! source-salesforce binary: the Airbyte source for Salesforce.
//!
//! The command line, file loading, error reporting and stdout handling live in
//! `airbyte_protocol::cli`; the connector itself is [`source_salesforce::source::SourceSalesforce`].

use std::process::ExitCode;

fn main() -> ExitCode {
    airbyte_protocol::cli::run(source_salesforce::source::SourceSalesforce)
}
