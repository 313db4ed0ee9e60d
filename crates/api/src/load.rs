//! Reading manifests: multi-document YAML files of any kinds, old Flagger documents
//! normalised to `flagger.app/v1beta1`, typed objects for the kinds serin knows.

use std::io::{BufRead, BufReader};
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
        for chunk in DocumentChunks::open(path.as_ref())? {
            let chunk = chunk?;
            docs.extend(chunk.parse()?);
        }
    }
    Ok(docs)
}

/// Splits a YAML stream into documents, each with the line it starts on. Empty
/// documents are skipped; a `kind: List` is expanded into its items.
pub fn parse_documents(source: &str, text: &str) -> Result<Vec<Document>, LoadError> {
    let mut docs = Vec::new();
    let mut splitter = Splitter::default();
    for line in text.lines() {
        if let Some((line, text)) = splitter.push(line) {
            docs.extend(parse_chunk(source, line, &text)?);
        }
    }
    if let Some((line, text)) = splitter.finish() {
        docs.extend(parse_chunk(source, line, &text)?);
    }
    Ok(docs)
}

/// The text of one YAML document of a file, not parsed yet.
#[derive(Debug, Clone)]
pub struct Chunk {
    pub source: String,
    /// 1-based line where the document starts.
    pub line: usize,
    pub text: String,
}

impl Chunk {
    /// The document, or the items of a `kind: List`; none for an empty document.
    pub fn parse(&self) -> Result<Vec<Document>, LoadError> {
        parse_chunk(&self.source, self.line, &self.text)
    }
}

/// The documents of one file (`-` is standard input) read one at a time, so a stream
/// of any size is checked in the memory of one document: `serin validate` reads
/// through this, and [`read_files`] collects it.
pub struct DocumentChunks {
    source: String,
    reader: Box<dyn BufRead + Send>,
    splitter: Splitter,
    line: String,
    done: bool,
}

impl DocumentChunks {
    pub fn open(path: &Path) -> Result<Self, LoadError> {
        let source = path.display().to_string();
        let reader: Box<dyn BufRead + Send> = if source == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            let file = std::fs::File::open(path).map_err(|error| LoadError::Read {
                source_name: source.clone(),
                error,
            })?;
            Box::new(BufReader::with_capacity(256 * 1024, file))
        };
        Ok(Self {
            source,
            reader,
            splitter: Splitter::default(),
            line: String::new(),
            done: false,
        })
    }

    fn chunk(&self, (line, text): (usize, String)) -> Chunk {
        Chunk {
            source: self.source.clone(),
            line,
            text,
        }
    }
}

impl Iterator for DocumentChunks {
    type Item = Result<Chunk, LoadError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            self.line.clear();
            match self.reader.read_line(&mut self.line) {
                Ok(0) => {
                    self.done = true;
                    let last = std::mem::take(&mut self.splitter).finish();
                    return last.map(|c| Ok(self.chunk(c)));
                }
                Ok(_) => {
                    // The line endings `str::lines` takes off: `\n` and `\r\n`.
                    let mut line = self.line.as_str();
                    if let Some(l) = line.strip_suffix('\n') {
                        line = l.strip_suffix('\r').unwrap_or(l);
                    }
                    if let Some(c) = self.splitter.push(line) {
                        return Some(Ok(self.chunk(c)));
                    }
                }
                Err(error) => {
                    self.done = true;
                    return Some(Err(LoadError::Read {
                        source_name: self.source.clone(),
                        error,
                    }));
                }
            }
        }
        None
    }
}

/// Parses the text of one document that starts on `start_line` of `source`.
fn parse_chunk(source: &str, start_line: usize, chunk: &str) -> Result<Vec<Document>, LoadError> {
    let value: Value = match serde_saphyr::from_str::<Option<Value>>(chunk) {
        Ok(Some(v)) => v,
        Ok(None) => return Ok(Vec::new()),
        Err(e) => {
            let (line, message) = describe_yaml_error(&e);
            return Err(LoadError::Parse {
                source_name: source.to_string(),
                line: start_line + line.saturating_sub(1),
                message,
            });
        }
    };
    let document = |value| Document {
        source: source.to_string(),
        line: start_line,
        value,
    };
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(mut m)
            if m.get("kind").and_then(Value::as_str) == Some("List")
                && m.get("items").is_some_and(Value::is_array) =>
        {
            match m.remove("items") {
                Some(Value::Array(items)) => Ok(items.into_iter().map(document).collect()),
                _ => Ok(Vec::new()),
            }
        }
        value @ Value::Object(_) => Ok(vec![document(value)]),
        other => Err(LoadError::Parse {
            source_name: source.to_string(),
            line: start_line,
            message: format!(
                "a Kubernetes object must be a mapping, found {}",
                json_type(&other)
            ),
        }),
    }
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

