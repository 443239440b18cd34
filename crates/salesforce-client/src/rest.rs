//! REST API resources: versions, limits, describe, getUpdated / getDeleted, query and queryAll.
//!
//! Queries are async streams that follow `nextRecordsUrl`: [`Client::query_pages`] yields one
//! [`QueryPage`] per response (up to 2,000 records), [`Client::query_records`] flattens them.
//! A page is fetched only when the consumer asks for it, so memory holds one page at a time.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use futures::Stream;
use reqwest::Method;
use reqwest::header::{HeaderName, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::client::{Call, Client};
use crate::config::ConfigError;
use crate::error::{ApiError, Error, Result};
use crate::usage::Limits;

/// Largest number of subrequests in one `/composite` request.
pub const COMPOSITE_MAX_SUBREQUESTS: usize = 25;

/// Largest number of query operations (query, queryAll, query-more) in one `/composite` request.
pub const COMPOSITE_MAX_QUERIES: usize = 5;

/// One GET subrequest of a `/composite` call (see [`Client::composite`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CompositeGet {
    /// `query` / `queryAll` (first page): a query operation (at most 5 per call).
    Query {
        /// The SOQL statement.
        soql: String,
        /// `queryAll` (soft-deleted rows included) instead of `query`.
        include_deleted: bool,
    },
    /// getUpdated over `[start, end]` (an sObject resource, not a query).
    Updated {
        /// Object API name.
        object: String,
        /// Window start (seconds are ignored by Salesforce).
        start: DateTime<Utc>,
        /// Window end.
        end: DateTime<Utc>,
    },
    /// getDeleted over `[start, end]` (an sObject resource, not a query).
    Deleted {
        /// Object API name.
        object: String,
        /// Window start.
        start: DateTime<Utc>,
        /// Window end.
        end: DateTime<Utc>,
    },
}

impl CompositeGet {
    /// Whether Salesforce counts this subrequest toward the 5 queries of a composite call.
    pub fn is_query(&self) -> bool {
        matches!(self, Self::Query { .. })
    }

    fn path(&self) -> Result<String> {
        let window = |start: &DateTime<Utc>, end: &DateTime<Utc>| {
            url::form_urlencoded::Serializer::new(String::new())
                .append_pair("start", &iso(*start))
                .append_pair("end", &iso(*end))
                .finish()
        };
        Ok(match self {
            Self::Query {
                soql,
                include_deleted,
            } => {
                let q: String = url::form_urlencoded::Serializer::new(String::new())
                    .append_pair("q", soql)
                    .finish();
                let resource = if *include_deleted {
                    "queryAll"
                } else {
                    "query"
                };
                format!("{resource}/?{q}")
            }
            Self::Updated { object, start, end } => {
                format!("{}/updated/?{}", object_path(object)?, window(start, end))
            }
            Self::Deleted { object, start, end } => {
                format!("{}/deleted/?{}", object_path(object)?, window(start, end))
            }
        })
    }
}

/// One entry of the versions list (`GET /services/data/`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct VersionInfo {
    /// Release name, e.g. `Winter '25`.
    pub label: String,
    /// Path, e.g. `/services/data/v62.0`.
    pub url: String,
    /// Version, e.g. `62.0`.
    pub version: String,
}

/// `GET /sobjects/`: the org's objects.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DescribeGlobal {
    /// Character encoding, e.g. `UTF-8`.
    #[serde(default)]
    pub encoding: Option<String>,
    /// Maximum records per DML batch.
    #[serde(default)]
    pub max_batch_size: Option<u32>,
    /// The objects.
    pub sobjects: Vec<GlobalSObject>,
}

