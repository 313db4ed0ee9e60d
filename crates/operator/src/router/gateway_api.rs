//! The Gateway API router (`provider: gatewayapi:v1` or `gatewayapi:v1beta1`): the
//! canary's ClusterIP services and one HTTPRoute named after the apex service,
//! attached to `service.gatewayRefs`, whose weighted `backendRefs` split traffic
//! between the primary and canary services. Follows the Gateway API reference
//! (`gateway.networking.k8s.io` HTTPRoute, standard channel).
//!
//! Besides the weights: `service.hosts` become `hostnames`; `service.match` and an
//! A/B `analysis.match` become HTTPRoute matches (path, method, headers, query
//! parameters); `service.headers` become header modifier filters, `rewrite` a
//! URLRewrite filter, `corsPolicy` a CORS filter, `service.mirror` RequestMirror
//! filters; `timeout`/`backendTimeout` the rule's timeouts; blue/green mirroring a
//! RequestMirror filter to the canary; session affinity cookie-matching rules and
//! `Set-Cookie` response headers on the backends.

use async_trait::async_trait;
use kube::api::{Api, ObjectMeta};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::Value;
use serin_api::Canary;
use serin_api::gateway::{
    BackendObjectReference, GROUP, HTTP_ROUTE_KIND, HTTP_ROUTE_PLURAL, HTTPBackendRef,
    HTTPCORSFilter, HTTPHeader, HTTPHeaderFilter, HTTPHeaderMatch, HTTPPathMatch, HTTPPathModifier,
    HTTPRequestMirrorFilter, HTTPRouteFilter, HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec,
    HTTPRouteTimeouts, HTTPURLRewriteFilter, PATH_EXACT, PATH_PREFIX, PATH_REGEX, ParentReference,
};
use serin_api::istio::{HTTPMatchRequest, HeaderOperations, StringMatch};

use super::istio::build_cookie;
use super::{Router, Routes, SessionCookies};
use crate::error::{Error, Result};
use crate::labels::{self, Applied, KUBECTL_LAST_APPLIED, LabelOptions, ORIGINAL_CONFIGURATION};
use crate::service::{self, Backend};
use crate::workload::read_target_pods;

/// The request header session affinity matches on and the response header that
/// sets the cookie.
const COOKIE_HEADER: &str = "Cookie";
const SET_COOKIE_HEADER: &str = "Set-Cookie";
const HEADER_EXACT: &str = "Exact";
const HEADER_REGEX: &str = "RegularExpression";

/// The HTTPRoute API version a canary's provider asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayApiVersion {
    V1,
    V1beta1,
}

impl GatewayApiVersion {
    /// `gatewayapi:v1beta1` (and what starts with it) or `gatewayapi:v1`, as Flagger
    /// reads the provider.
    pub fn from_provider(provider: &str) -> Option<Self> {
        if provider.starts_with("gatewayapi:v1beta1") {
            Some(Self::V1beta1)
        } else if provider.starts_with("gatewayapi:v1") {
            Some(Self::V1)
        } else {
            None
        }
    }

    pub fn version(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1beta1 => "v1beta1",
        }
    }

    pub fn api_resource(self) -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(GROUP, self.version(), HTTP_ROUTE_KIND),
            HTTP_ROUTE_PLURAL,
        )
    }
}

pub struct GatewayApiRouter {
    client: Client,
    labels: LabelOptions,
    version: GatewayApiVersion,
}

impl GatewayApiRouter {
    pub fn new(client: Client, labels: LabelOptions, version: GatewayApiVersion) -> Self {
        GatewayApiRouter {
            client,
            labels,
            version,
        }
    }

    fn api(&self, canary: &Canary) -> Result<Api<DynamicObject>> {
        Ok(Api::namespaced_with(
            self.client.clone(),
            &labels::namespace_of(canary)?,
            &self.version.api_resource(),
        ))
    }

    async fn current(&self, canary: &Canary) -> Result<Option<DynamicObject>> {
        let (apex, _, _) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        self.api(canary)?.get_opt(&apex).await.map_err(|e| {
            Error::kube(
                format!("HTTPRoute {} get error", labels::dotted(&apex, &ns)),
                e,
            )
        })
    }

