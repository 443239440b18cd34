//! `spec`: both connectors print their ConnectorSpecification, and that spec keeps every config
//! key users already have in Airbyte's own Salesforce connectors (same names, types, defaults and
//! secret flags) and follows the spec rules Airbyte's acceptance tests enforced.
//!
//! The spec files under `schemas/` are checked directly too, so a broken spec file fails here
//! even before a binary embeds it.

use std::fs;

use serde_json::{Map, Value, json};
use testkit::{run_connector, workspace_bin, workspace_root};

/// Where a key lives and what it must look like.
struct Key {
    name: &'static str,
    ty: &'static str,
    secret: bool,
    default: Option<Value>,
}

fn key(name: &'static str, ty: &'static str) -> Key {
    Key {
        name,
        ty,
        secret: false,
        default: None,
    }
}

fn secret(name: &'static str) -> Key {
    Key {
        secret: true,
        ..key(name, "string")
    }
}

impl Key {
    fn default(mut self, v: Value) -> Self {
        self.default = Some(v);
        self
    }
}

fn spec_file(name: &str) -> Value {
    let path = workspace_root()
        .join("schemas")
        .join(format!("{name}.spec.json"));
    serde_json::from_str(&fs::read_to_string(&path).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `<bin> spec` and returns the `spec` payload of its single SPEC message.
fn printed_spec(bin: &str) -> Value {
    let run = run_connector(&workspace_bin(bin), &["spec"], None);
    assert_eq!(run.code(), Some(0), "{bin} spec failed:\n{}", run.stderr);
    let specs = run.of_type("SPEC");
    assert_eq!(
        specs.len(),
        1,
        "{bin} spec must print exactly one SPEC message; stdout:\n{}",
        run.stdout
    );
    specs[0]["spec"].clone()
}

fn props(schema: &Value) -> &Map<String, Value> {
    schema["properties"]
        .as_object()
        .unwrap_or_else(|| panic!("no properties in {schema}"))
}

fn assert_keys(where_: &str, schema: &Value, keys: &[Key]) {
    let props = props(schema);
    for k in keys {
        let p = props
            .get(k.name)
            .unwrap_or_else(|| panic!("{where_}: missing key `{}`", k.name));
        assert_eq!(p["type"], k.ty, "{where_}: type of `{}`", k.name);
        assert_eq!(
            p.get("airbyte_secret")
                .and_then(Value::as_bool)
                .unwrap_or(false),
            k.secret,
            "{where_}: airbyte_secret of `{}`",
            k.name
        );
        if let Some(d) = &k.default {
            assert_eq!(
                p.get("default"),
                Some(d),
                "{where_}: default of `{}`",
                k.name
            );
        }
    }
}

fn required(schema: &Value) -> Vec<&str> {
    schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

/// OAuth as Airbyte's connectors declare it: predicate `auth_type == "Client"`, `is_sandbox` from
/// the user, `refresh_token` out, `client_id`/`client_secret` from the server.
fn assert_advanced_auth(spec: &Value) {
    let aa = &spec["advanced_auth"];
    assert_eq!(aa["auth_flow_type"], "oauth2.0");
    assert_eq!(aa["predicate_key"], json!(["auth_type"]));
    assert_eq!(aa["predicate_value"], "Client");
    let oc = &aa["oauth_config_specification"];
    assert_eq!(
        oc["oauth_user_input_from_connector_config_specification"]["properties"]["is_sandbox"]["path_in_connector_config"],
        json!(["is_sandbox"])
    );
    assert_eq!(
        oc["complete_oauth_output_specification"]["properties"]["refresh_token"]["path_in_connector_config"],
        json!(["refresh_token"])
    );
    for k in ["client_id", "client_secret"] {
        assert_eq!(
            oc["complete_oauth_server_input_specification"]["properties"][k]["type"],
            "string"
        );
        assert_eq!(
            oc["complete_oauth_server_output_specification"]["properties"][k]["path_in_connector_config"],
            json!([k])
        );
    }
}

const DATE_PATTERN: &str = "^([0-9]{4}-[0-9]{2}-[0-9]{2}(T[0-9]{2}:[0-9]{2}:[0-9]{2}Z)?)$";

fn check_source_spec(spec: &Value) {
    let cs = &spec["connectionSpecification"];
    assert_eq!(
        required(cs),
        ["client_id", "client_secret", "refresh_token"]
    );
    assert_keys(
        "source",
        cs,
        &[
            key("client_id", "string"),
            secret("client_secret"),
            secret("refresh_token"),
            key("is_sandbox", "boolean").default(json!(false)),
            key("auth_type", "string"),
            key("start_date", "string"),
            key("end_date", "string"),
            key("force_use_bulk_api", "boolean").default(json!(false)),
            key("stream_slice_step", "string").default(json!("P30D")),
            key("lookback_window", "string").default(json!("PT10M")),
            key("streams_criteria", "array"),
            key("preserve_na_values", "boolean").default(json!(false)),
            // Ours.
            key("login_url", "string"),
            key("api_version", "string").default(json!("62.0")),
            key("num_workers", "integer"),
            key("api_budget_percent", "integer").default(json!(90)),
            key("formula_refresh_schedule", "string"),
        ],
    );
    let p = props(cs);
    assert_eq!(p["auth_type"]["const"], "Client");
    assert_eq!(p["start_date"]["pattern"], DATE_PATTERN);
    assert_eq!(p["end_date"]["pattern"], format!("^$|{DATE_PATTERN}"));
    let criteria = &p["streams_criteria"]["items"];
    assert_eq!(required(criteria), ["criteria", "value"]);
    assert_eq!(
        criteria["properties"]["criteria"]["enum"],
        json!([
            "starts with",
            "ends with",
            "contains",
            "exacts",
            "starts not with",
            "ends not with",
            "not contains",
            "not exacts"
        ])
    );
    assert_eq!(criteria["properties"]["criteria"]["default"], "contains");
    // Within Salesforce's concurrent long-running request limit, capped where Airbyte caps it.
    let workers = &p["num_workers"];
    assert!(
        workers["default"]
            .as_i64()
            .is_some_and(|d| (1..=25).contains(&d)),
        "{workers}"
    );
    assert_eq!(workers["maximum"], 50);
    assert!(spec["documentationUrl"].is_string());
    assert_advanced_auth(spec);
}

fn check_destination_spec(spec: &Value) {
    let cs = &spec["connectionSpecification"];
    for k in ["client_id", "client_secret", "refresh_token"] {
        assert!(required(cs).contains(&k), "destination: `{k}` not required");
    }
    assert_keys(
        "destination",
        cs,
        &[
            key("client_id", "string"),
            secret("client_secret"),
            secret("refresh_token"),
            key("is_sandbox", "boolean").default(json!(false)),
            key("auth_type", "string"),
            key("object_storage_config", "object"),
            // Ours.
            key("login_url", "string"),
            key("api_version", "string").default(json!("62.0")),
            key("batch_max_bytes", "integer").default(json!(100_000_000)),
            key("batch_max_rows", "integer"),
            key("batch_max_seconds", "integer"),
            key("job_concurrency", "integer"),
            key("allow_hard_delete", "boolean").default(json!(false)),
        ],
    );
    let p = props(cs);
    assert_eq!(p["auth_type"]["const"], "Client");
    assert_eq!(p["batch_max_bytes"]["maximum"], 100_000_000);

    let options = p["object_storage_config"]["oneOf"]
        .as_array()
        .expect("object_storage_config.oneOf");
    let by_type = |t: &str| {
        options
            .iter()
            .find(|o| o["properties"]["storage_type"]["enum"] == json!([t]))
            .unwrap_or_else(|| panic!("no object_storage_config option with storage_type {t}"))
    };
    by_type("None");
    let s3 = by_type("S3");
    assert_keys(
        "destination S3 storage",
        s3,
        &[
            secret("access_key_id"),
            secret("secret_access_key"),
            key("role_arn", "string"),
            key("s3_bucket_name", "string"),
            key("s3_bucket_region", "string").default(json!("")),
            key("s3_endpoint", "string"),
            key("bucket_path", "string"),
            key("format", "object"),
        ],
    );
    let formats: Vec<&Value> = s3["properties"]["format"]["oneOf"]
        .as_array()
        .expect("S3 format oneOf")
        .iter()
        .map(|o| &o["properties"]["format_type"]["enum"][0])
        .collect();
    assert_eq!(formats, [&json!("CSV"), &json!("JSONL")]);
    let local = by_type("Local");
    assert_keys(
        "destination local storage",
        local,
        &[key("directory", "string"), key("format", "object")],
    );
    assert_eq!(
        spec["supported_destination_sync_modes"],
        json!(["append", "append_dedup", "update", "soft_delete"])
    );
    assert!(spec["documentationUrl"].is_string());
    assert_advanced_auth(spec);
}

// ---- generic spec rules (Airbyte's acceptance-test checklist) --------------------------------

const FORBIDDEN_KEYWORDS: [&str; 6] = ["allOf", "anyOf", "not", "if", "then", "else"];
const SECRET_HINTS: [&str; 5] = ["secret", "password", "token", "access_key", "api_key"];

/// Every rule violation in a connectionSpecification; empty when it is fine.
fn rule_problems(cs: &Value) -> Vec<String> {
    let mut out = Vec::new();
    if cs["type"] != "object" {
        out.push("connectionSpecification: top-level type must be object".into());
    }
    walk_schema(cs, "connectionSpecification", &mut out);
    out
}

fn walk_schema(schema: &Value, path: &str, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        out.push(format!("{path}: schema is not an object"));
        return;
    };
    for kw in FORBIDDEN_KEYWORDS {
        if obj.contains_key(kw) {
            out.push(format!("{path}: keyword `{kw}` is not allowed in a spec"));
        }
    }
    match obj.get("additionalProperties") {
        None | Some(Value::Bool(true)) => {}
        Some(other) => out.push(format!(
            "{path}: additionalProperties must be true, not {other}"
        )),
    }
    if let Some(d) = obj.get("default") {
        check_default(obj, d, path, out);
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, p) in props {
            let child = format!("{path}.{name}");
            let lower = name.to_ascii_lowercase();
            let is_secret = p.get("airbyte_secret") == Some(&Value::Bool(true));
            if SECRET_HINTS.iter().any(|h| lower.contains(h)) && !is_secret {
                out.push(format!(
                    "{child}: looks secret but has no airbyte_secret: true"
                ));
            }
            walk_schema(p, &child, out);
        }
    }
    if let Some(items) = obj.get("items") {
        walk_schema(items, &format!("{path}[]"), out);
    }
    if let Some(options) = obj.get("oneOf") {
        check_one_of(options, path, out);
    }
}

/// A default must satisfy its own schema's type, enum and bounds.
fn check_default(obj: &Map<String, Value>, d: &Value, path: &str, out: &mut Vec<String>) {
    let type_ok = match obj.get("type").and_then(Value::as_str) {
        Some("string") => d.is_string(),
        Some("boolean") => d.is_boolean(),
        Some("integer") => d.is_i64() || d.is_u64(),
        Some("number") => d.is_number(),
        Some("object") => d.is_object(),
        Some("array") => d.is_array(),
        _ => true,
    };
    if !type_ok {
        out.push(format!(
            "{path}: default {d} does not match type {}",
            obj["type"]
        ));
    }
    if let Some(options) = obj.get("enum").and_then(Value::as_array)
        && !options.contains(d)
    {
        out.push(format!("{path}: default {d} is not one of the enum values"));
    }
    if let Some(n) = d.as_f64() {
        if obj
            .get("minimum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n < m)
        {
            out.push(format!("{path}: default {d} is below minimum"));
        }
        if obj
            .get("maximum")
            .and_then(Value::as_f64)
            .is_some_and(|m| n > m)
        {
            out.push(format!("{path}: default {d} is above maximum"));
        }
    }
}

/// oneOf: the parent is an object; every option is an object schema; one property name is a
/// required single-value discriminator (`const` or one-element `enum`) in every option, with a
/// different value per option.
fn check_one_of(options: &Value, path: &str, out: &mut Vec<String>) {
    let Some(options) = options.as_array().filter(|a| !a.is_empty()) else {
        out.push(format!("{path}: oneOf must be a non-empty array"));
        return;
    };
    let discriminators = |o: &Value| -> Vec<(String, Value)> {
        let req = required(o);
        o["properties"]
            .as_object()
            .map(|props| {
                props
                    .iter()
                    .filter(|(name, _)| req.contains(&name.as_str()))
                    .filter_map(|(name, p)| {
                        let single = p.get("const").cloned().or_else(|| {
                            p.get("enum")
                                .and_then(Value::as_array)
                                .filter(|e| e.len() == 1)
                                .map(|e| e[0].clone())
                        });
                        single.map(|v| (name.clone(), v))
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut common: Option<Vec<String>> = None;
    for (i, o) in options.iter().enumerate() {
        let child = format!("{path}.oneOf[{i}]");
        if o["type"] != "object" || !o["properties"].is_object() {
            out.push(format!(
                "{child}: every oneOf option must be an object with properties"
            ));
        }
        let names: Vec<String> = discriminators(o).into_iter().map(|(n, _)| n).collect();
        common = Some(match common {
            None => names,
            Some(c) => c.into_iter().filter(|n| names.contains(n)).collect(),
        });
        walk_schema(o, &child, out);
    }
    let common = common.unwrap_or_default();
    let Some(disc) = common.first() else {
        out.push(format!(
            "{path}: oneOf options share no required const/single-enum discriminator property"
        ));
        return;
    };
    let mut values: Vec<Value> = options
        .iter()
        .flat_map(|o| discriminators(o).into_iter().filter(|(n, _)| n == disc))
        .map(|(_, v)| v)
        .collect();
    let n = values.len();
    values.sort_by_key(Value::to_string);
    values.dedup();
    if values.len() != n {
        out.push(format!(
            "{path}: oneOf discriminator `{disc}` repeats a value"
        ));
    }
}

fn assert_rules(name: &str, spec: &Value) {
    let found = rule_problems(&spec["connectionSpecification"]);
    assert!(found.is_empty(), "{name}:\n  {}", found.join("\n  "));
}

// ---- the spec files --------------------------------------------------------------------------

#[test]
fn source_spec_file_keeps_airbyte_keys() {
    let spec = spec_file("source-salesforce");
    check_source_spec(&spec);
    assert_rules("schemas/source-salesforce.spec.json", &spec);
}

#[test]
fn destination_spec_file_keeps_airbyte_keys() {
    let spec = spec_file("destination-salesforce");
    check_destination_spec(&spec);
    assert_rules("schemas/destination-salesforce.spec.json", &spec);
}

// ---- the binaries ----------------------------------------------------------------------------

#[test]
fn source_prints_its_spec() {
    let spec = printed_spec("source-salesforce");
    assert_eq!(
        spec,
        spec_file("source-salesforce"),
        "printed spec differs from schemas/"
    );
    check_source_spec(&spec);
    assert_rules("source-salesforce spec", &spec);
}

#[test]
fn destination_prints_its_spec() {
    let spec = printed_spec("destination-salesforce");
    assert_eq!(
        spec,
        spec_file("destination-salesforce"),
        "printed spec differs from schemas/"
    );
    check_destination_spec(&spec);
    assert_rules("destination-salesforce spec", &spec);
}

// ---- the rule checker itself -----------------------------------------------------------------

fn option(tag: &str) -> Value {
    json!({"type": "object", "required": ["kind"],
           "properties": {"kind": {"type": "string", "enum": [tag]}}})
}

#[test]
fn rules_accept_a_well_formed_spec() {
    let cs = json!({"type": "object", "additionalProperties": true, "properties": {
        "api_key": {"type": "string", "airbyte_secret": true},
        "n": {"type": "integer", "minimum": 1, "maximum": 5, "default": 3},
        "mode": {"type": "object", "oneOf": [option("a"), option("b")]}
    }});
    assert_eq!(rule_problems(&cs), Vec::<String>::new());
}

#[test]
fn rules_flag_each_violation() {
    let cases = [
        (
            json!({"additionalProperties": false}),
            "additionalProperties must be true",
        ),
        (json!({"anyOf": []}), "`anyOf`"),
        (json!({"allOf": []}), "`allOf`"),
        (json!({"if": {}}), "`if`"),
        (
            json!({"type": "integer", "default": "3"}),
            "does not match type",
        ),
        (
            json!({"type": "integer", "maximum": 2, "default": 3}),
            "above maximum",
        ),
        (
            json!({"type": "string", "enum": ["a"], "default": "b"}),
            "not one of the enum",
        ),
        (
            json!({"oneOf": [option("a"), option("a")]}),
            "repeats a value",
        ),
        (
            json!({"oneOf": [option("a"), {"type": "object", "properties": {}}]}),
            "no required const/single-enum discriminator",
        ),
        (
            json!({"oneOf": [option("a"), {"type": "string"}]}),
            "must be an object",
        ),
    ];
    for (prop, needle) in cases {
        let cs = json!({"type": "object", "properties": {"x": prop}});
        let found = rule_problems(&cs).join("\n");
        assert!(
            found.contains(needle),
            "{prop}: expected {needle:?}, got:\n{found}"
        );
    }
    let unmarked = json!({"type": "object", "properties": {"refresh_token": {"type": "string"}}});
    assert!(rule_problems(&unmarked)[0].contains("looks secret"));
    let top = json!({"type": "array"});
    assert!(rule_problems(&top)[0].contains("top-level type must be object"));
}
