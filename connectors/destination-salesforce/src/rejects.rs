//! Rejected records: what a reject file holds and where it goes.
//!
//! Every record that ends rejected — refused by pre-validation or by Salesforce — is written with
//! its stream, its input position (1-based line of the RECORD message on stdin), the object and
//! operation, the ingest job id (for Salesforce's refusals), the error code, message and fields,
//! and the original record unchanged. [`RejectWriter`] spools them to a local temp file (so memory
//! does not grow with their number); a [`RejectStore`] then makes the file durable:
//!
//! - [`LocalStore`]: `{directory}/{sync_id}/{stream}/{time}_{part}.{jsonl|csv}`; the default when
//!   nothing is configured;
//! - [`S3Store`]: the same layout under `s3://{bucket}/{bucket_path}/`;
//! - `MemoryStore`: for tests (compiled only for them);
//! - [`DiscardStore`]: `storage_type: None`: counts only (a warning says how many were dropped).
//!
//! A state is echoed only after the rejects of the records before it are stored.

use std::fmt;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use airbyte_protocol::StreamDescriptor;
use futures::future::BoxFuture;
use serde::Serialize;
use serde_json::value::RawValue;
use tempfile::TempPath;

use crate::config::{RejectFormat, RejectStorage, S3Config};
use crate::encode::RowError;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Storing rejected records failed.
#[derive(Debug, thiserror::Error)]
#[error("rejected-record storage ({location}): {action}: {source}")]
pub struct RejectStoreError {
    location: String,
    action: &'static str,
    #[source]
    source: BoxError,
}

impl RejectStoreError {
    fn new(location: impl Into<String>, action: &'static str, source: impl Into<BoxError>) -> Self {
        Self {
            location: location.into(),
            action,
            source: source.into(),
        }
    }
}

/// Who refused a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectedBy {
    /// Our checks against the object's describe, before any API call.
    Validation,
    /// Salesforce, in an ingest job's results.
    Salesforce,
}

/// One rejected record, as written to a reject file.
#[derive(Debug, Serialize)]
pub struct Reject<'a> {
    /// Stream name.
    pub stream: &'a str,
    /// Stream namespace.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<&'a str>,
    /// 1-based input line of the RECORD message.
    pub position: u64,
    /// Target object.
    pub object: &'a str,
    /// Bulk operation.
    pub operation: &'a str,
    /// Ingest job id (Salesforce refusals).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_id: Option<&'a str>,
    /// Who refused it.
    pub rejected_by: RejectedBy,
    /// Error code.
    pub error_code: &'a str,
    /// Error message.
    pub error_message: &'a str,
    /// Fields concerned.
    pub error_fields: &'a [String],
    /// The original record.
    pub record: &'a RawValue,
}

/// Spools one stream's rejects into a local file.
#[derive(Debug)]
pub struct RejectWriter {
    stream: StreamDescriptor,
    format: RejectFormat,
    out: Option<csv::Writer<BufWriter<std::fs::File>>>,
    jsonl: Option<BufWriter<std::fs::File>>,
    path: TempPath,
    count: u64,
}

/// A finished reject file, ready for a [`RejectStore`].
#[derive(Debug)]
pub struct RejectFile {
    /// The stream its rejects belong to.
    pub stream: StreamDescriptor,
    /// Format.
    pub format: RejectFormat,
    /// The local file (deleted on drop).
    pub path: TempPath,
    /// Rejects in it.
    pub count: u64,
}

const CSV_HEADER: [&str; 11] = [
    "stream",
    "namespace",
    "position",
    "object",
    "operation",
    "job_id",
    "rejected_by",
    "error_code",
    "error_message",
    "error_fields",
    "record",
];

impl RejectWriter {
    /// A writer spooling into `dir`.
    pub fn new(stream: StreamDescriptor, format: RejectFormat, dir: &Path) -> io::Result<Self> {
        let (file, path) = crate::batch::temp_file(dir, "rejects")?.into_parts();
        let buf = BufWriter::new(file);
        let (out, jsonl) = match format {
            RejectFormat::Csv => {
                let mut w = csv::Writer::from_writer(buf);
                w.write_record(CSV_HEADER)?;
                (Some(w), None)
            }
            RejectFormat::Jsonl => (None, Some(buf)),
        };
        Ok(Self {
            stream,
            format,
            out,
            jsonl,
            path,
            count: 0,
        })
    }

