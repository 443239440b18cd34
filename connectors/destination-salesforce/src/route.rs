//! Routing: which Salesforce object and Bulk operation each configured stream writes to.
//!
//! A stream goes to its `destination_object_name` (data activation) or else to the object named
//! like the stream. `destination_sync_mode` picks the operation: `append` → insert,
//! `append_dedup` → upsert on the one `primary_key` field (an external-id field or `Id`),
//! `update` → update by `Id`, `soft_delete` → delete by `Id` (hardDelete when
//! `allow_hard_delete` is on). Records are matched to streams by name and namespace; when no exact
//! match exists, a case-insensitive match is used (PyAirbyte caches lower-case names).

use std::collections::HashMap;
use std::fmt;

use airbyte_protocol::{ConfiguredAirbyteCatalog, DestinationSyncMode, StreamDescriptor};
use salesforce_client::IngestOperation;

/// A catalog that cannot be written as configured; names the stream.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The destination sync mode has no Salesforce equivalent.
    #[error(
        "stream {stream}: destination_sync_mode {mode} is not supported; use append (insert), \
         append_dedup (upsert), update or soft_delete (delete)"
    )]
    UnsupportedMode {
        /// The stream.
        stream: StreamDescriptor,
        /// The mode as written.
        mode: String,
    },
    /// Upsert needs exactly one single-field key.
    #[error(
        "stream {stream}: append_dedup (upsert) needs exactly one primary_key field, the external \
         id field (or Id) to match on; got {got}"
    )]
    BadUpsertKey {
        /// The stream.
        stream: StreamDescriptor,
        /// The key as configured.
        got: String,
    },
    /// Update and delete match on `Id` only.
    #[error(
        "stream {stream}: {mode} matches records on Id only, but primary_key is {got}; map the \
         Salesforce record Id as the primary key"
    )]
    BadIdKey {
        /// The stream.
        stream: StreamDescriptor,
        /// `update` or `soft_delete`.
        mode: &'static str,
        /// The key as configured.
        got: String,
    },
    /// The object name is not a Salesforce API name.
    #[error("stream {stream}: {object:?} is not a Salesforce object API name")]
    BadObject {
        /// The stream.
        stream: StreamDescriptor,
        /// The name.
        object: String,
    },
    /// Two configured streams have the same name and namespace.
    #[error("stream {0} is configured twice")]
    Duplicate(StreamDescriptor),
}

/// A Bulk ingest operation with its matching key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Create records.
    Insert,
    /// Insert or update by this key field (an external id field, or `Id`).
    Upsert {
        /// The key field as configured (resolved against the describe later).
        key: String,
    },
    /// Update by `Id`.
    Update,
    /// Delete by `Id` (Recycle Bin).
    Delete,
    /// Delete by `Id`, bypassing the Recycle Bin.
    HardDelete,
}

impl Operation {
    /// The Bulk API operation.
    pub fn ingest(&self) -> IngestOperation {
        match self {
            Self::Insert => IngestOperation::Insert,
            Self::Upsert { .. } => IngestOperation::Upsert,
            Self::Update => IngestOperation::Update,
            Self::Delete => IngestOperation::Delete,
            Self::HardDelete => IngestOperation::HardDelete,
        }
    }

    /// The Bulk API name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Insert => "insert",
            Self::Upsert { .. } => "upsert",
            Self::Update => "update",
            Self::Delete => "delete",
            Self::HardDelete => "hardDelete",
        }
    }

    /// The field rows are matched on, if any.
    pub fn key(&self) -> Option<&str> {
        match self {
            Self::Insert => None,
            Self::Upsert { key } => Some(key),
            Self::Update | Self::Delete | Self::HardDelete => Some("Id"),
        }
    }

    /// Whether only the key column is sent (deletes).
    pub fn key_only(&self) -> bool {
        matches!(self, Self::Delete | Self::HardDelete)
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Insert => f.write_str("insert"),
            Self::Upsert { key } => write!(f, "upsert on {key}"),
            Self::Update => f.write_str("update"),
            Self::Delete => f.write_str("delete"),
            Self::HardDelete => f.write_str("hardDelete"),
        }
    }
}

/// Where one stream's records go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The stream as configured.
    pub stream: StreamDescriptor,
    /// The Salesforce object (as configured; the describe gives its canonical spelling).
    pub object: String,
    /// The operation.
    pub operation: Operation,
    /// `sync_id` of the catalog stream (names the reject folder).
    pub sync_id: Option<i64>,
}