/// One object in [`DescribeGlobal`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GlobalSObject {
    /// API name, e.g. `Account`.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Custom object.
    #[serde(default)]
    pub custom: bool,
    /// Can be queried.
    #[serde(default)]
    pub queryable: bool,
    /// Can be replicated (getUpdated / getDeleted).
    #[serde(default)]
    pub replicateable: bool,
    /// Can be retrieved.
    #[serde(default)]
    pub retrieveable: bool,
    /// Can be created.
    #[serde(default)]
    pub createable: bool,
    /// Can be updated.
    #[serde(default)]
    pub updateable: bool,
    /// Can be deleted.
    #[serde(default)]
    pub deletable: bool,
    /// Key prefix, e.g. `001`.
    #[serde(default)]
    pub key_prefix: Option<String>,
    /// Every other property, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// `GET /sobjects/{name}/describe`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SObjectDescribe {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Custom object.
    #[serde(default)]
    pub custom: bool,
    /// Can be queried.
    #[serde(default)]
    pub queryable: bool,
    /// Can be replicated.
    #[serde(default)]
    pub replicateable: bool,
    /// Can be created.
    #[serde(default)]
    pub createable: bool,
    /// Can be updated.
    #[serde(default)]
    pub updateable: bool,
    /// Can be deleted.
    #[serde(default)]
    pub deletable: bool,
    /// The fields.
    #[serde(default)]
    pub fields: Vec<FieldDescribe>,
    /// Every other property, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One field of an [`SObjectDescribe`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FieldDescribe {
    /// API name.
    pub name: String,
    /// Label.
    #[serde(default)]
    pub label: String,
    /// Field type (`string`, `datetime`, `reference`, `address`, ...; for formulas, the result type).
    #[serde(rename = "type")]
    pub field_type: String,
    /// SOAP type, e.g. `xsd:string`.
    #[serde(default)]
    pub soap_type: Option<String>,
    /// Can be null.
    #[serde(default)]
    pub nillable: bool,
    /// Can be set on create.
    #[serde(default)]
    pub createable: bool,
    /// Can be set on update.
    #[serde(default)]
    pub updateable: bool,
    /// Set by default on create.
    #[serde(default)]
    pub defaulted_on_create: bool,
    /// Custom field.
    #[serde(default)]
    pub custom: bool,
    /// Formula field.
    #[serde(default)]
    pub calculated: bool,
    /// External id.
    #[serde(default)]
    pub external_id: bool,
    /// Usable as an indexed lookup key.
    #[serde(default)]
    pub id_lookup: bool,
    /// Unique.
    #[serde(default)]
    pub unique: bool,
    /// Filterable in WHERE.
    #[serde(default)]
    pub filterable: bool,
    /// Sortable in ORDER BY.
    #[serde(default)]
    pub sortable: bool,
    /// Text length.
    #[serde(default)]
    pub length: u32,
    /// Numeric precision.
    #[serde(default)]
    pub precision: u32,
    /// Numeric scale.
    #[serde(default)]
    pub scale: u32,
    /// Parent compound field (e.g. `BillingAddress` for `BillingCity`).
    #[serde(default)]
    pub compound_field_name: Option<String>,
    /// Objects a reference points to.
    #[serde(default)]
    pub reference_to: Vec<String>,
    /// Relationship name of a reference.
    #[serde(default)]
    pub relationship_name: Option<String>,
    /// Picklist entries.
    #[serde(default)]
    pub picklist_values: Vec<PicklistValue>,
    /// Every other property, kept as sent.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

/// One picklist entry.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PicklistValue {
    /// Stored value.
    pub value: String,
    /// Label.
    #[serde(default)]
    pub label: Option<String>,
    /// Active.
    #[serde(default)]
    pub active: bool,
    /// Default.
    #[serde(default)]
    pub default_value: bool,
}

/// `GET /sobjects/{name}/updated/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdatedRecords {
    /// Ids of records created or updated in the window.
    pub ids: Vec<String>,
    /// The last date covered by the answer.
    #[serde(default)]
    pub latest_date_covered: Option<String>,
}

/// `GET /sobjects/{name}/deleted/`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecords {
    /// Deleted records.
    pub deleted_records: Vec<DeletedRecord>,
    /// The earliest date for which deletions are available.
    #[serde(default)]
    pub earliest_date_available: Option<String>,
    /// The last date covered by the answer.
    #[serde(default)]
    pub latest_date_covered: Option<String>,
}

/// One deleted record.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeletedRecord {
    /// Record id.
    pub id: String,
    /// When it was deleted.
    pub deleted_date: String,
}

