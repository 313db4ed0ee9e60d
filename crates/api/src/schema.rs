//! Schema and serde helpers shared by the CRD types.

use std::collections::BTreeMap;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

/// Fields that serin does not know, kept so that a round trip never drops them.
pub type Extra = BTreeMap<String, Value>;

/// Schema for a free-form object (Istio's trafficPolicy and the like): the API server
/// keeps it whole.
pub fn free_form_object(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true
    })
}

/// Schema for a map of strings.
pub fn string_map_schema(generator: &mut SchemaGenerator) -> Schema {
    <BTreeMap<String, String>>::json_schema(generator)
}

/// Accepts a map whose values are strings, numbers or booleans and keeps them all as
/// strings: `logCmdOutput: true` in a webhook's metadata means the same as `"true"`.
pub fn lenient_string_map<'de, D>(
    deserializer: D,
) -> Result<Option<BTreeMap<String, String>>, D::Error>
where
    D: Deserializer<'de>,
{
    let raw: Option<BTreeMap<String, Value>> = Option::deserialize(deserializer)?;
    Ok(raw.map(|m| {
        m.into_iter()
            .map(|(k, v)| {
                let s = match v {
                    Value::String(s) => s,
                    Value::Null => String::new(),
                    other => other.to_string(),
                };
                (k, s)
            })
            .collect()
    }))
}

/// Schema for a list of free-form objects.
pub fn free_form_list(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "array",
        "items": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
    })
}