    /// Rejects written so far.
    #[cfg(test)]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Appends one reject.
    pub fn write(&mut self, reject: &Reject<'_>) -> io::Result<()> {
        if let Some(w) = &mut self.jsonl {
            serde_json::to_writer(&mut *w, reject).map_err(io::Error::other)?;
            w.write_all(b"\n")?;
        }
        if let Some(w) = &mut self.out {
            let position = reject.position.to_string();
            let fields = reject.error_fields.join(",");
            w.write_record([
                reject.stream,
                reject.namespace.unwrap_or(""),
                &position,
                reject.object,
                reject.operation,
                reject.job_id.unwrap_or(""),
                match reject.rejected_by {
                    RejectedBy::Validation => "validation",
                    RejectedBy::Salesforce => "salesforce",
                },
                reject.error_code,
                reject.error_message,
                &fields,
                reject.record.get(),
            ])?;
        }
        self.count += 1;
        Ok(())
    }

    /// Convenience: a reject from a [`RowError`].
    #[allow(clippy::too_many_arguments)]
    pub fn write_error(
        &mut self,
        position: u64,
        object: &str,
        operation: &str,
        job_id: Option<&str>,
        rejected_by: RejectedBy,
        error: &RowError,
        record: &RawValue,
    ) -> io::Result<()> {
        let stream = self.stream.name.clone();
        let namespace = self.stream.namespace.clone();
        self.write(&Reject {
            stream: &stream,
            namespace: namespace.as_deref(),
            position,
            object,
            operation,
            job_id,
            rejected_by,
            error_code: &error.code,
            error_message: &error.message,
            error_fields: &error.fields,
            record,
        })
    }

    /// Flushes and closes the file.
    pub fn finish(self) -> io::Result<RejectFile> {
        if let Some(w) = self.out {
            let mut inner = w
                .into_inner()
                .map_err(|e| io::Error::other(e.to_string()))?;
            inner.flush()?;
        }
        if let Some(mut w) = self.jsonl {
            w.flush()?;
        }
        Ok(RejectFile {
            stream: self.stream,
            format: self.format,
            path: self.path,
            count: self.count,
        })
    }
}

/// Where reject files are made durable.
pub trait RejectStore: Send + Sync + fmt::Debug {
    /// Stores one file; returns where it went.
    fn put(&self, file: RejectFile) -> BoxFuture<'_, Result<String, RejectStoreError>>;
    /// Writes then deletes a small probe object (for `check`).
    fn probe(&self) -> BoxFuture<'_, Result<(), RejectStoreError>>;
    /// Format of the files it expects.
    fn format(&self) -> RejectFormat;
    /// Human description (no secrets).
    fn location(&self) -> String;
}

static PART: AtomicU64 = AtomicU64::new(0);

/// Relative key of a new reject file: `{sync_id}/{stream}/{time}_{part}{ext}`.
pub fn object_key(sync_id: &str, stream: &StreamDescriptor, format: RejectFormat) -> String {
    let clean = |s: &str| -> String {
        s.chars()
            .map(|c| {
                if c.is_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '_'
                }
            })
            .collect()
    };
    let stream_dir = match stream.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(ns) => format!("{}.{}", clean(ns), clean(&stream.name)),
        None => clean(&stream.name),
    };
    let now = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
    let part = PART.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}/{stream_dir}/{now}_{part}{}",
        clean(sync_id),
        format.extension()
    )
}

/// Reject files in a local directory.
#[derive(Debug)]
pub struct LocalStore {
    directory: PathBuf,
    sync_id: String,
    format: RejectFormat,
}

impl LocalStore {
    /// A store under `directory` (created when first used).
    pub fn new(directory: PathBuf, sync_id: String, format: RejectFormat) -> Self {
        Self {
            directory,
            sync_id,
            format,
        }
    }
}

