//! The published JSON Schemas (docs/schema/<type>.json, shared definitions in defs.json),
//! checked against records the inspector emits: every JSON line a test reads is validated
//! against the schema its `"type"` names.
use std::{
    collections::HashMap,
    path::PathBuf,
    sync::{Mutex, OnceLock},
};

use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/schema")
}

/// Serves `https://inspector.invalid/schema/NAME.json` from docs/schema/NAME.json.
struct Files;

impl jsonschema::Retrieve for Files {
    fn retrieve(
        &self,
        uri: &jsonschema::Uri<String>,
    ) -> Result<Value, Box<dyn std::error::Error + Send + Sync>> {
        let name = uri.as_str().rsplit('/').next().unwrap_or_default();
        let text = std::fs::read_to_string(dir().join(name))?;
        Ok(serde_json::from_str(&text)?)
    }
}

fn validator(kind: &str) -> std::sync::Arc<jsonschema::Validator> {
    static CACHE: OnceLock<Mutex<HashMap<String, std::sync::Arc<jsonschema::Validator>>>> =
        OnceLock::new();
    let cache = CACHE.get_or_init(Mutex::default);
    if let Some(v) = cache.lock().expect("lock").get(kind) {
        return std::sync::Arc::clone(v);
    }
    let path = dir().join(format!("{kind}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "record type '{kind}' has no published schema ({}): {e}",
            path.display()
        )
    });
    let schema: Value = serde_json::from_str(&text).expect("schema is JSON");
    let v = std::sync::Arc::new(
        jsonschema::options()
            .with_retriever(Files)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("schema {kind}: {e}")),
    );
    cache
        .lock()
        .expect("lock")
        .insert(kind.to_owned(), std::sync::Arc::clone(&v));
    v
}

/// Panics, naming every problem, unless `record` matches the schema of its `"type"`.
pub fn check(record: &Value) {
    let kind = record["type"]
        .as_str()
        .unwrap_or_else(|| panic!("a JSON record without \"type\": {record}"));
    let v = validator(kind);
    let errors: Vec<String> = v
        .iter_errors(record)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "a '{kind}' record does not match docs/schema/{kind}.json:\n{}\n{record}",
        errors.join("\n")
    );
}
