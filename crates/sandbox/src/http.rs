//! Request routing: paths, verbs, query parameters and content negotiation of the
//! Kubernetes REST API, answered from the store. The same code serves the in-process tower
//! service and the HTTP server.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, combinators::UnsyncBoxBody};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::convert::{from_storage, to_storage};
use crate::error::{ApiError, ApiResult};
use crate::faults::Verb;
use crate::patch::{PatchKind, apply_patch};
use crate::resources::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{DeleteOptions, Deleted, FieldValidation, Propagation, UpdateMode};
use crate::table::{IncludeObject, table};
use crate::{discovery, watch, workload};

/// Response body of the sandbox (whole JSON documents, or a stream of watch events).
pub type SandboxBody = UnsyncBoxBody<Bytes, Infallible>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The largest request body a kube-apiserver reads (`MaxRequestBodyBytes`, 3 MiB, in
/// k8s.io/apiserver's server config); a larger one is refused with 413
/// RequestEntityTooLarge "limit is 3145728", as its handlers do.
pub const MAX_REQUEST_BODY_BYTES: usize = 3 * 1024 * 1024;

impl<B> tower::Service<Request<B>> for Sandbox
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    type Response = Response<SandboxBody>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let sandbox = self.clone();
        Box::pin(async move {
            let (parts, body) = req.into_parts();
            let body = match http_body_util::Limited::new(body, MAX_REQUEST_BODY_BYTES)
                .collect()
                .await
            {
                Ok(b) => b.to_bytes(),
                Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                    return Ok(error_response(&ApiError::new(
                        413,
                        "RequestEntityTooLarge",
                        format!("limit is {MAX_REQUEST_BODY_BYTES}"),
                    )));
                }
                Err(e) => {
                    return Ok(error_response(&ApiError::bad_request(format!(
                        "cannot read the request body: {e}"
                    ))));
                }
            };
            Ok(sandbox
                .handle(&parts.method, &parts.uri, &parts.headers, body)
                .await)
        })
    }
}

pub fn full(bytes: impl Into<Bytes>) -> SandboxBody {
    Full::new(bytes.into()).boxed_unsync()
}

pub fn json_response(code: u16, v: &Value) -> Response<SandboxBody> {
    let body = serde_json::to_vec(v).unwrap_or_default();
    Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

pub fn error_response(e: &ApiError) -> Response<SandboxBody> {
    json_response(e.code, &e.status())
}

/// The resource a request addresses.
pub(crate) struct Target {
    pub rt: Arc<ResourceType>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub sub: Option<String>,
}

pub(crate) struct Query(HashMap<String, String>);

impl Query {
    fn parse(q: Option<&str>) -> Self {
        Self(
            url::form_urlencoded::parse(q.unwrap_or_default().as_bytes())
                .into_owned()
                .collect(),
        )
    }
    pub fn get(&self, k: &str) -> Option<&str> {
        self.0.get(k).map(String::as_str).filter(|v| !v.is_empty())
    }
    fn flag(&self, k: &str) -> bool {
        matches!(self.get(k), Some("true" | "1"))
    }
    fn dry_run(&self) -> bool {
        self.get("dryRun") == Some("All")
    }
}

fn parse_json(body: &Bytes) -> ApiResult<Value> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

fn status_success(rt: &ResourceType, obj: &Value) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
        "details": {
            "name": obj.pointer("/metadata/name").cloned().unwrap_or(Value::Null),
            "group": rt.group, "kind": rt.plural,
            "uid": obj.pointer("/metadata/uid").cloned().unwrap_or(Value::Null),
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    Full,
    Table,
    Metadata,
}

fn shape(headers: &HeaderMap) -> Shape {
    let accept = headers
        .get(http::header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .unwrap_or_default();
    // The first acceptable form wins, as in content negotiation.
    for part in accept.split(',') {
        if part.contains("as=Table") {
            return Shape::Table;
        }
        if part.contains("as=PartialObjectMetadata") {
            return Shape::Metadata;
        }
        if part.trim().starts_with("application/json") || part.trim().starts_with("*/*") {
            return Shape::Full;
        }
    }
    Shape::Full
}

pub(crate) fn partial(obj: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({}))})
}

