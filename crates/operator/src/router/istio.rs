//! The Istio router: a DestinationRule per backend service and the apex
//! VirtualService whose routes split traffic between primary and canary, following
//! Istio's `networking.istio.io/v1beta1` reference.

use std::collections::BTreeMap;

use async_trait::async_trait;
use kube::api::{Api, ObjectMeta};
use kube::{Client, ResourceExt};
use serin_api::Canary;
use serin_api::defaults::MESH_GATEWAY;
use serin_api::istio::{
    Destination, DestinationRule, DestinationRuleSpec, HTTPMatchRequest, HTTPRewrite, HTTPRoute,
    HTTPRouteDestination, HeaderOperations, Headers, L4MatchAttributes, Percent, PortSelector,
    StringMatch, TCPRoute, VirtualService, VirtualServiceSpec,
};

use super::{Router, Routes, SessionCookies};
use crate::error::{Error, Result};
use crate::labels::{self, Applied, KUBECTL_LAST_APPLIED, LabelOptions, ORIGINAL_CONFIGURATION};
use crate::service::{self, Backend};
use crate::workload::read_target_pods;

/// The request header session affinity matches on (Istio wants header names in
/// lower case) and the response header that sets the cookie.
const COOKIE_HEADER: &str = "cookie";
const SET_COOKIE_HEADER: &str = "Set-Cookie";

pub struct IstioRouter {
    client: Client,
    labels: LabelOptions,
}

impl IstioRouter {
    pub fn new(client: Client, labels: LabelOptions) -> Self {
        IstioRouter { client, labels }
    }

    fn vs_api(&self, canary: &Canary) -> Result<Api<VirtualService>> {
        Ok(Api::namespaced(
            self.client.clone(),
            &labels::namespace_of(canary)?,
        ))
    }

    fn dr_api(&self, canary: &Canary) -> Result<Api<DestinationRule>> {
        Ok(Api::namespaced(
            self.client.clone(),
            &labels::namespace_of(canary)?,
        ))
    }

    async fn current_vs(&self, canary: &Canary) -> Result<Option<VirtualService>> {
        let (apex, _, _) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        self.vs_api(canary)?.get_opt(&apex).await.map_err(|e| {
            Error::kube(
                format!(
                    "VirtualService {} get query error",
                    labels::dotted(&apex, &ns)
                ),
                e,
            )
        })
    }

    async fn reconcile_destination_rule(&self, canary: &Canary, host: &str) -> Result<()> {
        let api = self.dr_api(canary)?;
        let desired = destination_rule(canary, host)?;
        let applied = labels::create_or_update(&api, "DestinationRule", host, |current| {
            Ok(match current {
                None => Some(desired.clone()),
                Some(cur) if cur.spec == desired.spec => None,
                Some(cur) => {
                    let mut next = cur.clone();
                    next.spec = desired.spec.clone();
                    Some(next)
                }
            })
        })
        .await?;
        log_applied(canary, "DestinationRule", host, applied);
        Ok(())
    }

