//! What Go's `encoding/json` (as client-go's decoder runs it: case-sensitive
//! keys) makes of a JSON pod template: a value of the Go types in the table.
//! Only what go-spew can tell apart is kept (nil against empty, pointers, field
//! order, the unexported fields of the few types with their own decoder).

use serde_json::Value;

use super::quantity::{self, Parsed};
use super::table::{Kind, Special, Table, TypeId};

/// A Go value.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Go {
    Bool(bool),
    Int(i64),
    Uint(u64),
    Str(String),
    /// A pointer: nil, or what it points at.
    Ptr(Option<Box<Go>>),
    /// A slice (nil, or its elements) or an array (always `Some`).
    Seq(Option<Vec<Go>>),
    /// A map: nil, or its entries (unsorted; keys unique).
    Map(Option<Vec<(Go, Go)>>),
    /// A struct's fields, in declaration order.
    Struct(Vec<Go>),
    /// A value of a kind no pod template has (floats, interfaces...).
    Opaque,
}

/// Deeper than this, a JSON value is not decoded (and the hash is inexact).
const MAX_DEPTH: usize = 200;

/// Decodes JSON into Go values of the table's types. `exact` turns false where
/// the result may differ from what Flagger's decoder produces, including where
/// Go's decoder would fail altogether (Flagger then records no hash at all).
pub(super) struct Decoder<'t> {
    pub table: &'t Table,
    pub exact: bool,
    depth: usize,
}

impl<'t> Decoder<'t> {
    pub fn new(table: &'t Table) -> Self {
        Decoder {
            table,
            exact: true,
            depth: 0,
        }
    }

    /// The zero value of a type.
    pub fn zero(&self, ty: TypeId) -> Go {
        self.zero_at(ty, 0)
    }

    fn zero_at(&self, ty: TypeId, depth: usize) -> Go {
        let t = self.table.get(ty);
        if depth > MAX_DEPTH {
            return Go::Opaque;
        }
        match t.kind {
            Kind::Bool => Go::Bool(false),
            Kind::Int(_) => Go::Int(0),
            Kind::Uint(_) => Go::Uint(0),
            Kind::String => Go::Str(String::new()),
            Kind::Ptr => Go::Ptr(None),
            Kind::Slice => Go::Seq(None),
            Kind::Map => Go::Map(None),
            Kind::Array => {
                let elem = t.elem.map(|e| self.zero_at(e, depth + 1));
                Go::Seq(Some(vec![elem.unwrap_or(Go::Opaque); t.len]))
            }
            Kind::Struct => Go::Struct(
                t.fields
                    .iter()
                    .map(|f| self.zero_at(f.ty, depth + 1))
                    .collect(),
            ),
            Kind::Other => Go::Opaque,
        }
    }

    /// Decodes `v` into `out` (a value of type `ty`), as `json.Unmarshal` does
    /// into an existing value: `null` leaves non-nillable values as they are.
    pub fn decode(&mut self, ty: TypeId, v: &Value, out: &mut Go) {
        if self.depth > MAX_DEPTH {
            self.exact = false;
            return;
        }
        self.depth += 1;
        self.decode_inner(ty, v, out);
        self.depth -= 1;
    }