/// Splits lines on `---` document markers, keeping the 1-based line each document
/// starts on; one implementation for a whole text and for a stream.
struct Splitter {
    current: String,
    /// The line the current document starts on.
    start: usize,
    /// Lines seen so far.
    seen: usize,
}

impl Default for Splitter {
    fn default() -> Self {
        Self {
            current: String::new(),
            start: 1,
            seen: 0,
        }
    }
}

impl Splitter {
    /// Takes the next line (its line ending taken off); gives back the document that
    /// a marker on it ends, if that document is not blank.
    fn push(&mut self, line: &str) -> Option<(usize, String)> {
        let i = self.seen;
        self.seen += 1;
        let is_marker = line == "---" || line.starts_with("--- ") || line.starts_with("---\t");
        if is_marker {
            let ended = std::mem::take(&mut self.current);
            let ended_start = self.start;
            self.start = i + 2;
            let rest = line[3..].trim();
            if !rest.is_empty() && !rest.starts_with('#') {
                // `--- key: value` starts a document on the marker line itself.
                self.current.push_str(rest);
                self.current.push('\n');
                self.start = i + 1;
            }
            return (!ended.trim().is_empty()).then_some((ended_start, ended));
        }
        if line == "..." {
            return None;
        }
        self.current.push_str(line);
        self.current.push('\n');
        None
    }

    fn finish(self) -> Option<(usize, String)> {
        (!self.current.trim().is_empty()).then_some((self.start, self.current))
    }
}

/// What normalisation changed in an old document, for a validator to mention.
#[derive(Debug, Clone, PartialEq)]
pub struct Normalisation {
    pub path: String,
    pub message: String,
}

