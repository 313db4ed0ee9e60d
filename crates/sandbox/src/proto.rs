//! Just enough of Kubernetes' protobuf encoding to read what kubectl's typed clients send
//! (`kubectl create namespace|configmap|secret|serviceaccount|deployment|service`,
//! `kubectl expose`, helm's release Secrets, created then updated); the sandbox always
//! answers in JSON, which those clients also accept.
//! Field numbers are those of k8s.io/api's `generated.proto`; fields not listed here are
//! skipped.

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};

struct Reader<'a> {
    buf: &'a [u8],
}

enum Field<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
    Fixed,
}

fn malformed() -> ApiError {
    ApiError::bad_request("the protobuf request body is malformed")
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> ApiResult<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or_else(malformed)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(malformed())
    }

    fn next(&mut self) -> ApiResult<Option<(u64, Field<'a>)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let field = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 | 5 => {
                let n = if key & 7 == 1 { 8 } else { 4 };
                if self.buf.len() < n {
                    return Err(malformed());
                }
                self.buf = &self.buf[n..];
                Field::Fixed
            }
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| malformed())?;
                if self.buf.len() < len {
                    return Err(malformed());
                }
                let (b, rest) = self.buf.split_at(len);
                self.buf = rest;
                Field::Bytes(b)
            }
            _ => return Err(malformed()),
        };
        Ok(Some((key >> 3, field)))
    }
}

fn fields(buf: &[u8]) -> ApiResult<Vec<(u64, Field<'_>)>> {
    let mut r = Reader { buf };
    let mut out = Vec::new();
    while let Some(f) = r.next()? {
        out.push(f);
    }
    Ok(out)
}

