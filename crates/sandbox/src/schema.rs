//! What a real API server does with a custom resource's body against its CRD's structural
//! schema: drop `null`s of non-nullable fields, prune unknown fields (unless
//! `x-kubernetes-preserve-unknown-fields`), apply `default`s, and reject values of the wrong
//! type, outside an `enum` or the `minimum`/`maximum`, `pattern`, `maxLength`, `maxItems`
//! bounds, or missing `required` fields, and failing the `x-kubernetes-validations` CEL
//! rules, with `422 Invalid` (each error a `details.causes` entry, as kube-apiserver's).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use serde_json::{Map, Value};

use crate::error::FieldError;

/// What a pass over an object found.
#[derive(Debug, Default)]
pub struct Outcome {
    /// Validation errors, in the order kube-apiserver finds them.
    pub errors: Vec<FieldError>,
    /// Paths of the unknown fields that were pruned.
    pub pruned: Vec<String>,
}

/// Prunes, defaults and validates `obj` (a whole custom resource) in place.
pub fn apply(schema: &Value, obj: &mut Value) -> Outcome {
    let mut out = Outcome::default();
    let Some(m) = obj.as_object_mut() else {
        out.errors
            .push(FieldError::invalid("<root>", obj, "must be an object"));
        return out;
    };
    let errors = &mut out.errors;
    let pruned = &mut out.pruned;
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = preserves(schema);
    let keys: Vec<String> = m.keys().cloned().collect();
    for k in keys {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
            continue;
        }
        match props.and_then(|p| p.get(&k)) {
            Some(s) => {
                if let Some(v) = m.get_mut(&k) {
                    walk(s, v, &k, errors, pruned);
                }
                if m.get(&k).is_some_and(Value::is_null) && !nullable(s) {
                    m.remove(&k);
                }
            }
            None if preserve => {}
            None => {
                m.remove(&k);
                pruned.push(k);
            }
        }
    }
    apply_defaults(schema, m, "", errors, pruned);
    // As kube-apiserver: the CEL rules run on the pruned and defaulted object, unless a
    // wrong type, an unsupported value, a missing field or a too long string or list
    // already made it invalid.
    if crate::cel::has_rules(schema) {
        let blocking = [
            "FieldValueTypeInvalid",
            "FieldValueNotSupported",
            "FieldValueRequired",
            "FieldValueTooLong",
            "FieldValueTooMany",
        ];
        if errors.iter().any(|e| blocking.contains(&e.reason)) {
            errors.push(FieldError::invalid(
                "<nil>",
                &Value::Null,
                "some validation rules were not checked because the object was invalid; \
                 correct the existing errors to complete validation",
            ));
        } else {
            crate::cel::validate(schema, obj, "", errors);
        }
    }
    out
}

fn preserves(s: &Value) -> bool {
    s.get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true)
}

fn nullable(s: &Value) -> bool {
    s.get("nullable").and_then(Value::as_bool) == Some(true)
}

fn join(path: &str, k: &str) -> String {
    if path.is_empty() {
        k.to_string()
    } else {
        format!("{path}.{k}")
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn apply_defaults(
    s: &Value,
    m: &mut Map<String, Value>,
    path: &str,
    errors: &mut Vec<FieldError>,
    pruned: &mut Vec<String>,
) {
    let Some(props) = s.get("properties").and_then(Value::as_object) else {
        return;
    };
    for (k, ps) in props {
        if matches!(k.as_str(), "apiVersion" | "kind" | "metadata") && path.is_empty() {
            continue;
        }
        if m.get(k).is_none()
            && let Some(d) = ps.get("default")
        {
            let mut d = d.clone();
            walk(ps, &mut d, &join(path, k), errors, pruned);
            m.insert(k.clone(), d);
        }
    }
    if let Some(req) = s.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if !m.contains_key(r) {
                errors.push(FieldError::required(join(path, r)));
            }
        }
    }
}

fn walk(
    s: &Value,
    v: &mut Value,
    path: &str,
    errors: &mut Vec<FieldError>,
    pruned: &mut Vec<String>,
) {
    if v.is_null() {
        return;
    }
    let int_or_string = s.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    if let Some(t) = s.get("type").and_then(Value::as_str) {
        let got = type_name(v);
        let ok = got == t
            || (t == "number" && got == "integer")
            || (int_or_string && matches!(got, "integer" | "string"));
        if !ok {
            errors.push(FieldError::type_invalid(
                path,
                &Value::from(got),
                &format!("{path} in body must be of type {t}: \"{got}\""),
            ));
            return;
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        errors.push(FieldError::not_supported(path, v, e));
    }
    check_bounds(s, v, path, errors);
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties");
            let preserve = preserves(s);
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let child = props.and_then(|p| p.get(&k)).or(match additional {
                    Some(a) if a.is_object() => Some(a),
                    _ => None,
                });
                match child {
                    Some(cs) => {
                        if let Some(cv) = m.get_mut(&k) {
                            walk(cs, cv, &join(path, &k), errors, pruned);
                        }
                        if m.get(&k).is_some_and(Value::is_null) && !nullable(cs) {
                            m.remove(&k);
                        }
                    }
                    None if preserve || additional == Some(&Value::Bool(true)) => {}
                    None if s
                        .get("x-kubernetes-embedded-resource")
                        .and_then(Value::as_bool)
                        == Some(true)
                        && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") => {}
                    None => {
                        m.remove(&k);
                        pruned.push(join(path, &k));
                    }
                }
            }
            apply_defaults(s, m, path, errors, pruned);
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(is, item, &format!("{path}[{i}]"), errors, pruned);
                }
            }
        }
        _ => {}
    }
}