impl RejectStore for LocalStore {
    fn put(&self, file: RejectFile) -> BoxFuture<'_, Result<String, RejectStoreError>> {
        Box::pin(async move {
            let target = self
                .directory
                .join(object_key(&self.sync_id, &file.stream, file.format));
            let shown = target.display().to_string();
            if let Some(parent) = target.parent() {
                tokio::fs::create_dir_all(parent)
                    .await
                    .map_err(|e| RejectStoreError::new(&shown, "creating the directory", e))?;
            }
            // Write to a hidden name then rename, so a reader never sees half a file.
            let partial = target.with_extension("partial");
            tokio::fs::copy(&file.path, &partial)
                .await
                .map_err(|e| RejectStoreError::new(&shown, "writing the file", e))?;
            let f = tokio::fs::File::open(&partial)
                .await
                .map_err(|e| RejectStoreError::new(&shown, "syncing the file", e))?;
            f.sync_all()
                .await
                .map_err(|e| RejectStoreError::new(&shown, "syncing the file", e))?;
            tokio::fs::rename(&partial, &target)
                .await
                .map_err(|e| RejectStoreError::new(&shown, "renaming the file", e))?;
            Ok(shown)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), RejectStoreError>> {
        Box::pin(async move {
            let shown = self.directory.display().to_string();
            tokio::fs::create_dir_all(&self.directory)
                .await
                .map_err(|e| RejectStoreError::new(&shown, "creating the directory", e))?;
            let probe = self.directory.join(format!(
                ".destination-salesforce-check-{}",
                std::process::id()
            ));
            tokio::fs::write(&probe, b"check")
                .await
                .map_err(|e| RejectStoreError::new(&shown, "writing a probe file", e))?;
            tokio::fs::remove_file(&probe)
                .await
                .map_err(|e| RejectStoreError::new(&shown, "deleting the probe file", e))?;
            Ok(())
        })
    }

    fn format(&self) -> RejectFormat {
        self.format
    }

    fn location(&self) -> String {
        self.directory.display().to_string()
    }
}

/// Reject files kept in memory (tests).
#[cfg(test)]
#[derive(Debug, Default)]
pub struct MemoryStore {
    files: std::sync::Mutex<Vec<(String, Vec<u8>)>>,
    format: Option<RejectFormat>,
}

#[cfg(test)]
impl MemoryStore {
    /// An empty store for `format`.
    pub fn new(format: RejectFormat) -> Self {
        Self {
            files: std::sync::Mutex::default(),
            format: Some(format),
        }
    }

    /// The stored files: (key, content).
    pub fn files(&self) -> Vec<(String, Vec<u8>)> {
        self.files.lock().map(|f| f.clone()).unwrap_or_default()
    }
}

#[cfg(test)]
impl RejectStore for MemoryStore {
    fn put(&self, file: RejectFile) -> BoxFuture<'_, Result<String, RejectStoreError>> {
        Box::pin(async move {
            let key = object_key("memory", &file.stream, file.format);
            let bytes = tokio::fs::read(&file.path)
                .await
                .map_err(|e| RejectStoreError::new("memory", "reading the reject file", e))?;
            if let Ok(mut files) = self.files.lock() {
                files.push((key.clone(), bytes));
            }
            Ok(key)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), RejectStoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn format(&self) -> RejectFormat {
        self.format.unwrap_or(RejectFormat::Jsonl)
    }

    fn location(&self) -> String {
        "memory".to_owned()
    }
}

/// `storage_type: None`: rejects are counted and dropped.
#[derive(Debug, Default)]
pub struct DiscardStore;

impl RejectStore for DiscardStore {
    fn put(&self, file: RejectFile) -> BoxFuture<'_, Result<String, RejectStoreError>> {
        Box::pin(async move {
            tracing::warn!(
                stream = %file.stream,
                count = file.count,
                "rejected records dropped: object_storage_config is None (configure S3 or Local to keep them)"
            );
            Ok("nowhere (storage_type None)".to_owned())
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), RejectStoreError>> {
        Box::pin(async { Ok(()) })
    }

    fn format(&self) -> RejectFormat {
        RejectFormat::Jsonl
    }

    fn location(&self) -> String {
        "none (rejected records are only counted)".to_owned()
    }
}

/// Reject files in an S3 bucket.
#[derive(Debug)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    sync_id: String,
    format: RejectFormat,
}

impl S3Store {
    /// Connects (no request is made until the first put or probe).
    pub async fn connect(config: &S3Config, sync_id: String) -> Self {
        use aws_config::{BehaviorVersion, Region};
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &config.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some((id, secret)) = &config.keys {
            loader = loader.credentials_provider(aws_sdk_s3::config::Credentials::new(
                id.expose(),
                secret.expose(),
                None,
                None,
                "destination-salesforce-config",
            ));
        }
        let base = loader.load().await;
        let mut s3 = aws_sdk_s3::config::Builder::from(&base);
        if base.region().is_none() {
            s3 = s3.region(Region::new("us-east-1"));
        }
        if let Some(endpoint) = &config.endpoint {
            s3 = s3.endpoint_url(endpoint).force_path_style(true);
        }
        if let Some(arn) = &config.role_arn {
            let provider = aws_config::sts::AssumeRoleProvider::builder(arn)
                .session_name("destination-salesforce")
                .configure(&base)
                .build()
                .await;
            s3 = s3.credentials_provider(provider);
        }
        Self {
            client: aws_sdk_s3::Client::from_conf(s3.build()),
            bucket: config.bucket.clone(),
            prefix: config.bucket_path.clone(),
            sync_id,
            format: config.format,
        }
    }