    /// Writes the HTTPRoute for `routes` (the current ones when `None`). With
    /// `reconcile`, metadata is made to match the spec and an HTTPRoute serin did not
    /// make is taken over (its spec kept for `revertOnDeletion`); otherwise only the
    /// spec changes.
    async fn write(&self, canary: &Canary, routes: Option<Routes>, reconcile: bool) -> Result<()> {
        let (apex, _, _) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        let api = self.api(canary)?;
        let version = self.version;
        let applied = labels::create_or_update(&api, "HTTPRoute", &apex, |current| {
            let current_spec = current.map(spec_of).transpose()?;
            let routes = routes
                .or_else(|| current_spec.as_ref().and_then(|s| routes_in(canary, s)))
                .unwrap_or(Routes::PRIMARY);
            let cookies = SessionCookies::for_routes(canary, routes.canary);
            let desired = http_route(canary, routes, &cookies, version)?;
            let Some(cur) = current else {
                if !reconcile {
                    return Err(Error::NotFound {
                        kind: "HTTPRoute".into(),
                        namespace: ns.clone(),
                        name: apex.clone(),
                    });
                }
                return Ok(Some(desired));
            };
            let desired_spec = spec_of(&desired)?;
            let spec_changed = current_spec
                .as_ref()
                .is_none_or(|c| with_defaults(c.clone()) != with_defaults(desired_spec.clone()));
            let mut next = cur.clone();
            if reconcile {
                // Annotations other controllers add are kept, as Flagger does.
                let mut annotations = cur.metadata.annotations.clone().unwrap_or_default();
                for (k, v) in desired.metadata.annotations.clone().unwrap_or_default() {
                    annotations.insert(k, v);
                }
                let taken_over = !labels::is_owned_by(&cur.metadata, canary);
                if taken_over
                    && spec_changed
                    && !annotations.contains_key(KUBECTL_LAST_APPLIED)
                    && !annotations.contains_key(ORIGINAL_CONFIGURATION)
                {
                    let original = cur.data.get("spec").cloned().unwrap_or(Value::Null);
                    annotations.insert(ORIGINAL_CONFIGURATION.to_string(), original.to_string());
                }
                let new_labels = desired.metadata.labels.clone().unwrap_or_default();
                let mut meta_changed = false;
                if cur.metadata.labels.clone().unwrap_or_default() != new_labels {
                    next.metadata.labels = Some(new_labels);
                    meta_changed = true;
                }
                if cur.metadata.annotations.clone().unwrap_or_default() != annotations {
                    next.metadata.annotations = Some(annotations);
                    meta_changed = true;
                }
                if !spec_changed && !meta_changed {
                    return Ok(None);
                }
            } else if !spec_changed {
                return Ok(None);
            }
            set_spec(&mut next, &desired_spec)?;
            Ok(Some(next))
        })
        .await?;
        match applied {
            Applied::Created => {
                tracing::info!(canary = %canary.id(), "HTTPRoute {} created", labels::dotted(&apex, &ns))
            }
            Applied::Updated => {
                tracing::info!(canary = %canary.id(), "HTTPRoute {} updated", labels::dotted(&apex, &ns))
            }
            Applied::Unchanged => {}
        }
        Ok(())
    }
}

fn spec_of(route: &DynamicObject) -> Result<HTTPRouteSpec> {
    let spec = route.data.get("spec").cloned().unwrap_or(Value::Null);
    if spec.is_null() {
        return Ok(HTTPRouteSpec::default());
    }
    serde_json::from_value(spec).map_err(|e| {
        Error::Invalid(format!(
            "HTTPRoute {} has a spec serin cannot read: {e}",
            route.name_any()
        ))
    })
}

fn set_spec(route: &mut DynamicObject, spec: &HTTPRouteSpec) -> Result<()> {
    let value = serde_json::to_value(spec)
        .map_err(|e| Error::Invalid(format!("HTTPRoute {}: {e}", route.name_any())))?;
    match route.data.as_object_mut() {
        Some(obj) => {
            obj.insert("spec".into(), value);
        }
        None => route.data = serde_json::json!({ "spec": value }),
    }
    Ok(())
}

/// The spec as the API server stores it: the CRD's defaults filled in, so a spec
/// read back compares equal to the one written.
pub fn with_defaults(mut spec: HTTPRouteSpec) -> HTTPRouteSpec {
    for p in &mut spec.parent_refs {
        p.group.get_or_insert_with(|| GROUP.into());
        p.kind.get_or_insert_with(|| "Gateway".into());
    }
    let backend = |b: &mut BackendObjectReference| {
        b.group.get_or_insert_with(String::new);
        b.kind.get_or_insert_with(|| "Service".into());
    };
    let filters = |fs: &mut Vec<HTTPRouteFilter>| {
        for f in fs {
            if let Some(m) = f.request_mirror.as_mut() {
                backend(&mut m.backend_ref);
            }
        }
    };
    if spec.rules.is_empty() {
        spec.rules.push(HTTPRouteRule::default());
    }
    for rule in &mut spec.rules {
        if rule.matches.is_empty() {
            rule.matches.push(HTTPRouteMatch::default());
        }
        for m in &mut rule.matches {
            m.path.get_or_insert_with(|| HTTPPathMatch {
                type_: PATH_PREFIX.into(),
                value: "/".into(),
            });
        }
        filters(&mut rule.filters);
        for b in &mut rule.backend_refs {
            b.group.get_or_insert_with(String::new);
            b.kind.get_or_insert_with(|| "Service".into());
            b.weight.get_or_insert(1);
            filters(&mut b.filters);
        }
    }
    spec
}

