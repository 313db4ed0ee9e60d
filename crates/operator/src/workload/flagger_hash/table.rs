//! The Go types of `corev1.PodTemplateSpec` (k8s.io/api v0.36.2) as
//! `tests/flaggerhash/gen` writes them: what go-spew prints for each and what
//! `encoding/json` needs to decode into it.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::Deserialize;

/// The table, parsed once. `None` only if the committed JSON were broken (a unit
/// test makes sure it is not); the hash then falls back to serin's own.
pub(super) static TABLE: LazyLock<Option<Table>> =
    LazyLock::new(|| Table::parse(include_str!("flagger_types.json")));

pub(super) type TypeId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    Bool,
    /// Signed integers, with their width in bits (0: Go's `int`, 64 bits here).
    Int(u32),
    Uint(u32),
    String,
    Ptr,
    Slice,
    Array,
    Map,
    Struct,
    /// Floats, interfaces, channels...: nothing in a pod template has them.
    Other,
}

/// A Go type whose `*T` has its own `UnmarshalJSON`, emulated by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Special {
    None,
    Quantity,
    MetaTime,
    IntOrString,
    FieldsV1,
    /// Another unmarshaler: not emulated (left zero, and the hash marked inexact).
    Unknown,
}

#[derive(Debug)]
pub(super) struct Field {
    /// The Go name, as spew prints it.
    pub name: String,
    pub ty: TypeId,
}

#[derive(Debug)]
pub(super) struct Type {
    /// `reflect.Type.String()`, as spew prints it in parentheses.
    pub name: String,
    pub kind: Kind,
    pub elem: Option<TypeId>,
    pub key: Option<TypeId>,
    pub len: usize,
    pub fields: Vec<Field>,
    /// JSON key -> field index path (through embedded structs), as
    /// `encoding/json` resolves them; only for structs.
    pub json: HashMap<String, Vec<usize>>,
    pub special: Special,
}

#[derive(Debug)]
pub(super) struct Table {
    pub types: Vec<Type>,
    pub root: TypeId,
}

#[derive(Deserialize)]
struct RawTable {
    root: String,
    types: HashMap<String, RawType>,
}

#[derive(Deserialize)]
struct RawType {
    name: String,
    kind: String,
    #[serde(default)]
    elem: Option<String>,
    #[serde(default)]
    key: Option<String>,
    #[serde(default)]
    len: usize,
    #[serde(default)]
    fields: Vec<RawField>,
    #[serde(default)]
    unmarshaler: Option<String>,
}

#[derive(Deserialize, Clone)]
struct RawField {
    name: String,
    #[serde(default)]
    json: Option<String>,
    #[serde(default)]
    tagged: bool,
    #[serde(default)]
    skip: bool,
    #[serde(default)]
    embedded: bool,
    #[serde(rename = "type")]
    ty: String,
}

impl Table {
    pub fn get(&self, id: TypeId) -> &Type {
        &self.types[id]
    }