    fn key(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_owned()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

/// The SDK's error with its full chain (its `Display` alone says only "service error").
fn sdk_error(e: impl std::error::Error + Send + Sync + 'static) -> BoxError {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text.into()
}

impl RejectStore for S3Store {
    fn put(&self, file: RejectFile) -> BoxFuture<'_, Result<String, RejectStoreError>> {
        Box::pin(async move {
            let key = self.key(&object_key(&self.sync_id, &file.stream, file.format));
            let shown = format!("s3://{}/{key}", self.bucket);
            let body = aws_sdk_s3::primitives::ByteStream::from_path(&file.path)
                .await
                .map_err(|e| RejectStoreError::new(&shown, "reading the reject file", e))?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .content_type(match file.format {
                    RejectFormat::Csv => "text/csv",
                    RejectFormat::Jsonl => "application/x-ndjson",
                })
                .body(body)
                .send()
                .await
                .map_err(|e| RejectStoreError::new(&shown, "uploading", sdk_error(e)))?;
            Ok(shown)
        })
    }

    fn probe(&self) -> BoxFuture<'_, Result<(), RejectStoreError>> {
        Box::pin(async move {
            let key = self.key(&format!(
                "_destination_salesforce_check_{}_{}",
                std::process::id(),
                chrono::Utc::now().timestamp_millis()
            ));
            let shown = format!("s3://{}/{key}", self.bucket);
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(&key)
                .body(aws_sdk_s3::primitives::ByteStream::from_static(b"check"))
                .send()
                .await
                .map_err(|e| {
                    RejectStoreError::new(&shown, "writing a probe object", sdk_error(e))
                })?;
            self.client
                .delete_object()
                .bucket(&self.bucket)
                .key(&key)
                .send()
                .await
                .map_err(|e| {
                    RejectStoreError::new(&shown, "deleting the probe object", sdk_error(e))
                })?;
            Ok(())
        })
    }

    fn format(&self) -> RejectFormat {
        self.format
    }