/// The HTTPRoute for `routes`, named after the apex service, with `service.apex`
/// metadata, owned by the Canary.
pub fn http_route(
    canary: &Canary,
    routes: Routes,
    cookies: &SessionCookies,
    version: GatewayApiVersion,
) -> Result<DynamicObject> {
    let (apex, _, _) = canary.service_names();
    let spec = http_route_spec(canary, routes, cookies)?;
    let meta = canary.spec.service.apex.clone().unwrap_or_default();
    let mut route = DynamicObject::new(&apex, &version.api_resource());
    route.metadata = ObjectMeta {
        name: Some(apex),
        namespace: canary.namespace(),
        labels: Some(meta.labels.clone()).filter(|l| !l.is_empty()),
        annotations: Some(labels::filter_metadata(Some(&meta.annotations)))
            .filter(|a| !a.is_empty()),
        owner_references: Some(vec![labels::owner_reference(canary)?]),
        ..Default::default()
    };
    set_spec(&mut route, &spec)?;
    Ok(route)
}

fn backend_ref(name: &str, weight: i32, port: i32) -> HTTPBackendRef {
    HTTPBackendRef {
        group: Some(String::new()),
        kind: Some("Service".into()),
        name: name.to_string(),
        namespace: None,
        port: Some(port),
        weight: Some(weight),
        filters: Vec::new(),
    }
}

/// `service.gatewayRefs` as parent references.
pub fn parent_refs(canary: &Canary) -> Result<Vec<ParentReference>> {
    let refs = &canary.spec.service.gateway_refs;
    if refs.is_empty() {
        return Err(Error::Invalid(format!(
            "canary {}: GatewayRefs must be specified when using Gateway API as a provider (spec.service.gatewayRefs)",
            canary.id()
        )));
    }
    refs.iter()
        .enumerate()
        .map(|(i, r)| {
            let p: ParentReference = serde_json::from_value(r.clone()).map_err(|e| {
                Error::Invalid(format!(
                    "canary {}: spec.service.gatewayRefs[{i}]: {e}",
                    canary.id()
                ))
            })?;
            if p.name.is_empty() {
                return Err(Error::Invalid(format!(
                    "canary {}: spec.service.gatewayRefs[{i}].name is required",
                    canary.id()
                )));
            }
            Ok(p)
        })
        .collect()
}

fn unsupported(canary: &Canary, what: &str, m: &impl std::fmt::Debug) -> Error {
    Error::Invalid(format!(
        "canary {}: Gateway API doesn't support the specified {what} matching selector: {m:?}",
        canary.id()
    ))
}

fn string_match(
    canary: &Canary,
    what: &str,
    name: &str,
    m: &StringMatch,
) -> Result<HTTPHeaderMatch> {
    let (type_, value) = match (&m.exact, &m.regex) {
        (Some(e), _) if !e.is_empty() => (HEADER_EXACT, e),
        (_, Some(r)) if !r.is_empty() => (HEADER_REGEX, r),
        _ => return Err(unsupported(canary, what, m)),
    };
    Ok(HTTPHeaderMatch {
        type_: type_.into(),
        name: name.to_string(),
        value: value.clone(),
    })
}

/// Istio-style matches (`service.match`, `analysis.match`) as HTTPRoute matches:
/// URI exact, prefix or regex; method exact; headers and query parameters exact or
/// regex. Anything else is an error naming the selector.
pub fn route_matches(canary: &Canary, matches: &[HTTPMatchRequest]) -> Result<Vec<HTTPRouteMatch>> {
    let mut out = Vec::new();
    for m in matches {
        let mut r = HTTPRouteMatch::default();
        if let Some(uri) = &m.uri {
            let (type_, value) = match (&uri.regex, &uri.exact, &uri.prefix) {
                (Some(v), _, _) if !v.is_empty() => (PATH_REGEX, v),
                (_, Some(v), _) if !v.is_empty() => (PATH_EXACT, v),
                (_, _, Some(v)) if !v.is_empty() => (PATH_PREFIX, v),
                _ => return Err(unsupported(canary, "path", uri)),
            };
            r.path = Some(HTTPPathMatch {
                type_: type_.into(),
                value: value.clone(),
            });
        }
        if let Some(method) = &m.method {
            match method.exact.as_deref().filter(|e| !e.is_empty()) {
                Some(e) => r.method = Some(e.to_string()),
                None => return Err(unsupported(canary, "method", method)),
            }
        }
        for (name, v) in &m.headers {
            r.headers.push(string_match(canary, "header", name, v)?);
        }
        for (name, v) in &m.query_params {
            r.query_params.push(string_match(canary, "query", name, v)?);
        }
        if r != HTTPRouteMatch::default() {
            out.push(r);
        }
    }
    Ok(out)
}

