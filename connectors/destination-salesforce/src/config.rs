//! The destination's configuration: Airbyte's keys (`client_id`, `client_secret`,
//! `refresh_token`, `is_sandbox`, `auth_type`, `object_storage_config`) plus ours (`login_url`,
//! `api_version`, batch limits, `job_concurrency`, `allow_hard_delete`).
//!
//! [`RawConfig`] is the JSON as given (every key optional, `null` accepted); [`Config`] is what
//! [`TryFrom<RawConfig>`] makes of it after checking every value. Each error names the key to fix.
//! Defaults equal the ones in `schemas/destination-salesforce.spec.json` (a test compares them).

use std::path::PathBuf;
use std::time::Duration;

use airbyte_protocol::JsonObject;
use salesforce_client::Secret;
use serde::Deserialize;
use serde_json::Value;

/// Salesforce accepts at most 100 MB of CSV per ingest upload; also our default batch size.
pub const MAX_BATCH_BYTES: u64 = 100_000_000;
/// Default `batch_max_seconds`.
pub const DEFAULT_BATCH_SECONDS: u64 = 300;
/// Default `job_concurrency`.
pub const DEFAULT_JOB_CONCURRENCY: usize = 4;
/// Largest `job_concurrency` (Salesforce's concurrent long-request limit per org is 25).
pub const MAX_JOB_CONCURRENCY: usize = 25;
/// Default `api_version`.
pub const DEFAULT_API_VERSION: &str = "62.0";

/// A config value that cannot be used; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The JSON does not have the expected shape (wrong type of a value).
    #[error("config key {path}: {problem}")]
    Shape {
        /// Dotted path of the key.
        path: String,
        /// What serde found wrong.
        problem: String,
    },
    /// A required key is missing or empty.
    #[error("config key {0} is required and must not be empty")]
    Missing(&'static str),
    /// A value is not one of the accepted ones.
    #[error("config key {key}: {value:?} is not valid: {expected}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// The value given (never a secret).
        value: String,
        /// What is accepted.
        expected: String,
    },
}

/// The config as given: every key optional, explicit `null` treated as absent.
#[derive(Debug, Default, Deserialize)]
pub struct RawConfig {
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
    is_sandbox: Option<bool>,
    auth_type: Option<String>,
    object_storage_config: Option<RawStorage>,
    login_url: Option<String>,
    api_version: Option<String>,
    batch_max_bytes: Option<u64>,
    batch_max_rows: Option<u64>,
    batch_max_seconds: Option<u64>,
    job_concurrency: Option<u64>,
    allow_hard_delete: Option<bool>,
}

/// `object_storage_config` as given (all variants' keys together; `storage_type` picks one).
#[derive(Debug, Default, Deserialize)]
struct RawStorage {
    storage_type: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
    role_arn: Option<String>,
    s3_bucket_name: Option<String>,
    s3_bucket_region: Option<String>,
    s3_endpoint: Option<String>,
    bucket_path: Option<String>,
    directory: Option<String>,
    format: Option<RawFormat>,
}

#[derive(Debug, Default, Deserialize)]
struct RawFormat {
    format_type: Option<String>,
}

impl RawConfig {
    /// Parses the `--config` object; a value of the wrong type is reported with its key path.
    pub fn from_json(config: &JsonObject) -> Result<Self, ConfigError> {
        let value = Value::Object(config.clone());
        serde_path_to_error::deserialize(value).map_err(|e| ConfigError::Shape {
            path: e.path().to_string(),
            problem: e.inner().to_string(),
        })
    }
}

/// File format of rejected-record files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with one column per reject attribute; the record itself as a JSON column.
    Csv,
}

impl RejectFormat {
    /// File extension, with the dot.
    pub fn extension(self) -> &'static str {
        match self {
            Self::Jsonl => ".jsonl",
            Self::Csv => ".csv",
        }
    }
}

/// Where rejected records go.
#[derive(Debug, Clone, PartialEq)]
pub enum RejectStorage {
    /// `storage_type: None`: only counted (and logged without their data).
    Disabled,
    /// A local directory (`storage_type: Local`, or the default when nothing is configured).
    Local {
        /// Directory (created when missing).
        directory: PathBuf,
        /// File format.
        format: RejectFormat,
    },
    /// An S3 bucket (or S3-compatible server).
    S3(S3Config),
}

