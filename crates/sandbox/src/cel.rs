//! `x-kubernetes-validations`: the CEL rules of a CRD's schema, evaluated on a custom
//! resource as kube-apiserver does after pruning and defaulting.
//!
//! The expressions are run by the `cel` crate with its standard library and the one
//! Kubernetes list function serin's CRDs use (`isSorted()`). A rule the crate cannot
//! compile or run (another Kubernetes library function, a transition rule on `oldSelf`)
//! is not enforced: the sandbox answers as if it held, where kube-apiserver evaluates it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use cel::extractors::This;
use cel::objects::Key;
use cel::{Context, Env, ExecutionError, Program, Value as Cel};
use serde_json::Value;

use crate::error::FieldError;

/// Compiled rules, by their text; `None` for a rule the sandbox does not enforce.
type Cache = Mutex<HashMap<String, Option<Arc<Program>>>>;

fn env() -> &'static Arc<Env> {
    static ENV: OnceLock<Arc<Env>> = OnceLock::new();
    ENV.get_or_init(|| Arc::new(Env::stdlib()))
}

fn compiled(rule: &str) -> Option<Arc<Program>> {
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = cache.get(rule) {
        return p.clone();
    }
    let program = env()
        .compile(rule)
        .ok()
        .filter(|p| !p.references().has_variable("oldSelf"))
        .map(Arc::new);
    // A CRD's rules are few; bound the cache anyway against a client that keeps
    // creating CRDs with new rules.
    if cache.len() >= 4096 {
        cache.clear();
    }
    cache.insert(rule.to_string(), program.clone());
    program
}

/// Kubernetes' `list.isSorted()`: true when every element is at most the next one.
fn is_sorted(This(list): This<Arc<Vec<Cel>>>) -> Result<bool, ExecutionError> {
    for pair in list.windows(2) {
        match pair[0].partial_cmp(&pair[1]) {
            Some(std::cmp::Ordering::Greater) => return Ok(false),
            Some(_) => {}
            None => {
                return Err(ExecutionError::function_error(
                    "isSorted",
                    "elements are not comparable",
                ));
            }
        }
    }
    Ok(true)
}

/// What a rule's expression gave.
enum Verdict {
    Holds,
    Fails,
    /// Not enforced here (see the module's note).
    Skipped,
}

fn run(program: &Program, this: &Cel) -> Result<Cel, ExecutionError> {
    let mut ctx = Context::with_env(Arc::clone(env()));
    ctx.add_function("isSorted", is_sorted)
        .map_err(|e| ExecutionError::function_error("isSorted", format!("{e:?}")))?;
    ctx.add_variable_from_value("self", this.clone());
    program.execute(&ctx)
}

fn verdict(rule: &str, this: &Cel) -> Verdict {
    let Some(program) = compiled(rule) else {
        return Verdict::Skipped;
    };
    match run(&program, this) {
        Ok(Cel::Bool(true)) => Verdict::Holds,
        Ok(Cel::Bool(false)) => Verdict::Fails,
        _ => Verdict::Skipped,
    }
}

fn message_of(rule: &Value, this: &Cel) -> String {
    if let Some(expr) = rule.get("messageExpression").and_then(Value::as_str)
        && let Some(program) = compiled(expr)
        && let Ok(Cel::String(s)) = run(&program, this)
        && !s.trim().is_empty()
    {
        return s.to_string();
    }
    match rule.get("message").and_then(Value::as_str) {
        Some(m) if !m.is_empty() => m.to_string(),
        _ => format!(
            "failed rule: {}",
            rule.get("rule").and_then(Value::as_str).unwrap_or_default()
        ),
    }
}

/// The field path a rule's `fieldPath` (`.stepWeight`, `.spec['x']`) names under `path`.
fn rule_path(path: &str, field_path: Option<&str>) -> String {
    let Some(fp) = field_path.filter(|f| !f.is_empty()) else {
        return path.to_string();
    };
    let fp = fp.strip_prefix('.').unwrap_or(fp);
    if path.is_empty() {
        fp.to_string()
    } else if fp.starts_with('[') {
        format!("{path}{fp}")
    } else {
        format!("{path}.{fp}")
    }
}

/// The OpenAPI type name kube-apiserver prints as the rule's "value".
fn schema_type(s: &Value) -> &str {
    s.get("type").and_then(Value::as_str).unwrap_or("object")
}

