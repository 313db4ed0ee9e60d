//! Reading manifests: multi-document YAML files of any kinds, old Flagger documents
//! normalised to `flagger.app/v1beta1`, typed objects for the kinds serin knows.

use std::io::Read;
use std::path::Path;

use serde_json::{Map, Value};

use crate::defaults::LEGACY_METRIC_NAMES;
use crate::{AlertProvider, Canary, MetricTemplate};

pub const GROUP: &str = "flagger.app";
pub const API_VERSION: &str = "flagger.app/v1beta1";
/// Older Flagger versions whose documents serin still reads.
pub const OLD_API_VERSIONS: [&str; 3] = [
    "flagger.app/v1alpha1",
    "flagger.app/v1alpha2",
    "flagger.app/v1alpha3",
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("{source_name}: cannot read: {error}")]
    Read {
        source_name: String,
        error: std::io::Error,
    },
    #[error("{source_name}:{line}: invalid YAML: {message}")]
    Parse {
        source_name: String,
        line: usize,
        message: String,
    },
}

/// One YAML document of a file.
#[derive(Debug, Clone)]
pub struct Document {
    /// The file it came from (`-` for standard input).
    pub source: String,
    /// 1-based line where the document starts.
    pub line: usize,
    pub value: Value,
}

impl Document {
    pub fn kind(&self) -> &str {
        self.value.get("kind").and_then(Value::as_str).unwrap_or("")
    }

    pub fn api_version(&self) -> &str {
        self.value
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn name(&self) -> &str {
        self.value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    }

    pub fn namespace(&self) -> Option<&str> {
        self.value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
    }

    /// True for the kinds of the `flagger.app` group, old versions included.
    pub fn is_flagger(&self) -> bool {
        self.api_version().starts_with("flagger.app/")
    }
}

/// Reads every document of every file (`-` is standard input).
pub fn read_files<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    for path in paths {
        let path = path.as_ref();
        let name = path.display().to_string();
        let text = if name == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|error| LoadError::Read {
                    source_name: name.clone(),
                    error,
                })?;
            s
        } else {
            std::fs::read_to_string(path).map_err(|error| LoadError::Read {
                source_name: name.clone(),
                error,
            })?
        };
        docs.extend(parse_documents(&name, &text)?);
    }
    Ok(docs)
}

/// Splits a YAML stream into documents, each with the line it starts on. Empty
/// documents are skipped; a `kind: List` is expanded into its items.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    for (start_line, chunk) in split_documents(text) {
        let value: Value = match serde_saphyr::from_str::<Option<Value>>(&chunk) {
            Ok(Some(v)) => v,
            Ok(None) => continue,
            Err(e) => {
                let (line, message) = describe_yaml_error(&e);
                return Err(LoadError::Parse {
                    source_name: source.to_string(),
                    line: start_line + line.saturating_sub(1),
                    message,
                });
            }
        };
        match value {
            Value::Null => {}
            Value::Object(ref m)
                if m.get("kind").and_then(Value::as_str) == Some("List")
                    && m.get("items").is_some_and(Value::is_array) =>
            {
                if let Some(Value::Array(items)) = m.get("items") {
                    for item in items {
                        docs.push(Document {
                            source: source.to_string(),
                            line: start_line,
                            value: item.clone(),
                        });
                    }
                }
            }
            Value::Object(_) => docs.push(Document {
                source: source.to_string(),
                line: start_line,
                value,
            }),
            other => {
                return Err(LoadError::Parse {
                    source_name: source.to_string(),
                    line: start_line,
                    message: format!(
                        "a Kubernetes object must be a mapping, found {}",
                        json_type(&other)
                    ),
                });
            }
        }
    }
    Ok(docs)
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// (line within the chunk, message) of a YAML error.
fn describe_yaml_error(e: &serde_saphyr::Error) -> (usize, String) {
    let message = e.to_string();
    let line = e.location().map(|l| l.line() as usize).unwrap_or(1);
    (line, message)
}

/// Splits on `---` document markers, keeping the 1-based line each document starts on.
fn split_documents(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut start = 1;
    for (i, line) in text.lines().enumerate() {
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            if !current.trim().is_empty() {
                out.push((start, std::mem::take(&mut current)));
            }
            current.clear();
            start = i + 2;
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                // `--- key: value` starts a document on the marker line itself.
                current.push_str(rest);
                current.push('\n');
                start = i + 1;
            }
            continue;
        }
        if line == "..." {
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push((start, current));
    }
    out
}

/// What normalisation changed in an old document, for a validator to mention.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalisation {
    pub path: String,
    pub message: String,
}

