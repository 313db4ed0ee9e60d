//! The object store: every object of every resource, one global resourceVersion counter and
//! a bounded history of changes that watches read from.
//!
//! Objects are kept in their stored form (see `convert`). Every operation runs under one
//! lock, so each write is atomic and the history is totally ordered by resourceVersion.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use crate::error::{ApiError, ApiResult};
use crate::resources::{Registry, ResourceType, StorageKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Added => "ADDED",
            Self::Modified => "MODIFIED",
            Self::Deleted => "DELETED",
        }
    }
}

/// One change, as watches see it.
#[derive(Debug)]
pub struct Change {
    pub rv: u64,
    pub key: StorageKey,
    pub namespace: String,
    pub kind: EventType,
    pub object: Arc<Value>,
    /// The object before the change (for selector transitions).
    pub previous: Option<Arc<Value>>,
    /// `{"type":..,"object":..}\n` of the stored form, serialized once for all watchers.
    pub line: OnceLock<Bytes>,
}

/// How a delete treats dependents (`propagationPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Propagation {
    #[default]
    Background,
    Foreground,
    Orphan,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub propagation: Propagation,
    pub precondition_rv: Option<String>,
    pub precondition_uid: Option<String>,
}

pub enum Deleted {
    /// Gone from the store.
    Removed(Arc<Value>),
    /// Finalizers hold it; it now has a deletionTimestamp.
    Pending(Arc<Value>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// The main resource: status changes are ignored when there is a status subresource.
    Main,
    /// The status subresource: only status changes are kept.
    Status,
}

type Objects = BTreeMap<(String, String), Arc<Value>>;

/// The finalizer that holds an owner until its dependents are gone (foreground deletion).
const FOREGROUND: &str = "foregroundDeletion";

pub struct State {
    pub registry: Registry,
    objects: HashMap<StorageKey, Objects>,
    uids: HashMap<String, (StorageKey, String, String)>,
    rv: u64,
    history: VecDeque<Arc<Change>>,
    history_limit: usize,
    trimmed_upto: u64,
    rng: u64,
    notify: tokio::sync::watch::Sender<u64>,
    /// Workloads written since the simulator last looked (namespace, storage, name).
    pub touched_workloads: Vec<(StorageKey, String, String)>,
    /// `fieldValidation` of the request being served (set by the HTTP layer under the lock).
    pub field_validation: FieldValidation,
    /// Warnings for the request being served (drained into `Warning` headers).
    pub warnings: Vec<String>,
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata was just made an object")
}

/// An object with an object `metadata` (when present), as Go's decoder insists.
fn check_shape(obj: &Value) -> ApiResult<()> {
    if !obj.is_object() {
        return Err(ApiError::bad_request(
            "the body of the request must be a JSON object",
        ));
    }
    if obj.get("metadata").is_some_and(|m| !m.is_object()) {
        return Err(ApiError::bad_request(
            "metadata: must be an object (ObjectMeta)",
        ));
    }
    Ok(())
}

fn is_dns_subdomain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// The object without metadata and status: what `generation` tracks.
fn spec_part(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(m) = v.as_object_mut() {
        m.remove("metadata");
        m.remove("status");
        m.remove("apiVersion");
        m.remove("kind");
    }
    v
}

fn owner_uids(obj: &Value) -> Vec<String> {
    meta(obj)
        .and_then(|m| m.get("ownerReferences"))
        .and_then(Value::as_array)
        .map(|refs| {
            refs.iter()
                .filter_map(|r| r.get("uid").and_then(Value::as_str).map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

fn has_finalizers(obj: &Value) -> bool {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .is_some_and(|f| !f.is_empty())
}

impl State {
    pub fn new(history_limit: usize, seed: u64) -> Self {
        let (notify, _) = tokio::sync::watch::channel(0);
        Self {
            registry: Registry::builtin(),
            objects: HashMap::new(),
            uids: HashMap::new(),
            rv: 1,
            history: VecDeque::new(),
            history_limit: history_limit.max(16),
            trimmed_upto: 0,
            rng: seed | 1,
            notify,
            touched_workloads: Vec::new(),
            field_validation: FieldValidation::Warn,
            warnings: Vec::new(),
        }
    }

    pub fn resource_version(&self) -> u64 {
        self.rv
    }

    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.notify.subscribe()
    }

    pub fn random(&mut self) -> u64 {
        // splitmix64: good enough for names, uids and fault rates.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn new_uid(&mut self) -> String {
        let a = self.random();
        let b = self.random();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            (b >> 48) & 0x3fff | 0x8000,
            b & 0xffff_ffff_ffff
        )
    }

    fn random_suffix(&mut self) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        (0..5)
            .map(|_| ALPHABET[(self.random() % ALPHABET.len() as u64) as usize] as char)
            .collect()
    }

    pub fn get(&self, key: &StorageKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        self.objects
            .get(key)?
            .get(&(ns.to_string(), name.to_string()))
            .cloned()
    }

    /// Objects of a storage, in one namespace or all (`None`), ordered by namespace and name.
    pub fn list(&self, key: &StorageKey, ns: Option<&str>) -> Vec<Arc<Value>> {
        let Some(objs) = self.objects.get(key) else {
            return Vec::new();
        };
        match ns {
            Some(ns) => objs
                .range((ns.to_string(), String::new())..)
                .take_while(|((n, _), _)| n == ns)
                .map(|(_, v)| v.clone())
                .collect(),
            None => objs.values().cloned().collect(),
        }
    }

    pub fn uid_exists(&self, uid: &str) -> bool {
        self.uids.contains_key(uid)
    }

    /// Changes after `rv`, at most `max`; `Err` when the history no longer reaches back there.
    pub fn changes_since(&self, rv: u64, max: usize) -> Result<Vec<Arc<Change>>, u64> {
        if rv < self.trimmed_upto {
            return Err(self.trimmed_upto);
        }
        let start = self.history.partition_point(|c| c.rv <= rv);
        Ok(self.history.range(start..).take(max).cloned().collect())
    }

    fn record(
        &mut self,
        key: &StorageKey,
        ns: &str,
        kind: EventType,
        object: Arc<Value>,
        previous: Option<Arc<Value>>,
    ) {
        if key.group == "apps" && (key.resource == "deployments" || key.resource == "daemonsets") {
            let name = meta_str(&object, "name").to_string();
            self.touched_workloads
                .push((key.clone(), ns.to_string(), name));
        }
        self.history.push_back(Arc::new(Change {
            rv: self.rv,
            key: key.clone(),
            namespace: ns.to_string(),
            kind,
            object,
            previous,
            line: OnceLock::new(),
        }));
        while self.history.len() > self.history_limit {
            if let Some(c) = self.history.pop_front() {
                self.trimmed_upto = c.rv;
            }
        }
        self.notify.send_replace(self.rv);
    }

    fn next_rv(&mut self) -> u64 {
        self.rv += 1;
        self.rv
    }

    fn put(&mut self, key: &StorageKey, ns: &str, name: &str, obj: Arc<Value>) {
        let uid = meta_str(&obj, "uid").to_string();
        self.uids
            .insert(uid, (key.clone(), ns.to_string(), name.to_string()));
        self.objects
            .entry(key.clone())
            .or_default()
            .insert((ns.to_string(), name.to_string()), obj);
    }

    fn take(&mut self, key: &StorageKey, ns: &str, name: &str) -> Option<Arc<Value>> {
        let obj = self
            .objects
            .get_mut(key)?
            .remove(&(ns.to_string(), name.to_string()))?;
        self.uids.remove(meta_str(&obj, "uid"));
        Some(obj)
    }

    fn check_namespace(&self, rt: &ResourceType, ns: &str) -> ApiResult<()> {
        if !rt.namespaced {
            return Ok(());
        }
        let key = StorageKey {
            group: String::new(),
            resource: "namespaces".into(),
        };
        match self.get(&key, "", ns) {
            None => Err(ApiError::not_found("", "namespaces", ns)),
            Some(n) if meta(&n).is_some_and(|m| m.contains_key("deletionTimestamp")) => {
                Err(ApiError::new(
                    403,
                    "Forbidden",
                    format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        crate::error::group_resource(&rt.group, &rt.plural),
                        "",
                    ),
                ))
            }
            Some(_) => Ok(()),
        }
    }

    /// Creates an object (stored form). `ns` is "" for cluster-scoped resources.
    pub fn create(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        check_shape(&obj)?;
        let body_ns = meta_str(&obj, "namespace").to_string();
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut name = meta_str(&obj, "name").to_string();
        let generate = meta_str(&obj, "generateName").to_string();
        if name.is_empty() {
            if generate.is_empty() {
                return Err(ApiError::invalid(
                    &rt.group,
                    &rt.kind,
                    "",
                    "metadata.name: Required value: name or generateName is required",
                ));
            }
            name = format!("{generate}{}", self.random_suffix());
            while self.get(&rt.storage, ns, &name).is_some() {
                name = format!("{generate}{}", self.random_suffix());
            }
        }
        if !is_dns_subdomain(&name) {
            return Err(ApiError::invalid(
                &rt.group,
                &rt.kind,
                &name,
                format!(
                    "metadata.name: Invalid value: \"{name}\": a lowercase RFC 1123 subdomain must consist of \
                     lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"
                ),
            ));
        }
        self.check_namespace(rt, ns)?;
        if self.get(&rt.storage, ns, &name).is_some() {
            return Err(ApiError::already_exists(&rt.group, &rt.plural, &name));
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            // Validate before anything is stored.
            let mut probe = obj.clone();
            meta_mut(&mut probe).insert("name".into(), name.clone().into());
            let mut reg = self.registry.clone();
            reg.register_crd(&probe)?;
        }
        let uid = self.new_uid();
        {
            let m = meta_mut(&mut obj);
            m.insert("name".into(), name.clone().into());
            if rt.namespaced {
                m.insert("namespace".into(), ns.into());
            } else {
                m.remove("namespace");
            }
            m.insert("uid".into(), uid.into());
            m.insert("creationTimestamp".into(), timestamp(now).into());
            m.insert("generation".into(), 1.into());
            m.remove("deletionTimestamp");
            m.remove("deletionGracePeriodSeconds");
            m.remove("resourceVersion");
            m.remove("selfLink");
        }
        if rt.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        default_fields(rt, &mut obj, &name, now, self.random());
        check_schema(
            rt,
            &name,
            &mut obj,
            self.field_validation,
            &mut self.warnings,
        )?;
        if dry_run {
            meta_mut(&mut obj).insert("resourceVersion".into(), self.rv.to_string().into());
            return Ok(Arc::new(obj));
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            self.registry.register_crd(&obj)?;
        }
        let rv = self.next_rv();
        meta_mut(&mut obj).insert("resourceVersion".into(), rv.to_string().into());
        let obj = Arc::new(obj);
        self.put(&rt.storage, ns, &name, obj.clone());
        self.record(&rt.storage, ns, EventType::Added, obj.clone(), None);
        Ok(obj)
    }

    /// Replaces an object (stored form) with optimistic concurrency on resourceVersion.
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        body: Value,
        mode: UpdateMode,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> ApiResult<Arc<Value>> {
        check_shape(&body)?;
        let old = self
            .get(&rt.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        let body_rv = meta_str(&body, "resourceVersion");
        if !body_rv.is_empty() && body_rv != meta_str(&old, "resourceVersion") {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        let body_name = meta_str(&body, "name");
        if !body_name.is_empty() && body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let body_ns = meta_str(&body, "namespace");
        if rt.namespaced && !body_ns.is_empty() && body_ns != ns {
            return Err(ApiError::bad_request(
                "the namespace of the provided object does not match the namespace sent on the request",
            ));
        }
        let mut new = match mode {
            UpdateMode::Main => {
                let mut new = body;
                if rt.status {
                    let m = new.as_object_mut().expect("checked to be an object");
                    match old.get("status") {
                        Some(s) => m.insert("status".into(), s.clone()),
                        None => m.remove("status"),
                    };
                }
                new
            }
            UpdateMode::Status => {
                let mut new = (*old).clone();
                let m = new.as_object_mut().expect("stored objects are objects");
                match body.get("status") {
                    Some(s) => m.insert("status".into(), s.clone()),
                    None => m.remove("status"),
                };
                new
            }
        };
        {
            let old_meta = meta(&old).cloned().unwrap_or_default();
            let m = meta_mut(&mut new);
            m.insert("name".into(), name.into());
            if rt.namespaced {
                m.insert("namespace".into(), ns.into());
            }
            for k in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old_meta.get(k) {
                    Some(v) => m.insert(k.into(), v.clone()),
                    None => m.remove(k),
                };
            }
            m.insert(
                "resourceVersion".into(),
                old_meta.get("resourceVersion").cloned().unwrap_or_default(),
            );
        }
        if mode == UpdateMode::Main && rt.is("", "services") {
            for k in ["clusterIP", "clusterIPs"] {
                if new.pointer(&format!("/spec/{k}")).is_none()
                    && let (Some(v), Some(spec)) = (
                        old.pointer(&format!("/spec/{k}")).cloned(),
                        new.get_mut("spec").and_then(Value::as_object_mut),
                    )
                {
                    spec.insert(k.into(), v);
                }
            }
        }
        if mode == UpdateMode::Main
            && !rt.is("apiextensions.k8s.io", "customresourcedefinitions")
            && !rt.is("", "namespaces")
        {
            let r = self.random();
            default_fields(rt, &mut new, name, now, r);
        }
        if new.get("apiVersion").is_none()
            && let Some(v) = old.get("apiVersion")
        {
            new["apiVersion"] = v.clone();
        }
        check_schema(
            rt,
            name,
            &mut new,
            self.field_validation,
            &mut self.warnings,
        )?;
        // As kube-apiserver's Deployment strategy: annotation changes bump a
        // Deployment's generation too (they are copied to its ReplicaSets).
        let annotations = |v: &Value| meta(v).and_then(|m| m.get("annotations")).cloned();
        if spec_part(&new) != spec_part(&old)
            || (rt.is("apps", "deployments") && annotations(&new) != annotations(&old))
        {
            let generation = meta(&old)
                .and_then(|m| m.get("generation"))
                .and_then(Value::as_i64)
                .unwrap_or(0);
            meta_mut(&mut new).insert("generation".into(), (generation + 1).into());
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") && mode == UpdateMode::Main {
            let mut reg = self.registry.clone();
            reg.register_crd(&new)?;
        }
        let finalize = meta(&new).is_some_and(|m| m.contains_key("deletionTimestamp"))
            && !has_finalizers(&new);
        if new == *old && !finalize {
            return Ok(old);
        }
        if dry_run {
            return Ok(Arc::new(new));
        }
        let rv = self.next_rv();
        meta_mut(&mut new).insert("resourceVersion".into(), rv.to_string().into());
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions")
            && mode == UpdateMode::Main
            && !finalize
        {
            self.registry.register_crd(&new)?;
        }
        let new = Arc::new(new);
        if finalize {
            self.take(&rt.storage, ns, name);
            self.record(&rt.storage, ns, EventType::Deleted, new.clone(), Some(old));
            self.after_removal(rt, &new, Propagation::Background, now);
        } else {
            self.put(&rt.storage, ns, name, new.clone());
            self.record(&rt.storage, ns, EventType::Modified, new.clone(), Some(old));
        }
        Ok(new)
    }

    pub fn delete(
        &mut self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
        now: DateTime<Utc>,
        dry_run: bool,
    ) -> ApiResult<Deleted> {
        let old = self
            .get(&rt.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(&rt.group, &rt.plural, name))?;
        if let Some(rv) = &opts.precondition_rv
            && rv != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if let Some(uid) = &opts.precondition_uid
            && uid != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(&rt.group, &rt.plural, name));
        }
        if dry_run {
            return Ok(Deleted::Removed(old));
        }
        let uid = meta_str(&old, "uid").to_string();
        let deleting = meta(&old).is_some_and(|m| m.contains_key("deletionTimestamp"));
        let foreground = opts.propagation == Propagation::Foreground
            && !deleting
            && !self.dependents(&uid).is_empty();
        if has_finalizers(&old) || foreground {
            if deleting {
                return Ok(Deleted::Pending(old));
            }
            let mut new = (*old).clone();
            let rv = self.next_rv();
            let m = meta_mut(&mut new);
            m.insert("deletionTimestamp".into(), timestamp(now).into());
            m.insert("deletionGracePeriodSeconds".into(), 0.into());
            m.insert("resourceVersion".into(), rv.to_string().into());
            if foreground {
                let f = m.entry("finalizers").or_insert_with(|| json!([]));
                if let Some(f) = f.as_array_mut() {
                    f.push(FOREGROUND.into());
                }
            }
            let new = Arc::new(new);
            self.put(&rt.storage, ns, name, new.clone());
            self.record(&rt.storage, ns, EventType::Modified, new.clone(), Some(old));
            if foreground {
                // Dependents go first; the owner follows once none is left.
                for (key, dep) in self.dependents(&uid) {
                    if let Some(t) = self.registry.for_storage(&key) {
                        let (dns, dn) = (
                            meta_str(&dep, "namespace").to_string(),
                            meta_str(&dep, "name").to_string(),
                        );
                        let opts = DeleteOptions {
                            propagation: Propagation::Foreground,
                            ..Default::default()
                        };
                        let _ = self.delete(&t, &dns, &dn, &opts, now, false);
                    }
                }
                self.release_foreground(&uid, now);
                return Ok(match self.get(&rt.storage, ns, name) {
                    Some(still) => Deleted::Pending(still),
                    None => Deleted::Removed(new),
                });
            }
            return Ok(Deleted::Pending(new));
        }
        let rv = self.next_rv();
        let mut gone = (*old).clone();
        meta_mut(&mut gone).insert("resourceVersion".into(), rv.to_string().into());
        let gone = Arc::new(gone);
        self.take(&rt.storage, ns, name);
        self.record(&rt.storage, ns, EventType::Deleted, gone.clone(), Some(old));
        self.after_removal(rt, &gone, opts.propagation, now);
        Ok(Deleted::Removed(gone))
    }