    fn decode_inner(&mut self, ty: TypeId, v: &Value, out: &mut Go) {
        let table = self.table;
        let t = table.get(ty);
        match t.special {
            Special::None => {}
            Special::Quantity => return self.quantity(ty, v, out),
            Special::MetaTime => return self.meta_time(ty, v, out),
            Special::IntOrString => return self.int_or_string(ty, v, out),
            Special::FieldsV1 => return self.fields_v1(ty, v, out),
            Special::Unknown => {
                if !v.is_null() {
                    self.exact = false;
                }
                return;
            }
        }
        match (t.kind, v) {
            (Kind::Ptr, Value::Null) => *out = Go::Ptr(None),
            (Kind::Ptr, _) => {
                let Some(elem) = t.elem else { return };
                let mut inner = match std::mem::replace(out, Go::Ptr(None)) {
                    Go::Ptr(Some(b)) => *b,
                    _ => self.zero(elem),
                };
                self.decode(elem, v, &mut inner);
                *out = Go::Ptr(Some(Box::new(inner)));
            }
            (Kind::Struct, Value::Object(m)) => {
                for (key, val) in m {
                    if let Some(path) = t.json.get(key) {
                        self.decode_path(ty, path, val, out);
                    }
                }
            }
            (Kind::Slice, Value::Null) | (Kind::Map, Value::Null) => {
                *out = if t.kind == Kind::Slice {
                    Go::Seq(None)
                } else {
                    Go::Map(None)
                };
            }
            (Kind::Slice, Value::Array(items)) => {
                let Some(elem) = t.elem else { return };
                let decoded = items
                    .iter()
                    .map(|item| {
                        let mut z = self.zero(elem);
                        self.decode(elem, item, &mut z);
                        z
                    })
                    .collect();
                *out = Go::Seq(Some(decoded));
            }
            (Kind::Slice, Value::String(s))
                if t.elem.is_some_and(|e| table.get(e).kind == Kind::Uint(8)) =>
            {
                // []byte: base64.
                use base64::Engine;
                match base64::engine::general_purpose::STANDARD.decode(s) {
                    Ok(bytes) => {
                        *out = Go::Seq(Some(
                            bytes.into_iter().map(|b| Go::Uint(u64::from(b))).collect(),
                        ))
                    }
                    Err(_) => self.exact = false,
                }
            }
            (Kind::Array, Value::Array(items)) => {
                let Some(elem) = t.elem else { return };
                let mut decoded = Vec::with_capacity(t.len);
                for i in 0..t.len {
                    let mut z = self.zero(elem);
                    if let Some(item) = items.get(i) {
                        self.decode(elem, item, &mut z);
                    }
                    decoded.push(z);
                }
                *out = Go::Seq(Some(decoded));
            }
            (Kind::Map, Value::Object(m)) => {
                let (Some(key_ty), Some(elem)) = (t.key, t.elem) else {
                    return;
                };
                let mut entries = match std::mem::replace(out, Go::Map(None)) {
                    Go::Map(Some(e)) => e,
                    _ => Vec::new(),
                };
                for (k, val) in m {
                    let Some(key) = self.map_key(key_ty, k) else {
                        self.exact = false;
                        continue;
                    };
                    let mut z = self.zero(elem);
                    self.decode(elem, val, &mut z);
                    match entries.iter_mut().find(|(ek, _)| *ek == key) {
                        Some(slot) => slot.1 = z,
                        None => entries.push((key, z)),
                    }
                }
                *out = Go::Map(Some(entries));
            }
            (Kind::String, Value::String(s)) => *out = Go::Str(s.clone()),
            (Kind::Bool, Value::Bool(b)) => *out = Go::Bool(*b),
            (Kind::Int(bits), Value::Number(n)) => {
                match n.as_i64().filter(|i| fits_int(*i, bits)) {
                    Some(i) => *out = Go::Int(i),
                    None => self.exact = false,
                }
            }
            (Kind::Uint(bits), Value::Number(n)) => {
                match n.as_u64().filter(|u| bits >= 64 || *u < (1u64 << bits)) {
                    Some(u) => *out = Go::Uint(u),
                    None => self.exact = false,
                }
            }
            // null into a struct, string, number or bool: left as it is.
            (_, Value::Null) => {}
            // A JSON value of the wrong type: Go reports an error.
            _ => self.exact = false,
        }
    }

    /// Decodes into the field at `path` (more than one index: promoted through
    /// embedded structs).
    fn decode_path(&mut self, ty: TypeId, path: &[usize], v: &Value, out: &mut Go) {
        let table = self.table;
        let (Some(&i), Go::Struct(fields)) = (path.first(), out) else {
            self.exact = false;
            return;
        };
        let (Some(field), Some(slot)) = (table.get(ty).fields.get(i), fields.get_mut(i)) else {
            self.exact = false;
            return;
        };
        if path.len() == 1 {
            self.decode(field.ty, v, slot);
        } else {
            self.decode_path(field.ty, &path[1..], v, slot);
        }
    }

    fn map_key(&self, key_ty: TypeId, k: &str) -> Option<Go> {
        match self.table.get(key_ty).kind {
            Kind::String => Some(Go::Str(k.to_string())),
            Kind::Int(bits) => k
                .parse::<i64>()
                .ok()
                .filter(|i| fits_int(*i, bits))
                .map(Go::Int),
            Kind::Uint(bits) => k
                .parse::<u64>()
                .ok()
                .filter(|u| bits >= 64 || *u < (1u64 << bits))
                .map(Go::Uint),
            _ => None,
        }
    }