/// `storage_type: S3`.
#[derive(Debug, Clone, PartialEq)]
pub struct S3Config {
    /// Access key id and secret, or `None` for the default AWS credential chain.
    pub keys: Option<(Secret, Secret)>,
    /// Role to assume before writing.
    pub role_arn: Option<String>,
    /// Bucket.
    pub bucket: String,
    /// Region; `None` means the SDK's default region.
    pub region: Option<String>,
    /// Custom endpoint (MinIO, a test server); `None` means AWS.
    pub endpoint: Option<String>,
    /// Key prefix (without trailing `/`; may be empty).
    pub bucket_path: String,
    /// File format.
    pub format: RejectFormat,
}

/// When a batch is closed and submitted as one ingest job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchLimits {
    /// Size of the CSV file (≤ [`MAX_BATCH_BYTES`]).
    pub max_bytes: u64,
    /// Rows, if limited.
    pub max_rows: Option<u64>,
    /// Age of the batch's first row.
    pub max_age: Duration,
}

impl Default for BatchLimits {
    fn default() -> Self {
        Self {
            max_bytes: MAX_BATCH_BYTES,
            max_rows: None,
            max_age: Duration::from_secs(DEFAULT_BATCH_SECONDS),
        }
    }
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Connected-app consumer key.
    pub client_id: String,
    /// Connected-app consumer secret.
    pub client_secret: Secret,
    /// OAuth refresh token.
    pub refresh_token: Secret,
    /// Log in at test.salesforce.com (ignored when `login_url` is set).
    pub is_sandbox: bool,
    /// Explicit login host (My Domain, the emulator).
    pub login_url: Option<String>,
    /// REST / Bulk API version, e.g. `62.0`.
    pub api_version: String,
    /// Batch thresholds.
    pub batch: BatchLimits,
    /// Ingest jobs running at once (for different objects).
    pub job_concurrency: usize,
    /// `soft_delete` streams use `hardDelete`.
    pub allow_hard_delete: bool,
    /// Where rejected records go.
    pub rejects: RejectStorage,
}

impl TryFrom<&JsonObject> for Config {
    type Error = ConfigError;

    fn try_from(config: &JsonObject) -> Result<Self, ConfigError> {
        Config::try_from(RawConfig::from_json(config)?)
    }
}

/// A required, non-empty (after trimming) string.
fn required(value: Option<String>, key: &'static str) -> Result<String, ConfigError> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => Err(ConfigError::Missing(key)),
    }
}

/// An optional string; empty means absent.
fn optional(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn in_range(key: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::Invalid {
            key,
            value: value.to_string(),
            expected: if max == u64::MAX {
                format!("an integer of at least {min}")
            } else {
                format!("an integer from {min} to {max}")
            },
        })
    }
}

fn format_of(
    raw: Option<RawFormat>,
    key: &'static str,
    default: RejectFormat,
) -> Result<RejectFormat, ConfigError> {
    match raw.and_then(|f| f.format_type).as_deref().map(str::trim) {
        None | Some("") => Ok(default),
        Some(t) if t.eq_ignore_ascii_case("CSV") => Ok(RejectFormat::Csv),
        Some(t) if t.eq_ignore_ascii_case("JSONL") => Ok(RejectFormat::Jsonl),
        Some(other) => Err(ConfigError::Invalid {
            key,
            value: other.to_owned(),
            expected: "\"CSV\" or \"JSONL\"".to_owned(),
        }),
    }
}

/// The directory used when no `object_storage_config` is given at all.
pub fn default_reject_directory() -> PathBuf {
    std::env::temp_dir().join("destination-salesforce-rejected")
}

impl TryFrom<RawStorage> for RejectStorage {
    type Error = ConfigError;

