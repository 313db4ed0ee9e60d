//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch and
//! server-side apply (create-or-merge).
//!
//! Strategic merge knows the keyed lists of the built-in workload and service types
//! (containers, env, ports, volumes, ...) by field name; other lists are replaced, as
//! for a merge patch. That covers what `kubectl set image`, `kubectl set env`,
//! `kubectl scale` and client-side `kubectl apply` send.

use serde_json::{Map, Value};

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchKind {
    Json,
    Merge,
    Strategic,
    Apply,
}

impl PatchKind {
    pub fn from_content_type(ct: &str) -> Option<Self> {
        let base = ct.split(';').next().unwrap_or_default().trim();
        match base {
            "application/json-patch+json" => Some(Self::Json),
            "application/merge-patch+json" => Some(Self::Merge),
            "application/strategic-merge-patch+json" => Some(Self::Strategic),
            "application/apply-patch+yaml" | "application/apply-patch+json" => Some(Self::Apply),
            _ => None,
        }
    }
}

pub fn apply_patch(kind: PatchKind, target: &Value, patch: &Value) -> ApiResult<Value> {
    match kind {
        PatchKind::Json => {
            let p: json_patch::Patch = serde_json::from_value(patch.clone())
                .map_err(|e| ApiError::bad_request(format!("invalid JSON patch: {e}")))?;
            let mut doc = target.clone();
            json_patch::patch(&mut doc, &p).map_err(|e| {
                ApiError::new(
                    422,
                    "Invalid",
                    format!("the JSON patch could not be applied: {e}"),
                )
            })?;
            Ok(doc)
        }
        PatchKind::Merge => {
            if !patch.is_object() {
                return Err(ApiError::bad_request("a merge patch must be a JSON object"));
            }
            let mut doc = target.clone();
            json_patch::merge(&mut doc, patch);
            Ok(doc)
        }
        PatchKind::Strategic | PatchKind::Apply => {
            if !patch.is_object() {
                return Err(ApiError::bad_request(
                    "a strategic merge patch must be a JSON object",
                ));
            }
            Ok(strategic_merge(target, patch, kind == PatchKind::Apply))
        }
    }
}

/// Merge key of a keyed list, by field name and the shape of its items.
fn merge_key(field: &str, items: &[Value]) -> Option<&'static str> {
    let has = |k: &str| items.iter().any(|i| i.get(k).is_some());
    Some(match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims"
        | "schedulingGates" => "name",
        "volumeMounts" => "mountPath",
        "volumeDevices" => "devicePath",
        "hostAliases" => "ip",
        "topologySpreadConstraints" => "topologyKey",
        "ownerReferences" => "uid",
        "conditions" => "type",
        "ports" if has("containerPort") => "containerPort",
        "ports" if has("port") => "port",
        _ => return None,
    })
}

pub fn strategic_merge(target: &Value, patch: &Value, apply: bool) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => Value::Object(merge_maps(t, p, apply)),
        _ => strip_directives(patch),
    }
}

fn merge_maps(t: &Map<String, Value>, p: &Map<String, Value>, apply: bool) -> Map<String, Value> {
    if p.get("$patch").and_then(Value::as_str) == Some("replace") {
        return strip_map(p);
    }
    let mut out = t.clone();
    for (k, pv) in p {
        if k == "$patch" || k == "$retainKeys" || k.starts_with("$setElementOrder/") {
            continue;
        }
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            if let (Some(Value::Array(list)), Value::Array(del)) = (out.get_mut(field), pv) {
                list.retain(|x| !del.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            if !apply {
                out.remove(k);
            }
            continue;
        }
        let merged = match (out.get(k), pv) {
            (Some(Value::Object(tv)), Value::Object(pm)) => {
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    out.remove(k);
                    continue;
                }
                Value::Object(merge_maps(tv, pm, apply))
            }
            (Some(Value::Array(tl)), Value::Array(pl)) => merge_lists(k, tl, pl, apply),
            _ => strip_directives(pv),
        };
        out.insert(k.clone(), merged);
    }
    out
}

fn merge_lists(field: &str, tl: &[Value], pl: &[Value], apply: bool) -> Value {
    let Some(key) = merge_key(field, pl).or_else(|| merge_key(field, tl)) else {
        return Value::Array(pl.iter().map(strip_directives).collect());
    };
    if pl
        .iter()
        .any(|i| i.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Value::Array(
            pl.iter()
                .filter(|i| i.get("$patch").is_none())
                .map(strip_directives)
                .collect(),
        );
    }
    let mut out: Vec<Value> = tl.to_vec();
    for item in pl {
        let id = item.get(key);
        let pos = id.and_then(|id| out.iter().position(|o| o.get(key) == Some(id)));
        let delete = item.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => out[i] = strategic_merge(&out[i], item, apply),
            (None, false) => out.push(strip_directives(item)),
        }
    }
    Value::Array(out)
}

fn strip_map(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, v)| !k.starts_with('$') && !v.is_null())
        .map(|(k, v)| (k.clone(), strip_directives(v)))
        .collect()
}

fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(strip_map(m)),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn set_image_merges_containers_by_name() {
        let dep = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "image": "podinfo:6.0.0", "ports": [{"containerPort": 9898, "name": "http"}]},
            {"name": "sidecar", "image": "s:1"}
        ]}}}});
        let patch = json!({"spec": {"template": {"spec": {"containers": [
            {"name": "podinfod", "image": "podinfo:6.0.1"}
        ]}}}});
        let out = apply_patch(PatchKind::Strategic, &dep, &patch).unwrap();
        let c = &out["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["image"], "podinfo:6.0.1");
        assert_eq!(c[0]["ports"][0]["containerPort"], 9898);
        assert_eq!(c[1]["image"], "s:1");
    }

    #[test]
    fn env_entries_merge_and_delete() {
        let t = json!({"env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]});
        let p = json!({"env": [{"name": "B", "$patch": "delete"}, {"name": "C", "value": "3"}],
            "$setElementOrder/env": [{"name": "A"}, {"name": "C"}]});
        let out = apply_patch(PatchKind::Strategic, &t, &p).unwrap();
        assert_eq!(
            out,
            json!({"env": [{"name": "A", "value": "1"}, {"name": "C", "value": "3"}]})
        );
    }

    #[test]
    fn merge_patch_removes_nulls_and_replaces_lists() {
        let t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let out = apply_patch(PatchKind::Merge, &t, &json!({"a": {"b": null}, "l": [3]})).unwrap();
        assert_eq!(out, json!({"a": {"c": 2}, "l": [3]}));
    }

    #[test]
    fn json_patch_errors_are_422() {
        let t = json!({"a": 1});
        let err = apply_patch(
            PatchKind::Json,
            &t,
            &json!([{"op": "remove", "path": "/b"}]),
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        let out = apply_patch(
            PatchKind::Json,
            &t,
            &json!([{"op": "add", "path": "/b", "value": 2}]),
        )
        .unwrap();
        assert_eq!(out, json!({"a": 1, "b": 2}));
    }
}
