//! Emulator configuration: seed, data volume, credentials, behaviour switches and initial faults.
//!
//! Every behaviour the Salesforce documentation leaves open (§9 of the reference) is a named field
//! of [`Switches`], with the default the reference recommends.

use crate::engine::Base64Rest;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// A secret whose `Debug` output is redacted.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(pub String);

impl Secret {
    /// The secret text.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Credentials the token endpoint accepts.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// Connected-app consumer key.
    pub client_id: String,
    /// Consumer secret.
    pub client_secret: Secret,
    /// Initial refresh token.
    pub refresh_token: Secret,
    /// User name (JWT `sub`).
    pub username: String,
    /// Require `client_secret` on the refresh-token grant (§1.2 "conditional").
    pub require_client_secret: bool,
    /// PEM public key to verify JWT-bearer assertions (RS256). `None`: signatures are not checked,
    /// only the claims.
    pub jwt_public_key_pem: Option<String>,
}

impl Default for Credentials {
    fn default() -> Self {
        Credentials {
            client_id: "emulator-client-id".into(),
            client_secret: Secret("emulator-client-secret".into()),
            refresh_token: Secret("emulator-refresh-token".into()),
            username: "integration@emulator.example.com".into(),
            require_client_secret: true,
            jwt_public_key_pem: None,
        }
    }
}

/// `issued_at` unit in token responses (§1.3, §9.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuedAt {
    /// 13-digit milliseconds, as observed in real responses (default).
    Millis,
    /// Seconds, as the docs say.
    Seconds,
}

/// Key names of `/resultPages` bodies (§5.6, §9.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultPagesKeys {
    /// `resultUrl` + `nextRecordsUrl` (default; the docs' prose and example).
    ResultUrl,
    /// `resultLink` + `nextRecordUrl` (the docs' table / a third-party schema).
    ResultLink,
}

/// Accepted header syntax for polymorphic relationship columns in ingest CSV (§6.6, §9.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PolymorphicColumns {
    /// `ObjectType:RelationshipName.IndexedFieldName`, e.g. `Lead:Who.Email` (default; the form
    /// the reference gives).
    TypeFirst,
    /// `RelationshipName:ObjectType.IndexedFieldName`, e.g. `Who:Lead.Email` (the other reading).
    RelationshipFirst,
    /// No syntax: a polymorphic column fails like an unknown column.
    Rejected,
}