impl Sandbox {
    pub(crate) async fn handle(
        &self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        body: Bytes,
    ) -> Response<SandboxBody> {
        let path = uri.path();
        let query = Query::parse(uri.query());
        let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if let Some(resp) = discovery::route(self, method, &segs, headers) {
            return resp;
        }
        let target = match self.target(&segs) {
            Some(t) => t,
            None => return error_response(&ApiError::path_not_found(path)),
        };
        let verb = match (method, &target.name, query.flag("watch")) {
            (&Method::GET, None, true) => Verb::Watch,
            (&Method::GET, None, false) => Verb::List,
            (&Method::GET, Some(_), _) => Verb::Get,
            (&Method::POST, None, _) => Verb::Create,
            (&Method::PUT, Some(_), _) => Verb::Update,
            (&Method::PATCH, Some(_), _) => Verb::Patch,
            (&Method::DELETE, Some(_), _) => Verb::Delete,
            (&Method::DELETE, None, _) => Verb::DeleteCollection,
            _ => {
                return error_response(&ApiError::method_not_allowed(format!(
                    "the server does not allow this method on the requested resource ({method} {path})"
                )));
            }
        };
        if target.rt.namespaced
            && target.namespace.is_none()
            && !matches!(verb, Verb::List | Verb::Watch)
        {
            return error_response(&ApiError::path_not_found(path));
        }
        if let Some(inj) = self.inner.faults.decide(
            &target.rt.plural,
            target.name.as_deref(),
            &target.rt.group,
            verb,
        ) {
            if !inj.delay.is_zero() {
                tokio::time::sleep(inj.delay).await;
            }
            if let Some(e) = inj.error {
                return error_response(&e);
            }
        }
        let shape = shape(headers);
        let mut warnings: Vec<String> = target.rt.deprecation_warning.iter().cloned().collect();
        let result = match verb {
            Verb::Watch => return watch::watch(self, &target, &query, shape),
            Verb::List => self.list(&target, &query, shape, headers),
            Verb::Get => self.get(&target, &query, shape),
            Verb::Create => self.create(&target, &query, headers, &body, &mut warnings),
            Verb::Update => self.update(&target, &query, headers, &body, &mut warnings),
            Verb::Patch => self.patch(&target, &query, headers, &body, &mut warnings),
            Verb::Delete => self.delete(&target, &query, &body),
            Verb::DeleteCollection => self.delete_collection(&target, &query, &body),
        };
        if verb_writes(verb) {
            workload::kick(self);
        }
        let mut resp = match result {
            Ok((code, v)) => json_response(code, &v),
            Err(e) => error_response(&e),
        };
        for w in warnings {
            let text = format!("299 - {}", serde_json::Value::String(w));
            if let Ok(h) = http::HeaderValue::from_str(&text) {
                resp.headers_mut().append("Warning", h);
            }
        }
        resp
    }

    fn target(&self, segs: &[&str]) -> Option<Target> {
        let (group, version, rest) = match segs {
            ["api", v, rest @ ..] if !rest.is_empty() => ("", *v, rest),
            ["apis", g, v, rest @ ..] if !rest.is_empty() => (*g, *v, rest),
            _ => return None,
        };
        let state = self.state();
        let reg = &state.registry;
        if rest.len() >= 3
            && rest[0] == "namespaces"
            && let Some(rt) = reg.find(group, version, rest[2]).filter(|t| t.namespaced)
        {
            if rest.len() > 5 {
                return None;
            }
            return Some(Target {
                rt,
                namespace: Some(rest[1].to_string()),
                name: rest.get(3).map(|s| s.to_string()),
                sub: rest.get(4).map(|s| s.to_string()),
            });
        }
        if rest.len() > 3 {
            return None;
        }
        let rt = reg.find(group, version, rest[0])?;
        if rt.namespaced && rest.len() > 1 {
            return None;
        }
        Some(Target {
            rt,
            namespace: None,
            name: rest.get(1).map(|s| s.to_string()),
            sub: rest.get(2).map(|s| s.to_string()),
        })
    }