/// Every analysis match combined with every service match: the service match with
/// the analysis match's headers, query parameters, path and method.
pub fn merge_route_matches(
    analysis: &[HTTPRouteMatch],
    service: &[HTTPRouteMatch],
) -> Vec<HTTPRouteMatch> {
    if analysis.is_empty() {
        return service.to_vec();
    }
    if service.is_empty() {
        return analysis.to_vec();
    }
    let mut out = Vec::with_capacity(analysis.len() * service.len());
    for a in analysis {
        for s in service {
            let mut m = s.clone();
            if !a.headers.is_empty() {
                m.headers = a.headers.clone();
            }
            if !a.query_params.is_empty() {
                m.query_params = a.query_params.clone();
            }
            if a.path.is_some() {
                m.path = a.path.clone();
            }
            if a.method.is_some() {
                m.method = a.method.clone();
            }
            out.push(m);
        }
    }
    out
}

fn header_filter(ops: &HeaderOperations) -> Option<HTTPHeaderFilter> {
    let pairs = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(name, value)| HTTPHeader {
                name: name.clone(),
                value: value.clone(),
            })
            .collect::<Vec<_>>()
    };
    let f = HTTPHeaderFilter {
        set: pairs(&ops.set),
        add: pairs(&ops.add),
        remove: ops.remove.clone(),
    };
    (f != HTTPHeaderFilter::default()).then_some(f)
}

/// The rule filters of the `service` block.
fn service_filters(canary: &Canary) -> Result<Vec<HTTPRouteFilter>> {
    let s = &canary.spec.service;
    let mut filters = Vec::new();
    if let Some(h) = &s.headers {
        if let Some(f) = h.request.as_ref().and_then(header_filter) {
            filters.push(HTTPRouteFilter {
                type_: "RequestHeaderModifier".into(),
                request_header_modifier: Some(f),
                ..Default::default()
            });
        }
        if let Some(f) = h.response.as_ref().and_then(header_filter) {
            filters.push(HTTPRouteFilter {
                type_: "ResponseHeaderModifier".into(),
                response_header_modifier: Some(f),
                ..Default::default()
            });
        }
    }
    if let Some(r) = &s.rewrite {
        let mut rewrite = HTTPURLRewriteFilter {
            hostname: r.authority.clone().filter(|a| !a.is_empty()),
            path: None,
        };
        if let Some(uri) = r.uri.as_deref().filter(|u| !u.is_empty()) {
            let prefix = r.type_.as_deref() == Some("ReplacePrefixMatch");
            rewrite.path = Some(HTTPPathModifier {
                type_: if prefix {
                    "ReplacePrefixMatch"
                } else {
                    "ReplaceFullPath"
                }
                .into(),
                replace_full_path: (!prefix).then(|| uri.to_string()),
                replace_prefix_match: prefix.then(|| uri.to_string()),
            });
        }
        if rewrite != HTTPURLRewriteFilter::default() {
            filters.push(HTTPRouteFilter {
                type_: "URLRewrite".into(),
                url_rewrite: Some(rewrite),
                ..Default::default()
            });
        }
    }
    for (i, m) in s.mirror.iter().enumerate() {
        let mirror: HTTPRequestMirrorFilter = serde_json::from_value(m.clone()).map_err(|e| {
            Error::Invalid(format!(
                "canary {}: spec.service.mirror[{i}]: {e}",
                canary.id()
            ))
        })?;
        filters.push(HTTPRouteFilter {
            type_: "RequestMirror".into(),
            request_mirror: Some(mirror),
            ..Default::default()
        });
    }
    if let Some(c) = &s.cors_policy {
        if !c.allow_origins.is_empty() {
            tracing::warn!(canary = %canary.id(), "'corsPolicy.allowOrigins' is not supported by Gateway API, use 'corsPolicy.allowOrigin' instead");
        }
        let max_age = c
            .max_age
            .as_deref()
            .and_then(|a| serin_api::duration::parse_duration(a).ok())
            .and_then(|d| i32::try_from(d.as_secs()).ok())
            .filter(|s| *s > 0);
        filters.push(HTTPRouteFilter {
            type_: "CORS".into(),
            cors: Some(HTTPCORSFilter {
                allow_origins: c.allow_origin.clone(),
                allow_credentials: c.allow_credentials.filter(|a| *a),
                allow_methods: c.allow_methods.clone(),
                allow_headers: c.allow_headers.clone(),
                expose_headers: c.expose_headers.clone(),
                max_age,
            }),
            ..Default::default()
        });
    }
    Ok(filters)
}

fn timeouts(canary: &Canary) -> Option<HTTPRouteTimeouts> {
    let s = &canary.spec.service;
    let t = HTTPRouteTimeouts {
        request: s.timeout.clone().filter(|t| !t.is_empty()),
        backend_request: s.backend_timeout.clone().filter(|t| !t.is_empty()),
    };
    (t != HTTPRouteTimeouts::default()).then_some(t)
}