/// Behaviour switches for points the documentation leaves open.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Switches {
    /// §9.1: Bulk CSV datetimes as `...000Z` (true, default) or `...000+0000`.
    pub bulk_csv_datetime_zulu: bool,
    /// §9.2: Bulk CSV nulls as `""` (true, default) or nothing between delimiters.
    pub bulk_csv_null_quoted: bool,
    /// §9.2: Bulk CSV booleans `true`/`false` (true, default) or `True`/`False`.
    pub bulk_csv_bool_lower: bool,
    /// §9.3: Bulk CSV header cells as written in the SELECT (true) or as canonical API names
    /// (false, default; relationship paths as `Relationship.Field`).
    pub bulk_csv_header_as_written: bool,
    /// §9.4: `/resultPages` key names.
    pub result_pages_keys: ResultPagesKeys,
    /// §9.5: delete/undelete bump SystemModstamp (default true).
    pub bump_stamp_on_delete: bool,
    /// §9.6: accept fractional seconds in SOQL datetime literals (default true).
    pub soql_fractional_seconds: bool,
    /// §9.7: include `expires_in` (seconds) in token responses (default false).
    pub oauth_expires_in: bool,
    /// §9.7: `issued_at` unit.
    pub oauth_issued_at: IssuedAt,
    /// §1.5: refresh-token rotation (each refresh returns a new refresh token; replaying an old one
    /// revokes the family).
    pub refresh_token_rotation: bool,
    /// §9.8: HTTP status of `INVALID_AUTH_HEADER` (default 401).
    pub invalid_auth_header_status: u16,
    /// §9.8: HTTP status of `INVALID_QUERY_LOCATOR` (default 400).
    pub invalid_query_locator_status: u16,
    /// §9.8: HTTP status for results of an unfinished Bulk query job (default 412, older docs).
    pub job_not_complete_status: u16,
    /// §9.8: error code for results of an unfinished Bulk query job (default `JOB_NOT_COMPLETE`).
    pub job_not_complete_code: String,
    /// §9.10: reject base64 fields in Bulk query SELECT lists (default true).
    pub bulk_reject_base64: bool,
    /// §9.14: identity URL host follows the request's Host (true) or is `login.salesforce.com`.
    pub identity_url_follows_host: bool,
    /// §2.10: emit the extended `Sforce-Limit-Info` form with `per-app-api-usage` (default false).
    pub limit_info_extended: bool,
    /// How REST query renders base64 fields (default: blob URL).
    pub rest_base64: Base64Rest,
    /// §1.6: token lifetime counts from the last use (true, default) or from issue.
    pub token_sliding_expiry: bool,
    /// §2.11 / getDeleted: days the recycle bin keeps deleted rows (default 15).
    pub recycle_bin_days: i64,
    /// getUpdated / getDeleted ignore the seconds of `start` and `end` ("12:30:15 is interpreted as
    /// 12:30:00 UTC", REST API guide, sObject Get Updated / Get Deleted): both bounds are truncated
    /// to a multiple of this many ms (default 60,000, the documented minute; 0 = exact, for tests
    /// that change rows and sync within the same minute).
    pub replication_granularity_ms: i64,
    /// §5.4: rows per Bulk result page when `maxRecords` is absent.
    pub bulk_default_page_rows: u64,
    /// Bulk results with zero rows: send the header row (true) or an empty body (false, default).
    pub bulk_empty_result_header: bool,
    /// §5.2: ms a new Bulk query job stays `UploadComplete`.
    pub bulk_queued_ms: u64,
    /// §5.2: ms a Bulk query job stays `InProgress`.
    pub bulk_processing_ms: u64,
    /// §6.4: ms a closed ingest job stays `UploadComplete` (`None`: `bulk_queued_ms`).
    pub ingest_queued_ms: Option<u64>,
    /// §6.4: least ms an ingest job stays `InProgress` (`None`: `bulk_processing_ms`).
    pub ingest_processing_ms: Option<u64>,
    /// §6.6: an uploaded column that is neither a field nor a relationship column fails the whole
    /// job with `InvalidBatch : Field name not found : X` (true, default, as real orgs show);
    /// false: every row fails with `INVALID_FIELD` instead.
    pub ingest_unknown_column_fails_job: bool,
    /// §6.6 / §9.11: accepted syntax of polymorphic relationship columns in ingest CSV.
    pub ingest_polymorphic_columns: PolymorphicColumns,
    /// §6.1 / §9.12: accept the newest ingest operations `refresh` and `consentImport` at job
    /// create (default false: `InvalidJob : Invalid operation: refresh`).
    pub ingest_extra_operations: bool,
    /// §6.7 / §9.13: times an internal batch is retried on lock contention before its locked rows
    /// fail (current docs 20, default; older limits page 10). Reported in job info `retries`.
    pub ingest_batch_retries: u64,
    /// §2.4 / §9.9: describe shows the extra field types `json` (`Invoice__c.Payload__c`) and
    /// `masterrecord` (`Account.MasterRecordId`); off (default): those fields do not exist.
    pub describe_json_masterrecord: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Switches {
            bulk_csv_datetime_zulu: true,
            bulk_csv_null_quoted: true,
            bulk_csv_bool_lower: true,
            bulk_csv_header_as_written: false,
            result_pages_keys: ResultPagesKeys::ResultUrl,
            bump_stamp_on_delete: true,
            soql_fractional_seconds: true,
            oauth_expires_in: false,
            oauth_issued_at: IssuedAt::Millis,
            refresh_token_rotation: false,
            invalid_auth_header_status: 401,
            invalid_query_locator_status: 400,
            job_not_complete_status: 412,
            job_not_complete_code: "JOB_NOT_COMPLETE".into(),
            bulk_reject_base64: true,
            identity_url_follows_host: true,
            limit_info_extended: false,
            rest_base64: Base64Rest::BlobUrl,
            token_sliding_expiry: true,
            recycle_bin_days: 15,
            replication_granularity_ms: 60_000,
            bulk_default_page_rows: 100_000,
            bulk_empty_result_header: false,
            bulk_queued_ms: 0,
            bulk_processing_ms: 0,
            ingest_queued_ms: None,
            ingest_processing_ms: None,
            ingest_unknown_column_fails_job: true,
            ingest_polymorphic_columns: PolymorphicColumns::TypeFirst,
            ingest_extra_operations: false,
            ingest_batch_retries: 20,
            describe_json_masterrecord: false,
        }
    }
}