/// Rewrites an old Flagger document in place to its `flagger.app/v1beta1` form:
/// the old API versions, `canaryAnalysis`, a metric's scalar `threshold` and the old
/// built-in metric names. Anything else is left as it is.
pub fn normalise(value: &mut Value) -> Vec<Normalisation> {
    let mut notes = Vec::new();
    let Some(obj) = value.as_object_mut() else {
        return notes;
    };
    if let Some(Value::String(v)) = obj.get("apiVersion")
        && OLD_API_VERSIONS.contains(&v.as_str())
    {
        notes.push(Normalisation {
            path: "apiVersion".into(),
            message: format!("{v} is read as {API_VERSION}"),
        });
        obj.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    }
    if obj.get("kind").and_then(Value::as_str) != Some("Canary") {
        return notes;
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return notes;
    };
    if let Some(old) = spec.remove("canaryAnalysis") {
        if spec.contains_key("analysis") {
            notes.push(Normalisation {
                path: "spec.canaryAnalysis".into(),
                message: "ignored: spec.analysis is set too".into(),
            });
            spec.insert("canaryAnalysis".into(), old);
        } else {
            notes.push(Normalisation {
                path: "spec.canaryAnalysis".into(),
                message: "read as spec.analysis".into(),
            });
            spec.insert("analysis".into(), old);
        }
    }
    let Some(metrics) = spec
        .get_mut("analysis")
        .and_then(|a| a.get_mut("metrics"))
        .and_then(Value::as_array_mut)
    else {
        return notes;
    };
    for (i, metric) in metrics.iter_mut().enumerate() {
        let Some(m) = metric.as_object_mut() else {
            continue;
        };
        normalise_metric(m, i, &mut notes);
    }
    notes
}

fn normalise_metric(m: &mut Map<String, Value>, i: usize, notes: &mut Vec<Normalisation>) {
    let path = format!("spec.analysis.metrics[{i}]");
    if let Some(Value::String(name)) = m.get("name")
        && let Some((old, new)) = LEGACY_METRIC_NAMES.iter().find(|(old, _)| old == name)
    {
        notes.push(Normalisation {
            path: format!("{path}.name"),
            message: format!("{old} is read as {new}"),
        });
        m.insert("name".into(), Value::String((*new).into()));
    }
    if m.contains_key("thresholdRange") {
        return;
    }
    let Some(threshold) = m.get("threshold").and_then(Value::as_f64) else {
        return;
    };
    let bound = if m.get("name").and_then(Value::as_str) == Some("request-success-rate") {
        "min"
    } else {
        "max"
    };
    m.remove("threshold");
    let mut range = Map::new();
    range.insert(bound.into(), serde_json::json!(threshold));
    m.insert("thresholdRange".into(), Value::Object(range));
    notes.push(Normalisation {
        path: format!("{path}.threshold"),
        message: format!("read as thresholdRange.{bound}: {threshold}"),
    });
}

/// A document as serin sees it.
#[derive(Debug, Clone)]
pub enum Object {
    Canary(Box<Canary>),
    MetricTemplate(Box<MetricTemplate>),
    AlertProvider(Box<AlertProvider>),
    /// Any other kind, kept as written.
    Other(Value),
}

/// Normalises a copy of the document and reads it as a typed object.
pub fn to_object(doc: &Document) -> Result<Object, serde_json::Error> {
    let mut value = doc.value.clone();
    if !doc.is_flagger() {
        return Ok(Object::Other(value));
    }
    normalise(&mut value);
    Ok(match doc.kind() {
        "Canary" => Object::Canary(Box::new(serde_json::from_value(value)?)),
        "MetricTemplate" => Object::MetricTemplate(Box::new(serde_json::from_value(value)?)),
        "AlertProvider" => Object::AlertProvider(Box::new(serde_json::from_value(value)?)),
        _ => Object::Other(value),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_keep_their_start_lines() {
        let text = "a: 1\n---\n# comment\nkind: B\n---\n\n---\nkind: C\n";
        let docs = parse_documents("f.yaml", text).unwrap();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].line, 1);
        assert_eq!(docs[1].line, 3);
        assert_eq!(docs[2].line, 8);
        assert_eq!(docs[2].kind(), "C");
    }

    #[test]
    fn parse_errors_name_file_and_line() {
        let text = "kind: A\n---\nkind: B\nspec:\n  x: [1, 2\n";
        let err = parse_documents("bad.yaml", text).unwrap_err();
        let LoadError::Parse { line, .. } = &err else {
            panic!("expected a parse error, got {err}");
        };
        assert!(
            *line >= 3,
            "line {line} should point into the second document"
        );
        assert!(err.to_string().starts_with("bad.yaml:"));
    }

    #[test]
    fn lists_are_expanded() {
        let text = "kind: List\nitems:\n- kind: A\n- kind: B\n";
        let docs = parse_documents("l.yaml", text).unwrap();
        assert_eq!(
            docs.iter().map(Document::kind).collect::<Vec<_>>(),
            ["A", "B"]
        );
    }

    #[test]
    fn scalars_are_not_objects() {
        assert!(parse_documents("s.yaml", "just a string\n").is_err());
    }
}
