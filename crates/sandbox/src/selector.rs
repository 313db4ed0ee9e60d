//! Label selectors (`=`, `==`, `!=`, `in`, `notin`, exists, `!` not exists) and field
//! selectors (`=`, `==`, `!=` on any dotted field path, e.g. `metadata.name`,
//! `involvedObject.uid`).

use serde_json::Value;

use crate::error::{ApiError, ApiResult};

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Eq(String),
    NotEq(String),
    In(Vec<String>),
    NotIn(Vec<String>),
    Exists,
    NotExists,
}

#[derive(Debug, Clone, PartialEq)]
struct Requirement {
    key: String,
    op: Op,
}

/// A parsed label selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LabelSelector(Vec<Requirement>);

/// Splits on commas that are not inside parentheses.
fn split_top(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0i32;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out.into_iter()
        .map(str::trim)
        .filter(|x| !x.is_empty())
        .collect()
}

fn set_values(rest: &str, whole: &str) -> ApiResult<Vec<String>> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "unable to parse requirement: {whole}: expected (values)"
            ))
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top(s) {
            let req = if let Some(k) = part.strip_prefix('!') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotExists,
                }
            } else if let Some((k, v)) = part.split_once("!=") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotEq(v.trim().into()),
                }
            } else if let Some((k, v)) = part.split_once("==") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, v)) = part.split_once('=') {
                Requirement {
                    key: k.trim().into(),
                    op: Op::Eq(v.trim().into()),
                }
            } else if let Some((k, rest)) = part.split_once(" notin ") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::NotIn(set_values(rest, part)?),
                }
            } else if let Some((k, rest)) = part.split_once(" in ") {
                Requirement {
                    key: k.trim().into(),
                    op: Op::In(set_values(rest, part)?),
                }
            } else if part.contains(' ') || part.contains('(') {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: {part}"
                )));
            } else {
                Requirement {
                    key: part.into(),
                    op: Op::Exists,
                }
            };
            if req.key.is_empty() {
                return Err(ApiError::bad_request(format!(
                    "unable to parse requirement: {part}: empty key"
                )));
            }
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    /// A selector from `matchLabels` / `matchExpressions` (a Kubernetes `LabelSelector` object).
    pub fn from_object(sel: &Value) -> Self {
        let mut reqs = Vec::new();
        if let Some(m) = sel.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in m {
                reqs.push(Requirement {
                    key: k.clone(),
                    op: Op::Eq(v.as_str().unwrap_or_default().into()),
                });
            }
        }
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e
                    .get("key")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                let values: Vec<String> = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|x| x.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Op::In(values),
                    Some("NotIn") => Op::NotIn(values),
                    Some("Exists") => Op::Exists,
                    Some("DoesNotExist") => Op::NotExists,
                    _ => continue,
                };
                reqs.push(Requirement { key, op });
            }
        }
        Self(reqs)
    }

    /// The selector as a string (`a=b,c in (d)`), for scale subresources.
    pub fn to_query(&self) -> String {
        self.0
            .iter()
            .map(|r| match &r.op {
                Op::Eq(v) => format!("{}={v}", r.key),
                Op::NotEq(v) => format!("{}!={v}", r.key),
                Op::In(vs) => format!("{} in ({})", r.key, vs.join(",")),
                Op::NotIn(vs) => format!("{} notin ({})", r.key, vs.join(",")),
                Op::Exists => r.key.clone(),
                Op::NotExists => format!("!{}", r.key),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        self.0.iter().all(|r| {
            let v = labels.and_then(|l| l.get(&r.key)).and_then(Value::as_str);
            match &r.op {
                Op::Eq(x) => v == Some(x.as_str()),
                Op::NotEq(x) => v != Some(x.as_str()),
                Op::In(xs) => v.is_some_and(|v| xs.iter().any(|x| x == v)),
                Op::NotIn(xs) => v.is_none_or(|v| !xs.iter().any(|x| x == v)),
                Op::Exists => v.is_some(),
                Op::NotExists => v.is_none(),
            }
        })
    }
}

/// A parsed field selector; empty matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    pub fn parse(s: &str) -> ApiResult<Self> {
        let mut out = Vec::new();
        for part in split_top(s) {
            let (k, eq, v) = if let Some((k, v)) = part.split_once("!=") {
                (k, false, v)
            } else if let Some((k, v)) = part.split_once("==") {
                (k, true, v)
            } else if let Some((k, v)) = part.split_once('=') {
                (k, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid field selector: {part}: expected key=value or key!=value"
                )));
            };
            out.push((k.trim().to_string(), eq, v.trim().to_string()));
        }
        Ok(Self(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `metadata.name` this selector pins, if any (lets lookups skip a scan).
    pub fn name(&self) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, eq, _)| *eq && k == "metadata.name")
            .map(|(_, _, v)| v.as_str())
    }

    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(k, eq, want)| {
            let mut cur = Some(obj);
            for seg in k.split('.') {
                cur = cur.and_then(|c| c.get(seg));
            }
            let got = match cur {
                None | Some(Value::Null) => String::new(),
                Some(Value::String(s)) => s.clone(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *eq
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "test", "labels": labels}})
    }

    #[test]
    fn label_selector_operators() {
        let o = obj(json!({"app": "podinfo", "tier": "web"}));
        for (sel, want) in [
            ("app=podinfo", true),
            ("app==podinfo", true),
            ("app!=podinfo", false),
            ("app in (a, podinfo)", true),
            ("app notin (a,podinfo)", false),
            ("tier", true),
            ("!tier", false),
            ("missing", false),
            ("!missing", true),
            ("app=podinfo,tier in (web),!missing", true),
            ("app=podinfo,tier=db", false),
            ("", true),
        ] {
            assert_eq!(
                LabelSelector::parse(sel).unwrap().matches(&o),
                want,
                "{sel}"
            );
        }
        assert!(LabelSelector::parse("app in a").is_err());
    }

    #[test]
    fn field_selector_paths() {
        let ev = json!({"metadata": {"name": "e1", "namespace": "test"},
            "involvedObject": {"kind": "Canary", "name": "podinfo", "uid": "u1"}});
        let f = FieldSelector::parse(
            "involvedObject.kind=Canary,involvedObject.name=podinfo,metadata.namespace=test",
        )
        .unwrap();
        assert!(f.matches(&ev));
        assert!(
            !FieldSelector::parse("involvedObject.uid=u2")
                .unwrap()
                .matches(&ev)
        );
        assert!(
            FieldSelector::parse("metadata.name!=x")
                .unwrap()
                .matches(&ev)
        );
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
