//! Discovery (`/version`, `/api`, `/apis`, group and group-version resource lists) and the
//! OpenAPI v3 documents kubectl reads to learn that the server validates fields itself
//! (`fieldValidation`), which `kubectl apply` (client- and server-side) needs.
//!
//! Aggregated discovery is not served: kubectl falls back to the legacy documents when the
//! answer is a plain `APIGroupList`.

use http::{HeaderMap, Method, Response};
use serde_json::{Value, json};

use crate::Sandbox;
use crate::error::ApiError;
use crate::http::{SandboxBody, error_response, full, json_response};
use crate::resources::ResourceType;

pub const SERVER_VERSION: &str = "v1.33.0-serin-sandbox";

pub(crate) fn route(
    sb: &Sandbox,
    method: &Method,
    segs: &[&str],
    _headers: &HeaderMap,
) -> Option<Response<SandboxBody>> {
    let is_doc = matches!(
        segs,
        ["version"]
            | ["api"]
            | ["apis"]
            | ["api", _]
            | ["apis", _]
            | ["apis", _, _]
            | ["openapi", ..]
            | ["healthz" | "livez" | "readyz", ..]
    );
    if !is_doc {
        return None;
    }
    if method != Method::GET {
        return Some(error_response(&ApiError::method_not_allowed(
            "only GET is allowed here",
        )));
    }
    let state = sb.state();
    let reg = &state.registry;
    Some(match segs {
        ["healthz" | "livez" | "readyz", ..] => http::Response::builder()
            .status(200)
            .header(http::header::CONTENT_TYPE, "text/plain")
            .body(full("ok"))
            .unwrap_or_else(|_| Response::new(full("ok"))),
        ["version"] => json_response(
            200,
            &json!({"major": "1", "minor": "33", "gitVersion": SERVER_VERSION, "gitCommit": "",
                "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.24",
                "compiler": "gc", "platform": "linux/amd64"}),
        ),
        ["api"] => json_response(
            200,
            &json!({"kind": "APIVersions", "versions": ["v1"],
                "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": "127.0.0.1"}]}),
        ),
        ["apis"] => {
            let groups: Vec<Value> = reg
                .groups()
                .into_iter()
                .filter(|(g, _)| !g.is_empty())
                .map(|(g, vs)| group_doc(&g, &vs))
                .collect();
            json_response(
                200,
                &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}),
            )
        }
        ["apis", g] => match reg.groups().into_iter().find(|(name, _)| name == g) {
            Some((g, vs)) => {
                let mut doc = group_doc(&g, &vs);
                doc["kind"] = "APIGroup".into();
                doc["apiVersion"] = "v1".into();
                json_response(200, &doc)
            }
            None => error_response(&ApiError::path_not_found(&format!("/apis/{g}"))),
        },
        ["api", v] => resource_list(&reg.in_group_version("", v), "", v),
        ["apis", g, v] => resource_list(&reg.in_group_version(g, v), g, v),
        ["openapi", "v3"] => {
            let paths: serde_json::Map<String, Value> = reg
                .groups()
                .into_iter()
                .flat_map(|(g, vs)| vs.into_iter().map(move |v| (g.clone(), v)))
                .map(|(g, v)| {
                    let p = if g.is_empty() {
                        format!("api/{v}")
                    } else {
                        format!("apis/{g}/{v}")
                    };
                    let url = format!("/openapi/v3/{p}?hash={:016X}", reg.generation);
                    (p, json!({"serverRelativeURL": url}))
                })
                .collect();
            json_response(200, &json!({"paths": paths}))
        }
        ["openapi", "v3", "api", v] => openapi_gv(&reg.in_group_version("", v), "", v),
        ["openapi", "v3", "apis", g, v] => openapi_gv(&reg.in_group_version(g, v), g, v),
        _ => error_response(&ApiError::path_not_found(&format!("/{}", segs.join("/")))),
    })
}

fn group_doc(g: &str, vs: &[String]) -> Value {
    let versions: Vec<Value> = vs
        .iter()
        .map(|v| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": g, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

const VERBS: [&str; 8] = [
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];

fn resource_list(
    types: &[std::sync::Arc<ResourceType>],
    g: &str,
    v: &str,
) -> Response<SandboxBody> {
    if types.is_empty() {
        return error_response(&ApiError::path_not_found(&format!("/apis/{g}/{v}")));
    }
    let gv = if g.is_empty() {
        v.to_string()
    } else {
        format!("{g}/{v}")
    };
    let mut resources = Vec::new();
    for t in types {
        let mut r = json!({"name": t.plural, "singularName": t.singular, "namespaced": t.namespaced,
            "kind": t.kind, "verbs": VERBS});
        if !t.short_names.is_empty() {
            r["shortNames"] = json!(t.short_names);
        }
        if !t.categories.is_empty() {
            r["categories"] = json!(t.categories);
        }
        resources.push(r);
        if t.status {
            resources.push(
                json!({"name": format!("{}/status", t.plural), "singularName": "",
                "namespaced": t.namespaced, "kind": t.kind, "verbs": ["get", "patch", "update"]}),
            );
        }
        if t.scale.is_some() {
            resources.push(json!({"name": format!("{}/scale", t.plural), "singularName": "",
                "namespaced": t.namespaced, "group": "autoscaling", "version": "v1", "kind": "Scale",
                "verbs": ["get", "patch", "update"]}));
        }
    }
    json_response(
        200,
        &json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}),
    )
}

/// A minimal OpenAPI v3 document for one group-version: the paths with their PATCH
/// operations (and the query parameters they take), tagged with their kind. No schemas:
/// kubectl then computes client-side apply patches from its built-in types.
fn openapi_gv(types: &[std::sync::Arc<ResourceType>], g: &str, v: &str) -> Response<SandboxBody> {
    if types.is_empty() {
        return error_response(&ApiError::path_not_found(&format!(
            "/openapi/v3/apis/{g}/{v}"
        )));
    }
    let prefix = if g.is_empty() {
        format!("/api/{v}")
    } else {
        format!("/apis/{g}/{v}")
    };
    let params: Vec<Value> = [
        "dryRun",
        "fieldManager",
        "fieldValidation",
        "force",
        "pretty",
    ]
    .iter()
    .map(|p| json!({"name": p, "in": "query", "schema": {"type": "string", "uniqueItems": true}}))
    .collect();
    let mut paths = serde_json::Map::new();
    for t in types {
        let gvk = json!({"group": t.group, "version": t.version, "kind": t.kind});
        let item = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let op = |action: &str| {
            json!({"operationId": format!("{action}{}", t.kind), "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk, "parameters": params,
                "responses": {"200": {"description": "OK"}}})
        };
        paths.insert(item, json!({"get": op("get"), "put": op("put"), "patch": op("patch"), "delete": op("delete")}));
    }
    json_response(
        200,
        &json!({"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": SERVER_VERSION},
            "paths": paths, "components": {"schemas": {}}}),
    )
}