/// Every configured stream's route, looked up by a record's stream and namespace.
#[derive(Debug, Clone, Default)]
pub struct Routes {
    routes: Vec<Route>,
    /// By name, then namespace (so a lookup needs no allocation).
    exact: HashMap<String, Vec<(Option<String>, usize)>>,
    folded: HashMap<(String, Option<String>), Option<usize>>,
}

fn describe_key(key: &Option<Vec<Vec<String>>>) -> String {
    match key {
        None => "absent".to_owned(),
        Some(k) => serde_json::to_string(k).unwrap_or_else(|_| format!("{k:?}")),
    }
}

/// The one single-field key of `primary_key`, if it is exactly that.
fn single_key(key: &Option<Vec<Vec<String>>>) -> Option<&str> {
    match key.as_deref() {
        Some([path]) => match path.as_slice() {
            [field] if !field.trim().is_empty() => Some(field.trim()),
            _ => None,
        },
        _ => None,
    }
}

/// Whether `name` looks like a Salesforce API name (letters, digits, underscores).
pub fn is_api_name(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && name.as_bytes()[0].is_ascii_alphabetic()
}

fn norm_ns(ns: &Option<String>) -> Option<String> {
    ns.clone().filter(|n| !n.is_empty())
}

impl Routes {
    /// Routes of every stream of the catalog.
    pub fn from_catalog(
        catalog: &ConfiguredAirbyteCatalog,
        allow_hard_delete: bool,
    ) -> Result<Self, RouteError> {
        let mut routes = Self::default();
        for configured in &catalog.streams {
            let stream = configured.stream.descriptor();
            let object = configured
                .destination_object_name
                .as_deref()
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .unwrap_or(&stream.name)
                .to_owned();
            if !is_api_name(&object) {
                return Err(RouteError::BadObject { stream, object });
            }
            let key = &configured.primary_key;
            let id_only = |mode: &'static str| -> Result<(), RouteError> {
                match key.as_deref() {
                    None | Some([]) => Ok(()),
                    _ if single_key(key).is_some_and(|k| k.eq_ignore_ascii_case("Id")) => Ok(()),
                    _ => Err(RouteError::BadIdKey {
                        stream: stream.clone(),
                        mode,
                        got: describe_key(key),
                    }),
                }
            };
            let operation = match configured.destination_sync_mode {
                DestinationSyncMode::Append => Operation::Insert,
                DestinationSyncMode::AppendDedup => match single_key(key) {
                    Some(k) => Operation::Upsert { key: k.to_owned() },
                    None => {
                        return Err(RouteError::BadUpsertKey {
                            stream,
                            got: describe_key(key),
                        });
                    }
                },
                DestinationSyncMode::Update => {
                    id_only("update")?;
                    Operation::Update
                }
                DestinationSyncMode::SoftDelete => {
                    id_only("soft_delete")?;
                    if allow_hard_delete {
                        Operation::HardDelete
                    } else {
                        Operation::Delete
                    }
                }
                other => {
                    let mode = serde_json::to_value(other)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_owned))
                        .unwrap_or_else(|| "unknown".to_owned());
                    return Err(RouteError::UnsupportedMode { stream, mode });
                }
            };
            routes.add(Route {
                stream,
                object,
                operation,
                sync_id: configured.sync_id,
            })?;
        }
        Ok(routes)
    }

    fn add(&mut self, route: Route) -> Result<(), RouteError> {
        let ns = norm_ns(&route.stream.namespace);
        let index = self.routes.len();
        let same_name = self.exact.entry(route.stream.name.clone()).or_default();
        if same_name.iter().any(|(n, _)| *n == ns) {
            return Err(RouteError::Duplicate(route.stream));
        }
        same_name.push((ns.clone(), index));
        let folded = (
            route.stream.name.to_lowercase(),
            ns.map(|n| n.to_lowercase()),
        );
        self.folded
            .entry(folded)
            .and_modify(|e| *e = None)
            .or_insert(Some(index));
        self.routes.push(route);
        Ok(())
    }

    /// The index of the route for a record's stream and namespace.
    pub fn find(&self, stream: &str, namespace: Option<&String>) -> Option<usize> {
        let ns = namespace.map(String::as_str).filter(|n| !n.is_empty());
        if let Some(same_name) = self.exact.get(stream)
            && let Some((_, i)) = same_name.iter().find(|(n, _)| n.as_deref() == ns)
        {
            return Some(*i);
        }
        let folded = (stream.to_lowercase(), ns.map(str::to_lowercase));
        self.folded.get(&folded).copied().flatten()
    }

    /// All routes, in catalog order.
    pub fn all(&self) -> &[Route] {
        &self.routes
    }

    /// The route at `index`.
    pub fn get(&self, index: usize) -> &Route {
        &self.routes[index]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn catalog(streams: Value) -> ConfiguredAirbyteCatalog {
        serde_json::from_value(json!({ "streams": streams })).unwrap()
    }

    fn stream(name: &str, mode: &str, object: Option<&str>, pk: Value) -> Value {
        json!({
            "stream": {"name": name, "json_schema": {"type": "object"}, "supported_sync_modes": ["full_refresh"]},
            "sync_mode": "full_refresh", "destination_sync_mode": mode,
            "destination_object_name": object, "primary_key": pk, "sync_id": 7
        })
    }

    #[test]
    fn modes_map_to_operations() {
        let cat = catalog(json!([
            stream("contacts", "append", Some("Contact"), Value::Null),
            stream(
                "accounts",
                "append_dedup",
                Some("Account"),
                json!([["Ext_Id__c"]])
            ),
            stream("Opportunity", "update", None, json!([["Id"]])),
            stream("gone", "soft_delete", Some("Lead"), json!([])),
        ]));
        let routes = Routes::from_catalog(&cat, false).unwrap();
        let ops: Vec<_> = routes
            .all()
            .iter()
            .map(|r| (r.object.as_str(), r.operation.clone()))
            .collect();
        assert_eq!(
            ops,
            vec![
                ("Contact", Operation::Insert),
                (
                    "Account",
                    Operation::Upsert {
                        key: "Ext_Id__c".into()
                    }
                ),
                ("Opportunity", Operation::Update),
                ("Lead", Operation::Delete),
            ]
        );
        assert_eq!(routes.get(0).sync_id, Some(7));
        let hard = Routes::from_catalog(&cat, true).unwrap();
        assert_eq!(hard.get(3).operation, Operation::HardDelete);
        assert_eq!(hard.get(3).operation.ingest(), IngestOperation::HardDelete);
        assert_eq!(Operation::Update.key(), Some("Id"));
        assert!(Operation::Delete.key_only());
    }

    #[test]
    fn bad_keys_and_modes_name_the_stream() {
        let e = Routes::from_catalog(
            &catalog(json!([stream(
                "a",
                "append_dedup",
                Some("Account"),
                json!([["X"], ["Y"]])
            )])),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("stream a: append_dedup"), "{e}");
        let e = Routes::from_catalog(
            &catalog(json!([stream(
                "a",
                "append_dedup",
                Some("Account"),
                json!([["Parent", "X"]])
            )])),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, RouteError::BadUpsertKey { .. }), "{e}");
        let e = Routes::from_catalog(
            &catalog(json!([stream("a", "append_dedup", None, Value::Null)])),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, RouteError::BadUpsertKey { .. }), "{e}");
        let e = Routes::from_catalog(
            &catalog(json!([stream(
                "a",
                "update",
                Some("Account"),
                json!([["Email"]])
            )])),
            false,
        )
        .unwrap_err();
        assert!(e.to_string().contains("matches records on Id only"), "{e}");
        let e = Routes::from_catalog(
            &catalog(json!([stream(
                "a",
                "overwrite",
                Some("Account"),
                Value::Null
            )])),
            false,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("destination_sync_mode overwrite"),
            "{e}"
        );
        let e = Routes::from_catalog(
            &catalog(json!([stream("a b", "append", None, Value::Null)])),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, RouteError::BadObject { .. }), "{e}");
        let e = Routes::from_catalog(
            &catalog(json!([
                stream("a", "append", Some("Account"), Value::Null),
                stream("a", "append", Some("Lead"), Value::Null)
            ])),
            false,
        )
        .unwrap_err();
        assert!(matches!(e, RouteError::Duplicate(_)), "{e}");
    }

    #[test]
    fn lookup_is_exact_then_case_insensitive() {
        let cat = catalog(json!([
            stream("Contacts", "append", Some("Contact"), Value::Null),
            stream("Dup", "append", Some("Contact"), Value::Null),
            stream("dup", "append", Some("Contact"), Value::Null),
        ]));
        let routes = Routes::from_catalog(&cat, false).unwrap();
        assert_eq!(routes.find("Contacts", None), Some(0));
        assert_eq!(routes.find("contacts", None), Some(0));
        assert_eq!(
            routes.find("Contacts", Some(&String::new())),
            Some(0),
            "empty namespace = none"
        );
        assert_eq!(routes.find("Dup", None), Some(1));
        assert_eq!(routes.find("dup", None), Some(2));
        assert_eq!(routes.find("DUP", None), None, "ambiguous folded name");
        assert_eq!(routes.find("Contacts", Some(&"ns".to_owned())), None);
    }
}