    /// Objects with an owner reference to `uid`.
    fn dependents(&self, uid: &str) -> Vec<(StorageKey, Arc<Value>)> {
        self.objects
            .iter()
            .flat_map(|(k, objs)| objs.values().map(move |o| (k.clone(), o.clone())))
            .filter(|(_, o)| owner_uids(o).iter().any(|u| u == uid))
            .collect()
    }

    /// Finishes a foreground deletion of `uid` once its last dependent is gone.
    fn release_foreground(&mut self, uid: &str, now: DateTime<Utc>) {
        let Some((key, ns, name)) = self.uids.get(uid).cloned() else {
            return;
        };
        let Some(obj) = self.get(&key, &ns, &name) else {
            return;
        };
        let waiting = meta(&obj)
            .and_then(|m| m.get("finalizers"))
            .and_then(Value::as_array)
            .is_some_and(|f| f.iter().any(|x| x.as_str() == Some(FOREGROUND)));
        if !waiting || !self.dependents(uid).is_empty() {
            return;
        }
        let Some(t) = self.registry.for_storage(&key) else {
            return;
        };
        let mut new = (*obj).clone();
        if let Some(f) = meta_mut(&mut new)
            .get_mut("finalizers")
            .and_then(Value::as_array_mut)
        {
            f.retain(|x| x.as_str() != Some(FOREGROUND));
        }
        meta_mut(&mut new).remove("resourceVersion");
        let _ = self.update(&t, &ns, &name, new, UpdateMode::Main, now, false);
    }