    /// The store for a write: `fieldValidation` applies, warnings go to `warnings`.
    fn write_state<'a>(&'a self, q: &Query, warnings: &'a mut Vec<String>) -> WriteState<'a> {
        let mut guard = self.state();
        guard.field_validation = match q.get("fieldValidation") {
            Some("Strict") => FieldValidation::Strict,
            Some("Ignore") => FieldValidation::Ignore,
            _ => FieldValidation::Warn,
        };
        guard.warnings.clear();
        WriteState { guard, warnings }
    }

    fn check_sub(&self, t: &Target) -> ApiResult<()> {
        match t.sub.as_deref() {
            None => Ok(()),
            Some("status") if t.rt.status => Ok(()),
            Some("scale") if t.rt.scale.is_some() => Ok(()),
            Some(s) => Err(ApiError::path_not_found(&format!("{}/{s}", t.rt.plural))),
        }
    }

    /// Objects of a target collection in served form, filtered by the query's selectors.
    pub(crate) fn select(&self, t: &Target, q: &Query) -> ApiResult<(Vec<Value>, u64)> {
        let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or_default())?;
        let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or_default())?;
        let state = self.state();
        let ns = t.namespace.as_deref();
        let objs: Vec<_> = match (
            fields.name(),
            ns.or(if t.rt.namespaced { None } else { Some("") }),
        ) {
            (Some(name), Some(ns)) => state.get(&t.rt.storage, ns, name).into_iter().collect(),
            _ => state.list(&t.rt.storage, if t.rt.namespaced { ns } else { Some("") }),
        };
        let items = objs
            .iter()
            .filter(|o| labels.matches(o))
            .map(|o| from_storage(&t.rt, o))
            .filter(|o| fields.matches(o))
            .collect();
        Ok((items, state.resource_version()))
    }

    fn list(&self, t: &Target, q: &Query, shape: Shape, _h: &HeaderMap) -> ApiResult<(u16, Value)> {
        let (items, rv) = self.select(t, q)?;
        Ok((
            200,
            match shape {
                Shape::Table => table(
                    &t.rt,
                    &items,
                    rv,
                    IncludeObject::parse(q.get("includeObject")),
                    self.inner.options.clock.now(),
                ),
                Shape::Metadata => {
                    json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1",
                "metadata": {"resourceVersion": rv.to_string()},
                "items": items.iter().map(partial).collect::<Vec<_>>()})
                }
                Shape::Full => json!({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version(),
                "metadata": {"resourceVersion": rv.to_string()}, "items": items}),
            },
        ))
    }

    fn ns_name(t: &Target) -> (&str, &str) {
        (
            t.namespace.as_deref().unwrap_or_default(),
            t.name.as_deref().unwrap_or_default(),
        )
    }

    fn get(&self, t: &Target, q: &Query, shape: Shape) -> ApiResult<(u16, Value)> {
        self.check_sub(t)?;
        let (ns, name) = Self::ns_name(t);
        let state = self.state();
        let obj = state
            .get(&t.rt.storage, ns, name)
            .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
        if t.sub.as_deref() == Some("scale") {
            return Ok((200, scale_of(&t.rt, &obj)));
        }
        let served = from_storage(&t.rt, &obj);
        Ok((
            200,
            match shape {
                Shape::Table => table(
                    &t.rt,
                    &[served],
                    state.resource_version(),
                    IncludeObject::parse(q.get("includeObject")),
                    self.inner.options.clock.now(),
                ),
                Shape::Metadata => partial(&served),
                Shape::Full => served,
            },
        ))
    }

    fn create(
        &self,
        t: &Target,
        q: &Query,
        headers: &HeaderMap,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> ApiResult<(u16, Value)> {
        if t.sub.is_some() {
            return Err(ApiError::method_not_allowed(
                "POST is not supported on subresources",
            ));
        }
        let ct = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default();
        let body = if ct.starts_with("application/vnd.kubernetes.protobuf") {
            crate::proto::decode(body)?
        } else {
            parse_json(body)?
        };
        let obj = to_storage(&t.rt, body);
        let now = self.inner.options.clock.now();
        let mut state = self.write_state(q, warnings);
        let created = state.create(
            &t.rt,
            t.namespace.as_deref().unwrap_or_default(),
            obj,
            now,
            q.dry_run(),
        )?;
        Ok((201, from_storage(&t.rt, &created)))
    }

    fn update(
        &self,
        t: &Target,
        q: &Query,
        headers: &HeaderMap,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> ApiResult<(u16, Value)> {
        self.check_sub(t)?;
        let (ns, name) = Self::ns_name(t);
        // Typed clients update in protobuf as they create (helm's release Secrets).
        let ct = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default();
        let body = if ct.starts_with("application/vnd.kubernetes.protobuf") {
            crate::proto::decode(body)?
        } else {
            parse_json(body)?
        };
        let no_rv = body
            .pointer("/metadata/resourceVersion")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if t.rt.from_crd && t.sub.as_deref() != Some("scale") && no_rv {
            // Custom resources do not allow unconditional updates.
            return Err(ApiError::invalid(
                &t.rt.group,
                &t.rt.kind,
                name,
                "metadata.resourceVersion: Invalid value: 0x0: must be specified for an update",
            ));
        }
        let now = self.inner.options.clock.now();
        let mut state = self.write_state(q, warnings);
        if t.sub.as_deref() == Some("scale") {
            let cur = state
                .get(&t.rt.storage, ns, name)
                .ok_or_else(|| ApiError::not_found(&t.rt.group, &t.rt.plural, name))?;
            let rv = body
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !rv.is_empty()
                && Some(rv)
                    != cur
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            {
                return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
            }
            let new = set_replicas(&t.rt, &cur, &body)?;
            let out = state.update(&t.rt, ns, name, new, UpdateMode::Main, now, q.dry_run())?;
            return Ok((200, scale_of(&t.rt, &out)));
        }
        let mode = if t.sub.as_deref() == Some("status") {
            UpdateMode::Status
        } else {
            UpdateMode::Main
        };
        let out = state.update(
            &t.rt,
            ns,
            name,
            to_storage(&t.rt, body),
            mode,
            now,
            q.dry_run(),
        )?;
        Ok((200, from_storage(&t.rt, &out)))
    }

    fn patch(
        &self,
        t: &Target,
        q: &Query,
        headers: &HeaderMap,
        body: &Bytes,
        warnings: &mut Vec<String>,
    ) -> ApiResult<(u16, Value)> {
        self.check_sub(t)?;
        let (ns, name) = Self::ns_name(t);
        let ct = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|c| c.to_str().ok())
            .unwrap_or_default();
        let kind = PatchKind::from_content_type(ct).ok_or_else(|| {
            ApiError::unsupported_media_type(format!("the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json (got {ct:?})"))
        })?;
        if kind == PatchKind::Apply && q.get("fieldManager").is_none() {
            return Err(ApiError::bad_request(
                "PATCH: fieldManager is required for apply requests",
            ));
        }
        let patch = parse_json(body)?;
        let now = self.inner.options.clock.now();
        let mut state = self.write_state(q, warnings);
        let cur = state.get(&t.rt.storage, ns, name);
        let Some(cur) = cur else {
            if kind == PatchKind::Apply && t.sub.is_none() {
                if !patch.is_object() || patch.get("metadata").is_some_and(|m| !m.is_object()) {
                    return Err(ApiError::bad_request(
                        "an apply patch must be a JSON object with an object metadata",
                    ));
                }
                let mut obj = crate::patch::strategic_merge(&json!({}), &patch, true);
                if !obj.get("metadata").is_some_and(Value::is_object) {
                    obj["metadata"] = json!({});
                }
                obj["metadata"]["name"] = name.into();
                let created = state.create(&t.rt, ns, to_storage(&t.rt, obj), now, q.dry_run())?;
                return Ok((201, from_storage(&t.rt, &created)));
            }
            return Err(ApiError::not_found(&t.rt.group, &t.rt.plural, name));
        };
        if t.sub.as_deref() == Some("scale") {
            let scale = apply_patch(kind, &scale_of(&t.rt, &cur), &patch)?;
            let rv = scale
                .pointer("/metadata/resourceVersion")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if !rv.is_empty()
                && Some(rv)
                    != cur
                        .pointer("/metadata/resourceVersion")
                        .and_then(Value::as_str)
            {
                return Err(ApiError::conflict(&t.rt.group, &t.rt.plural, name));
            }
            let new = set_replicas(&t.rt, &cur, &scale)?;
            let out = state.update(&t.rt, ns, name, new, UpdateMode::Main, now, q.dry_run())?;
            return Ok((200, scale_of(&t.rt, &out)));
        }
        let served = from_storage(&t.rt, &cur);
        let patched = apply_patch(kind, &served, &patch)?;
        let mode = if t.sub.as_deref() == Some("status") {
            UpdateMode::Status
        } else {
            UpdateMode::Main
        };
        let out = state.update(
            &t.rt,
            ns,
            name,
            to_storage(&t.rt, patched),
            mode,
            now,
            q.dry_run(),
        )?;
        Ok((200, from_storage(&t.rt, &out)))
    }

    fn delete_options(q: &Query, body: &Bytes) -> ApiResult<DeleteOptions> {
        let opts = if body.iter().all(u8::is_ascii_whitespace) {
            json!({})
        } else if body.starts_with(b"k8s\0") {
            // A typed client's DeleteOptions in protobuf.
            crate::proto::decode(body)?
        } else {
            parse_json(body)?
        };
        let policy = opts
            .get("propagationPolicy")
            .and_then(Value::as_str)
            .or(q.get("propagationPolicy"));
        let propagation = match policy {
            None | Some("Background") => Propagation::Background,
            Some("Foreground") => Propagation::Foreground,
            Some("Orphan") => Propagation::Orphan,
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "unknown propagationPolicy {other:?}"
                )));
            }
        };
        let orphan = opts.get("orphanDependents").and_then(Value::as_bool) == Some(true);
        Ok(DeleteOptions {
            propagation: if orphan {
                Propagation::Orphan
            } else {
                propagation
            },
            precondition_rv: opts
                .pointer("/preconditions/resourceVersion")
                .and_then(Value::as_str)
                .map(String::from),
            precondition_uid: opts
                .pointer("/preconditions/uid")
                .and_then(Value::as_str)
                .map(String::from),
        })
    }

    fn delete(&self, t: &Target, q: &Query, body: &Bytes) -> ApiResult<(u16, Value)> {
        if t.sub.is_some() {
            return Err(ApiError::method_not_allowed(
                "DELETE is not supported on subresources",
            ));
        }
        let (ns, name) = Self::ns_name(t);
        let opts = Self::delete_options(q, body)?;
        let now = self.inner.options.clock.now();
        let mut state = self.state();
        match state.delete(&t.rt, ns, name, &opts, now, q.dry_run())? {
            Deleted::Removed(obj) => Ok((200, status_success(&t.rt, &obj))),
            Deleted::Pending(obj) => Ok((200, from_storage(&t.rt, &obj))),
        }
    }

    fn delete_collection(&self, t: &Target, q: &Query, body: &Bytes) -> ApiResult<(u16, Value)> {
        let opts = Self::delete_options(q, body)?;
        let (items, _) = self.select(t, q)?;
        let now = self.inner.options.clock.now();
        let mut state = self.state();
        let mut deleted = Vec::new();
        for item in items {
            let ns = item
                .pointer("/metadata/namespace")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let name = item
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match state.delete(&t.rt, ns, name, &opts, now, q.dry_run()) {
                Ok(Deleted::Removed(o) | Deleted::Pending(o)) => {
                    deleted.push(from_storage(&t.rt, &o))
                }
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok((
            200,
            json!({"kind": t.rt.list_kind, "apiVersion": t.rt.api_version(),
            "metadata": {"resourceVersion": state.resource_version().to_string()}, "items": deleted}),
        ))
    }
}

/// The locked store during one write; hands the write's warnings back when dropped.
struct WriteState<'a> {
    guard: std::sync::MutexGuard<'a, crate::store::State>,
    warnings: &'a mut Vec<String>,
}