/// One response of `query` / `queryAll`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueryPage<T> {
    /// Rows the whole query matches.
    pub total_size: u64,
    /// Whether this is the last page.
    pub done: bool,
    /// Path of the next page (present when `done` is false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_records_url: Option<String>,
    /// The records (each with its `attributes`).
    pub records: Vec<T>,
}

/// Options for `query` / `queryAll`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryOptions {
    /// Use `queryAll` (include soft-deleted and archived rows).
    pub include_deleted: bool,
    /// `Sforce-Query-Options: batchSize=N` (200–2000); Salesforce may still send fewer.
    pub batch_size: Option<u32>,
}

impl QueryOptions {
    /// `queryAll` instead of `query`.
    pub fn query_all() -> Self {
        Self {
            include_deleted: true,
            batch_size: None,
        }
    }

    /// Sets the batch size.
    pub fn with_batch_size(mut self, batch_size: u32) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    fn validate(&self) -> Result<()> {
        if let Some(n) = self.batch_size
            && !(200..=2000).contains(&n)
        {
            return Err(Error::Config(ConfigError::OutOfRange {
                field: "batch_size",
                value: n.to_string(),
                expected: "200..=2000",
            }));
        }
        Ok(())
    }

    fn apply(&self, call: Call) -> Call {
        match self.batch_size.map(|n| format!("batchSize={n}")) {
            Some(v) => match HeaderValue::from_str(&v) {
                Ok(v) => call.header(HeaderName::from_static("sforce-query-options"), v),
                Err(_) => call,
            },
            None => call,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompositeRequest<'a> {
    all_or_none: bool,
    composite_request: Vec<CompositeSubrequest<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CompositeSubrequest<'a> {
    method: &'a str,
    url: String,
    reference_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompositeResponse {
    composite_response: Vec<CompositeSubresponse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompositeSubresponse {
    #[serde(default)]
    body: serde_json::Value,
    http_status_code: u16,
    reference_id: String,
}

/// Formats a timestamp the way getUpdated / getDeleted expect (`2024-01-02T03:04:05Z`).
fn iso(ts: DateTime<Utc>) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn object_path(object: &str) -> Result<String> {
    if object.is_empty()
        || !object
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        return Err(Error::Config(ConfigError::OutOfRange {
            field: "object",
            value: object.to_owned(),
            expected: "an sObject API name (letters, digits, underscores)",
        }));
    }
    Ok(format!("sobjects/{object}"))
}

impl Client {
    /// `GET /services/data/`: the API versions the org serves (free: not counted).
    pub async fn versions(&self) -> Result<Vec<VersionInfo>> {
        self.send_json(&Call::get("/services/data/").not_counted())
            .await
    }

    /// `GET /limits/`: the org's limits.
    pub async fn limits(&self) -> Result<Limits> {
        self.send_json(&Call::get("limits/")).await
    }

    /// `GET /sobjects/`: describe global.
    pub async fn describe_global(&self) -> Result<DescribeGlobal> {
        self.send_json(&Call::get("sobjects/")).await
    }

    /// `GET /sobjects/{object}/describe`.
    pub async fn describe(&self, object: &str) -> Result<SObjectDescribe> {
        let path = format!("{}/describe", object_path(object)?);
        self.send_json(&Call::get(path)).await
    }

    /// Describes many objects, 25 per `/composite` request (each composite request counts as
    /// one API call). Results are in input order; an object Salesforce could not describe gives
    /// its own [`ApiError`] without failing the others.
    pub async fn describe_many(
        &self,
        objects: &[&str],
    ) -> Result<Vec<std::result::Result<SObjectDescribe, ApiError>>> {
        let paths = objects
            .iter()
            .map(|o| Ok(format!("{}/describe", object_path(o)?)))
            .collect::<Result<Vec<_>>>()?;
        self.composite_get(&paths).await
    }

    /// Runs up to 25 GET subrequests, at most 5 of them queries, in ONE `/composite` call (one
    /// API call). Results (JSON bodies) are in input order; a failed subrequest gives its own
    /// [`ApiError`] without failing the others.
    pub async fn composite(
        &self,
        requests: &[CompositeGet],
    ) -> Result<Vec<std::result::Result<serde_json::Value, ApiError>>> {
        let queries = requests.iter().filter(|r| r.is_query()).count();
        if requests.len() > COMPOSITE_MAX_SUBREQUESTS || queries > COMPOSITE_MAX_QUERIES {
            return Err(Error::Config(ConfigError::OutOfRange {
                field: "composite subrequests",
                value: format!("{} ({queries} queries)", requests.len()),
                expected: "at most 25 subrequests, at most 5 of them queries",
            }));
        }
        let paths = requests
            .iter()
            .map(CompositeGet::path)
            .collect::<Result<Vec<_>>>()?;
        self.composite_get(&paths).await
    }

    /// getUpdated for many objects over the same window, 25 per `/composite` call (one API call
    /// each). Results are in input order.
    pub async fn get_updated_many(
        &self,
        objects: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<std::result::Result<UpdatedRecords, ApiError>>> {
        self.composite_window("updated", objects, start, end).await
    }

    /// getDeleted for many objects over the same window, 25 per `/composite` call (one API call
    /// each). Results are in input order.
    pub async fn get_deleted_many(
        &self,
        objects: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<std::result::Result<DeletedRecords, ApiError>>> {
        self.composite_window("deleted", objects, start, end).await
    }

    async fn composite_window<T: DeserializeOwned>(
        &self,
        resource: &str,
        objects: &[&str],
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<Vec<std::result::Result<T, ApiError>>> {
        let query: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("start", &iso(start))
            .append_pair("end", &iso(end))
            .finish();
        let paths = objects
            .iter()
            .map(|o| Ok(format!("{}/{resource}/?{query}", object_path(o)?)))
            .collect::<Result<Vec<_>>>()?;
        self.composite_get(&paths).await
    }

    /// Runs GET subrequests (paths under `/services/data/vXX.X/`) through `/composite`, 25 at a
    /// time, and decodes each successful body as `T`.
    async fn composite_get<T: DeserializeOwned>(
        &self,
        paths: &[String],
    ) -> Result<Vec<std::result::Result<T, ApiError>>> {
        let mut out = Vec::with_capacity(paths.len());
        let version = self.api_version().path_segment();
        for chunk in paths.chunks(COMPOSITE_MAX_SUBREQUESTS) {
            let subs = chunk
                .iter()
                .enumerate()
                .map(|(i, path)| CompositeSubrequest {
                    method: "GET",
                    url: format!("/services/data/{version}/{path}"),
                    reference_id: format!("r{i}"),
                })
                .collect();
            let call = Call::new(Method::POST, "composite")
                .json(&CompositeRequest {
                    all_or_none: false,
                    composite_request: subs,
                })?
                .idempotent(true);
            let context = self.context_of(&call);
            let resp: CompositeResponse = self.send_json(&call).await?;
            let mut by_ref: BTreeMap<String, CompositeSubresponse> = resp
                .composite_response
                .into_iter()
                .map(|r| (r.reference_id.clone(), r))
                .collect();
            for (i, path) in chunk.iter().enumerate() {
                let Some(sub) = by_ref.remove(&format!("r{i}")) else {
                    return Err(Error::UnexpectedResponse {
                        context,
                        detail: format!("no composite subresponse for {path}"),
                    });
                };
                if (200..300).contains(&sub.http_status_code) {
                    let value = serde_json::from_value(sub.body).map_err(|e| Error::Decode {
                        context: format!("{context} (GET {path})"),
                        source: e,
                    })?;
                    out.push(Ok(value));
                } else {
                    let body = serde_json::to_vec(&sub.body).unwrap_or_default();
                    out.push(Err(ApiError::from_response(sub.http_status_code, &body)));
                }
            }
        }
        Ok(out)
    }

    /// `GET /sobjects/{object}/updated/?start=&end=`: ids changed in `[start, end]` (at most the
    /// last 30 days).
    pub async fn get_updated(
        &self,
        object: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<UpdatedRecords> {
        let call = Call::get(format!("{}/updated/", object_path(object)?))
            .query("start", iso(start))
            .query("end", iso(end));
        self.send_json(&call).await
    }

    /// `GET /sobjects/{object}/deleted/?start=&end=`: records deleted in `[start, end]` (at most
    /// the last 15 days).
    pub async fn get_deleted(
        &self,
        object: &str,
        start: DateTime<Utc>,
        end: DateTime<Utc>,
    ) -> Result<DeletedRecords> {
        let call = Call::get(format!("{}/deleted/", object_path(object)?))
            .query("start", iso(start))
            .query("end", iso(end));
        self.send_json(&call).await
    }

    /// The first page of a query.
    pub async fn query_page<T: DeserializeOwned>(
        &self,
        soql: &str,
        options: QueryOptions,
    ) -> Result<QueryPage<T>> {
        options.validate()?;
        let resource = if options.include_deleted {
            "queryAll/"
        } else {
            "query/"
        };
        let call = options.apply(Call::get(resource).query("q", soql));
        self.send_json(&call).await
    }

    /// The page at a `nextRecordsUrl`. Salesforce serves a query locator once, so a page whose
    /// body breaks off is not requested again: the error is [`Error::PageLost`] (see
    /// [`Error::is_query_locator_lost`]), and the caller re-runs its query from where it stands.
    pub async fn query_more<T: DeserializeOwned>(
        &self,
        next_records_url: &str,
        options: QueryOptions,
    ) -> Result<QueryPage<T>> {
        options.validate()?;
        if !next_records_url.starts_with("/services/") {
            return Err(Error::UnexpectedResponse {
                context: "following nextRecordsUrl".to_owned(),
                detail: format!("{next_records_url:?} is not a /services/ path"),
            });
        }
        let call = options.apply(Call::get(next_records_url).single_use());
        self.send_json(&call).await
    }

    /// A query as a stream of pages, following `nextRecordsUrl` until `done`.
    pub fn query_pages<T>(
        &self,
        soql: &str,
        options: QueryOptions,
    ) -> impl Stream<Item = Result<QueryPage<T>>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
    {
        let client = self.clone();
        let soql = soql.to_owned();
        async_stream::try_stream! {
            let mut page: QueryPage<T> = client.query_page(&soql, options).await?;
            loop {
                let next = if page.done { None } else { page.next_records_url.take() };
                if !page.done && next.is_none() {
                    Err(Error::UnexpectedResponse {
                        context: "query".to_owned(),
                        detail: "page has done=false but no nextRecordsUrl".to_owned(),
                    })?;
                }
                yield page;
                match next {
                    Some(url) => page = client.query_more(&url, options).await?,
                    None => break,
                }
            }
        }
    }

    /// A query as a stream of records.
    pub fn query_records<T>(
        &self,
        soql: &str,
        options: QueryOptions,
    ) -> impl Stream<Item = Result<T>> + Send + 'static
    where
        T: DeserializeOwned + Send + 'static,
    {
        let pages = self.query_pages::<T>(soql, options);
        async_stream::try_stream! {
            futures::pin_mut!(pages);
            while let Some(page) = futures::StreamExt::next(&mut pages).await {
                for record in page?.records {
                    yield record;
                }
            }
        }
    }

    /// `SELECT COUNT() FROM {object} [WHERE ...]`: the number of matching rows (one API call).
    pub async fn count(
        &self,
        object: &str,
        where_clause: Option<&str>,
        include_deleted: bool,
    ) -> Result<u64> {
        object_path(object)?;
        let soql = match where_clause {
            Some(w) if !w.trim().is_empty() => format!("SELECT COUNT() FROM {object} WHERE {w}"),
            _ => format!("SELECT COUNT() FROM {object}"),
        };
        let options = QueryOptions {
            include_deleted,
            batch_size: None,
        };
        let page: QueryPage<serde_json::Value> = self.query_page(&soql, options).await?;
        Ok(page.total_size)
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use futures::TryStreamExt;
    use serde_json::{Value, json};

    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::mock_server::{MockServer, Scripted};

    fn record(id: &str) -> Value {
        json!({"attributes": {"type": "Account", "url": format!("/services/data/v62.0/sobjects/Account/{id}")}, "Id": id})
    }

    #[tokio::test]
    async fn query_follows_next_records_url_lazily() {
        let mock = MockServer::start().await;
        mock.push(Scripted::json(200, json!({"totalSize": 3, "done": false,
            "nextRecordsUrl": "/services/data/v62.0/query/01gXX-2", "records": [record("1"), record("2")]})));
        mock.push(Scripted::json(
            200,
            json!({"totalSize": 3, "done": true, "records": [record("3")]}),
        ));
        let client = mock.client();
        let stream = client.query_pages::<Value>(
            "SELECT Id FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00+00:00",
            QueryOptions::query_all().with_batch_size(200),
        );
        futures::pin_mut!(stream);
        let first = stream.try_next().await.unwrap().unwrap();
        assert_eq!(first.records.len(), 2);
        assert_eq!(
            mock.requests().len(),
            1,
            "second page not fetched before it is asked for"
        );
        let second = stream.try_next().await.unwrap().unwrap();
        assert!(second.done);
        assert!(stream.try_next().await.unwrap().is_none());
        let reqs = mock.requests();
        assert_eq!(reqs[0].path, "/services/data/v62.0/queryAll/");
        let q: Vec<(String, String)> =
            url::form_urlencoded::parse(reqs[0].query.as_deref().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            q[0].1, "SELECT Id FROM Account WHERE SystemModstamp >= 2024-01-01T00:00:00+00:00",
            "the + survives encoding"
        );
        assert_eq!(
            reqs[0].header("sforce-query-options"),
            Some("batchSize=200")
        );
        assert_eq!(reqs[1].path, "/services/data/v62.0/query/01gXX-2");
        assert_eq!(reqs[1].query, None);
        assert_eq!(
            reqs[1].header("sforce-query-options"),
            Some("batchSize=200")
        );
    }

    /// An instance that answers every request with a 200, its headers and the start of a
    /// chunked JSON body, then drops the connection a moment later (a reset mid-body, after the
    /// status line). Returns its base URL and the number of requests it saw.
    async fn instance_cutting_bodies() -> (String, Arc<AtomicUsize>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counter = counter.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => request.extend_from_slice(&buf[..n]),
                        }
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let chunk = r#"{"totalSize": 3, "done": tr"#;
                    let head = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n{:x}\r\n{chunk}\r\n",
                        chunk.len()
                    );
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.flush().await;
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                });
            }
        });
        (base, seen)
    }

    #[tokio::test]
    async fn a_broken_locator_page_is_not_fetched_again() {
        let mock = MockServer::start().await;
        let (instance, seen) = instance_cutting_bodies().await;
        mock.push_token(Scripted::json(
            200,
            json!({"access_token": "t", "instance_url": instance, "token_type": "Bearer"}),
        ));
        let client = mock.client();
        // A locator's page is served once: a cut body is reported, not requested again.
        let err = client
            .query_more::<Value>(
                "/services/data/v62.0/query/01gXX-2000",
                QueryOptions::query_all(),
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PageLost { .. }), "{err:?}");
        assert!(err.is_query_locator_lost());
        assert_eq!(err.class(), crate::ErrorClass::Transient);
        assert_eq!(seen.load(Ordering::SeqCst), 1, "the locator was sent once");
        // A statement's first page is asked for again (the statement runs afresh), within the
        // retry limit; then it is a transport error, not a lost locator.
        let err = client
            .query_page::<Value>("SELECT Id FROM Account", QueryOptions::query_all())
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Http { .. }), "{err:?}");
        assert!(!err.is_query_locator_lost());
        assert_eq!(seen.load(Ordering::SeqCst), 1 + 4, "1 attempt + 3 retries");
    }

    #[tokio::test]
    async fn an_invalid_query_locator_is_recognised() {
        let mock = MockServer::start().await;
        mock.push(Scripted::json(
            400,
            json!([{"errorCode": "INVALID_QUERY_LOCATOR", "message": "invalid query locator"}]),
        ));
        let err = mock
            .client()
            .query_more::<Value>(
                "/services/data/v62.0/query/01gXX-2",
                QueryOptions::query_all(),
            )
            .await
            .unwrap_err();
        assert!(err.is_query_locator_lost(), "{err}");
        assert_eq!(mock.requests().len(), 1);
        let other = Error::Api {
            context: "GET /x".into(),
            source: Box::new(ApiError {
                status: 400,
                error_code: "MALFORMED_QUERY".into(),
                message: String::new(),
                fields: vec![],
            }),
        };
        assert!(!other.is_query_locator_lost());
    }

    #[tokio::test]
    async fn query_records_flattens_pages() {
        let mock = MockServer::start().await;
        mock.push(Scripted::json(
            200,
            json!({"totalSize": 2, "done": false,
            "nextRecordsUrl": "/services/data/v62.0/query/01g-1", "records": [record("a")]}),
        ));
        mock.push(Scripted::json(
            200,
            json!({"totalSize": 2, "done": true, "records": [record("b")]}),
        ));
        let ids: Vec<String> = mock
            .client()
            .query_records::<Value>("SELECT Id FROM Account", QueryOptions::default())
            .map_ok(|r| r["Id"].as_str().unwrap().to_owned())
            .try_collect()
            .await
            .unwrap();
        assert_eq!(ids, vec!["a", "b"]);
        assert_eq!(mock.requests()[0].path, "/services/data/v62.0/query/");
    }

    #[tokio::test]
    async fn query_errors_surface_in_the_stream() {
        let mock = MockServer::start().await;
        mock.push(Scripted::json(
            400,
            json!([{"errorCode":"INVALID_FIELD","message":"No such column 'Nope__c'"}]),
        ));
        let err = mock
            .client()
            .query_records::<Value>("SELECT Nope__c FROM Account", QueryOptions::default())
            .try_collect::<Vec<_>>()
            .await
            .unwrap_err();
        assert_eq!(err.api_error().unwrap().error_code, "INVALID_FIELD");
        let err = mock
            .client()
            .query_page::<Value>("x", QueryOptions::default().with_batch_size(100))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Config(_)), "{err}");
    }

    #[tokio::test]
    async fn describe_many_uses_one_composite_call_per_25_objects() {
        let mock = MockServer::start().await;
        let names: Vec<String> = (0..30).map(|i| format!("Obj{i}__c")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        for chunk in names.chunks(25) {
            let responses: Vec<Value> = chunk
                .iter()
                .enumerate()
                .rev()
                .map(|(i, n)| {
                    if n == "Obj3__c" {
                        json!({"referenceId": format!("r{i}"), "httpStatusCode": 404, "httpHeaders": {},
                            "body": [{"errorCode":"NOT_FOUND","message":"The requested resource does not exist"}]})
                    } else {
                        json!({"referenceId": format!("r{i}"), "httpStatusCode": 200, "httpHeaders": {},
                            "body": {"name": n, "fields": [{"name":"Id","type":"id"}]}})
                    }
                })
                .collect();
            mock.push(Scripted::json(200, json!({"compositeResponse": responses})));
        }
        let out = mock.client().describe_many(&refs).await.unwrap();
        assert_eq!(out.len(), 30);
        for (i, r) in out.iter().enumerate() {
            if i == 3 {
                assert_eq!(r.as_ref().unwrap_err().error_code, "NOT_FOUND");
            } else {
                let d = r.as_ref().unwrap();
                assert_eq!(d.name, names[i]);
                assert_eq!(d.fields[0].field_type, "id");
            }
        }
        let reqs = mock.requests();
        assert_eq!(reqs.len(), 2);
        assert_eq!(reqs[0].path, "/services/data/v62.0/composite");
        let body: Value = serde_json::from_slice(&reqs[0].body).unwrap();
        assert_eq!(body["allOrNone"], false);
        let subs = body["compositeRequest"].as_array().unwrap();
        assert_eq!(subs.len(), 25);
        assert_eq!(
            subs[0]["url"],
            "/services/data/v62.0/sobjects/Obj0__c/describe"
        );
        assert_eq!(subs[0]["method"], "GET");
        assert_eq!(body_len(&reqs[1]), 5);
    }

    #[tokio::test]
    async fn updated_and_deleted_many_go_through_composite() {
        let mock = MockServer::start().await;
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        mock.push(Scripted::json(200, json!({"compositeResponse": [
            {"referenceId": "r0", "httpStatusCode": 200, "body": {"ids": ["001A"], "latestDateCovered": "x"}},
            {"referenceId": "r1", "httpStatusCode": 400, "body": [{"errorCode": "INVALID_REPLICATION_DATE", "message": "too old"}]}
        ]})));
        let out = mock
            .client()
            .get_updated_many(&["Account", "Contact"], start, end)
            .await
            .unwrap();
        assert_eq!(out[0].as_ref().unwrap().ids, vec!["001A"]);
        assert_eq!(
            out[1].as_ref().unwrap_err().error_code,
            "INVALID_REPLICATION_DATE"
        );
        let body: Value = serde_json::from_slice(&mock.requests()[0].body).unwrap();
        assert_eq!(
            body["compositeRequest"][1]["url"],
            "/services/data/v62.0/sobjects/Contact/updated/?start=2024-01-01T00%3A00%3A00Z&end=2024-01-02T00%3A00%3A00Z"
        );
        mock.push(Scripted::json(200, json!({"compositeResponse": [
            {"referenceId": "r0", "httpStatusCode": 200, "body": {"deletedRecords": [], "latestDateCovered": "x"}}
        ]})));
        let out = mock
            .client()
            .get_deleted_many(&["Account"], start, end)
            .await
            .unwrap();
        assert!(out[0].as_ref().unwrap().deleted_records.is_empty());
    }

    fn body_len(r: &crate::mock_server::Recorded) -> usize {
        let body: Value = serde_json::from_slice(&r.body).unwrap();
        body["compositeRequest"].as_array().unwrap().len()
    }

    #[tokio::test]
    async fn updated_deleted_count_versions_limits() {
        let mock = MockServer::start().await;
        let client = mock.client();
        let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
        let end = Utc.with_ymd_and_hms(2024, 1, 2, 0, 0, 0).unwrap();
        mock.push(Scripted::json(
            200,
            json!({"ids": ["001A"], "latestDateCovered": "2024-01-02T00:00:00.000+0000"}),
        ));
        let u = client.get_updated("Account", start, end).await.unwrap();
        assert_eq!(u.ids, vec!["001A"]);
        mock.push(Scripted::json(200, json!({"deletedRecords": [{"id": "001B", "deletedDate": "2024-01-01T05:00:00.000+0000"}],
            "earliestDateAvailable": "2023-12-20T00:00:00.000+0000", "latestDateCovered": "2024-01-02T00:00:00.000+0000"})));
        let d = client.get_deleted("Account", start, end).await.unwrap();
        assert_eq!(d.deleted_records[0].id, "001B");
        mock.push(Scripted::json(
            200,
            json!({"totalSize": 42, "done": true, "records": []}),
        ));
        assert_eq!(
            client
                .count("Account", Some("IsDeleted = false"), false)
                .await
                .unwrap(),
            42
        );
        mock.push(Scripted::json(
            200,
            json!([{"label":"Winter '25","url":"/services/data/v62.0","version":"62.0"}]),
        ));
        assert_eq!(client.versions().await.unwrap()[0].version, "62.0");
        let reqs = mock.requests();
        assert_eq!(
            reqs[0].path,
            "/services/data/v62.0/sobjects/Account/updated/"
        );
        assert_eq!(
            reqs[0].query.as_deref(),
            Some("start=2024-01-01T00%3A00%3A00Z&end=2024-01-02T00%3A00%3A00Z")
        );
        assert_eq!(
            reqs[1].path,
            "/services/data/v62.0/sobjects/Account/deleted/"
        );
        let q: Vec<(String, String)> =
            url::form_urlencoded::parse(reqs[2].query.as_deref().unwrap().as_bytes())
                .into_owned()
                .collect();
        assert_eq!(
            q[0].1,
            "SELECT COUNT() FROM Account WHERE IsDeleted = false"
        );
        assert_eq!(reqs[3].path, "/services/data/");
        assert_eq!(client.usage().calls_made, 3, "the versions list is free");
        assert!(client.describe("Bad/../x").await.is_err());
    }
}
