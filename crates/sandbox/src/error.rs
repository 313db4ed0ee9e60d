//! API errors, answered as `Status` objects the way the Kubernetes API conventions describe.

use serde_json::{Value, json};

/// A failed request: turned into a `kind: Status` body with the matching HTTP code.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    fn with_details(mut self, group: &str, kind: &str, name: &str) -> Self {
        self.details = Some(json!({"name": name, "group": group, "kind": kind}));
        self
    }

    /// `deployments.apps "podinfo" not found`
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", group_resource(group, resource)),
        )
        .with_details(group, resource, name)
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!(
                "{} \"{name}\" already exists",
                group_resource(group, resource)
            ),
        )
        .with_details(group, resource, name)
    }

    pub fn conflict(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": the object has been modified; \
                 please apply your changes to the latest version and try again",
                group_resource(group, resource)
            ),
        )
        .with_details(group, resource, name)
    }

    /// A 422 for one field error written as `field: detail` (`metadata.name: Required
    /// value`), with the matching `details.causes` entry.
    pub fn invalid(group: &str, kind: &str, name: &str, message: impl Into<String>) -> Self {
        Self::invalid_fields(group, kind, name, vec![FieldError::parse(&message.into())])
    }

    /// A 422 as kube-apiserver answers a field validation failure: the message
    /// `Kind.group "name" is invalid: field: detail` (several in `[...]`) and one
    /// `details.causes` entry per error, which kubectl prints.
    pub fn invalid_fields(group: &str, kind: &str, name: &str, errors: Vec<FieldError>) -> Self {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let joined = match list.len() {
            1 => list[0].clone(),
            _ => format!("[{}]", list.join(", ")),
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {joined}",
                group_resource(group, kind)
            ),
        )
        .with_details(group, kind, name);
        let causes: Vec<Value> = errors
            .iter()
            .map(|f| json!({"reason": f.reason, "message": f.message, "field": f.field}))
            .collect();
        if let Some(d) = e.details.as_mut() {
            d["causes"] = Value::Array(causes);
        }
        e
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message)
    }

    /// A watch or read from a resourceVersion the server has not reached (kube-apiserver's
    /// watch cache waits 3 s for it, then answers this 504 with its cause).
    pub fn resource_version_too_large(requested: u64, current: u64) -> Self {
        let mut e = Self::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        );
        e.details = Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        }));
        e
    }

    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message)
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message)
    }

    pub fn path_not_found(path: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("the server could not find the requested resource ({path})"),
        )
    }

    /// The `Status` object sent as the body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            s["details"] = d.clone();
        }
        s
    }
}

pub fn group_resource(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

pub type ApiResult<T> = Result<T, ApiError>;

/// One field error of a 422, as kube-apiserver's `field.Error`: its `details.causes`
/// entry is `reason` (`FieldValueInvalid`, ...), `field` and `message`, and it prints as
/// `field: message`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub reason: &'static str,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// A bad value as kube-apiserver prints it: strings quoted, numbers as written.
pub fn show_value(v: &Value) -> String {
    v.to_string()
}

fn with_detail(head: String, detail: &str) -> String {
    if detail.is_empty() {
        head
    } else {
        format!("{head}: {detail}")
    }
}

impl FieldError {
    fn new(reason: &'static str, field: impl Into<String>, message: String) -> Self {
        Self {
            reason,
            field: field.into(),
            message,
        }
    }

    pub fn required(field: impl Into<String>) -> Self {
        Self::new("FieldValueRequired", field, "Required value".into())
    }

    pub fn required_detail(field: impl Into<String>, detail: &str) -> Self {
        Self::new(
            "FieldValueRequired",
            field,
            with_detail("Required value".into(), detail),
        )
    }

    pub fn forbidden(field: impl Into<String>, detail: &str) -> Self {
        Self::new(
            "FieldValueForbidden",
            field,
            with_detail("Forbidden".into(), detail),
        )
    }

    pub fn invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new(
            "FieldValueInvalid",
            field,
            with_detail(format!("Invalid value: {}", show_value(value)), detail),
        )
    }

    /// `Invalid value: VALUE: detail`, or `Invalid value: detail` without a value (a CEL
    /// rule on an object or a list).
    pub fn invalid_omitting(field: impl Into<String>, value: Option<&Value>, detail: &str) -> Self {
        match value {
            Some(v) => Self::invalid(field, v, detail),
            None => Self::new(
                "FieldValueInvalid",
                field,
                with_detail("Invalid value".into(), detail),
            ),
        }
    }

    pub fn type_invalid(field: impl Into<String>, value: &Value, detail: &str) -> Self {
        Self::new(
            "FieldValueTypeInvalid",
            field,
            with_detail(format!("Invalid value: {}", show_value(value)), detail),
        )
    }

    pub fn duplicate(field: impl Into<String>, value: Option<&Value>, detail: &str) -> Self {
        let head = match value {
            Some(v) => format!("Duplicate value: {}", show_value(v)),
            None => "Duplicate value".into(),
        };
        Self::new("FieldValueDuplicate", field, with_detail(head, detail))
    }

    pub fn not_supported(field: impl Into<String>, value: &Value, supported: &[Value]) -> Self {
        let values: Vec<String> = supported.iter().map(show_value).collect();
        Self::new(
            "FieldValueNotSupported",
            field,
            format!(
                "Unsupported value: {}: supported values: {}",
                show_value(value),
                values.join(", ")
            ),
        )
    }

    pub fn too_many(field: impl Into<String>, actual: usize, max: u64) -> Self {
        Self::new(
            "FieldValueTooMany",
            field,
            format!(
                "Too many: {actual}: must have at most {max} {}",
                if max == 1 { "item" } else { "items" }
            ),
        )
    }

    pub fn too_long(field: impl Into<String>, max: u64) -> Self {
        Self::new(
            "FieldValueTooLong",
            field,
            format!(
                "Too long: may not be more than {max} {}",
                if max == 1 { "byte" } else { "bytes" }
            ),
        )
    }

    /// Reads back an error written as `field: detail`: the reason from how the detail
    /// starts, as kube-apiserver's error types print.
    pub fn parse(text: &str) -> Self {
        let (field, message) = text.split_once(": ").unwrap_or(("", text));
        let reason = [
            ("Required value", "FieldValueRequired"),
            ("Unsupported value", "FieldValueNotSupported"),
            ("Duplicate value", "FieldValueDuplicate"),
            ("Forbidden", "FieldValueForbidden"),
            ("Too long", "FieldValueTooLong"),
            ("Too many", "FieldValueTooMany"),
        ]
        .iter()
        .find(|(p, _)| message.starts_with(p))
        .map(|(_, r)| *r)
        .unwrap_or("FieldValueInvalid");
        Self::new(reason, field, message.to_string())
    }
}