    /// Garbage collection and the cascades a real API server runs after an object is gone.
    fn after_removal(
        &mut self,
        rt: &ResourceType,
        gone: &Value,
        propagation: Propagation,
        now: DateTime<Utc>,
    ) {
        let name = meta_str(gone, "name").to_string();
        if rt.is("", "namespaces") {
            let keys: Vec<StorageKey> = self.objects.keys().cloned().collect();
            for key in keys {
                for obj in self.list(&key, Some(&name)) {
                    if let Some(t) = self.registry.for_storage(&key) {
                        let _ = self.delete(
                            &t,
                            &name,
                            meta_str(&obj, "name"),
                            &DeleteOptions::default(),
                            now,
                            false,
                        );
                    }
                }
            }
        }
        if rt.is("apiextensions.k8s.io", "customresourcedefinitions") {
            let group = gone
                .pointer("/spec/group")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let plural = gone
                .pointer("/spec/names/plural")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let key = StorageKey {
                group: group.clone(),
                resource: plural.clone(),
            };
            for obj in self.list(&key, None) {
                let (ns, n) = (
                    meta_str(&obj, "namespace").to_string(),
                    meta_str(&obj, "name").to_string(),
                );
                if let Some(old) = self.take(&key, &ns, &n) {
                    self.next_rv();
                    self.record(&key, &ns, EventType::Deleted, old, None);
                }
            }
            self.registry.unregister_crd(&group, &plural);
        }
        for owner in owner_uids(gone) {
            self.release_foreground(&owner, now);
        }
        let uid = meta_str(gone, "uid").to_string();
        for (key, dep) in self.dependents(&uid) {
            let Some(t) = self.registry.for_storage(&key) else {
                continue;
            };
            let (ns, n) = (
                meta_str(&dep, "namespace").to_string(),
                meta_str(&dep, "name").to_string(),
            );
            if propagation == Propagation::Orphan {
                let mut new = (*dep).clone();
                if let Some(refs) = meta_mut(&mut new)
                    .get_mut("ownerReferences")
                    .and_then(Value::as_array_mut)
                {
                    refs.retain(|r| r.get("uid").and_then(Value::as_str) != Some(uid.as_str()));
                }
                meta_mut(&mut new).remove("resourceVersion");
                let _ = self.update(&t, &ns, &n, new, UpdateMode::Main, now, false);
            } else if owner_uids(&dep).iter().all(|u| !self.uid_exists(u)) {
                let _ = self.delete(&t, &ns, &n, &DeleteOptions::default(), now, false);
            }
        }
    }
}

