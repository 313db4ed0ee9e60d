//! `Table` responses (`Accept: application/json;as=Table;g=meta.k8s.io;v=v1`), which kubectl
//! prints for `kubectl get`: a CRD's printer columns, or the usual columns of built-in kinds.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use crate::resources::{PrinterColumn, ResourceType};

/// What each row carries besides its cells (`includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// Kubernetes' short human durations ("5s", "3m2s", "4h", "2d").
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    let (m, h, days) = (secs / 60, secs / 3600, secs / 86400);
    if secs < 120 {
        format!("{secs}s")
    } else if m < 10 {
        if secs % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", secs % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{days}d")
        } else {
            format!("{days}d{}h", h % 24)
        }
    } else if days < 365 * 2 {
        format!("{days}d")
    } else {
        format!("{}y{}d", days / 365, days % 365)
    }
}

/// Evaluates the JSONPath subset printer columns use: `.a.b`, `.a[0]`, `.a[*].b`,
/// `.a[?(@.type=="Ready")].status`.
pub fn json_path(obj: &Value, path: &str) -> Vec<Value> {
    let path = path.trim().trim_start_matches('{').trim_end_matches('}');
    let mut cur = vec![obj.clone()];
    let mut rest = path.trim_start_matches('$');
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            let field = &r[..end];
            rest = &r[end..];
            if field.is_empty() {
                continue;
            }
            cur = cur.iter().filter_map(|v| v.get(field).cloned()).collect();
        } else if let Some(r) = rest.strip_prefix('[') {
            let Some(end) = r.find(']') else {
                return Vec::new();
            };
            let inner = &r[..end];
            rest = &r[end + 1..];
            if inner == "*" {
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .collect();
            } else if let Some(filter) =
                inner.strip_prefix("?(@.").and_then(|f| f.strip_suffix(')'))
            {
                let Some((field, want)) = filter.split_once("==") else {
                    return Vec::new();
                };
                let want = want.trim().trim_matches(|c| c == '"' || c == '\'');
                cur = cur
                    .iter()
                    .flat_map(|v| v.as_array().cloned().unwrap_or_default())
                    .filter(|item| {
                        let mut x = Some(item);
                        for seg in field.trim().split('.') {
                            x = x.and_then(|x| x.get(seg));
                        }
                        match x {
                            Some(Value::String(s)) => s == want,
                            Some(other) => *other == want,
                            None => false,
                        }
                    })
                    .collect();
            } else if let Ok(i) = inner.parse::<usize>() {
                cur = cur.iter().filter_map(|v| v.get(i).cloned()).collect();
            } else {
                let key = inner.trim_matches(|c| c == '"' || c == '\'');
                cur = cur.iter().filter_map(|v| v.get(key).cloned()).collect();
            }
        } else {
            return Vec::new();
        }
    }
    cur
}

fn cell(obj: &Value, c: &PrinterColumn, now: DateTime<Utc>) -> Value {
    let found = json_path(obj, &c.json_path);
    let v = match found.len() {
        0 => return Value::Null,
        1 => found.into_iter().next().unwrap_or(Value::Null),
        _ => Value::Array(found),
    };
    match (c.type_.as_str(), &v) {
        ("date", Value::String(s)) => DateTime::parse_from_rfc3339(s)
            .map(|t| Value::String(human_duration(now - t.with_timezone(&Utc))))
            .unwrap_or(v),
        (_, Value::String(_) | Value::Number(_) | Value::Bool(_)) => v,
        (_, Value::Null) => Value::Null,
        _ => Value::String(v.to_string()),
    }
}

fn col(name: &str, type_: &str, path: &str) -> PrinterColumn {
    PrinterColumn {
        name: name.into(),
        type_: type_.into(),
        format: String::new(),
        description: String::new(),
        priority: 0,
        json_path: path.into(),
    }
}

fn int(obj: &Value, ptr: &str) -> i64 {
    obj.pointer(ptr).and_then(Value::as_i64).unwrap_or(0)
}

fn age(obj: &Value, now: DateTime<Utc>) -> Value {
    cell(obj, &col("Age", "date", ".metadata.creationTimestamp"), now)
}

/// Built-in columns (after Name) and a function computing their cells.
type Cells = fn(&Value, DateTime<Utc>) -> Vec<Value>;