/// Rewrites an old document in place to the form serin reads: a Flagger document
/// to `flagger.app/v1beta1` (the old API versions, `canaryAnalysis`, a metric's
/// scalar `threshold` and the old built-in metric names), and a
/// HorizontalPodAutoscaler of `autoscaling/v2beta1` or `v2beta2`, versions that no
/// current Kubernetes serves, to `autoscaling/v2` (see [`normalise_hpa`]). Anything
/// else is left as it is.
pub fn normalise(value: &mut Value) -> Vec<Normalisation> {
    let mut notes = Vec::new();
    let Some(obj) = value.as_object_mut() else {
        return notes;
    };
    if obj.get("kind").and_then(Value::as_str) == Some(HPA_KIND) {
        return normalise_hpa(obj);
    }
    if let Some(Value::String(v)) = obj.get("apiVersion")
        && OLD_API_VERSIONS.contains(&v.as_str())
    {
        notes.push(Normalisation {
            path: "apiVersion".into(),
            message: format!("{v} is read as {API_VERSION}"),
        });
        obj.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    }
    let flagger = obj
        .get("apiVersion")
        .and_then(Value::as_str)
        .is_some_and(|v| v.starts_with("flagger.app/"));
    if !flagger || obj.get("kind").and_then(Value::as_str) != Some("Canary") {
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

const HPA_KIND: &str = "HorizontalPodAutoscaler";
/// The HPA version serin reads and writes (served since Kubernetes 1.23).
pub const HPA_API_VERSION: &str = "autoscaling/v2";
/// HPA versions no current Kubernetes serves, with the release that removed them.
pub const OLD_HPA_API_VERSIONS: [(&str, &str); 2] = [
    ("autoscaling/v2beta1", "1.25"),
    ("autoscaling/v2beta2", "1.26"),
];

/// Rewrites an `autoscaling/v2beta1` or `v2beta2` HorizontalPodAutoscaler to
/// `autoscaling/v2`, as the API server converts it: v2beta2 has v2's fields; in
/// v2beta1 each metric's target moves into `target` (`targetAverageUtilization` to
/// `target.averageUtilization` with type `Utilization`, `targetAverageValue` to
/// `target.averageValue` with type `AverageValue`, `targetValue` to `target.value`
/// with type `Value`) and its metric name and selector into `metric`, an `Object`
/// metric's `target` becomes `describedObject`, and the
/// `autoscaling.alpha.kubernetes.io/behavior` annotation becomes `spec.behavior`.
pub fn normalise_hpa(obj: &mut Map<String, Value>) -> Vec<Normalisation> {
    let mut notes = Vec::new();
    let Some(version) = obj.get("apiVersion").and_then(Value::as_str) else {
        return notes;
    };
    let Some((old, removed)) = OLD_HPA_API_VERSIONS.iter().find(|(v, _)| *v == version) else {
        return notes;
    };
    notes.push(Normalisation {
        path: "apiVersion".into(),
        message: format!(
            "{old} is read as {HPA_API_VERSION}: Kubernetes no longer serves {old} (removed in {removed})"
        ),
    });
    obj.insert("apiVersion".into(), Value::String(HPA_API_VERSION.into()));
    if *old != "autoscaling/v2beta1" {
        return notes;
    }
    let behavior = obj
        .get_mut("metadata")
        .and_then(|m| m.get_mut("annotations"))
        .and_then(Value::as_object_mut)
        .and_then(|a| a.remove(BEHAVIOR_ANNOTATION));
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return notes;
    };
    if let Some(text) = behavior {
        match text.as_str().map(serde_json::from_str::<Value>) {
            Some(Ok(b)) if b.is_object() && !spec.contains_key("behavior") => {
                spec.insert("behavior".into(), b);
                notes.push(Normalisation {
                    path: format!("metadata.annotations.{BEHAVIOR_ANNOTATION}"),
                    message: "read as spec.behavior".into(),
                });
            }
            _ => notes.push(Normalisation {
                path: format!("metadata.annotations.{BEHAVIOR_ANNOTATION}"),
                message: "ignored: not a behavior object".into(),
            }),
        }
    }
    let Some(metrics) = spec.get_mut("metrics").and_then(Value::as_array_mut) else {
        return notes;
    };
    for (i, metric) in metrics.iter_mut().enumerate() {
        if let Some(m) = metric.as_object_mut() {
            convert_hpa_metric(m, &format!("spec.metrics[{i}]"), &mut notes);
        }
    }
    notes
}

const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

/// One v2beta1 metric source to v2, in place. A source that already has v2's
/// `target` is left as it is.
fn convert_hpa_metric(m: &mut Map<String, Value>, path: &str, notes: &mut Vec<Normalisation>) {
    let Some(kind) = m.get("type").and_then(Value::as_str).map(str::to_string) else {
        return;
    };
    let field = match kind.as_str() {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        "External" => "external",
        _ => return,
    };
    let Some(src) = m.get_mut(field).and_then(Value::as_object_mut) else {
        return;
    };
    let old_keys = [
        "targetAverageUtilization",
        "targetAverageValue",
        "targetValue",
        "metricName",
        "metricSelector",
        "averageValue",
    ];
    let is_old = old_keys.iter().any(|k| src.contains_key(*k))
        || (field == "object" && !src.contains_key("describedObject"));
    if !is_old || (field != "object" && src.contains_key("target")) {
        return;
    }
    let mut target = Map::new();
    let mut out = Map::new();
    match field {
        "resource" | "containerResource" => {
            for k in ["name", "container"] {
                if let Some(v) = src.remove(k) {
                    out.insert(k.into(), v);
                }
            }
            let utilization = src.remove("targetAverageUtilization");
            let average = src.remove("targetAverageValue");
            let type_ = if utilization.is_some() {
                "Utilization"
            } else {
                "AverageValue"
            };
            target.insert("type".into(), type_.into());
            if let Some(u) = utilization {
                target.insert("averageUtilization".into(), u);
            }
            if let Some(a) = average {
                target.insert("averageValue".into(), a);
            }
        }
        "pods" => {
            out.insert("metric".into(), metric_identifier(src, "selector"));
            target.insert("type".into(), "AverageValue".into());
            if let Some(a) = src.remove("targetAverageValue") {
                target.insert("averageValue".into(), a);
            }
        }
        "object" => {
            if let Some(t) = src.remove("target") {
                out.insert("describedObject".into(), t);
            }
            out.insert("metric".into(), metric_identifier(src, "selector"));
            let average = src.remove("averageValue");
            let type_ = if average.is_some() {
                "AverageValue"
            } else {
                "Value"
            };
            target.insert("type".into(), type_.into());
            if let Some(v) = src.remove("targetValue") {
                target.insert("value".into(), v);
            }
            if let Some(a) = average {
                target.insert("averageValue".into(), a);
            }
        }
        _ => {
            out.insert("metric".into(), metric_identifier(src, "metricSelector"));
            let value = src.remove("targetValue");
            let type_ = if value.is_some() {
                "Value"
            } else {
                "AverageValue"
            };
            target.insert("type".into(), type_.into());
            if let Some(v) = value {
                target.insert("value".into(), v);
            }
            if let Some(a) = src.remove("targetAverageValue") {
                target.insert("averageValue".into(), a);
            }
        }
    }
    // Anything else the source had stays.
    for (k, v) in std::mem::take(src) {
        out.entry(k).or_insert(v);
    }
    let shown = Value::Object(target.clone()).to_string();
    out.insert("target".into(), Value::Object(target));
    *src = out;
    notes.push(Normalisation {
        path: format!("{path}.{field}"),
        message: format!("read as autoscaling/v2: target {shown}"),
    });
}

/// `{name, selector}` from a v2beta1 source's `metricName` and its selector field.
fn metric_identifier(src: &mut Map<String, Value>, selector: &str) -> Value {
    let mut id = Map::new();
    if let Some(n) = src.remove("metricName") {
        id.insert("name".into(), n);
    }
    if let Some(s) = src.remove(selector) {
        id.insert("selector".into(), s);
    }
    Value::Object(id)
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
    normalise(&mut value);
    if !doc.is_flagger() {
        return Ok(Object::Other(value));
    }
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
    fn a_file_read_one_document_at_a_time_gives_what_the_whole_text_gives() {
        let text = "a: 1\r\n---\r\n# c\r\nkind: B\r\n...\r\n--- kind: C\n---\n\n\
                    ---  # only a comment\nkind: List\nitems:\n- kind: D\n- kind: E\n---\nkind: F";
        let dir = std::env::temp_dir().join(format!("serin-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("f.yaml");
        std::fs::write(&path, text).unwrap();
        let streamed: Vec<Document> = DocumentChunks::open(&path)
            .unwrap()
            .flat_map(|c| c.unwrap().parse().unwrap())
            .collect();
        std::fs::remove_dir_all(&dir).unwrap();
        let whole = parse_documents(&path.display().to_string(), text).unwrap();
        let seen = |docs: &[Document]| -> Vec<(String, usize, String)> {
            docs.iter()
                .map(|d| (d.source.clone(), d.line, d.kind().to_string()))
                .collect()
        };
        assert_eq!(seen(&streamed), seen(&whole));
        let kinds: Vec<_> = whole.iter().map(|d| (d.line, d.kind())).collect();
        assert_eq!(
            kinds,
            [(1, ""), (3, "B"), (6, "C"), (10, "D"), (10, "E"), (15, "F")]
        );
        assert!(matches!(
            DocumentChunks::open(Path::new("/nonexistent/x.yaml")),
            Err(LoadError::Read { .. })
        ));
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
    fn v2beta1_hpas_are_read_as_v2() {
        let text = r#"
apiVersion: autoscaling/v2beta1
kind: HorizontalPodAutoscaler
metadata:
  name: podinfo
  annotations:
    autoscaling.alpha.kubernetes.io/behavior: '{"scaleDown":{"stabilizationWindowSeconds":60}}'
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  minReplicas: 2
  maxReplicas: 4
  metrics:
  - type: Resource
    resource: {name: cpu, targetAverageUtilization: 99}
  - type: Resource
    resource: {name: memory, targetAverageValue: 100Mi}
  - type: ContainerResource
    containerResource: {name: cpu, container: app, targetAverageUtilization: 80}
  - type: Pods
    pods: {metricName: packets, targetAverageValue: "1k", selector: {matchLabels: {a: b}}}
  - type: Object
    object:
      target: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: main}
      metricName: requests
      targetValue: "10k"
  - type: Object
    object:
      target: {apiVersion: v1, kind: Service, name: web}
      metricName: rps
      targetValue: "0"
      averageValue: "50"
  - type: External
    external: {metricName: queue, metricSelector: {matchLabels: {q: jobs}}, targetValue: "30"}
  - type: External
    external: {metricName: lag, targetAverageValue: "5"}
"#;
        let mut value = parse_documents("hpa.yaml", text).unwrap()[0].value.clone();
        let notes = normalise(&mut value);
        assert_eq!(value["apiVersion"], "autoscaling/v2");
        assert!(
            notes[0]
                .message
                .contains("autoscaling/v2beta1 is read as autoscaling/v2"),
            "{notes:?}"
        );
        assert_eq!(notes.len(), 1 + 1 + 8, "{notes:?}");
        let expected = serde_json::json!([
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 99}}},
            {"type": "Resource", "resource": {"name": "memory",
                "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
            {"type": "ContainerResource", "containerResource": {"name": "cpu", "container": "app",
                "target": {"type": "Utilization", "averageUtilization": 80}}},
            {"type": "Pods", "pods": {"metric": {"name": "packets", "selector": {"matchLabels": {"a": "b"}}},
                "target": {"type": "AverageValue", "averageValue": "1k"}}},
            {"type": "Object", "object": {
                "describedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress", "name": "main"},
                "metric": {"name": "requests"},
                "target": {"type": "Value", "value": "10k"}}},
            {"type": "Object", "object": {
                "describedObject": {"apiVersion": "v1", "kind": "Service", "name": "web"},
                "metric": {"name": "rps"},
                "target": {"type": "AverageValue", "value": "0", "averageValue": "50"}}},
            {"type": "External", "external": {"metric": {"name": "queue", "selector": {"matchLabels": {"q": "jobs"}}},
                "target": {"type": "Value", "value": "30"}}},
            {"type": "External", "external": {"metric": {"name": "lag"},
                "target": {"type": "AverageValue", "averageValue": "5"}}},
        ]);
        assert_eq!(value["spec"]["metrics"], expected);
        assert_eq!(
            value["spec"]["behavior"],
            serde_json::json!({"scaleDown": {"stabilizationWindowSeconds": 60}})
        );
        assert!(
            value["metadata"]["annotations"]
                .as_object()
                .unwrap()
                .is_empty()
        );
        // Read again, nothing changes.
        let again = value.clone();
        assert!(normalise(&mut value).is_empty());
        assert_eq!(value, again);
    }

    #[test]
    fn v2beta2_hpas_change_only_their_version_and_v2_is_left_alone() {
        let text = "apiVersion: autoscaling/v2beta2\nkind: HorizontalPodAutoscaler\nmetadata: {name: a}\nspec:\n  maxReplicas: 3\n  metrics:\n  - type: Resource\n    resource: {name: cpu, target: {type: Utilization, averageUtilization: 50}}\n";
        let mut value = parse_documents("hpa.yaml", text).unwrap()[0].value.clone();
        let spec = value["spec"].clone();
        assert_eq!(normalise(&mut value).len(), 1);
        assert_eq!(value["apiVersion"], "autoscaling/v2");
        assert_eq!(value["spec"], spec);
        assert!(normalise(&mut value).is_empty());
    }

    #[test]
    fn a_canary_of_another_group_is_not_normalised() {
        let text = "apiVersion: example.com/v1\nkind: Canary\nmetadata: {name: a}\nspec:\n  canaryAnalysis: {interval: 1m}\n";
        let mut value = parse_documents("c.yaml", text).unwrap()[0].value.clone();
        let before = value.clone();
        assert!(normalise(&mut value).is_empty());
        assert_eq!(value, before);
    }

    #[test]
    fn scalars_are_not_objects() {
        assert!(parse_documents("s.yaml", "just a string\n").is_err());
    }
}