/// How unknown fields of custom resources are answered (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

/// Structural schema pruning, defaulting and validation of custom resources.
fn check_schema(
    rt: &ResourceType,
    name: &str,
    obj: &mut Value,
    validation: FieldValidation,
    warnings: &mut Vec<String>,
) -> ApiResult<()> {
    let Some(schema) = &rt.schema else {
        return Ok(());
    };
    let out = crate::schema::apply(schema, obj);
    let unknown: Vec<String> = out
        .pruned
        .iter()
        .map(|p| format!("unknown field \"{p}\""))
        .collect();
    match validation {
        FieldValidation::Strict if !unknown.is_empty() => {
            return Err(ApiError::bad_request(format!(
                "{kind} in version \"{v}\" cannot be handled as a {kind}: strict decoding error: {}",
                unknown.join(", "),
                kind = rt.kind,
                v = rt.version,
            )));
        }
        FieldValidation::Warn => warnings.extend(unknown),
        _ => {}
    }
    if out.errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid_fields(
            &rt.group, &rt.kind, name, out.errors,
        ))
    }
}

/// Fields a real API server fills in on create.
fn default_fields(rt: &ResourceType, obj: &mut Value, name: &str, now: DateTime<Utc>, random: u64) {
    let Some(m) = obj.as_object_mut() else { return };
    match (rt.storage.group.as_str(), rt.storage.resource.as_str()) {
        // As the API server does on every write: stringData is merged into data
        // (base64-encoded, winning over data) and never stored.
        ("", "secrets") => {
            if let Some(Value::Object(sd)) = m.remove("stringData") {
                use base64::Engine as _;
                let data = m.entry("data").or_insert_with(|| json!({}));
                if !data.is_object() {
                    *data = json!({});
                }
                for (k, v) in sd {
                    let text = v.as_str().unwrap_or_default();
                    data[k] = base64::engine::general_purpose::STANDARD
                        .encode(text)
                        .into();
                }
            }
        }
        ("", "namespaces") => {
            m.insert("spec".into(), json!({"finalizers": ["kubernetes"]}));
            m.insert("status".into(), json!({"phase": "Active"}));
            let labels = meta_mut(obj).entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("kubernetes.io/metadata.name".into(), name.into());
            }
        }
        ("", "services") => {
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            let Some(spec) = spec.as_object_mut() else {
                return;
            };
            let type_ = spec
                .entry("type")
                .or_insert_with(|| "ClusterIP".into())
                .as_str()
                .unwrap_or("ClusterIP")
                .to_string();
            spec.entry("sessionAffinity")
                .or_insert_with(|| "None".into());
            if type_ != "ExternalName" && !spec.contains_key("clusterIP") {
                let ip = format!("10.96.{}.{}", (random >> 8) % 256, random % 254 + 1);
                spec.insert("clusterIP".into(), ip.clone().into());
                spec.insert("clusterIPs".into(), json!([ip]));
            }
            if let Some(ports) = spec.get_mut("ports").and_then(Value::as_array_mut) {
                for p in ports.iter_mut().filter_map(Value::as_object_mut) {
                    p.entry("protocol").or_insert_with(|| "TCP".into());
                    if !p.contains_key("targetPort")
                        && let Some(port) = p.get("port").cloned()
                    {
                        p.insert("targetPort".into(), port);
                    }
                }
            }
        }
        ("apps", "deployments") => {
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            if let Some(spec) = spec.as_object_mut() {
                spec.entry("replicas").or_insert_with(|| 1.into());
                spec.entry("progressDeadlineSeconds")
                    .or_insert_with(|| 600.into());
                spec.entry("revisionHistoryLimit")
                    .or_insert_with(|| 10.into());
            }
        }
        ("apiextensions.k8s.io", "customresourcedefinitions") => {
            let names = m
                .get("spec")
                .and_then(|s| s.get("names"))
                .cloned()
                .unwrap_or(json!({}));
            let stored: Vec<Value> = m
                .get("spec")
                .and_then(|s| s.get("versions"))
                .and_then(Value::as_array)
                .map(|vs| {
                    vs.iter()
                        .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                        .filter_map(|v| v.get("name").cloned())
                        .collect()
                })
                .unwrap_or_default();
            let t = timestamp(now);
            m.insert(
                "status".into(),
                json!({
                    "acceptedNames": names,
                    "conditions": [
                        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
                         "message": "no conflicts found", "lastTransitionTime": t},
                        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
                         "message": "the initial names have been accepted", "lastTransitionTime": t},
                    ],
                    "storedVersions": stored,
                }),
            );
        }
        _ => {}
    }
}
