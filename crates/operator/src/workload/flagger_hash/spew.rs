//! go-spew's `%#v` formatter (v1.1.2-0.20180830191138-d8f796af33cc) with
//! Flagger's configuration: `SortKeys`, `SpewKeys`, `DisableMethods`; the
//! indent is for `Dump` only and plays no part in `Fprintf`.
//!
//! Every value prints its type in parentheses first, `(v1.PodSpec){...}`,
//! unless the "ignore next type" flag is set: for slice elements, map keys and
//! values, and the target of a pointer whose type was just printed. The flag is
//! state, as in spew: a nil pointer printed while it is set leaves it set.

use std::cmp::Ordering;

use super::decode::Go;
use super::table::{Kind, Table, TypeId};

pub(super) struct Printer<'t> {
    table: &'t Table,
    pub out: Vec<u8>,
    ignore_next_type: bool,
    depth: usize,
}

const MAX_DEPTH: usize = 400;

impl<'t> Printer<'t> {
    pub fn new(table: &'t Table) -> Self {
        Printer {
            table,
            out: Vec::with_capacity(16 * 1024),
            ignore_next_type: false,
            depth: 0,
        }
    }

    fn w(&mut self, s: &str) {
        self.out.extend_from_slice(s.as_bytes());
    }

    /// `formatState.format`.
    pub fn format(&mut self, ty: TypeId, v: &Go) {
        if self.depth > MAX_DEPTH {
            self.w("<max>");
            return;
        }
        self.depth += 1;
        self.format_inner(ty, v);
        self.depth -= 1;
    }

    fn format_inner(&mut self, ty: TypeId, v: &Go) {
        let table = self.table;
        let t = table.get(ty);
        if t.kind == Kind::Ptr {
            return self.format_ptr(ty, v);
        }
        if !self.ignore_next_type {
            self.w("(");
            self.w(&t.name);
            self.w(")");
        }
        self.ignore_next_type = false;
        match (t.kind, v) {
            (Kind::Bool, Go::Bool(b)) => self.w(if *b { "true" } else { "false" }),
            (Kind::Int(_), Go::Int(i)) => self.w(&i.to_string()),
            (Kind::Uint(_), Go::Uint(u)) => self.w(&u.to_string()),
            (Kind::String, Go::Str(s)) => self.w(s),
            (Kind::Slice, Go::Seq(None)) | (Kind::Map, Go::Map(None)) => self.w("<nil>"),
            (Kind::Slice | Kind::Array, Go::Seq(Some(items))) => {
                let Some(elem) = t.elem else { return };
                self.w("[");
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        self.w(" ");
                    }
                    self.ignore_next_type = true;
                    self.format(elem, item);
                }
                self.w("]");
            }
            (Kind::Map, Go::Map(Some(entries))) => {
                let (Some(key_ty), Some(elem)) = (t.key, t.elem) else {
                    return;
                };
                let mut sorted: Vec<&(Go, Go)> = entries.iter().collect();
                self.sort_keys(key_ty, &mut sorted);
                self.w("map[");
                for (i, (k, val)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        self.w(" ");
                    }
                    self.ignore_next_type = true;
                    self.format(key_ty, k);
                    self.w(":");
                    self.ignore_next_type = true;
                    self.format(elem, val);
                }
                self.w("]");
            }
            (Kind::Struct, Go::Struct(values)) => {
                self.w("{");
                for (i, (field, value)) in t.fields.iter().zip(values).enumerate() {
                    if i > 0 {
                        self.w(" ");
                    }
                    self.w(&field.name);
                    self.w(":");
                    self.format(field.ty, value);
                }
                self.w("}");
            }
            // A value that does not fit its type: the decoder never builds one.
            _ => self.w("<invalid>"),
        }
    }

    /// `formatState.formatPtr`, without the cycle detection: a decoded template
    /// shares no pointers (and has no pointer to a zero-size type).
    fn format_ptr(&mut self, ty: TypeId, v: &Go) {
        let table = self.table;
        if matches!(v, Go::Ptr(None)) && self.ignore_next_type {
            self.w("<nil>");
            return;
        }
        let mut indirects = 0usize;
        let mut cur_ty = ty;
        let mut cur = v;
        let mut nil_found = false;
        while table.get(cur_ty).kind == Kind::Ptr {
            match cur {
                Go::Ptr(Some(target)) => {
                    let Some(elem) = table.get(cur_ty).elem else {
                        break;
                    };
                    indirects += 1;
                    cur_ty = elem;
                    cur = target;
                }
                _ => {
                    nil_found = true;
                    break;
                }
            }
        }
        let name = &table.get(cur_ty).name;
        if !self.ignore_next_type {
            self.w("(");
            self.w(&"*".repeat(indirects));
            self.w(name);
            self.w(")");
        } else {
            if nil_found {
                indirects += name.matches('*').count();
            }
            self.w("<");
            self.w(&"*".repeat(indirects));
            self.w(">");
        }
        if nil_found {
            self.w("<nil>");
        } else {
            self.ignore_next_type = true;
            self.format(cur_ty, cur);
        }
    }

    /// `sortValues` with `SpewKeys`: primitive keys by value, others by their
    /// own `%#v` text.
    fn sort_keys(&self, key_ty: TypeId, entries: &mut [&(Go, Go)]) {
        let kind = self.table.get(key_ty).kind;
        match kind {
            Kind::String | Kind::Int(_) | Kind::Uint(_) | Kind::Bool => {
                entries.sort_by(|a, b| primitive_cmp(&a.0, &b.0));
            }
            _ => {
                let text = |k: &Go| {
                    let mut p = Printer::new(self.table);
                    p.format(key_ty, k);
                    p.out
                };
                entries.sort_by_cached_key(|e| text(&e.0));
            }
        }
    }
}

fn primitive_cmp(a: &Go, b: &Go) -> Ordering {
    match (a, b) {
        (Go::Str(a), Go::Str(b)) => a.as_bytes().cmp(b.as_bytes()),
        (Go::Int(a), Go::Int(b)) => a.cmp(b),
        (Go::Uint(a), Go::Uint(b)) => a.cmp(b),
        (Go::Bool(a), Go::Bool(b)) => a.cmp(b),
        _ => Ordering::Equal,
    }
}
