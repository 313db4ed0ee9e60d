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

/// A Go duration as `time.ParseDuration` reads it (`30s`, `1m`, `1h30m`, `500ms`, `1.5s`,
/// a bare `0`): the CRD's `pattern` for intervals and timeouts, so that `kubectl apply`
/// refuses `interval: abc` naming the field. (Flagger's own CRD has `^[0-9]+(m|s)`, which
/// refuses `1h` and accepts `30sec`.)
pub const DURATION_PATTERN: &str =
    r"^(0|\+?(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h))+)$";

/// The most entries `stepWeights` may have: weights are 0-100 and must increase, so a
/// longer list cannot be valid; the bound also lets the API server estimate the cost of
/// the list's CEL rule.
pub const MAX_STEP_WEIGHTS: u32 = 101;

/// CEL rule on `analysis`: a step never above the weight the canary may reach.
pub const STEP_WEIGHT_RULE: &str =
    "!has(self.stepWeight) || !has(self.maxWeight) || self.stepWeight <= self.maxWeight";
pub const STEP_WEIGHT_MESSAGE: &str = "stepWeight must not be above maxWeight";

/// CEL rule on `analysis.stepWeights`: every weight above the one before (sorted, and
/// each weight once).
pub const STEP_WEIGHTS_RULE: &str = "self.isSorted() && self.all(w, self.exists_one(x, x == w))";
pub const STEP_WEIGHTS_MESSAGE: &str =
    "stepWeights must increase: each weight above the one before";

/// CEL rule on a metric's `thresholdRange`.
pub const THRESHOLD_RANGE_RULE: &str = "!has(self.min) || !has(self.max) || self.min <= self.max";
pub const THRESHOLD_RANGE_MESSAGE: &str = "min must not be above max";