/// A JSON value as CEL sees it under schema `s`: `number` fields are doubles even
/// when written as integers, objects are maps of their present fields.
fn to_cel(s: Option<&Value>, v: &Value) -> Cel {
    let ty = s.and_then(|s| s.get("type")).and_then(Value::as_str);
    match v {
        Value::Null => Cel::Null,
        Value::Bool(b) => Cel::Bool(*b),
        Value::Number(n) => match (ty, n.as_i64()) {
            (Some("number"), _) | (_, None) => Cel::Float(n.as_f64().unwrap_or(f64::NAN)),
            (_, Some(i)) => Cel::Int(i),
        },
        Value::String(x) => Cel::String(Arc::new(x.clone())),
        Value::Array(items) => {
            let is = s.and_then(|s| s.get("items"));
            Cel::List(Arc::new(items.iter().map(|i| to_cel(is, i)).collect()))
        }
        Value::Object(m) => {
            let props = s.and_then(|s| s.get("properties"));
            let additional = s
                .and_then(|s| s.get("additionalProperties"))
                .filter(|a| a.is_object());
            // As kube-apiserver: a null field of an object with properties is absent
            // (`has()` is false), so rules need no null checks.
            let map: HashMap<Key, Cel> = m
                .iter()
                .filter(|(_, x)| !(props.is_some() && x.is_null()))
                .map(|(k, x)| {
                    let cs = props.and_then(|p| p.get(k)).or(additional);
                    (Key::String(Arc::new(k.clone())), to_cel(cs, x))
                })
                .collect();
            Cel::from(map)
        }
    }
}

fn reason_of(rule: &Value) -> &'static str {
    match rule.get("reason").and_then(Value::as_str) {
        Some("FieldValueForbidden") => "FieldValueForbidden",
        Some("FieldValueRequired") => "FieldValueRequired",
        Some("FieldValueDuplicate") => "FieldValueDuplicate",
        _ => "FieldValueInvalid",
    }
}

/// Evaluates the rules of `s` on `v` (at `path`), then those below it, as kube-apiserver
/// does: a node's rules first, then its children's.
pub fn validate(s: &Value, v: &Value, path: &str, errors: &mut Vec<FieldError>) {
    if v.is_null() {
        return;
    }
    if let Some(rules) = s.get("x-kubernetes-validations").and_then(Value::as_array) {
        let this = to_cel(Some(s), v);
        for rule in rules {
            let Some(text) = rule.get("rule").and_then(Value::as_str) else {
                continue;
            };
            if let Verdict::Fails = verdict(text, &this) {
                let field = rule_path(path, rule.get("fieldPath").and_then(Value::as_str));
                let message = message_of(rule, &this);
                // kube-apiserver leaves the value of an object or a list out of the error.
                let value = (!matches!(schema_type(s), "object" | "array")).then_some(v);
                errors.push(match reason_of(rule) {
                    "FieldValueForbidden" => FieldError::forbidden(field, &message),
                    "FieldValueRequired" => FieldError::required_detail(field, &message),
                    "FieldValueDuplicate" => FieldError::duplicate(field, value, ""),
                    _ => FieldError::invalid_omitting(field, value, &message),
                });
            }
        }
    }
    match v {
        Value::Object(m) => {
            let props = s.get("properties").and_then(Value::as_object);
            let additional = s.get("additionalProperties").filter(|a| a.is_object());
            for (k, cv) in m {
                if path.is_empty() && matches!(k.as_str(), "apiVersion" | "kind" | "metadata") {
                    continue;
                }
                if let Some(cs) = props.and_then(|p| p.get(k)).or(additional) {
                    let child = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    validate(cs, cv, &child, errors);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.get("items") {
                for (i, item) in items.iter().enumerate() {
                    validate(is, item, &format!("{path}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

/// Whether the schema has any CEL rule (so the pass can be skipped for the many CRDs
/// without one).
pub fn has_rules(s: &Value) -> bool {
    match s {
        Value::Object(m) => m.contains_key("x-kubernetes-validations") || m.values().any(has_rules),
        Value::Array(a) => a.iter().any(has_rules),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn errors(schema: Value, v: Value) -> Vec<String> {
        let mut out = Vec::new();
        validate(&schema, &v, "spec", &mut out);
        out.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn rules_hold_fail_or_are_skipped() {
        let schema = json!({"type": "object",
        "x-kubernetes-validations": [
            {"rule": "!has(self.a) || !has(self.b) || self.a <= self.b",
             "message": "a must not be above b", "fieldPath": ".a"},
            {"rule": "self.unknownFunction()"},
            {"rule": "self.a == oldSelf.a"}
        ],
        "properties": {
            "a": {"type": "number"}, "b": {"type": "number"},
            "list": {"type": "array", "items": {"type": "integer"},
                "x-kubernetes-validations": [{"rule": "self.isSorted()"}]}
        }});
        assert!(errors(schema.clone(), json!({"a": 1, "b": 2.5, "list": [1, 2, 2]})).is_empty());
        assert_eq!(
            errors(schema, json!({"a": 3, "b": 2, "list": [2, 1]})),
            [
                "spec.a: Invalid value: a must not be above b",
                "spec.list: Invalid value: failed rule: self.isSorted()"
            ]
        );
    }
}