    /// Writes the VirtualService spec for `routes`. With `reconcile`, metadata is made
    /// to match the spec and a VirtualService serin did not make is taken over (its
    /// spec kept in an annotation for `revertOnDeletion`); otherwise only the routes
    /// change.
    async fn write_virtual_service(
        &self,
        canary: &Canary,
        routes: Option<Routes>,
        reconcile: bool,
    ) -> Result<Applied> {
        let (apex, _, _) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        let api = self.vs_api(canary)?;
        let applied = labels::create_or_update(&api, "VirtualService", &apex, |current| {
            let routes = routes
                .or_else(|| current.and_then(|c| routes_in(canary, &c.spec)))
                .unwrap_or(Routes::PRIMARY);
            let cookies = SessionCookies::for_routes(canary, routes.canary);
            let desired = virtual_service(canary, routes, &cookies)?;
            let Some(cur) = current else {
                if !reconcile {
                    return Err(Error::NotFound {
                        kind: "VirtualService".into(),
                        namespace: ns.clone(),
                        name: apex.clone(),
                    });
                }
                return Ok(Some(desired));
            };
            let mut next = cur.clone();
            let spec_changed = next.spec != desired.spec;
            if reconcile {
                let mut annotations = desired.metadata.annotations.clone().unwrap_or_default();
                for key in [KUBECTL_LAST_APPLIED, ORIGINAL_CONFIGURATION] {
                    if let Some(v) = cur.annotations().get(key) {
                        annotations.insert(key.to_string(), v.clone());
                    }
                }
                let taken_over = !labels::is_owned_by(&cur.metadata, canary);
                if taken_over
                    && spec_changed
                    && !annotations.contains_key(KUBECTL_LAST_APPLIED)
                    && !annotations.contains_key(ORIGINAL_CONFIGURATION)
                {
                    let original = serde_json::to_string(&cur.spec)
                        .map_err(|e| Error::Invalid(format!("VirtualService {apex}: {e}")))?;
                    annotations.insert(ORIGINAL_CONFIGURATION.to_string(), original);
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
            next.spec = desired.spec;
            Ok(Some(next))
        })
        .await?;
        log_applied(canary, "VirtualService", &apex, applied);
        Ok(applied)
    }
}

fn log_applied(canary: &Canary, kind: &str, name: &str, applied: Applied) {
    let ns = canary.namespace().unwrap_or_default();
    match applied {
        Applied::Created => {
            tracing::info!(canary = %canary.id(), "{kind} {} created", labels::dotted(name, &ns))
        }
        Applied::Updated => {
            tracing::info!(canary = %canary.id(), "{kind} {} updated", labels::dotted(name, &ns))
        }
        Applied::Unchanged => {}
    }
}

/// The DestinationRule of one backend service: its host and `service.trafficPolicy`.
pub fn destination_rule(canary: &Canary, host: &str) -> Result<DestinationRule> {
    let mut dr = DestinationRule::new(
        host,
        DestinationRuleSpec {
            host: host.to_string(),
            traffic_policy: canary.spec.service.traffic_policy.clone(),
            ..Default::default()
        },
    );
    dr.metadata.namespace = canary.namespace();
    dr.metadata.owner_references = Some(vec![labels::owner_reference(canary)?]);
    Ok(dr)
}

/// The apex VirtualService for `routes`, with `service.apex` metadata, owned by the
/// Canary.
pub fn virtual_service(
    canary: &Canary,
    routes: Routes,
    cookies: &SessionCookies,
) -> Result<VirtualService> {
    let (apex, _, _) = canary.service_names();
    let spec = virtual_service_spec(canary, routes, cookies)?;
    let meta = canary.spec.service.apex.clone().unwrap_or_default();
    let mut vs = VirtualService::new(&apex, spec);
    vs.metadata = ObjectMeta {
        name: Some(apex),
        namespace: canary.namespace(),
        labels: Some(meta.labels.clone()).filter(|l| !l.is_empty()),
        annotations: Some(labels::router_annotations(Some(&meta.annotations))),
        owner_references: Some(vec![labels::owner_reference(canary)?]),
        ..Default::default()
    };
    Ok(vs)
}

fn is_tcp(canary: &Canary) -> bool {
    canary
        .spec
        .service
        .app_protocol
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("tcp"))
}

/// A destination in the routes: the service, with its port when the port must be
/// named (port discovery behind a gateway or delegation, and always for TCP).
fn destination(canary: &Canary, host: &str, weight: i32) -> HTTPRouteDestination {
    let s = &canary.spec.service;
    let behind_gateway = s.gateways.first().is_some_and(|g| g != MESH_GATEWAY) || s.delegation;
    let with_port = is_tcp(canary) || (s.port_discovery && behind_gateway);
    HTTPRouteDestination {
        destination: Destination {
            host: host.to_string(),
            subset: None,
            port: with_port.then(|| PortSelector {
                number: u32::try_from(s.port).ok(),
            }),
        },
        weight,
        headers: None,
    }
}

/// An HTTP route with the `service` block's settings (match, rewrite, timeout,
/// retries, CORS, headers) and the given destinations.
fn http_route(canary: &Canary, route: Vec<HTTPRouteDestination>) -> HTTPRoute {
    let s = &canary.spec.service;
    HTTPRoute {
        match_: s.match_.clone(),
        rewrite: s.rewrite.as_ref().map(|r| HTTPRewrite {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            // Gateway API only: how the URI replaces the path.
            type_: None,
        }),
        timeout: s.timeout.clone().filter(|t| !t.is_empty()),
        retries: s.retries.clone(),
        cors_policy: s.cors_policy.clone(),
        headers: s.headers.clone(),
        route,
        ..Default::default()
    }
}

/// Every match of `canary` combined with every match of `defaults` (both must hold);
/// `canary` alone when there are no defaults.
pub fn merge_match_conditions(
    canary: &[HTTPMatchRequest],
    defaults: &[HTTPMatchRequest],
) -> Vec<HTTPMatchRequest> {
    if defaults.is_empty() {
        return canary.to_vec();
    }
    let mut out = Vec::with_capacity(canary.len() * defaults.len());
    for c in canary {
        for d in defaults {
            let mut m = d.clone();
            m.headers.extend(c.headers.clone());
            m.source_labels.extend(c.source_labels.clone());
            m.query_params.extend(c.query_params.clone());
            m.without_headers.extend(c.without_headers.clone());
            for (to, from) in [
                (&mut m.uri, &c.uri),
                (&mut m.scheme, &c.scheme),
                (&mut m.method, &c.method),
                (&mut m.authority, &c.authority),
            ] {
                if from.is_some() {
                    *to = from.clone();
                }
            }
            if c.port.is_some() {
                m.port = c.port;
            }
            if !c.gateways.is_empty() {
                m.gateways = c.gateways.clone();
            }
            if c.source_namespace.is_some() {
                m.source_namespace = c.source_namespace.clone();
            }
            if c.name.is_some() {
                m.name = c.name.clone();
            }
            m.ignore_uri_case |= c.ignore_uri_case;
            out.push(m);
        }
    }
    out
}

fn cookie_match(cookie: &str) -> HTTPMatchRequest {
    let (name, value) = cookie.split_once('=').unwrap_or((cookie, ""));
    HTTPMatchRequest {
        headers: BTreeMap::from([(
            COOKIE_HEADER.to_string(),
            StringMatch {
                regex: Some(format!(".*{name}.*{value}.*")),
                ..Default::default()
            },
        )]),
        ..Default::default()
    }
}

fn set_cookie(header: &str) -> Headers {
    Headers {
        request: None,
        response: Some(HeaderOperations {
            add: BTreeMap::from([(SET_COOKIE_HEADER.to_string(), header.to_string())]),
            ..Default::default()
        }),
    }
}

/// `name=value; Max-Age=N` and the attributes `sessionAffinity` asks for.
pub(crate) fn build_cookie(canary: &Canary, cookie: &str, max_age: i64) -> String {
    let mut out = format!("{cookie}; Max-Age={max_age}");
    if let Some(a) = canary.analysis().and_then(|a| a.session_affinity.as_ref()) {
        if let Some(d) = a.domain.as_deref().filter(|d| !d.is_empty()) {
            out.push_str(&format!("; Domain={d}"));
        }
        if a.http_only {
            out.push_str("; HttpOnly");
        }
        if a.partitioned {
            out.push_str("; Partitioned");
        }
        if let Some(p) = a.path.as_deref().filter(|p| !p.is_empty()) {
            out.push_str(&format!("; Path={p}"));
        }
        if let Some(s) = a.same_site.as_deref().filter(|s| !s.is_empty()) {
            out.push_str(&format!("; SameSite={s}"));
        }
        if a.secure {
            out.push_str("; Secure");
        }
    }
    out
}

/// The routes of session affinity around the weighted route: users holding the
/// canary cookie stay on the canary (and those holding the primary cookie on the
/// primary); new users are split by weight and get the cookie of where they landed.
/// Back at weight 0, the last rollout's cookie is expired.
fn session_affinity_routes(
    canary: &Canary,
    routes: Routes,
    mut weighted: HTTPRoute,
    cookies: &SessionCookies,
) -> Vec<HTTPRoute> {
    let Some(affinity) = canary.analysis().and_then(|a| a.session_affinity.as_ref()) else {
        return vec![weighted];
    };
    let (_, primary, canary_svc) = canary.service_names();
    let defaults = &canary.spec.service.match_;
    if routes.canary > 0 {
        let mut out = Vec::new();
        if let Some(cookie) = &cookies.canary {
            if let Some(d) = weighted
                .route
                .iter_mut()
                .find(|d| d.destination.host == canary_svc)
            {
                d.headers = Some(set_cookie(&build_cookie(
                    canary,
                    cookie,
                    i64::from(affinity.max_age()),
                )));
            }
            let mut sticky = http_route(
                canary,
                vec![
                    destination(canary, &primary, 0),
                    destination(canary, &canary_svc, 100),
                ],
            );
            sticky.match_ = merge_match_conditions(&[cookie_match(cookie)], defaults);
            out.push(sticky);
        }
        let primary_cookie_name = affinity.primary_cookie_name.as_deref().unwrap_or_default();
        if !primary_cookie_name.is_empty()
            && let Some(cookie) = &cookies.primary
        {
            let interval = canary.analysis_interval().as_secs() as i64;
            if let Some(d) = weighted
                .route
                .iter_mut()
                .find(|d| d.destination.host == primary)
            {
                d.headers = Some(set_cookie(&build_cookie(canary, cookie, interval)));
            }
            let mut sticky = http_route(
                canary,
                vec![
                    destination(canary, &primary, 100),
                    destination(canary, &canary_svc, 0),
                ],
            );
            sticky.match_ = merge_match_conditions(&[cookie_match(cookie)], defaults);
            out.push(sticky);
        }
        out.push(weighted);
        out
    } else if let Some(previous) = &cookies.previous {
        let mut expire = weighted.clone();
        expire.match_ = merge_match_conditions(&[cookie_match(previous)], defaults);
        let headers = expire.headers.get_or_insert_with(Default::default);
        headers
            .response
            .get_or_insert_with(Default::default)
            .add
            .insert(
                SET_COOKIE_HEADER.to_string(),
                format!("{previous}; Max-Age=-1"),
            );
        vec![expire, weighted]
    } else {
        vec![weighted]
    }
}

/// The VirtualService spec for `routes`: hosts (the apex name added), gateways
/// (`mesh` by default; none with delegation), and the HTTP routes of the strategy —
/// weighted, mirrored, session affinity, or A/B (`analysis.match` to the canary
/// first, the rest to the primary) — or TCP routes for `appProtocol: TCP`.
pub fn virtual_service_spec(
    canary: &Canary,
    routes: Routes,
    cookies: &SessionCookies,
) -> Result<VirtualServiceSpec> {
    let (apex, primary, canary_svc) = canary.service_names();
    let s = &canary.spec.service;
    if s.delegation && (!s.hosts.is_empty() || !s.gateways.is_empty()) {
        return Err(Error::Invalid(format!(
            "VirtualService {} cannot have hosts and gateways when delegation enabled",
            labels::dotted(&apex, &canary.namespace().unwrap_or_default())
        )));
    }
    let mut hosts = s.hosts.clone();
    if !hosts.iter().any(|h| *h == apex || h == "*") {
        hosts.push(apex.clone());
    }
    let mut gateways = s.gateways.clone();
    if gateways.is_empty() {
        gateways.push(MESH_GATEWAY.to_string());
    }
    if s.delegation {
        hosts.clear();
        gateways.clear();
    }
    let weighted_destinations = || {
        vec![
            destination(canary, &primary, routes.primary),
            destination(canary, &canary_svc, routes.canary),
        ]
    };
    let mut spec = VirtualServiceSpec {
        hosts,
        gateways,
        ..Default::default()
    };
    if is_tcp(canary) {
        spec.tcp = vec![TCPRoute {
            match_: s
                .match_
                .iter()
                .filter_map(|m| m.port)
                .map(|port| L4MatchAttributes {
                    port: Some(port),
                    ..Default::default()
                })
                .collect(),
            route: weighted_destinations(),
        }];
        return Ok(spec);
    }
    let mut weighted = http_route(canary, weighted_destinations());
    if routes.mirrored {
        weighted.mirror = Some(Destination {
            host: canary_svc.clone(),
            subset: None,
            port: None,
        });
        if let Some(w) = canary
            .analysis()
            .and_then(|a| a.mirror_weight)
            .filter(|w| *w > 0)
        {
            weighted.mirror_percentage = Some(Percent {
                value: f64::from(w),
            });
        }
    }
    spec.http = session_affinity_routes(canary, routes, weighted, cookies);

    let ab_match = canary
        .analysis()
        .map(|a| a.match_.clone())
        .unwrap_or_default();
    if !ab_match.is_empty() {
        let mut to_canary = http_route(canary, weighted_destinations());
        to_canary.match_ = merge_match_conditions(&ab_match, &s.match_);
        let rest = http_route(canary, vec![destination(canary, &primary, 100)]);
        spec.http = vec![to_canary, rest];
    }
    Ok(spec)
}

/// The traffic split a VirtualService spec holds: the weights of the last route that
/// sends traffic to the canary service (the weighted route in every layout serin
/// writes), and whether it mirrors to the canary. `None` when no route names both.
pub fn routes_in(canary: &Canary, spec: &VirtualServiceSpec) -> Option<Routes> {
    let (_, primary, canary_svc) = canary.service_names();
    let weights = |route: &[HTTPRouteDestination]| {
        let mut p = None;
        let mut c = None;
        for d in route {
            if d.destination.host == primary {
                p = Some(d.weight);
            } else if d.destination.host == canary_svc {
                c = Some(d.weight);
            }
        }
        (p, c)
    };
    let (p, c, mirrored) = if is_tcp(canary) {
        let r = spec
            .tcp
            .iter()
            .rev()
            .find(|r| r.route.iter().any(|d| d.destination.host == canary_svc))?;
        let (p, c) = weights(&r.route);
        (p, c, false)
    } else {
        let r = spec
            .http
            .iter()
            .rev()
            .find(|r| r.route.iter().any(|d| d.destination.host == canary_svc))?;
        let (p, c) = weights(&r.route);
        let mirrored = r.mirror.as_ref().is_some_and(|m| m.host == canary_svc);
        (p, c, mirrored)
    };
    let (primary, canary) = (p.unwrap_or(0), c.unwrap_or(0));
    if primary == 0 && canary == 0 {
        return None;
    }
    Some(Routes {
        primary,
        canary,
        mirrored,
    })
}

#[async_trait]
impl Router for IstioRouter {
    async fn initialize(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        service::reconcile_backend_services(&self.client, canary, &pods).await
    }