/// Outcome forced on the next Bulk job (query or ingest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobOutcome {
    /// The job ends `Failed` with an error message.
    Failed,
    /// The job ends `Aborted`.
    Aborted,
}

/// Fault injection (changeable at run time through `/__emulator/faults`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// Statuses returned, in order, by the next API calls (e.g. `[503, 503]`); 401 expires the
    /// caller's token, 403 is `REQUEST_LIMIT_EXCEEDED` (daily), 429/420/406 have empty bodies.
    pub script: Vec<u16>,
    /// Fraction (0..1) of API calls answered with `error_status`.
    pub error_rate: f64,
    /// Status for `error_rate` (default 503 when 0).
    pub error_status: u16,
    /// 5xx bodies as an HTML page instead of the JSON array (§3.4).
    pub html_errors: bool,
    /// Fraction of API calls answered 403 `ConcurrentRequests` (§3.3), at random.
    pub concurrent_limit_rate: f64,
    /// Concurrent long-running request limit (§3.3 `REQUEST_LIMIT_EXCEEDED`: "too many ≥20 s
    /// requests: 25 prod/sandbox, 5 dev/trial"): while this many API requests have been in
    /// flight for at least [`Faults::long_request_ms`], a new request is answered 403
    /// `REQUEST_LIMIT_EXCEEDED` `ConcurrentRequests (Concurrent API Requests) Limit exceeded.`
    /// A request is in flight until its response body has been sent. `None`: no limit.
    pub concurrent_long_requests: Option<u32>,
    /// Age (ms) at which an in-flight request counts as long-running (`None`: 20,000, §3.3).
    pub long_request_ms: Option<u64>,
    /// Added latency per API call (ms).
    pub latency_ms: u64,
    /// Daily API request allocation override (`DailyApiRequests.Max`).
    pub daily_limit: Option<u64>,
    /// Access-token lifetime override in seconds (§1.6); applies to tokens already issued.
    pub token_lifetime_secs: Option<u64>,
    /// Cut the connection after this many body bytes of the next Bulk result download; fires once.
    pub reset_after_bytes: Option<u64>,
    /// Cut the connection after this many body bytes of the next successful REST query page
    /// (`query`, `queryAll` or a `nextRecordsUrl` page); fires once.
    pub rest_reset_after_bytes: Option<u64>,
    /// Queries examining more rows than this fail with 400 `QUERY_TIMEOUT` (§3.3).
    pub query_timeout_rows: Option<u64>,
    /// Forced outcome of the next Bulk job: a query job when it is created, an ingest job when it
    /// is closed (`UploadComplete`); taken by whichever comes first.
    pub next_job: Option<JobOutcome>,
    /// Every Nth row of an ingest job (counted from 1 within the job) fails with
    /// `UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record or 1 records: <id>:--`
    /// (§3.3, §6.5) after its internal batch used up its retries (`Switches::ingest_batch_retries`).
    pub ingest_row_lock_every: Option<u64>,
    /// Written rows become visible this many ms after the write (late-visible records, §4.2).
    pub late_visible_ms: u64,
}