    pub fn parse(text: &str) -> Option<Table> {
        let raw: RawTable = serde_json::from_str(text).ok()?;
        let mut ids: Vec<&String> = raw.types.keys().collect();
        ids.sort();
        let index: HashMap<&str, TypeId> = ids
            .iter()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect();
        let lookup = |k: &str| index.get(k).copied();
        let mut types = Vec::with_capacity(ids.len());
        for id in &ids {
            let t = &raw.types[*id];
            let kind = match t.kind.as_str() {
                "bool" => Kind::Bool,
                "int" | "int64" => Kind::Int(64),
                "int8" => Kind::Int(8),
                "int16" => Kind::Int(16),
                "int32" => Kind::Int(32),
                "uint" | "uint64" => Kind::Uint(64),
                "uint8" => Kind::Uint(8),
                "uint16" => Kind::Uint(16),
                "uint32" => Kind::Uint(32),
                "string" => Kind::String,
                "ptr" => Kind::Ptr,
                "slice" => Kind::Slice,
                "array" => Kind::Array,
                "map" => Kind::Map,
                "struct" => Kind::Struct,
                _ => Kind::Other,
            };
            let opt = |k: &Option<String>| -> Option<Option<TypeId>> {
                match k {
                    None => Some(None),
                    Some(k) => lookup(k).map(Some),
                }
            };
            let elem = opt(&t.elem)?;
            let key = opt(&t.key)?;
            if matches!(kind, Kind::Ptr | Kind::Slice | Kind::Array | Kind::Map) && elem.is_none()
                || kind == Kind::Map && key.is_none()
            {
                return None;
            }
            let mut fields = Vec::with_capacity(t.fields.len());
            for f in &t.fields {
                fields.push(Field {
                    name: f.name.clone(),
                    ty: lookup(&f.ty)?,
                });
            }
            let special = match (id.as_str(), t.unmarshaler.as_deref()) {
                (_, None) => Special::None,
                ("k8s.io/apimachinery/pkg/api/resource.Quantity", _) => Special::Quantity,
                ("k8s.io/apimachinery/pkg/apis/meta/v1.Time", _) => Special::MetaTime,
                ("k8s.io/apimachinery/pkg/util/intstr.IntOrString", _) => Special::IntOrString,
                ("k8s.io/apimachinery/pkg/apis/meta/v1.FieldsV1", _) => Special::FieldsV1,
                _ => Special::Unknown,
            };
            types.push(Type {
                name: t.name.clone(),
                kind,
                elem,
                key,
                len: t.len,
                fields,
                json: HashMap::new(),
                special,
            });
        }
        for (i, id) in ids.iter().enumerate() {
            if types[i].kind == Kind::Struct {
                let mut plan = Vec::new();
                json_fields(&raw.types, id, &mut Vec::new(), 0, &mut plan);
                types[i].json = resolve(plan);
            }
        }
        let root = lookup(&raw.root)?;
        Some(Table { types, root })
    }
}

/// One candidate JSON field of a struct: its key, its index path, and whether its
/// tag named it.
struct Candidate {
    key: String,
    path: Vec<usize>,
    tagged: bool,
}

/// Collects the JSON fields of struct `id`, descending into embedded structs
/// without a tag name (their fields are promoted), as `encoding/json` does.
fn json_fields(
    types: &HashMap<String, RawType>,
    id: &str,
    path: &mut Vec<usize>,
    depth: usize,
    out: &mut Vec<Candidate>,
) {
    let Some(t) = types.get(id) else { return };
    if depth > 16 {
        return;
    }
    for (i, f) in t.fields.iter().enumerate() {
        path.push(i);
        let inner = types.get(&f.ty);
        let promoted = f.embedded && !f.tagged && inner.is_some_and(|t| t.kind == "struct");
        if promoted {
            json_fields(types, &f.ty, path, depth + 1, out);
        } else if !f.skip {
            out.push(Candidate {
                key: f.json.clone().unwrap_or_else(|| f.name.clone()),
                path: path.clone(),
                tagged: f.tagged,
            });
        }
        path.pop();
    }
}

/// Go's dominance rule: of the fields sharing a key, the shallowest wins; at equal
/// depth a single tagged one wins; otherwise none does.
fn resolve(candidates: Vec<Candidate>) -> HashMap<String, Vec<usize>> {
    let mut by_key: HashMap<String, Vec<Candidate>> = HashMap::new();
    for c in candidates {
        by_key.entry(c.key.clone()).or_default().push(c);
    }
    let mut out = HashMap::new();
    for (key, mut cs) in by_key {
        let Some(min) = cs.iter().map(|c| c.path.len()).min() else {
            continue;
        };
        cs.retain(|c| c.path.len() == min);
        let tagged: Vec<&Candidate> = cs.iter().filter(|c| c.tagged).collect();
        let winner = match (cs.len(), tagged.len()) {
            (1, _) => cs.first(),
            (_, 1) => tagged.first().copied(),
            _ => None,
        };
        if let Some(w) = winner {
            out.insert(key, w.path.clone());
        }
    }
    out
}