impl std::ops::Deref for WriteState<'_> {
    type Target = crate::store::State;
    fn deref(&self) -> &Self::Target {
        &self.guard
    }
}

impl std::ops::DerefMut for WriteState<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.guard
    }
}

impl Drop for WriteState<'_> {
    fn drop(&mut self) {
        self.warnings.append(&mut self.guard.warnings);
        self.guard.field_validation = FieldValidation::Warn;
    }
}

fn verb_writes(v: Verb) -> bool {
    matches!(
        v,
        Verb::Create | Verb::Update | Verb::Patch | Verb::Delete | Verb::DeleteCollection
    )
}

fn path_ptr(json_path: &str) -> String {
    json_path
        .trim_start_matches('.')
        .split('.')
        .fold(String::new(), |acc, seg| acc + "/" + seg)
}

/// The autoscaling/v1 Scale of an object.
fn scale_of(rt: &ResourceType, obj: &Value) -> Value {
    let Some(sc) = &rt.scale else {
        return json!({});
    };
    let replicas = obj
        .pointer(&path_ptr(&sc.spec_replicas_path))
        .cloned()
        .unwrap_or(json!(0));
    let status = obj
        .pointer(&path_ptr(&sc.status_replicas_path))
        .cloned()
        .unwrap_or(json!(0));
    let selector = match &sc.label_selector_path {
        Some(p) => obj
            .pointer(&path_ptr(p))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        None => obj
            .pointer("/spec/selector")
            .map(|s| LabelSelector::from_object(s).to_query())
            .unwrap_or_default(),
    };
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut meta = json!({});
    for k in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(k) {
            meta[k] = v.clone();
        }
    }
    json!({"kind": "Scale", "apiVersion": "autoscaling/v1", "metadata": meta,
        "spec": {"replicas": replicas}, "status": {"replicas": status, "selector": selector}})
}

fn set_replicas(rt: &ResourceType, cur: &Value, scale: &Value) -> ApiResult<Value> {
    let Some(sc) = &rt.scale else {
        return Err(ApiError::path_not_found("scale"));
    };
    let replicas = scale
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .filter(|r| *r >= 0)
        .ok_or_else(|| {
            ApiError::new(
                422,
                "Invalid",
                "spec.replicas: Invalid value: must be a non-negative integer",
            )
        })?;
    let mut new = cur.clone();
    let ptr = path_ptr(&sc.spec_replicas_path);
    let mut at = &mut new;
    for seg in ptr.split('/').filter(|s| !s.is_empty()) {
        if !at.is_object() {
            *at = json!({});
        }
        at = at
            .as_object_mut()
            .expect("made an object above")
            .entry(seg)
            .or_insert(Value::Null);
    }
    *at = json!(replicas);
    Ok(new)
}
