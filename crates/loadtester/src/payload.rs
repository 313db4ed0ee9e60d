//! The JSON body serin (and Flagger) POSTs to a webhook:
//! `{"name", "namespace", "phase", "checksum", "metadata": {string: string}}`.

use std::collections::BTreeMap;

use serde_json::Value;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WebhookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: String,
    pub checksum: String,
    pub metadata: BTreeMap<String, String>,
}

impl WebhookPayload {
    /// `name.namespace`, the key Flagger uses for a canary in logs and gates.
    pub fn canary(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PayloadError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("the body must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error("field `{0}` is missing")]
    Missing(&'static str),
    #[error("field `{field}` must be a string, got {got}")]
    NotAString { field: String, got: &'static str },
    #[error("field `{field}` must not be empty")]
    Empty { field: &'static str },
    #[error("field `metadata` must be an object of strings, got {0}")]
    MetadataNotAnObject(&'static str),
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn string_field(
    obj: &serde_json::Map<String, Value>,
    field: &'static str,
    required: bool,
) -> Result<String, PayloadError> {
    match obj.get(field) {
        None | Some(Value::Null) if required => Err(PayloadError::Missing(field)),
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => {
            if required && s.is_empty() {
                Err(PayloadError::Empty { field })
            } else {
                Ok(s.clone())
            }
        }
        Some(other) => Err(PayloadError::NotAString {
            field: field.to_string(),
            got: kind(other),
        }),
    }
}

/// Parses a webhook body. `name` and `namespace` are required (they key gates and
/// running commands); unknown fields are ignored, as Flagger does.
pub fn parse(body: &[u8]) -> Result<WebhookPayload, PayloadError> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| PayloadError::NotJson(e.to_string()))?;
    let Value::Object(obj) = value else {
        return Err(PayloadError::NotAnObject(kind(&value)));
    };
    let mut metadata = BTreeMap::new();
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                match v {
                    Value::String(s) => {
                        metadata.insert(k.clone(), s.clone());
                    }
                    other => {
                        return Err(PayloadError::NotAString {
                            field: format!("metadata.{k}"),
                            got: kind(other),
                        });
                    }
                }
            }
        }
        Some(other) => return Err(PayloadError::MetadataNotAnObject(kind(other))),
    }
    Ok(WebhookPayload {
        name: string_field(&obj, "name", true)?,
        namespace: string_field(&obj, "namespace", true)?,
        phase: string_field(&obj, "phase", false)?,
        checksum: string_field(&obj, "checksum", false)?,
        metadata,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_flagger_payload() {
        let p = parse(
            br#"{"name":"podinfo","namespace":"test","phase":"Progressing","checksum":"abc",
                 "metadata":{"cmd":"hey -z 1m http://x/","type":"cmd"},"extra":1}"#,
        )
        .unwrap();
        assert_eq!(p.canary(), "podinfo.test");
        assert_eq!(p.phase, "Progressing");
        assert_eq!(p.metadata["cmd"], "hey -z 1m http://x/");
    }

    #[test]
    fn names_what_is_wrong() {
        let err = |b: &str| parse(b.as_bytes()).unwrap_err().to_string();
        assert!(err("{").contains("not JSON"));
        assert!(err("[]").contains("must be a JSON object, got an array"));
        assert_eq!(err(r#"{"namespace":"t"}"#), "field `name` is missing");
        assert_eq!(
            err(r#"{"name":"a","namespace":3}"#),
            "field `namespace` must be a string, got a number"
        );
        assert_eq!(
            err(r#"{"name":"a","namespace":"t","metadata":{"timeout":30}}"#),
            "field `metadata.timeout` must be a string, got a number"
        );
        assert_eq!(
            err(r#"{"name":"a","namespace":"t","metadata":"cmd"}"#),
            "field `metadata` must be an object of strings, got a string"
        );
    }
}