    /// Sets the field `name` of struct `out` (of type `ty`).
    fn set(&mut self, ty: TypeId, out: &mut Go, name: &str, value: Go) {
        let idx = self
            .table
            .get(ty)
            .fields
            .iter()
            .position(|f| f.name == name);
        match (idx, out) {
            (Some(i), Go::Struct(fields)) if i < fields.len() => fields[i] = value,
            _ => self.exact = false,
        }
    }

    /// The type of field `name` of struct `ty`.
    fn field_type(&mut self, ty: TypeId, name: &str) -> Option<TypeId> {
        let found = self
            .table
            .get(ty)
            .fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.ty);
        if found.is_none() {
            self.exact = false;
        }
        found
    }

    /// `(*resource.Quantity).UnmarshalJSON`.
    fn quantity(&mut self, ty: TypeId, v: &Value, out: &mut Go) {
        let text = match v {
            // q.d.Dec = nil; q.i = int64Amount{}
            Value::Null => {
                for name in ["i", "d"] {
                    if let Some(field_ty) = self.field_type(ty, name) {
                        let zero = self.zero(field_ty);
                        self.set(ty, out, name, zero);
                    }
                }
                return;
            }
            // The bytes between the quotes, not unescaped: any character Go's
            // encoder escapes makes the quantity invalid either way.
            Value::String(s) if !s.chars().any(escaped_by_go) => trim_go_space(s).to_string(),
            Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
            _ => {
                self.exact = false;
                return;
            }
        };
        let Some(outcome) = quantity::parse(&text) else {
            self.exact = false;
            return;
        };
        self.exact &= outcome.exact;
        let mut q = self.zero(ty);
        let (Some(i_ty), Some(d_ty)) = (self.field_type(ty, "i"), self.field_type(ty, "d")) else {
            return;
        };
        let (i, d, s, format) = match outcome.parsed {
            Parsed::Int {
                value,
                scale,
                kept,
                format,
            } => {
                let mut i = self.zero(i_ty);
                self.set(i_ty, &mut i, "value", Go::Int(value));
                self.set(i_ty, &mut i, "scale", Go::Int(i64::from(scale)));
                (i, self.zero(d_ty), kept.unwrap_or_default(), format)
            }
            Parsed::Dec {
                neg,
                abs,
                scale,
                format,
            } => {
                let dec = self.inf_dec(d_ty, neg, abs, scale);
                (self.zero(i_ty), dec, String::new(), format)
            }
        };
        self.set(ty, &mut q, "i", i);
        self.set(ty, &mut q, "d", d);
        self.set(ty, &mut q, "s", Go::Str(s));
        self.set(ty, &mut q, "Format", Go::Str(format.to_string()));
        *out = q;
    }

    /// `infDecAmount{Dec: &inf.Dec{unscaled: big.Int{neg, abs}, scale}}`.
    fn inf_dec(&mut self, d_ty: TypeId, neg: bool, abs: Vec<u64>, scale: i32) -> Go {
        let mut d = self.zero(d_ty);
        let Some(ptr_ty) = self.field_type(d_ty, "Dec") else {
            return d;
        };
        let Some(dec_ty) = self.table.get(ptr_ty).elem else {
            self.exact = false;
            return d;
        };
        let mut dec = self.zero(dec_ty);
        let Some(int_ty) = self.field_type(dec_ty, "unscaled") else {
            return d;
        };
        let mut int = self.zero(int_ty);
        self.set(int_ty, &mut int, "neg", Go::Bool(neg));
        let words = (!abs.is_empty()).then(|| abs.into_iter().map(Go::Uint).collect());
        self.set(int_ty, &mut int, "abs", Go::Seq(words));
        self.set(dec_ty, &mut dec, "unscaled", int);
        self.set(dec_ty, &mut dec, "scale", Go::Int(i64::from(scale)));
        self.set(d_ty, &mut d, "Dec", Go::Ptr(Some(Box::new(dec))));
        d
    }

    /// `(*metav1.Time).UnmarshalJSON`: null is the zero time; a timestamp is
    /// `time.Parse(time.RFC3339, s).Local()`. spew prints `time.Local`'s fields:
    /// as they are in Flagger's image (alpine without zoneinfo, no `TZ`: UTC with
    /// no zone data). Timestamps not in the API server's strict RFC 3339 form are
    /// still hashed, but marked inexact.
    fn meta_time(&mut self, ty: TypeId, v: &Value, out: &mut Go) {
        let s = match v {
            Value::Null => {
                *out = self.zero(ty);
                return;
            }
            Value::String(s) => s,
            _ => {
                self.exact = false;
                return;
            }
        };
        if !strict_rfc3339(s) {
            self.exact = false;
        }
        let Ok(t) = chrono::DateTime::parse_from_rfc3339(&s.replace(',', ".")) else {
            self.exact = false;
            return;
        };
        let Some(time_ty) = self.field_type(ty, "Time") else {
            return;
        };
        let mut time = self.zero(time_ty);
        // No monotonic reading: wall holds the nanoseconds, ext the seconds
        // since January 1, year 1.
        let secs = t.timestamp().saturating_add(62_135_596_800);
        let nanos = u64::from(t.timestamp_subsec_nanos());
        self.set(time_ty, &mut time, "wall", Go::Uint(nanos));
        self.set(time_ty, &mut time, "ext", Go::Int(secs));
        if let Some(loc_ptr) = self.field_type(time_ty, "loc")
            && let Some(loc_ty) = self.table.get(loc_ptr).elem
        {
            let mut loc = self.zero(loc_ty);
            self.set(loc_ty, &mut loc, "name", Go::Str("UTC".into()));
            self.set(time_ty, &mut time, "loc", Go::Ptr(Some(Box::new(loc))));
        }
        let mut meta = self.zero(ty);
        self.set(ty, &mut meta, "Time", time);
        *out = meta;
    }

    /// `(*intstr.IntOrString).UnmarshalJSON`: a string sets Type 1 and StrVal,
    /// anything else Type 0 and IntVal (null leaves IntVal as it is).
    fn int_or_string(&mut self, ty: TypeId, v: &Value, out: &mut Go) {
        match v {
            Value::String(s) => {
                self.set(ty, out, "Type", Go::Int(1));
                self.set(ty, out, "StrVal", Go::Str(s.clone()));
            }
            _ => {
                self.set(ty, out, "Type", Go::Int(0));
                match v {
                    Value::Null => {}
                    Value::Number(n) => match n.as_i64().filter(|i| fits_int(*i, 32)) {
                        Some(i) => self.set(ty, out, "IntVal", Go::Int(i)),
                        None => self.exact = false,
                    },
                    _ => self.exact = false,
                }
            }
        }
    }

    /// `(*metav1.FieldsV1).UnmarshalJSON` keeps the raw bytes it was given,
    /// which serin only has re-encoded (inexact).
    fn fields_v1(&mut self, ty: TypeId, v: &Value, out: &mut Go) {
        if v.is_null() {
            return;
        }
        self.exact = false;
        let raw = serde_json::to_vec(v).unwrap_or_default();
        self.set(
            ty,
            out,
            "Raw",
            Go::Seq(Some(
                raw.into_iter().map(|b| Go::Uint(u64::from(b))).collect(),
            )),
        );
    }
}

fn fits_int(i: i64, bits: u32) -> bool {
    bits >= 64 || (i >= -(1i64 << (bits - 1)) && i < (1i64 << (bits - 1)))
}

/// Characters Go's JSON encoder writes as escapes (the API server encodes with
/// HTML escaping on).
fn escaped_by_go(c: char) -> bool {
    matches!(c, '"' | '\\' | '<' | '>' | '&' | '\u{2028}' | '\u{2029}') || c < ' '
}

/// `strings.TrimSpace` of the raw (still escaped) bytes: the white space Go's
/// encoder leaves unescaped.
fn trim_go_space(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() && !escaped_by_go(c))
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]` then `Z` or `±HH:MM`, with at most nine
/// fraction digits and no leap second: the form Go's RFC 3339 parser and
/// chrono's read alike.
fn strict_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || b[10] != b'T'
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
        || &b[17..19] == b"60"
    {
        return false;
    }
    let mut i = 19;
    if matches!(b.get(i), Some(b'.' | b',')) {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        if i == start || i - start > 9 {
            return false;
        }
    }
    match &b[i..] {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|d| d.is_ascii_digit()),
        _ => false,
    }
}