    fn try_from(raw: RawStorage) -> Result<Self, ConfigError> {
        let kind = optional(raw.storage_type).unwrap_or_else(|| "None".to_owned());
        match kind.as_str() {
            "None" => Ok(Self::Disabled),
            "Local" => {
                let dir = required(raw.directory, "object_storage_config.directory")?;
                let directory = PathBuf::from(&dir);
                if !directory.is_absolute() {
                    return Err(ConfigError::Invalid {
                        key: "object_storage_config.directory",
                        value: dir,
                        expected: "an absolute path".to_owned(),
                    });
                }
                let format = format_of(
                    raw.format,
                    "object_storage_config.format.format_type",
                    RejectFormat::Jsonl,
                )?;
                Ok(Self::Local { directory, format })
            }
            "S3" => {
                let bucket = required(raw.s3_bucket_name, "object_storage_config.s3_bucket_name")?;
                let keys = match (optional(raw.access_key_id), optional(raw.secret_access_key)) {
                    (Some(id), Some(secret)) => Some((Secret::new(id), Secret::new(secret))),
                    (None, None) => None,
                    (Some(_), None) => {
                        return Err(ConfigError::Missing(
                            "object_storage_config.secret_access_key",
                        ));
                    }
                    (None, Some(_)) => {
                        return Err(ConfigError::Missing("object_storage_config.access_key_id"));
                    }
                };
                let endpoint = optional(raw.s3_endpoint);
                if let Some(e) = &endpoint
                    && !(e.starts_with("https://") || e.starts_with("http://"))
                {
                    return Err(ConfigError::Invalid {
                        key: "object_storage_config.s3_endpoint",
                        value: e.clone(),
                        expected: "an http:// or https:// URL".to_owned(),
                    });
                }
                let bucket_path = raw
                    .bucket_path
                    .unwrap_or_default()
                    .trim()
                    .trim_matches('/')
                    .to_owned();
                let format = format_of(
                    raw.format,
                    "object_storage_config.format.format_type",
                    RejectFormat::Csv,
                )?;
                Ok(Self::S3(S3Config {
                    keys,
                    role_arn: optional(raw.role_arn),
                    bucket,
                    region: optional(raw.s3_bucket_region),
                    endpoint,
                    bucket_path,
                    format,
                }))
            }
            other => Err(ConfigError::Invalid {
                key: "object_storage_config.storage_type",
                value: other.to_owned(),
                expected: "\"None\", \"S3\" or \"Local\"".to_owned(),
            }),
        }
    }
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Self, ConfigError> {
        let client_id = required(raw.client_id, "client_id")?;
        let client_secret = Secret::new(required(raw.client_secret, "client_secret")?);
        let refresh_token = Secret::new(required(raw.refresh_token, "refresh_token")?);
        if let Some(auth) = optional(raw.auth_type)
            && auth != "Client"
        {
            return Err(ConfigError::Invalid {
                key: "auth_type",
                value: auth,
                expected: "\"Client\" (OAuth refresh token)".to_owned(),
            });
        }
        let login_url = optional(raw.login_url);
        if let Some(url) = &login_url {
            salesforce_client::config::validate_base_url("login_url", url).map_err(|e| {
                ConfigError::Invalid {
                    key: "login_url",
                    value: url.clone(),
                    expected: e.to_string(),
                }
            })?;
        }
        let api_version =
            optional(raw.api_version).unwrap_or_else(|| DEFAULT_API_VERSION.to_owned());
        let (major, minor) = api_version.split_once('.').unwrap_or(("", ""));
        if !(minor == "0"
            && (2..=3).contains(&major.len())
            && major.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(ConfigError::Invalid {
                key: "api_version",
                value: api_version,
                expected: "a Salesforce API version such as \"62.0\"".to_owned(),
            });
        }
        let max_bytes = in_range(
            "batch_max_bytes",
            raw.batch_max_bytes.unwrap_or(MAX_BATCH_BYTES),
            1,
            MAX_BATCH_BYTES,
        )?;
        let max_rows = raw
            .batch_max_rows
            .map(|r| in_range("batch_max_rows", r, 1, u64::MAX))
            .transpose()?;
        let max_seconds = in_range(
            "batch_max_seconds",
            raw.batch_max_seconds.unwrap_or(DEFAULT_BATCH_SECONDS),
            1,
            u64::MAX,
        )?;
        let job_concurrency = in_range(
            "job_concurrency",
            raw.job_concurrency
                .unwrap_or(DEFAULT_JOB_CONCURRENCY as u64),
            1,
            MAX_JOB_CONCURRENCY as u64,
        )? as usize;
        let rejects = match raw.object_storage_config {
            None => RejectStorage::Local {
                directory: default_reject_directory(),
                format: RejectFormat::Jsonl,
            },
            Some(storage) => RejectStorage::try_from(storage)?,
        };
        Ok(Self {
            client_id,
            client_secret,
            refresh_token,
            is_sandbox: raw.is_sandbox.unwrap_or(false),
            login_url,
            api_version,
            batch: BatchLimits {
                max_bytes,
                max_rows,
                max_age: Duration::from_secs(max_seconds),
            },
            job_concurrency,
            allow_hard_delete: raw.allow_hard_delete.unwrap_or(false),
            rejects,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> JsonObject {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    fn base() -> Value {
        json!({
            "client_id": "cid", "client_secret": "csecret-123", "refresh_token": "rtoken-456",
            "is_sandbox": false, "auth_type": "Client"
        })
    }

    fn with(extra: Value) -> Result<Config, ConfigError> {
        let mut v = base();
        for (k, val) in obj(extra) {
            v[k] = val;
        }
        Config::try_from(&obj(v))
    }

    fn err(extra: Value) -> String {
        with(extra).unwrap_err().to_string()
    }

    #[test]
    fn defaults_equal_the_spec() {
        let spec: Value = serde_json::from_str(include_str!(
            "../../../schemas/destination-salesforce.spec.json"
        ))
        .unwrap();
        let props = &spec["connectionSpecification"]["properties"];
        let c = with(json!({})).unwrap();
        assert_eq!(
            props["batch_max_bytes"]["default"],
            json!(c.batch.max_bytes)
        );
        assert_eq!(props["batch_max_bytes"]["maximum"], json!(MAX_BATCH_BYTES));
        assert_eq!(
            props["batch_max_seconds"]["default"],
            json!(c.batch.max_age.as_secs())
        );
        assert!(props["batch_max_rows"].get("default").is_none());
        assert_eq!(c.batch.max_rows, None);
        assert_eq!(
            props["job_concurrency"]["default"],
            json!(c.job_concurrency)
        );
        assert_eq!(
            props["job_concurrency"]["maximum"],
            json!(MAX_JOB_CONCURRENCY)
        );
        assert_eq!(props["api_version"]["default"], json!(c.api_version));
        assert_eq!(
            props["allow_hard_delete"]["default"],
            json!(c.allow_hard_delete)
        );
        assert_eq!(props["is_sandbox"]["default"], json!(c.is_sandbox));
        let storage = &props["object_storage_config"]["oneOf"];
        assert_eq!(
            storage[1]["properties"]["format"]["default"]["format_type"], "CSV",
            "S3 default format"
        );
        assert_eq!(
            storage[2]["properties"]["format"]["default"]["format_type"],
            "JSONL"
        );
    }

    #[test]
    fn airbyte_config_parses_with_defaults() {
        let c = with(json!({})).unwrap();
        assert_eq!(c.client_id, "cid");
        assert_eq!(c.client_secret.expose(), "csecret-123");
        assert_eq!(c.batch, BatchLimits::default());
        assert_eq!(c.job_concurrency, 4);
        assert!(!c.allow_hard_delete);
        assert_eq!(
            c.rejects,
            RejectStorage::Local {
                directory: default_reject_directory(),
                format: RejectFormat::Jsonl
            },
            "nothing configured: local default directory"
        );
    }

    #[test]
    fn explicit_nulls_are_absent() {
        let c = with(
            json!({"login_url": null, "batch_max_rows": null, "api_version": null,
                            "object_storage_config": null, "is_sandbox": null}),
        )
        .unwrap();
        assert_eq!(c.api_version, "62.0");
        assert!(matches!(c.rejects, RejectStorage::Local { .. }));
    }

    #[test]
    fn secrets_never_print() {
        let c = with(
            json!({"object_storage_config": {"storage_type": "S3", "s3_bucket_name": "b",
            "s3_bucket_region": "", "bucket_path": "p", "access_key_id": "AKIAXYZ",
            "secret_access_key": "s3-secret-789", "format": {"format_type": "JSONL"}}}),
        )
        .unwrap();
        let debug = format!("{c:?}");
        for secret in ["csecret-123", "rtoken-456", "s3-secret-789", "AKIAXYZ"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    #[test]
    fn errors_name_the_field() {
        assert_eq!(
            err(json!({"client_id": ""})),
            "config key client_id is required and must not be empty"
        );
        assert!(err(json!({"refresh_token": null})).contains("refresh_token"));
        assert!(
            err(json!({"batch_max_bytes": 100_000_001})).starts_with("config key batch_max_bytes:")
        );
        assert!(err(json!({"batch_max_bytes": 0})).contains("from 1 to 100000000"));
        assert!(err(json!({"batch_max_bytes": "big"})).starts_with("config key batch_max_bytes:"));
        assert!(err(json!({"job_concurrency": 26})).contains("job_concurrency"));
        assert!(err(json!({"batch_max_seconds": 0})).contains("batch_max_seconds"));
        assert!(err(json!({"batch_max_seconds": 0})).ends_with("an integer of at least 1"));
        assert!(
            with(json!({"batch_max_seconds": 31_536_000})).is_ok(),
            "no upper limit, as in the spec"
        );
        assert!(err(json!({"batch_max_rows": 0})).contains("batch_max_rows"));
        assert!(err(json!({"api_version": "62"})).contains("api_version"));
        assert!(err(json!({"api_version": "v62.0"})).contains("api_version"));
        assert!(err(json!({"auth_type": "Password"})).contains("auth_type"));
        assert!(err(json!({"login_url": "http://example.com"})).contains("login_url"));
        assert!(err(json!({"is_sandbox": "yes"})).starts_with("config key is_sandbox:"));
        let e = err(json!({"object_storage_config": {"storage_type": "S3", "bucket_path": "x"}}));
        assert!(e.contains("object_storage_config.s3_bucket_name"), "{e}");
        let e = err(
            json!({"object_storage_config": {"storage_type": "S3", "s3_bucket_name": "b",
            "access_key_id": "A"}}),
        );
        assert!(e.contains("secret_access_key"), "{e}");
        let e = err(json!({"object_storage_config": {"storage_type": "GCS"}}));
        assert!(e.contains("object_storage_config.storage_type"), "{e}");
        let e = err(
            json!({"object_storage_config": {"storage_type": "Local", "directory": "rel/dir"}}),
        );
        assert!(e.contains("absolute"), "{e}");
        let e = err(
            json!({"object_storage_config": {"storage_type": "Local", "directory": "/x",
            "format": {"format_type": "PARQUET"}}}),
        );
        assert!(e.contains("format_type"), "{e}");
        let e = err(
            json!({"object_storage_config": {"storage_type": "S3", "s3_bucket_name": "b",
            "s3_endpoint": "localhost:9000"}}),
        );
        assert!(e.contains("s3_endpoint"), "{e}");
    }

    #[test]
    fn our_keys_are_read() {
        let c = with(
            json!({"login_url": "http://127.0.0.1:8111", "api_version": "64.0",
            "batch_max_bytes": 1000, "batch_max_rows": 10, "batch_max_seconds": 5,
            "job_concurrency": 25, "allow_hard_delete": true, "is_sandbox": true}),
        )
        .unwrap();
        assert_eq!(c.login_url.as_deref(), Some("http://127.0.0.1:8111"));
        assert_eq!(c.api_version, "64.0");
        assert_eq!(
            c.batch,
            BatchLimits {
                max_bytes: 1000,
                max_rows: Some(10),
                max_age: Duration::from_secs(5)
            }
        );
        assert_eq!(c.job_concurrency, 25);
        assert!(c.allow_hard_delete && c.is_sandbox);
    }

    #[test]
    fn storage_variants() {
        let c = with(json!({"object_storage_config": {"storage_type": "None"}})).unwrap();
        assert_eq!(c.rejects, RejectStorage::Disabled);
        let c = with(
            json!({"object_storage_config": {"storage_type": "Local", "directory": "/data/rej",
            "format": {"format_type": "CSV"}}}),
        )
        .unwrap();
        assert_eq!(
            c.rejects,
            RejectStorage::Local {
                directory: "/data/rej".into(),
                format: RejectFormat::Csv
            }
        );
        let c = with(json!({"object_storage_config": {"storage_type": "S3", "s3_bucket_name": " b ",
            "s3_bucket_region": "", "bucket_path": "/pre/fix/", "s3_endpoint": "http://127.0.0.1:9000"}}))
        .unwrap();
        let RejectStorage::S3(s3) = c.rejects else {
            panic!("S3 expected")
        };
        assert_eq!(s3.bucket, "b");
        assert_eq!(s3.region, None);
        assert_eq!(s3.bucket_path, "pre/fix");
        assert_eq!(s3.format, RejectFormat::Csv);
        assert!(s3.keys.is_none());
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    }
}