fn string(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `map<string, string>` (or bytes values, base64-encoded as JSON does) entry.
fn map_entry(b: &[u8], base64_values: bool) -> ApiResult<(String, Value)> {
    let mut k = String::new();
    let mut v = Value::String(String::new());
    for (n, f) in fields(b)? {
        if let Field::Bytes(x) = f {
            match n {
                1 => k = string(x),
                2 if base64_values => {
                    v = base64::engine::general_purpose::STANDARD.encode(x).into()
                }
                2 => v = string(x).into(),
                _ => {}
            }
        }
    }
    Ok((k, v))
}

fn insert_entry(
    m: &mut Map<String, Value>,
    key: &str,
    b: &[u8],
    base64_values: bool,
) -> ApiResult<()> {
    let (k, v) = map_entry(b, base64_values)?;
    m.entry(key).or_insert_with(|| json!({}))[k] = v;
    Ok(())
}

fn object_meta(b: &[u8]) -> ApiResult<Value> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (_, Field::Bytes([])) => {}
            (1, Field::Bytes(x)) => drop(m.insert("name".into(), string(x).into())),
            (2, Field::Bytes(x)) => drop(m.insert("generateName".into(), string(x).into())),
            (3, Field::Bytes(x)) => drop(m.insert("namespace".into(), string(x).into())),
            (6, Field::Bytes(x)) => drop(m.insert("resourceVersion".into(), string(x).into())),
            (11, Field::Bytes(x)) => insert_entry(&mut m, "labels", x, false)?,
            (12, Field::Bytes(x)) => insert_entry(&mut m, "annotations", x, false)?,
            (14, Field::Bytes(x)) => m
                .entry("finalizers")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .map(|a| a.push(string(x).into()))
                .unwrap_or_default(),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

#[derive(Clone, Copy)]
enum Kind {
    /// A string; dropped when empty (Go writes empty non-pointer strings).
    Str,
    /// An integer; dropped when 0.
    Int,
    /// An optional (pointer) integer: 0 is kept.
    IntPtr,
    Bool,
    Msg(&'static [Spec]),
    MapStr,
    MapQuantity,
    RepStr,
    RepMsg(&'static [Spec]),
    IntOrString,
    Meta,
}

struct Spec(u64, &'static str, Kind);

use Kind::*;

const SELECTOR_REQ: &[Spec] = &[
    Spec(1, "key", Str),
    Spec(2, "operator", Str),
    Spec(3, "values", RepStr),
];
const SELECTOR: &[Spec] = &[
    Spec(1, "matchLabels", MapStr),
    Spec(2, "matchExpressions", RepMsg(SELECTOR_REQ)),
];
const CONTAINER_PORT: &[Spec] = &[
    Spec(1, "name", Str),
    Spec(2, "hostPort", Int),
    Spec(3, "containerPort", Int),
    Spec(4, "protocol", Str),
    Spec(5, "hostIP", Str),
];
const ENV_VAR: &[Spec] = &[Spec(1, "name", Str), Spec(2, "value", Str)];
const RESOURCES: &[Spec] = &[
    Spec(1, "limits", MapQuantity),
    Spec(2, "requests", MapQuantity),
];
const CONTAINER: &[Spec] = &[
    Spec(1, "name", Str),
    Spec(2, "image", Str),
    Spec(3, "command", RepStr),
    Spec(4, "args", RepStr),
    Spec(5, "workingDir", Str),
    Spec(6, "ports", RepMsg(CONTAINER_PORT)),
    Spec(7, "env", RepMsg(ENV_VAR)),
    Spec(8, "resources", Msg(RESOURCES)),
    Spec(13, "terminationMessagePath", Str),
    Spec(14, "imagePullPolicy", Str),
    Spec(20, "terminationMessagePolicy", Str),
];
const POD_SPEC: &[Spec] = &[
    Spec(2, "containers", RepMsg(CONTAINER)),
    Spec(3, "restartPolicy", Str),
    Spec(4, "terminationGracePeriodSeconds", IntPtr),
    Spec(6, "dnsPolicy", Str),
    Spec(7, "nodeSelector", MapStr),
    Spec(8, "serviceAccountName", Str),
    Spec(20, "initContainers", RepMsg(CONTAINER)),
];
const POD_TEMPLATE: &[Spec] = &[Spec(1, "metadata", Meta), Spec(2, "spec", Msg(POD_SPEC))];
const ROLLING_UPDATE: &[Spec] = &[
    Spec(1, "maxUnavailable", IntOrString),
    Spec(2, "maxSurge", IntOrString),
];
const STRATEGY: &[Spec] = &[
    Spec(1, "type", Str),
    Spec(2, "rollingUpdate", Msg(ROLLING_UPDATE)),
];
const DEPLOYMENT_SPEC: &[Spec] = &[
    Spec(1, "replicas", IntPtr),
    Spec(2, "selector", Msg(SELECTOR)),
    Spec(3, "template", Msg(POD_TEMPLATE)),
    Spec(4, "strategy", Msg(STRATEGY)),
    Spec(5, "minReadySeconds", Int),
    Spec(6, "revisionHistoryLimit", IntPtr),
    Spec(7, "paused", Bool),
    Spec(9, "progressDeadlineSeconds", IntPtr),
];
const SERVICE_PORT: &[Spec] = &[
    Spec(1, "name", Str),
    Spec(2, "protocol", Str),
    Spec(3, "port", Int),
    Spec(4, "targetPort", IntOrString),
    Spec(5, "nodePort", Int),
    Spec(6, "appProtocol", Str),
];
const SERVICE_SPEC: &[Spec] = &[
    Spec(1, "ports", RepMsg(SERVICE_PORT)),
    Spec(2, "selector", MapStr),
    Spec(3, "clusterIP", Str),
    Spec(4, "type", Str),
    Spec(5, "externalIPs", RepStr),
    Spec(7, "sessionAffinity", Str),
    Spec(10, "externalName", Str),
];
const DEPLOYMENT: &[Spec] = &[
    Spec(1, "metadata", Meta),
    Spec(2, "spec", Msg(DEPLOYMENT_SPEC)),
];
const SERVICE: &[Spec] = &[
    Spec(1, "metadata", Meta),
    Spec(2, "spec", Msg(SERVICE_SPEC)),
];

fn int32(v: u64) -> i64 {
    // int32 values are sign-extended to 64 bits on the wire.
    v as i64
}

fn message(specs: &[Spec], b: &[u8]) -> ApiResult<Map<String, Value>> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        let Some(Spec(_, name, kind)) = specs.iter().find(|s| s.0 == n) else {
            continue;
        };
        let name = *name;
        match (*kind, f) {
            (Str, Field::Bytes(x)) if !x.is_empty() => {
                drop(m.insert(name.into(), string(x).into()))
            }
            (Int, Field::Varint(v)) if v != 0 => drop(m.insert(name.into(), int32(v).into())),
            (IntPtr, Field::Varint(v)) => drop(m.insert(name.into(), int32(v).into())),
            (Bool, Field::Varint(v)) if v != 0 => drop(m.insert(name.into(), true.into())),
            (Msg(s), Field::Bytes(x)) => {
                let sub = message(s, x)?;
                if !sub.is_empty() {
                    m.insert(name.into(), Value::Object(sub));
                }
            }
            (MapStr, Field::Bytes(x)) => insert_entry(&mut m, name, x, false)?,
            (MapQuantity, Field::Bytes(x)) => {
                let (mut k, mut q) = (String::new(), String::new());
                for (n, f) in fields(x)? {
                    match (n, f) {
                        (1, Field::Bytes(b)) => k = string(b),
                        (2, Field::Bytes(b)) => {
                            for (n, f) in fields(b)? {
                                if let (1, Field::Bytes(s)) = (n, f) {
                                    q = string(s);
                                }
                            }
                        }
                        _ => {}
                    }
                }
                m.entry(name).or_insert_with(|| json!({}))[k] = q.into();
            }
            (RepStr, Field::Bytes(x)) => m
                .entry(name)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .map(|a| a.push(string(x).into()))
                .unwrap_or_default(),
            (RepMsg(s), Field::Bytes(x)) => {
                let item = Value::Object(message(s, x)?);
                m.entry(name)
                    .or_insert_with(|| json!([]))
                    .as_array_mut()
                    .map(|a| a.push(item))
                    .unwrap_or_default()
            }
            (IntOrString, Field::Bytes(x)) => {
                let (mut is_str, mut i, mut st) = (false, 0i64, String::new());
                for (n, f) in fields(x)? {
                    match (n, f) {
                        (1, Field::Varint(t)) => is_str = t == 1,
                        (2, Field::Varint(v)) => i = int32(v),
                        (3, Field::Bytes(b)) => st = string(b),
                        _ => {}
                    }
                }
                m.insert(name.into(), if is_str { st.into() } else { i.into() });
            }
            (Meta, Field::Bytes(x)) => {
                let meta = object_meta(x)?;
                if meta.as_object().is_some_and(|o| !o.is_empty()) {
                    m.insert(name.into(), meta);
                }
            }
            _ => {}
        }
    }
    Ok(m)
}

/// Decodes a `k8s\0`-prefixed protobuf body into the JSON form of the object.
pub fn decode(body: &[u8]) -> ApiResult<Value> {
    let inner = body.strip_prefix(b"k8s\0").ok_or_else(malformed)?;
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), &[][..]);
    for (n, f) in fields(inner)? {
        match (n, f) {
            (1, Field::Bytes(tm)) => {
                for (n, f) in fields(tm)? {
                    match (n, f) {
                        (1, Field::Bytes(x)) => api_version = string(x),
                        (2, Field::Bytes(x)) => kind = string(x),
                        _ => {}
                    }
                }
            }
            (2, Field::Bytes(x)) => raw = x,
            _ => {}
        }
    }
    if kind == "DeleteOptions" {
        return delete_options(raw);
    }
    let typed = match kind.as_str() {
        "Deployment" => Some(DEPLOYMENT),
        "Service" => Some(SERVICE),
        _ => None,
    };
    if let Some(specs) = typed {
        let mut obj = Map::new();
        obj.insert("apiVersion".into(), api_version.into());
        obj.insert("kind".into(), kind.into());
        obj.extend(message(specs, raw)?);
        return Ok(Value::Object(obj));
    }
    let mut obj = Map::new();
    obj.insert("apiVersion".into(), api_version.clone().into());
    obj.insert("kind".into(), kind.clone().into());
    for (n, f) in fields(raw)? {
        let Field::Bytes(x) = f else {
            if let (Field::Varint(v), "ConfigMap", 4) | (Field::Varint(v), "Secret", 5) =
                (f, kind.as_str(), n)
            {
                obj.insert("immutable".into(), (v != 0).into());
            }
            continue;
        };
        match (kind.as_str(), n) {
            (_, 1) => drop(obj.insert("metadata".into(), object_meta(x)?)),
            ("ConfigMap", 2) => insert_entry(&mut obj, "data", x, false)?,
            ("ConfigMap", 3) => insert_entry(&mut obj, "binaryData", x, true)?,
            ("Secret", 2) => insert_entry(&mut obj, "data", x, true)?,
            ("Secret", 3) => drop(obj.insert("type".into(), string(x).into())),
            ("Secret", 4) => insert_entry(&mut obj, "stringData", x, false)?,
            ("Namespace" | "ServiceAccount", _) => {}
            _ => {
                return Err(ApiError::unsupported_media_type(format!(
                    "the sandbox reads protobuf only for Namespace, ConfigMap, Secret, ServiceAccount, Deployment and Service, not {api_version} {kind}; send JSON"
                )));
            }
        }
    }
    if let Some(Value::Object(sd)) = obj.remove("stringData") {
        let data = obj.entry("data").or_insert_with(|| json!({}));
        for (k, v) in sd {
            let s = v.as_str().unwrap_or_default();
            data[k] = base64::engine::general_purpose::STANDARD.encode(s).into();
        }
    }
    Ok(Value::Object(obj))
}