fn builtin_columns(rt: &ResourceType) -> (Vec<PrinterColumn>, Cells) {
    let s = |n: &str| col(n, "string", "");
    let i = |n: &str| col(n, "integer", "");
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("apps", "Deployment") => (
            vec![s("Ready"), i("Up-to-date"), i("Available"), s("Age")],
            |o, now| {
                vec![
                    format!(
                        "{}/{}",
                        int(o, "/status/readyReplicas"),
                        int(o, "/spec/replicas")
                    )
                    .into(),
                    int(o, "/status/updatedReplicas").into(),
                    int(o, "/status/availableReplicas").into(),
                    age(o, now),
                ]
            },
        ),
        ("apps", "DaemonSet") => (
            vec![
                i("Desired"),
                i("Current"),
                i("Ready"),
                i("Up-to-date"),
                i("Available"),
                s("Age"),
            ],
            |o, now| {
                vec![
                    int(o, "/status/desiredNumberScheduled").into(),
                    int(o, "/status/currentNumberScheduled").into(),
                    int(o, "/status/numberReady").into(),
                    int(o, "/status/updatedNumberScheduled").into(),
                    int(o, "/status/numberAvailable").into(),
                    age(o, now),
                ]
            },
        ),
        ("", "Service") => (
            vec![
                s("Type"),
                s("Cluster-IP"),
                s("External-IP"),
                s("Port(s)"),
                s("Age"),
            ],
            |o, now| {
                let ports: Vec<String> = o
                    .pointer("/spec/ports")
                    .and_then(Value::as_array)
                    .map(|ps| {
                        ps.iter()
                            .map(|p| {
                                format!(
                                    "{}/{}",
                                    p.get("port").map(|x| x.to_string()).unwrap_or_default(),
                                    p.get("protocol").and_then(Value::as_str).unwrap_or("TCP")
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                vec![
                    o.pointer("/spec/type")
                        .cloned()
                        .unwrap_or("ClusterIP".into()),
                    o.pointer("/spec/clusterIP")
                        .cloned()
                        .unwrap_or("<none>".into()),
                    "<none>".into(),
                    if ports.is_empty() {
                        "<none>".into()
                    } else {
                        ports.join(",").into()
                    },
                    age(o, now),
                ]
            },
        ),
        ("", "Namespace") => (vec![s("Status"), s("Age")], |o, now| {
            vec![
                o.pointer("/status/phase").cloned().unwrap_or(Value::Null),
                age(o, now),
            ]
        }),
        ("", "ConfigMap") => (vec![i("Data"), s("Age")], |o, now| {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |d| d.len())
                + o.get("binaryData")
                    .and_then(Value::as_object)
                    .map_or(0, |d| d.len());
            vec![n.into(), age(o, now)]
        }),
        ("", "Secret") => (vec![s("Type"), i("Data"), s("Age")], |o, now| {
            let n = o
                .get("data")
                .and_then(Value::as_object)
                .map_or(0, |d| d.len());
            vec![
                o.get("type").cloned().unwrap_or("Opaque".into()),
                n.into(),
                age(o, now),
            ]
        }),
        ("", "Pod") => (
            vec![s("Ready"), s("Status"), i("Restarts"), s("Age")],
            |o, now| {
                let n = o
                    .pointer("/spec/containers")
                    .and_then(Value::as_array)
                    .map_or(0, |c| c.len());
                vec![
                    format!("0/{n}").into(),
                    o.pointer("/status/phase")
                        .cloned()
                        .unwrap_or("Pending".into()),
                    0.into(),
                    age(o, now),
                ]
            },
        ),
        ("autoscaling", _) => (
            vec![
                s("Reference"),
                s("Targets"),
                i("MinPods"),
                i("MaxPods"),
                i("Replicas"),
                s("Age"),
            ],
            |o, now| {
                vec![
                    format!(
                        "{}/{}",
                        o.pointer("/spec/scaleTargetRef/kind")
                            .and_then(Value::as_str)
                            .unwrap_or_default(),
                        o.pointer("/spec/scaleTargetRef/name")
                            .and_then(Value::as_str)
                            .unwrap_or_default()
                    )
                    .into(),
                    "<unknown>".into(),
                    o.pointer("/spec/minReplicas").cloned().unwrap_or(1.into()),
                    int(o, "/spec/maxReplicas").into(),
                    int(o, "/status/currentReplicas").into(),
                    age(o, now),
                ]
            },
        ),
        (_, "Event") => (
            vec![
                s("Last Seen"),
                s("Type"),
                s("Reason"),
                s("Object"),
                s("Message"),
            ],
            |o, now| {
                let when = [
                    "/lastTimestamp",
                    "/eventTime",
                    "/deprecatedLastTimestamp",
                    "/metadata/creationTimestamp",
                ]
                .iter()
                .find_map(|p| o.pointer(p).and_then(Value::as_str))
                .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
                .map(|t| human_duration(now - t.with_timezone(&Utc)))
                .unwrap_or_else(|| "<unknown>".into());
                let obj = o.get("involvedObject").or_else(|| o.get("regarding"));
                let kind = obj
                    .and_then(|x| x.get("kind"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let name = obj
                    .and_then(|x| x.get("name"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                vec![
                    when.into(),
                    o.get("type").cloned().unwrap_or(Value::Null),
                    o.get("reason").cloned().unwrap_or(Value::Null),
                    format!("{}/{name}", kind.to_lowercase()).into(),
                    o.get("message")
                        .or_else(|| o.get("note"))
                        .cloned()
                        .unwrap_or(Value::Null),
                ]
            },
        ),
        ("apiextensions.k8s.io", _) => (vec![col("Created At", "date", "")], |o, _| {
            vec![
                o.pointer("/metadata/creationTimestamp")
                    .cloned()
                    .unwrap_or(Value::Null),
            ]
        }),
        ("coordination.k8s.io", _) => (vec![s("Holder"), s("Age")], |o, now| {
            vec![
                o.pointer("/spec/holderIdentity")
                    .cloned()
                    .unwrap_or(Value::Null),
                age(o, now),
            ]
        }),
        _ => (vec![s("Age")], |o, now| vec![age(o, now)]),
    }
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// A Table of `objects` (served form) with the columns of `rt`.
pub fn table(
    rt: &ResourceType,
    objects: &[Value],
    rv: u64,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let name_col = json!({"name": "Name", "type": "string", "format": "name",
        "description": "Name must be unique within a namespace.", "priority": 0});
    let mut defs = vec![name_col];
    let object = |o: &Value| match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Metadata => partial_metadata(o),
        IncludeObject::Object => o.clone(),
    };
    let def = |c: &PrinterColumn| {
        json!({"name": c.name, "type": if c.type_ == "date" { "string" } else { c.type_.as_str() },
            "format": c.format, "description": c.description, "priority": c.priority})
    };
    let rows: Vec<Value> = match &rt.columns {
        Some(cols) => {
            defs.extend(cols.iter().map(def));
            objects
                .iter()
                .map(|o| {
                    let mut cells =
                        vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
                    cells.extend(cols.iter().map(|c| cell(o, c, now)));
                    json!({"cells": cells, "object": object(o)})
                })
                .collect()
        }
        None => {
            let (cols, cells_of) = builtin_columns(rt);
            defs.extend(cols.iter().map(def));
            objects
                .iter()
                .map(|o| {
                    let mut cells =
                        vec![o.pointer("/metadata/name").cloned().unwrap_or(Value::Null)];
                    cells.extend(cells_of(o, now));
                    json!({"cells": cells, "object": object(o)})
                })
                .collect()
        }
    };
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "columnDefinitions": defs,
        "rows": rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_path_subset() {
        let o = json!({"status": {"phase": "Succeeded", "conditions": [
            {"type": "Promoted", "status": "True"}, {"type": "Other", "status": "False"}]},
            "spec": {"hosts": ["a", "b"]}});
        assert_eq!(json_path(&o, ".status.phase"), vec![json!("Succeeded")]);
        assert_eq!(
            json_path(&o, ".status.conditions[?(@.type==\"Promoted\")].status"),
            vec![json!("True")]
        );
        assert_eq!(
            json_path(&o, ".status.conditions[1].type"),
            vec![json!("Other")]
        );
        assert_eq!(json_path(&o, ".spec.hosts"), vec![json!(["a", "b"])]);
        assert!(json_path(&o, ".status.missing").is_empty());
    }

    #[test]
    fn human_durations() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(185)), "3m5s");
        assert_eq!(human_duration(d(3600)), "60m");
        assert_eq!(human_duration(d(5 * 3600)), "5h");
        assert_eq!(human_duration(d(3 * 86400)), "3d");
    }
}
