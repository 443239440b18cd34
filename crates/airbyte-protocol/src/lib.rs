//! Airbyte protocol types, NDJSON codec, stdout writer and shared CLI edge.