/// The body of a typed client's DELETE (helm purging its release Secrets).
fn delete_options(b: &[u8]) -> ApiResult<Value> {
    let mut m = Map::new();
    for (n, f) in fields(b)? {
        match (n, f) {
            (2, Field::Bytes(x)) => {
                let mut p = Map::new();
                for (n, f) in fields(x)? {
                    match (n, f) {
                        (1, Field::Bytes(u)) => drop(p.insert("uid".into(), string(u).into())),
                        (2, Field::Bytes(rv)) => {
                            drop(p.insert("resourceVersion".into(), string(rv).into()))
                        }
                        _ => {}
                    }
                }
                m.insert("preconditions".into(), Value::Object(p));
            }
            (3, Field::Varint(v)) => drop(m.insert("orphanDependents".into(), (v != 0).into())),
            (4, Field::Bytes(x)) if !x.is_empty() => {
                drop(m.insert("propagationPolicy".into(), string(x).into()))
            }
            (5, Field::Bytes(x)) => m
                .entry("dryRun")
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .map(|a| a.push(string(x).into()))
                .unwrap_or_default(),
            _ => {}
        }
    }
    Ok(Value::Object(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ld(field: u8, b: &[u8]) -> Vec<u8> {
        let mut v = vec![(field << 3) | 2, b.len() as u8];
        v.extend_from_slice(b);
        v
    }

    #[test]
    fn decodes_a_namespace_and_a_configmap() {
        let meta = [
            ld(1, b"test"),
            ld(11, &[ld(1, b"team"), ld(2, b"a")].concat()),
        ]
        .concat();
        let tm = [ld(1, b"v1"), ld(2, b"Namespace")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &ld(1, &meta))].concat();
        let ns = decode(&body).unwrap();
        assert_eq!(
            ns,
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "test", "labels": {"team": "a"}}})
        );

        let tm = [ld(1, b"v1"), ld(2, b"ConfigMap")].concat();
        let raw = [
            ld(1, &ld(1, b"cfg")),
            ld(2, &[ld(1, b"k"), ld(2, b"v")].concat()),
        ]
        .concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &raw)].concat();
        assert_eq!(decode(&body).unwrap()["data"]["k"], "v");
        assert!(decode(b"nope").is_err());
    }

    #[test]
    fn decodes_delete_options() {
        let tm = [ld(1, b"meta.k8s.io/v1"), ld(2, b"DeleteOptions")].concat();
        let raw = [ld(2, &ld(2, b"42")), ld(4, b"Foreground"), ld(5, b"All")].concat();
        let body = [b"k8s\0".to_vec(), ld(1, &tm), ld(2, &raw)].concat();
        assert_eq!(
            decode(&body).unwrap(),
            json!({"preconditions": {"resourceVersion": "42"},
                   "propagationPolicy": "Foreground", "dryRun": ["All"]})
        );
    }
}