    async fn reconcile(&self, canary: &Canary) -> Result<()> {
        let pods = read_target_pods(&self.client, canary, &self.labels).await?;
        service::reconcile_services(&self.client, canary, &pods, Backend::Primary).await?;
        let (_, primary, canary_svc) = canary.service_names();
        self.reconcile_destination_rule(canary, &canary_svc).await?;
        self.reconcile_destination_rule(canary, &primary).await?;
        self.write_virtual_service(canary, None, true).await?;
        Ok(())
    }

    async fn set_routes(&self, canary: &Canary, routes: Routes) -> Result<()> {
        let routes = Routes {
            primary: routes.primary.clamp(0, 100),
            canary: routes.canary.clamp(0, 100),
            mirrored: routes.mirrored,
        };
        self.write_virtual_service(canary, Some(routes), false)
            .await?;
        Ok(())
    }

    async fn get_routes(&self, canary: &Canary) -> Result<Routes> {
        let (apex, primary, canary_svc) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        let vs = self
            .current_vs(canary)
            .await?
            .ok_or_else(|| Error::NotFound {
                kind: "VirtualService".into(),
                namespace: ns.clone(),
                name: apex.clone(),
            })?;
        routes_in(canary, &vs.spec).ok_or_else(|| {
            Error::Invalid(format!(
                "VirtualService {} does not contain routes for {primary} and {canary_svc}",
                labels::dotted(&apex, &ns)
            ))
        })
    }

