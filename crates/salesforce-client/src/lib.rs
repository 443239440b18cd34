//! Salesforce API client: OAuth, REST, Bulk API 2.0, retries and usage tracking.