/// Background data mutations over time (issue 3 "Mutations over time: inserts, updates, deletes
/// give incremental syncs something to find"); off unless `interval_ms > 0`.
///
/// Every `interval_ms` a background task applies `batch` row operations to each object of
/// `objects` through the store's write path, so each written row gets `SystemModstamp` /
/// `LastModifiedDate` = now (§4.4) and each soft delete is visible to queryAll only (§4.5). Which
/// operation hits which row is a pure function of (seed, tick number, object, slot).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Mutations {
    /// Milliseconds between mutation ticks (0: off, the default).
    pub interval_ms: u64,
    /// Row operations per object per tick (0 is read as 10).
    pub batch: u32,
    /// Objects to mutate; empty: the objects named in [`Config::rows`], or `Account` when none is.
    pub objects: Vec<String>,
}

/// Emulator configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default)]
pub struct Config {
    /// Generator seed: same seed, same rows.
    pub seed: u64,
    /// Generated rows per object name; objects not listed get `default_rows`.
    pub rows: BTreeMap<String, u64>,
    /// Rows for objects not in `rows`.
    pub default_rows: u64,
    /// First generated stamp (ms since epoch; default 2020-01-01).
    pub data_start_ms: i64,
    /// Last generated stamp (ms; `None`: the start of the current UTC day).
    pub data_end_ms: Option<i64>,
    /// Rows per stamp tie cluster (§4.2).
    pub tie_cluster: u64,
    /// Generated rows that are soft-deleted, per thousand.
    pub deleted_per_mille: u64,
    /// Accepted credentials.
    pub credentials: Credentials,
    /// Access-token lifetime in seconds (§1.6, default 7200).
    pub token_lifetime_secs: u64,
    /// Daily API request allocation (`DailyApiRequests.Max`).
    pub daily_api_limit: u64,
    /// Newest API version served (versions 31.0..=this are listed; older get 410).
    pub latest_api_version: u32,
    /// Documented-open behaviours.
    pub switches: Switches,
    /// Initial faults.
    pub faults: Faults,
    /// Generated custom objects `Bench01__c`.. added to the org (benchmarks with many objects;
    /// see `schema::bench_object`). Their row counts follow `rows` / `default_rows`.
    pub extra_custom_objects: u32,
    /// Add `ContentDocumentLink` (queryable only with a filter on `ContentDocumentId` or
    /// `LinkedEntityId`); off by default so the default org's object list stays as it was.
    pub content_document_link: bool,
    /// Add `Wide__c` with this many custom text fields (0, default: no such object); 800 fields
    /// make a REST SELECT of every field exceed the 16,384-byte URI limit (§2.8).
    pub wide_object_fields: u32,
    /// Background inserts / updates / soft deletes over time (off by default).
    pub mutations: Mutations,
    /// The API user has "View Encrypted Data": query results (REST and Bulk) show
    /// `encryptedstring` values in clear text. Default false: every character is masked with `*`
    /// (Salesforce's default mask type "all" with the asterisk mask character). The reference is
    /// silent on masking (§2.7), so this is a named setting; it is fixed for the org's lifetime.
    pub view_encrypted_data: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            rows: BTreeMap::new(),
            default_rows: 100,
            data_start_ms: 1_577_836_800_000,
            data_end_ms: None,
            tie_cluster: 3,
            deleted_per_mille: 10,
            credentials: Credentials::default(),
            token_lifetime_secs: 7200,
            daily_api_limit: 100_000,
            latest_api_version: 64,
            switches: Switches::default(),
            faults: Faults::default(),
            extra_custom_objects: 0,
            content_document_link: false,
            wide_object_fields: 0,
            mutations: Mutations::default(),
            view_encrypted_data: false,
        }
    }
}