/// The `default`s of a CRD's schema that break their own schema (kube-apiserver refuses
/// such a CRD: `...properties[port].default: Invalid value: 0:  in body should be greater
/// than or equal to 1`). `path` names the schema, e.g. `spec.validation.openAPIV3Schema`.
pub fn bad_defaults(schema: &Value, path: &str) -> Vec<FieldError> {
    let mut out = Vec::new();
    let Some(m) = schema.as_object() else {
        return out;
    };
    if let Some(d) = m.get("default") {
        let mut d = d.clone();
        let mut errors = Vec::new();
        walk(schema, &mut d, "", &mut errors, &mut Vec::new());
        for e in errors {
            out.push(FieldError {
                field: format!("{path}.default"),
                ..e
            });
        }
    }
    if let Some(props) = m.get("properties").and_then(Value::as_object) {
        for (k, ps) in props {
            out.extend(bad_defaults(ps, &format!("{path}.properties[{k}]")));
        }
    }
    for key in ["items", "additionalProperties"] {
        if let Some(sub) = m.get(key).filter(|x| x.is_object()) {
            out.extend(bad_defaults(sub, &format!("{path}.{key}")));
        }
    }
    out
}

fn num(s: &Value, key: &str) -> Option<f64> {
    s.get(key).and_then(Value::as_f64)
}

fn flag(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool) == Some(true)
}

/// A number as kube-openapi prints a bound: `100`, not `100.0`.
fn show_bound(b: f64) -> String {
    if b.fract() == 0.0 && b.abs() < 1e15 {
        format!("{}", b as i64)
    } else {
        b.to_string()
    }
}

/// A schema's `pattern`, compiled once per process.
fn pattern_matches(pattern: &str, text: &str) -> Option<bool> {
    static CACHE: OnceLock<Mutex<HashMap<String, Option<regex::Regex>>>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    if cache.len() >= 4096 {
        cache.clear();
    }
    cache
        .entry(pattern.to_string())
        .or_insert_with(|| regex::Regex::new(pattern).ok())
        .as_ref()
        .map(|re| re.is_match(text))
}

/// `minimum`/`maximum` (and their exclusive forms), `pattern`, `minLength`/`maxLength`,
/// `minItems`/`maxItems`, `minProperties`/`maxProperties`, with kube-apiserver's words.
fn check_bounds(s: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    match v {
        Value::Number(n) => {
            let x = n.as_f64().unwrap_or(f64::NAN);
            if let Some(max) = num(s, "maximum") {
                let exclusive = flag(s, "exclusiveMaximum");
                if x > max || (exclusive && x == max) {
                    let words = if exclusive {
                        "less than"
                    } else {
                        "less than or equal to"
                    };
                    errors.push(FieldError::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {words} {}", show_bound(max)),
                    ));
                }
            }
            if let Some(min) = num(s, "minimum") {
                let exclusive = flag(s, "exclusiveMinimum");
                if x < min || (exclusive && x == min) {
                    let words = if exclusive {
                        "greater than"
                    } else {
                        "greater than or equal to"
                    };
                    errors.push(FieldError::invalid(
                        path,
                        v,
                        &format!("{path} in body should be {words} {}", show_bound(min)),
                    ));
                }
            }
        }
        Value::String(text) => {
            let len = text.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
                && len > max
            {
                errors.push(FieldError::too_long(path, max));
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64)
                && len < min
            {
                errors.push(FieldError::invalid(
                    path,
                    v,
                    &format!("{path} in body should be at least {min} chars long"),
                ));
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str)
                && pattern_matches(p, text) == Some(false)
            {
                errors.push(FieldError::invalid(
                    path,
                    v,
                    &format!("{path} in body should match '{p}'"),
                ));
            }
        }
        Value::Array(items) => {
            if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                errors.push(FieldError::too_many(path, items.len(), max));
            }
            if let Some(min) = s.get("minItems").and_then(Value::as_u64)
                && (items.len() as u64) < min
            {
                errors.push(FieldError::invalid(
                    path,
                    &Value::from(items.len()),
                    &format!("{path} in body should have at least {min} items"),
                ));
            }
        }
        Value::Object(m) => {
            if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
                && m.len() as u64 > max
            {
                errors.push(FieldError::too_many(path, m.len(), max));
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prunes_defaults_and_validates() {
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "required": ["targetRef"], "properties": {
                "targetRef": {"type": "object", "properties": {"name": {"type": "string"}}},
                "replicas": {"type": "integer", "default": 1},
                "note": {"type": "string", "nullable": true},
                "gone": {"type": "string"},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "port": {"x-kubernetes-int-or-string": true}
            }},
            "status": {"type": "object", "properties": {"phase": {"type": "string"}}}
        }});
        let mut obj = json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
            "spec": {"targetRef": {"name": "t", "extra": 1}, "note": null, "gone": null,
                "free": {"anything": [1]}, "unknown": true, "port": "http"}, "bogus": 1});
        let out = apply(&schema, &mut obj);
        assert!(out.errors.is_empty());
        assert_eq!(
            out.pruned,
            ["spec.targetRef.extra", "spec.unknown", "bogus"]
        );
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "X", "metadata": {"name": "n"},
            "spec": {"targetRef": {"name": "t"}, "note": null, "free": {"anything": [1]}, "port": "http", "replicas": 1}})
        );

        let mut bad = json!({"spec": {"replicas": "two", "mode": "c"}});
        let errors: Vec<String> = apply(&schema, &mut bad)
            .errors
            .iter()
            .map(ToString::to_string)
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.replicas: Invalid value: \"string\"")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("spec.mode: Unsupported value")),
            "{errors:?}"
        );
        assert!(
            errors.iter().any(|e| e == "spec.targetRef: Required value"),
            "{errors:?}"
        );
    }
}