    fn location(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The store a config asks for.
pub async fn open(storage: &RejectStorage, sync_id: String) -> Box<dyn RejectStore> {
    match storage {
        RejectStorage::Disabled => Box::new(DiscardStore),
        RejectStorage::Local { directory, format } => {
            Box::new(LocalStore::new(directory.clone(), sync_id, *format))
        }
        RejectStorage::S3(s3) => Box::new(S3Store::connect(s3, sync_id).await),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn raw(v: serde_json::Value) -> Box<RawValue> {
        RawValue::from_string(v.to_string()).unwrap()
    }

    fn error() -> RowError {
        RowError {
            code: "REQUIRED_FIELD_MISSING".into(),
            message: "Required fields are missing: [LastName]".into(),
            fields: vec!["LastName".into()],
        }
    }

    fn spool(format: RejectFormat, dir: &Path) -> RejectFile {
        let stream = StreamDescriptor::new("contacts", Some("crm".into()));
        let mut w = RejectWriter::new(stream, format, dir).unwrap();
        let record = raw(json!({"Email": "a@b.c", "note": "x,\"y\"\nz"}));
        w.write_error(
            7,
            "Contact",
            "insert",
            Some("750X"),
            RejectedBy::Salesforce,
            &error(),
            &record,
        )
        .unwrap();
        w.write_error(
            9,
            "Contact",
            "insert",
            None,
            RejectedBy::Validation,
            &error(),
            &record,
        )
        .unwrap();
        assert_eq!(w.count(), 2);
        w.finish().unwrap()
    }

    #[tokio::test]
    async fn jsonl_rejects_carry_everything_needed_to_fix_and_replay() {
        let dir = tempfile::tempdir().unwrap();
        let store = MemoryStore::new(RejectFormat::Jsonl);
        let key = store
            .put(spool(RejectFormat::Jsonl, dir.path()))
            .await
            .unwrap();
        assert!(
            key.starts_with("memory/crm.contacts/") && key.ends_with(".jsonl"),
            "{key}"
        );
        let files = store.files();
        let text = String::from_utf8(files[0].1.clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            lines[0],
            json!({"stream": "contacts", "namespace": "crm", "position": 7, "object": "Contact",
                   "operation": "insert", "job_id": "750X", "rejected_by": "salesforce",
                   "error_code": "REQUIRED_FIELD_MISSING",
                   "error_message": "Required fields are missing: [LastName]",
                   "error_fields": ["LastName"],
                   "record": {"Email": "a@b.c", "note": "x,\"y\"\nz"}})
        );
        assert_eq!(lines[1]["rejected_by"], "validation");
        assert!(lines[1].get("job_id").is_none());
    }

    #[tokio::test]
    async fn csv_rejects_and_local_directory_layout() {
        let dir = tempfile::tempdir().unwrap();
        let out = tempfile::tempdir().unwrap();
        let store = LocalStore::new(out.path().join("rejects"), "42".into(), RejectFormat::Csv);
        store.probe().await.unwrap();
        let at = store
            .put(spool(RejectFormat::Csv, dir.path()))
            .await
            .unwrap();
        let path = PathBuf::from(&at);
        assert!(
            path.starts_with(out.path().join("rejects/42/crm.contacts")),
            "{at}"
        );
        assert!(at.ends_with(".csv"));
        let mut r = csv::Reader::from_path(&path).unwrap();
        assert_eq!(r.headers().unwrap(), CSV_HEADER.as_slice());
        let rows: Vec<csv::StringRecord> = r.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(&rows[0][2], "7");
        assert_eq!(&rows[0][7], "REQUIRED_FIELD_MISSING");
        let record: serde_json::Value = serde_json::from_str(&rows[0][10]).unwrap();
        assert_eq!(record["note"], "x,\"y\"\nz");
        // Only the final file is left: no partial files, no probe.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap()).unwrap().collect();
        assert_eq!(names.len(), 1);
        assert_eq!(
            std::fs::read_dir(out.path().join("rejects"))
                .unwrap()
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn local_probe_fails_on_an_unwritable_directory() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let store = LocalStore::new(file.path().join("sub"), "1".into(), RejectFormat::Jsonl);
        let e = store.probe().await.unwrap_err().to_string();
        assert!(e.contains("creating the directory"), "{e}");
    }

    /// S3 through a real S3 API server (moto): `S3_TEST_ENDPOINT=http://127.0.0.1:PORT`. Without
    /// it the test fails with the command that starts one; it never skips.
    #[tokio::test]
    async fn s3_store_writes_files_and_probes_then_cleans_up() {
        let endpoint = testkit::require_env(
            "S3_TEST_ENDPOINT",
            "start `moto_server -H 127.0.0.1 -p PORT` and export S3_TEST_ENDPOINT=http://127.0.0.1:PORT",
        );
        let bucket = format!(
            "rejects-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_millis()
        );
        let config = S3Config {
            keys: Some((crate::Secret::new("testing"), crate::Secret::new("testing"))),
            role_arn: None,
            bucket: bucket.clone(),
            region: Some("us-east-1".into()),
            endpoint: Some(endpoint),
            bucket_path: "airbyte/rejects".into(),
            format: RejectFormat::Csv,
        };
        let store = S3Store::connect(&config, "77".into()).await;
        let e = store.probe().await.unwrap_err().to_string();
        assert!(e.contains("writing a probe object"), "missing bucket: {e}");
        store
            .client
            .create_bucket()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        store.probe().await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let at = store
            .put(spool(RejectFormat::Csv, dir.path()))
            .await
            .unwrap();
        let prefix = format!("s3://{bucket}/airbyte/rejects/77/crm.contacts/");
        assert!(at.starts_with(&prefix) && at.ends_with(".csv"), "{at}");
        let listed = store
            .client
            .list_objects_v2()
            .bucket(&bucket)
            .send()
            .await
            .unwrap();
        let keys: Vec<&str> = listed.contents().iter().filter_map(|o| o.key()).collect();
        assert_eq!(keys.len(), 1, "the probe was deleted: {keys:?}");
        let body = store
            .client
            .get_object()
            .bucket(&bucket)
            .key(keys[0])
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        let mut r = csv::Reader::from_reader(&body[..]);
        assert_eq!(r.headers().unwrap(), CSV_HEADER.as_slice());
        assert_eq!(r.records().count(), 2);
    }
}