    async fn finalize(&self, canary: &Canary) -> Result<()> {
        let (apex, primary, canary_svc) = canary.service_names();
        let ns = labels::namespace_of(canary)?;
        if let Some(vs) = self.current_vs(canary).await? {
            if labels::is_owned_by(&vs.metadata, canary) {
                labels::delete_if_owned(&self.vs_api(canary)?, "VirtualService", &apex, canary)
                    .await?;
            } else {
                let original = if let Some(a) = vs.annotations().get(KUBECTL_LAST_APPLIED) {
                    let stored: VirtualService = serde_json::from_str(a).map_err(|e| {
                        Error::Invalid(format!(
                            "VirtualService {} failed to read annotation {KUBECTL_LAST_APPLIED}: {e}",
                            labels::dotted(&apex, &ns)
                        ))
                    })?;
                    Some(stored.spec)
                } else if let Some(a) = vs.annotations().get(ORIGINAL_CONFIGURATION) {
                    Some(serde_json::from_str::<VirtualServiceSpec>(a).map_err(|e| {
                        Error::Invalid(format!(
                            "VirtualService {} failed to read annotation {ORIGINAL_CONFIGURATION}: {e}",
                            labels::dotted(&apex, &ns)
                        ))
                    })?)
                } else {
                    tracing::warn!(canary = %canary.id(), "VirtualService {} original configuration not found, unable to revert", labels::dotted(&apex, &ns));
                    None
                };
                if let Some(spec) = original {
                    labels::create_or_update(
                        &self.vs_api(canary)?,
                        "VirtualService",
                        &apex,
                        |cur| {
                            let Some(cur) = cur else { return Ok(None) };
                            let mut next = cur.clone();
                            if let Some(a) = next.metadata.annotations.as_mut() {
                                a.remove(ORIGINAL_CONFIGURATION);
                            }
                            next.spec = spec.clone();
                            Ok(Some(next))
                        },
                    )
                    .await?;
                }
            }
        }
        for host in [&canary_svc, &primary] {
            labels::delete_if_owned(&self.dr_api(canary)?, "DestinationRule", host, canary).await?;
        }
        let pods = read_target_pods(&self.client, canary, &self.labels)
            .await
            .ok();
        service::finalize_services(&self.client, canary, pods.as_ref()).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use serin_api::load::{Object, parse_documents, to_object};

    fn canary(spec: serde_json::Value) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1", "kind": "Canary",
            "metadata": {"name": "podinfo", "namespace": "test"},
            "spec": spec
        }))
        .unwrap()
    }

    fn spec_json(c: &Canary, routes: Routes) -> serde_json::Value {
        serde_json::to_value(virtual_service_spec(c, routes, &SessionCookies::default()).unwrap())
            .unwrap()
    }

    #[test]
    fn old_canaries_keep_match_rewrite_timeout_and_the_mesh_gateway() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/seeds/blog-ciwei/podinfo-canary.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let doc = &parse_documents(path, &text).unwrap()[0];
        let Ok(Object::Canary(c)) = to_object(doc) else {
            panic!("a Canary")
        };
        assert_eq!(
            spec_json(&c, Routes::PRIMARY),
            json!({
                "hosts": ["app.ciwei.com", "podinfo"],
                "gateways": ["public-gateway.istio-system.svc.cluster.local", "mesh"],
                "http": [{
                    "match": [{"uri": {"prefix": "/"}}],
                    "route": [
                        {"destination": {"host": "podinfo-primary"}, "weight": 100},
                        {"destination": {"host": "podinfo-canary"}, "weight": 0}
                    ],
                    "rewrite": {"uri": "/"},
                    "timeout": "30s"
                }]
            })
        );
    }

    #[test]
    fn headers_and_cors_go_on_every_route() {
        let c = canary(json!({
            "targetRef": {"name": "podinfo"},
            "service": {
                "port": 9898,
                "headers": {"request": {"add": {"x-envoy-upstream-rq-timeout-ms": "15000"}}, "response": {"remove": ["x-powered-by"]}},
                "corsPolicy": {"allowOrigins": [{"exact": "https://example.com"}], "allowMethods": ["GET"], "maxAge": "24h"}
            },
            "analysis": {"interval": "1m", "iterations": 10, "match": [{"headers": {"x-canary": {"exact": "insider"}}}]}
        }));
        let spec = spec_json(&c, Routes::to_canary(100));
        assert_eq!(spec["gateways"], json!(["mesh"]));
        for route in spec["http"].as_array().unwrap() {
            assert_eq!(
                route["headers"]["request"]["add"]["x-envoy-upstream-rq-timeout-ms"],
                "15000"
            );
            assert_eq!(
                route["corsPolicy"]["allowOrigins"],
                json!([{"exact": "https://example.com"}])
            );
        }
    }

    #[test]
    fn delegation_has_no_hosts_or_gateways() {
        let mut c = canary(json!({
            "targetRef": {"name": "podinfo"},
            "service": {"port": 9898, "delegation": true, "portDiscovery": true}
        }));
        let spec = spec_json(&c, Routes::PRIMARY);
        assert!(spec.get("hosts").is_none() && spec.get("gateways").is_none());
        assert_eq!(
            spec["http"][0]["route"][0]["destination"],
            json!({"host": "podinfo-primary", "port": {"number": 9898}}),
            "a delegate names the port"
        );
        c.spec.service.hosts = vec!["app.example.com".into()];
        let err =
            virtual_service_spec(&c, Routes::PRIMARY, &SessionCookies::default()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "VirtualService podinfo.test cannot have hosts and gateways when delegation enabled"
        );
    }

    #[test]
    fn ab_matches_combine_with_the_service_matches() {
        let canary_matches: Vec<HTTPMatchRequest> = serde_json::from_value(json!([
            {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}}
        ]))
        .unwrap();
        let defaults: Vec<HTTPMatchRequest> = serde_json::from_value(
            json!([{"uri": {"prefix": "/api"}}, {"uri": {"prefix": "/web"}}]),
        )
        .unwrap();
        let merged =
            serde_json::to_value(merge_match_conditions(&canary_matches, &defaults)).unwrap();
        assert_eq!(
            merged,
            json!([
                {"uri": {"prefix": "/api"}, "headers": {"user-agent": {"regex": ".*Firefox.*"}}},
                {"uri": {"prefix": "/web"}, "headers": {"user-agent": {"regex": ".*Firefox.*"}}},
                {"uri": {"prefix": "/api"}, "headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}},
                {"uri": {"prefix": "/web"}, "headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}}
            ])
        );
        assert_eq!(merge_match_conditions(&canary_matches, &[]), canary_matches);
    }

    #[test]
    fn primary_cookie_keeps_primary_users_on_the_primary() {
        let c = canary(json!({
            "targetRef": {"name": "podinfo"},
            "service": {"port": 9898},
            "analysis": {"interval": "1m", "stepWeight": 10, "maxWeight": 50,
                "sessionAffinity": {"cookieName": "canary-cookie", "primaryCookieName": "primary-cookie",
                    "maxAge": 600, "path": "/", "secure": true, "httpOnly": true, "sameSite": "Strict"}}
        }));
        let mut c = c;
        c.status = Some(serin_api::CanaryStatus {
            session_affinity_cookie: Some("canary-cookie=aBcDeFgHiJ".into()),
            primary_session_affinity_cookie: Some("primary-cookie=KlMnOpQrSt".into()),
            ..Default::default()
        });
        let cookies = SessionCookies::for_routes(&c, 20);
        let spec = virtual_service_spec(&c, Routes::to_canary(20), &cookies).unwrap();
        assert_eq!(
            spec.http.len(),
            3,
            "sticky canary, sticky primary, weighted"
        );
        let primary_cookie = cookies.primary.clone().unwrap();
        assert!(primary_cookie.starts_with("primary-cookie="));
        let (name, value) = primary_cookie.split_once('=').unwrap();
        assert_eq!(
            spec.http[1].match_[0].headers["cookie"].regex.as_deref(),
            Some(format!(".*{name}.*{value}.*").as_str())
        );
        assert_eq!(spec.http[1].route[0].weight, 100);
        let weighted = &spec.http[2];
        let set = |host: &str| {
            weighted
                .route
                .iter()
                .find(|d| d.destination.host == host)
                .unwrap()
                .headers
                .as_ref()
                .unwrap()
                .response
                .as_ref()
                .unwrap()
                .add["Set-Cookie"]
                .clone()
        };
        assert_eq!(
            set("podinfo-canary"),
            format!(
                "{}; Max-Age=600; HttpOnly; Path=/; SameSite=Strict; Secure",
                cookies.canary.unwrap()
            )
        );
        assert_eq!(
            set("podinfo-primary"),
            format!("{primary_cookie}; Max-Age=60; HttpOnly; Path=/; SameSite=Strict; Secure")
        );
        assert_eq!(routes_in(&c, &spec), Some(Routes::to_canary(20)));
    }
}