fn cookie_match(cookie: &str) -> HTTPRouteMatch {
    let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
    HTTPRouteMatch {
        headers: vec![HTTPHeaderMatch {
            type_: HEADER_REGEX.into(),
            name: COOKIE_HEADER.into(),
            value: format!(".*{name}.*{value}.*"),
        }],
        ..Default::default()
    }
}

fn set_cookie_filter(value: String) -> HTTPRouteFilter {
    HTTPRouteFilter {
        type_: "ResponseHeaderModifier".into(),
        response_header_modifier: Some(HTTPHeaderFilter {
            add: vec![HTTPHeader {
                name: SET_COOKIE_HEADER.into(),
                value,
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Adds a `Set-Cookie` to a rule's response header filter (there may be one only).
fn add_set_cookie(filters: &mut Vec<HTTPRouteFilter>, value: String) {
    match filters
        .iter_mut()
        .find(|f| f.type_ == "ResponseHeaderModifier")
        .and_then(|f| f.response_header_modifier.as_mut())
    {
        Some(m) => {
            m.add
                .retain(|h| !h.name.eq_ignore_ascii_case(SET_COOKIE_HEADER));
            m.add.push(HTTPHeader {
                name: SET_COOKIE_HEADER.into(),
                value,
            });
        }
        None => filters.push(set_cookie_filter(value)),
    }
}

/// The HTTPRoute spec for `routes`.
pub fn http_route_spec(
    canary: &Canary,
    routes: Routes,
    cookies: &SessionCookies,
) -> Result<HTTPRouteSpec> {
    let (_, primary, canary_svc) = canary.service_names();
    let s = &canary.spec.service;
    let port = s.port;
    let service_matches = route_matches(canary, &s.match_)?;
    let mut matches = service_matches.clone();
    if matches.is_empty() {
        matches.push(HTTPRouteMatch {
            path: Some(HTTPPathMatch {
                type_: PATH_PREFIX.into(),
                value: "/".into(),
            }),
            ..Default::default()
        });
    }
    let filters = service_filters(canary)?;
    let rule = |matches: Vec<HTTPRouteMatch>, backends: Vec<HTTPBackendRef>| HTTPRouteRule {
        matches,
        filters: filters.clone(),
        backend_refs: backends,
        timeouts: timeouts(canary),
    };
    let weighted_backends = || {
        vec![
            backend_ref(&primary, routes.primary, port),
            backend_ref(&canary_svc, routes.canary, port),
        ]
    };
    let mut weighted = rule(matches.clone(), weighted_backends());
    let analysis = canary.analysis();
    if routes.mirrored && analysis.is_some_and(|a| a.iterations.unwrap_or(0) > 0) {
        weighted.filters.push(HTTPRouteFilter {
            type_: "RequestMirror".into(),
            request_mirror: Some(HTTPRequestMirrorFilter {
                backend_ref: BackendObjectReference {
                    group: Some(String::new()),
                    kind: Some("Service".into()),
                    name: canary_svc.clone(),
                    namespace: None,
                    port: Some(port),
                },
                percent: analysis
                    .and_then(|a| a.mirror_weight)
                    .filter(|w| (1..100).contains(w)),
                fraction: None,
            }),
            ..Default::default()
        });
    }
    let mut rules = vec![weighted.clone()];
    if let Some(affinity) = analysis.and_then(|a| a.session_affinity.as_ref()) {
        if routes.canary > 0 {
            let mut out = Vec::new();
            if let Some(cookie) = &cookies.canary {
                if let Some(b) = weighted
                    .backend_refs
                    .iter_mut()
                    .find(|b| b.name == canary_svc)
                {
                    b.filters.push(set_cookie_filter(build_cookie(
                        canary,
                        cookie,
                        i64::from(affinity.max_age()),
                    )));
                }
                let mut sticky = weighted.clone();
                sticky.matches = merge_route_matches(&[cookie_match(cookie)], &service_matches);
                sticky.backend_refs = vec![
                    backend_ref(&primary, 0, port),
                    backend_ref(&canary_svc, 100, port),
                ];
                out.push(sticky);
            }
            let primary_cookie_name = affinity.primary_cookie_name.as_deref().unwrap_or_default();
            if !primary_cookie_name.is_empty()
                && let Some(cookie) = &cookies.primary
            {
                let interval = canary.analysis_interval().as_secs() as i64;
                if let Some(b) = weighted.backend_refs.iter_mut().find(|b| b.name == primary) {
                    b.filters
                        .push(set_cookie_filter(build_cookie(canary, cookie, interval)));
                }
                let mut sticky = weighted.clone();
                for b in &mut sticky.backend_refs {
                    b.filters.clear();
                }
                sticky.matches = merge_route_matches(&[cookie_match(cookie)], &service_matches);
                sticky.backend_refs = vec![
                    backend_ref(&primary, 100, port),
                    backend_ref(&canary_svc, 0, port),
                ];
                out.push(sticky);
            }
            out.push(weighted);
            rules = out;
        } else if let Some(previous) = &cookies.previous {
            let mut expire = weighted.clone();
            expire.matches = merge_route_matches(&[cookie_match(previous)], &service_matches);
            add_set_cookie(&mut expire.filters, format!("{previous}; Max-Age=-1"));
            rules = vec![expire, weighted];
        }
    }
    let ab_match = analysis.map(|a| a.match_.as_slice()).unwrap_or_default();
    if !ab_match.is_empty() {
        let ab = route_matches(canary, ab_match)?;
        let to_canary = rule(merge_route_matches(&ab, &matches), weighted_backends());
        let rest = rule(matches.clone(), vec![backend_ref(&primary, 100, port)]);
        rules = vec![to_canary, rest];
    }
    Ok(HTTPRouteSpec {
        parent_refs: parent_refs(canary)?,
        hostnames: s.hosts.clone(),
        rules,
    })
}

/// The traffic split an HTTPRoute spec holds: the weights of the last rule that
/// sends traffic to the canary service (the weighted rule in every layout serin
/// writes), and whether a rule mirrors to the canary. `None` when no rule names both.
pub fn routes_in(canary: &Canary, spec: &HTTPRouteSpec) -> Option<Routes> {
    let (_, primary, canary_svc) = canary.service_names();
    let rule = spec
        .rules
        .iter()
        .rev()
        .find(|r| r.backend_refs.iter().any(|b| b.name == canary_svc))?;
    let weight = |name: &str| {
        rule.backend_refs
            .iter()
            .find(|b| b.name == name)
            .map(|b| b.weight.unwrap_or(1))
            .unwrap_or(0)
    };
    let (p, c) = (weight(&primary), weight(&canary_svc));
    if p == 0 && c == 0 {
        return None;
    }
    let mirrored = spec.rules.iter().any(|r| {
        r.filters.iter().any(|f| {
            f.type_ == "RequestMirror"
                && f.request_mirror
                    .as_ref()
                    .is_some_and(|m| m.backend_ref.name == canary_svc)
        })
    });
    Some(Routes {
        primary: p,
        canary: c,
        mirrored,
    })
}

/// An error when a parent Gateway has not accepted the route's current generation.
fn parents_ready(route: &DynamicObject) -> Result<()> {
    let generation = route.metadata.generation.unwrap_or(0);
    let parents = route
        .data
        .pointer("/status/parents")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for parent in parents {
        let name = parent
            .pointer("/parentRef/name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        for c in parent
            .get("conditions")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if c.get("type").and_then(Value::as_str) != Some("Accepted") {
                continue;
            }
            let status = c.get("status").and_then(Value::as_str).unwrap_or_default();
            let observed = c
                .get("observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
            if status != "True" || observed < generation {
                return Err(Error::Invalid(format!(
                    "HTTPRoute {}.{} parent {name} is not ready (status: {status}, observed generation: {observed}, current generation: {generation})",
                    route.name_any(),
                    route.namespace().unwrap_or_default()
                )));
            }
        }
    }
    Ok(())
}

#[async_trait]
impl Router for GatewayApiRouter {
    async fn reconcile(&self, canary: &Canary) -> Result<()> {
        // Before anything is written: a canary without gateways is refused.
        parent_refs(canary)?;
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        service::reconcile_services(&self.client, canary, &pods, Backend::Primary).await?;
        self.write(canary, None, true).await
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<()> {
        let routes = Routes {
            primary: routes.primary.clamp(0, 100),
            canary: routes.canary.clamp(0, 100),
            mirrored: routes.mirrored,
        };
        self.write(canary, Some(routes), false).await
    }

    async fn get_routes(&self, canary: &Canary) -> Result<Routes> {
        let (apex, primary, canary_svc) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        let route = self.current(canary).await?.ok_or_else(|| Error::NotFound {
            kind: "HTTPRoute".into(),
            namespace: ns.clone(),
            name: apex.clone(),
        })?;
        parents_ready(&route)?;
        routes_in(canary, &spec_of(&route)?).ok_or_else(|| {
            Error::Invalid(format!(
                "HTTPRoute {} does not contain backendRefs for {primary} and {canary_svc}",
                labels::dotted(&apex, &ns)
            ))
        })
    }

    async fn finalize(&self, canary: &Canary) -> Result<()> {
        let (apex, _, _) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        if let Some(route) = self.current(canary).await? {
            let api = self.api(canary)?;
            if labels::is_owned_by(&route.metadata, canary) {
                labels::delete_if_owned(&api, "HTTPRoute", &apex, canary).await?;
            } else {
                let original = if let Some(a) = route.annotations().get(KUBECTL_LAST_APPLIED) {
                    let stored: Value = serde_json::from_str(a).map_err(|e| {
                        Error::Invalid(format!(
                            "HTTPRoute {} failed to read annotation {KUBECTL_LAST_APPLIED}: {e}",
                            labels::dotted(&apex, &ns)
                        ))
                    })?;
                    stored.get("spec").cloned()
                } else if let Some(a) = route.annotations().get(ORIGINAL_CONFIGURATION) {
                    Some(serde_json::from_str::<Value>(a).map_err(|e| {
                        Error::Invalid(format!(
                            "HTTPRoute {} failed to read annotation {ORIGINAL_CONFIGURATION}: {e}",
                            labels::dotted(&apex, &ns)
                        ))
                    })?)
                } else {
                    tracing::warn!(canary = %canary.id(), "HTTPRoute {} original configuration not found, unable to revert", labels::dotted(&apex, &ns));
                    None
                };
                if let Some(spec) = original {
                    labels::create_or_update(&api, "HTTPRoute", &apex, |cur| {
                        let Some(cur) = cur else { return Ok(None) };
                        let mut next = cur.clone();
                        if let Some(a) = next.metadata.annotations.as_mut() {
                            a.remove(ORIGINAL_CONFIGURATION);
                        }
                        if let Some(obj) = next.data.as_object_mut() {
                            obj.insert("spec".into(), spec.clone());
                        }
                        Ok(Some(next))
                    })
                    .await?;
                }
            }
        }
        let pods = read_target_pods(&self.client, canary, &self.labels)
            .await
            .ok();
        service::finalize_services(&self.client, canary, pods.as_ref()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(spec: Value) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test", "uid": "u1"},
            "spec": spec
        }))
        .unwrap()
    }

    fn spec(c: &Canary, routes: Routes, cookies: &SessionCookies) -> Value {
        serde_json::to_value(http_route_spec(c, routes, cookies).unwrap()).unwrap()
    }

    fn base() -> Value {
        json!({
            "provider": "gatewayapi:v1",
            "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "podinfo"},
            "service": {
                "port": 9898,
                "hosts": ["app.example.com"],
                "gatewayRefs": [{"name": "public", "namespace": "istio-ingress"}]
            },
            "analysis": {"interval": "1m", "threshold": 5, "maxWeight": 50, "stepWeight": 10}
        })
    }

    #[test]
    fn weighted_backends_to_primary_and_canary() {
        let c = canary(base());
        assert_eq!(
            spec(&c, Routes::to_canary(30), &SessionCookies::default()),
            json!({
                "parentRefs": [{"namespace": "istio-ingress", "name": "public"}],
                "hostnames": ["app.example.com"],
                "rules": [{
                    "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                    "backendRefs": [
                        {"group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 70},
                        {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898, "weight": 30}
                    ]
                }]
            })
        );
        let s = http_route_spec(&c, Routes::to_canary(30), &SessionCookies::default()).unwrap();
        assert_eq!(routes_in(&c, &s), Some(Routes::to_canary(30)));
        assert_eq!(
            routes_in(&c, &with_defaults(s)),
            Some(Routes::to_canary(30))
        );
    }

    #[test]
    fn gateway_refs_are_required() {
        let mut v = base();
        v["service"]["gatewayRefs"] = json!([]);
        let err = http_route_spec(&canary(v), Routes::PRIMARY, &SessionCookies::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("GatewayRefs must be specified"), "{err}");
        assert!(err.contains("spec.service.gatewayRefs"), "{err}");
    }

    #[test]
    fn ab_matches_headers_and_query_params_go_to_the_canary_first() {
        let mut v = base();
        v["service"]["match"] = json!([{"uri": {"prefix": "/api"}}]);
        v["service"]["timeout"] = json!("30s");
        v["service"]["headers"] = json!({"request": {"add": {"x-b": "2", "x-a": "1"}}, "response": {"remove": ["x-powered-by"]}});
        v["analysis"]["match"] = json!([
            {"headers": {"x-canary": {"exact": "insider"}}},
            {"queryParams": {"canary": {"regex": "^(yes|true)$"}}}
        ]);
        let c = canary(v);
        let s = spec(&c, Routes::to_canary(100), &SessionCookies::default());
        let rules = s["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0]["matches"],
            json!([
                {"path": {"type": "PathPrefix", "value": "/api"},
                 "headers": [{"type": "Exact", "name": "x-canary", "value": "insider"}]},
                {"path": {"type": "PathPrefix", "value": "/api"},
                 "queryParams": [{"type": "RegularExpression", "name": "canary", "value": "^(yes|true)$"}]}
            ])
        );
        assert_eq!(rules[0]["backendRefs"][1]["weight"], 100);
        assert_eq!(
            rules[1]["backendRefs"],
            json!([{"group": "", "kind": "Service", "name": "podinfo-primary", "port": 9898, "weight": 100}])
        );
        for r in rules {
            assert_eq!(r["timeouts"], json!({"request": "30s"}));
            assert_eq!(
                r["filters"],
                json!([
                    {"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "x-a", "value": "1"}, {"name": "x-b", "value": "2"}]}},
                    {"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["x-powered-by"]}}
                ])
            );
        }
    }

    #[test]
    fn unsupported_matches_are_named() {
        let mut v = base();
        v["service"]["match"] = json!([{"headers": {"user-agent": {"prefix": "Mozilla"}}}]);
        let err = http_route_spec(&canary(v), Routes::PRIMARY, &SessionCookies::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("header matching selector"), "{err}");
    }

    #[test]
    fn mirroring_adds_a_request_mirror_to_the_canary() {
        let mut v = base();
        v["analysis"] = json!({"interval": "1m", "threshold": 5, "iterations": 10, "mirror": true, "mirrorWeight": 50});
        let c = canary(v);
        let routes = Routes {
            primary: 100,
            canary: 0,
            mirrored: true,
        };
        let s = spec(&c, routes, &SessionCookies::default());
        assert_eq!(
            s["rules"][0]["filters"],
            json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"group": "", "kind": "Service", "name": "podinfo-canary", "port": 9898},
                "percent": 50}}])
        );
        let typed = http_route_spec(&c, routes, &SessionCookies::default()).unwrap();
        assert_eq!(routes_in(&c, &typed), Some(routes));
        let plain = http_route_spec(&c, Routes::PRIMARY, &SessionCookies::default()).unwrap();
        assert!(plain.rules[0].filters.is_empty());
    }

    #[test]
    fn session_affinity_sticks_users_with_the_cookie() {
        let mut v = base();
        v["service"]["headers"] = json!({"response": {"set": {"x-served-by": "serin"}}});
        v["analysis"]["sessionAffinity"] = json!({"cookieName": "flagger-cookie", "maxAge": 600});
        let c = canary(v);
        let cookies = SessionCookies {
            canary: Some("flagger-cookie=abc".into()),
            primary: None,
            previous: None,
        };
        let s = spec(&c, Routes::to_canary(10), &cookies);
        let rules = s["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2, "sticky canary, weighted");
        assert_eq!(
            rules[0]["matches"],
            json!([{"headers": [{"type": "RegularExpression", "name": "Cookie", "value": ".*flagger-cookie.*abc.*"}]}])
        );
        assert_eq!(rules[0]["backendRefs"][1]["weight"], 100);
        assert_eq!(
            rules[1]["backendRefs"][1]["filters"],
            json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "add": [{"name": "Set-Cookie", "value": "flagger-cookie=abc; Max-Age=600"}]}}])
        );
        let typed = http_route_spec(&c, Routes::to_canary(10), &cookies).unwrap();
        assert_eq!(routes_in(&c, &typed), Some(Routes::to_canary(10)));

        // Back on the primary, the last rollout's cookie is expired, in the one
        // response header filter the rule may have.
        let done = SessionCookies {
            canary: None,
            primary: None,
            previous: Some("flagger-cookie=abc".into()),
        };
        let s = spec(&c, Routes::PRIMARY, &done);
        let rules = s["rules"].as_array().unwrap();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            rules[0]["filters"],
            json!([{"type": "ResponseHeaderModifier", "responseHeaderModifier": {
                "set": [{"name": "x-served-by", "value": "serin"}],
                "add": [{"name": "Set-Cookie", "value": "flagger-cookie=abc; Max-Age=-1"}]}}])
        );
        assert_eq!(rules[1]["backendRefs"][0]["weight"], 100);
    }

    #[test]
    fn rewrite_and_cors_become_filters() {
        let mut v = base();
        v["service"]["rewrite"] =
            json!({"uri": "/v2", "type": "ReplacePrefixMatch", "authority": "backend.local"});
        v["service"]["corsPolicy"] = json!({"allowOrigin": ["https://example.com"], "allowMethods": ["GET", "POST"], "maxAge": "24h", "allowCredentials": true});
        let s = spec(&canary(v), Routes::PRIMARY, &SessionCookies::default());
        assert_eq!(
            s["rules"][0]["filters"],
            json!([
                {"type": "URLRewrite", "urlRewrite": {"hostname": "backend.local",
                    "path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/v2"}}},
                {"type": "CORS", "cors": {"allowOrigins": ["https://example.com"], "allowCredentials": true,
                    "allowMethods": ["GET", "POST"], "maxAge": 86400}}
            ])
        );
    }

    #[test]
    fn provider_names() {
        assert_eq!(
            GatewayApiVersion::from_provider("gatewayapi:v1"),
            Some(GatewayApiVersion::V1)
        );
        assert_eq!(
            GatewayApiVersion::from_provider("gatewayapi:v1beta1"),
            Some(GatewayApiVersion::V1beta1)
        );
        assert_eq!(GatewayApiVersion::from_provider("istio"), None);
    }
}
