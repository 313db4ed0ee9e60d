//! `serin render`: every object serin would create for the Canaries in a set of
//! manifests, made by the operator's own adapters.
//!
//! The input objects (targets, HPAs, configs, services...) are created through the
//! given client (an empty in-process sandbox in `serin render`), each Canary is
//! created too, and then initialized exactly as the operator does it:
//! [`WorkloadController::initialize_primary`] and [`Router::reconcile`]. What that
//! created, or changed among the inputs, is read back and returned without the
//! fields the API server fills in.
//!
//! [`WorkloadController::initialize_primary`]: crate::workload::WorkloadController::initialize_primary
//! [`Router::reconcile`]: crate::router::Router::reconcile

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;
use serin_api::Canary;
use serin_api::load::{Document, Object, to_object};

use crate::labels::{self, LabelOptions};
use crate::router::router_with;
use crate::workload::{WorkloadOptions, target_kind, workload_with};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// A Canary's target is not among the input objects.
    #[error(
        "{source_name}:{line}: canary {namespace}/{name}: target {kind} {namespace}/{target} is not in the input"
    )]
    MissingTarget {
        source_name: String,
        line: usize,
        namespace: String,
        name: String,
        kind: String,
        target: String,
    },
    /// A document could not be read as the object it says it is.
    #[error("{source_name}:{line}: {message}")]
    Invalid {
        source_name: String,
        line: usize,
        message: String,
    },
    /// Making a Canary's objects failed (the message names the object).
    #[error("canary {canary}: {source}")]
    Canary {
        canary: String,
        #[source]
        source: crate::error::Error,
    },
    /// A Canary needs an input object whose API version no current Kubernetes serves.
    #[error(
        "{source_name}:{line}: {kind} {namespace}/{name} is {api_version}, which Kubernetes no longer serves; canary {canary} needs it"
    )]
    Unserved {
        source_name: String,
        line: usize,
        kind: String,
        api_version: String,
        namespace: String,
        name: String,
        canary: String,
    },
    /// The API the objects were rendered through failed.
    #[error("{context}: {source}")]
    Api {
        context: String,
        #[source]
        source: kube::Error,
    },
}

/// How to render.
#[derive(Debug, Clone)]
pub struct RenderOptions {
    /// The namespace of objects that name none.
    pub default_namespace: String,
    pub labels: LabelOptions,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            default_namespace: "default".into(),
            labels: LabelOptions::default(),
        }
    }
}

/// Kinds serin generates, in the order render prints them.
const GENERATED: [(&str, &str, &str, &str); 9] = [
    ("apps", "v1", "Deployment", "deployments"),
    ("apps", "v1", "DaemonSet", "daemonsets"),
    (
        "autoscaling",
        "v2",
        "HorizontalPodAutoscaler",
        "horizontalpodautoscalers",
    ),
    ("", "v1", "ConfigMap", "configmaps"),
    ("", "v1", "Secret", "secrets"),
    ("", "v1", "Service", "services"),
    (
        "networking.istio.io",
        "v1beta1",
        "DestinationRule",
        "destinationrules",
    ),
    (
        "networking.istio.io",
        "v1beta1",
        "VirtualService",
        "virtualservices",
    ),
    ("gateway.networking.k8s.io", "v1", "HTTPRoute", "httproutes"),
];

/// Input objects of kinds the API does not serve: (kind, namespace, name) → document.
type Skipped<'a> = BTreeMap<(String, String, String), &'a Document>;

/// The input objects as they were created (without server-filled fields), by group,
/// kind, namespace and name.
type Created = BTreeMap<(String, String, String, String), Value>;

fn key(group: &str, kind: &str, ns: &str, name: &str) -> (String, String, String, String) {
    (
        group.to_string(),
        kind.to_string(),
        ns.to_string(),
        name.to_string(),
    )
}

/// Renders the generated objects of every Canary in `docs` through `client`, which
/// must reach an empty API server (an in-process sandbox).
pub async fn render(
    client: Client,
    docs: &[Document],
    opts: &RenderOptions,
) -> Result<Vec<Value>, RenderError> {
    install_crds(&client).await?;
    let mut canaries: Vec<(&Document, Canary)> = Vec::new();
    let mut created: Created = BTreeMap::new();
    let mut namespaces: BTreeSet<String> = BTreeSet::new();
    let mut skipped: Skipped = BTreeMap::new();
    for doc in docs {
        let invalid = |message: String| RenderError::Invalid {
            source_name: doc.source.clone(),
            line: doc.line,
            message,
        };
        let object =
            to_object(doc).map_err(|e| invalid(format!("{} {}: {e}", doc.kind(), doc.name())))?;
        match object {
            Object::Canary(mut c) => {
                if c.metadata.namespace.as_deref().is_none_or(str::is_empty) {
                    c.metadata.namespace = Some(opts.default_namespace.clone());
                }
                canaries.push((doc, *c));
            }
            Object::MetricTemplate(_) | Object::AlertProvider(_) => {}
            Object::Other(value) => {
                let served =
                    create_input(&client, doc, value, opts, &mut created, &mut namespaces).await?;
                if !served {
                    let ns = doc
                        .namespace()
                        .unwrap_or(&opts.default_namespace)
                        .to_string();
                    skipped.insert((doc.kind().to_string(), ns, doc.name().to_string()), doc);
                }
            }
        }
    }

    for (doc, canary) in &canaries {
        let ns = canary.namespace().unwrap_or_default();
        let kind = target_kind(canary).to_string();
        let group = "apps";
        if !created.contains_key(&key(group, &kind, &ns, &canary.spec.target_ref.name)) {
            return Err(RenderError::MissingTarget {
                source_name: doc.source.clone(),
                line: doc.line,
                namespace: ns,
                name: canary.name_any(),
                kind,
                target: canary.spec.target_ref.name.clone(),
            });
        }
    }

    let mut seen_ns: Vec<String> = Vec::new();
    for (_, canary) in &canaries {
        let ns = canary.namespace().unwrap_or_default();
        ensure_namespace(&client, &ns, &mut namespaces).await?;
        let api: Api<Canary> = Api::namespaced(client.clone(), &ns);
        let mut to_create = canary.clone();
        to_create.status = None;
        let stored = api
            .create(&PostParams::default(), &to_create)
            .await
            .map_err(|e| RenderError::Api {
                context: format!("creating canary {}", canary.id()),
                source: e,
            })?;
        let fail = |source: crate::error::Error| {
            if let crate::error::Error::NotFound {
                kind,
                namespace,
                name,
            } = &source
                && let Some(doc) = skipped.get(&(kind.clone(), namespace.clone(), name.clone()))
            {
                return RenderError::Unserved {
                    source_name: doc.source.clone(),
                    line: doc.line,
                    kind: kind.clone(),
                    api_version: doc.api_version().to_string(),
                    namespace: namespace.clone(),
                    name: name.clone(),
                    canary: canary.id(),
                };
            }
            RenderError::Canary {
                canary: canary.id(),
                source,
            }
        };
        let options = WorkloadOptions {
            labels: opts.labels.clone(),
            ..Default::default()
        };
        let workload = workload_with(client.clone(), &stored, options).map_err(fail)?;
        workload.initialize_primary(&stored).await.map_err(fail)?;
        let router = router_with(client.clone(), &stored, opts.labels.clone()).map_err(fail)?;
        router.reconcile(&stored).await.map_err(fail)?;
        if !seen_ns.contains(&ns) {
            seen_ns.push(ns);
        }
    }

    let mut out = Vec::new();
    for ns in &seen_ns {
        for (group, version, kind, plural) in GENERATED {
            let gvk = GroupVersionKind::gvk(group, version, kind);
            let ar = ApiResource::from_gvk_with_plural(&gvk, plural);
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &ar);
            let list = api
                .list(&ListParams::default())
                .await
                .map_err(|e| RenderError::Api {
                    context: format!("listing {plural} in {ns}"),
                    source: e,
                })?;
            let mut items = list.items;
            items.sort_by_key(|o| o.name_any());
            for mut obj in items {
                let name = obj.name_any();
                let k = key(group, kind, ns, &name);
                obj.types = Some(kube::api::TypeMeta {
                    api_version: ar.api_version.clone(),
                    kind: kind.into(),
                });
                let before = created.get(&k);
                if before.is_some_and(|b| same_content(b, &clean(obj.clone()))) {
                    continue;
                }
                if before.is_none()
                    && !obj
                        .metadata
                        .owner_references
                        .iter()
                        .flatten()
                        .any(|o| o.kind == "Canary")
                {
                    continue;
                }
                out.push(clean(obj));
            }
        }
    }
    Ok(out)
}

async fn install_crds(client: &Client) -> Result<(), RenderError> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in serin_api::crd::crds() {
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(e) if labels::is_status(&e, 409) => {}
            Err(e) => {
                return Err(RenderError::Api {
                    context: format!("creating CustomResourceDefinition {}", crd.name_any()),
                    source: e,
                });
            }
        }
    }
    Ok(())
}

async fn ensure_namespace(
    client: &Client,
    ns: &str,
    known: &mut BTreeSet<String>,
) -> Result<(), RenderError> {
    if known.contains(ns) {
        return Ok(());
    }
    let api: Api<Namespace> = Api::all(client.clone());
    let obj = Namespace {
        metadata: kube::api::ObjectMeta {
            name: Some(ns.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &obj).await {
        Ok(_) => {}
        Err(e) if labels::is_status(&e, 409) => {}
        Err(e) => {
            return Err(RenderError::Api {
                context: format!("creating namespace {ns}"),
                source: e,
            });
        }
    }
    known.insert(ns.to_string());
    Ok(())
}

/// Creates one input object, when the API serves its kind; other kinds (Flux
/// objects, Istio Gateways...) do not take part in what serin generates and are
/// skipped (`false`).
async fn create_input(
    client: &Client,
    doc: &Document,
    value: Value,
    opts: &RenderOptions,
    created: &mut Created,
    namespaces: &mut BTreeSet<String>,
) -> Result<bool, RenderError> {
    let invalid = |message: String| RenderError::Invalid {
        source_name: doc.source.clone(),
        line: doc.line,
        message,
    };
    // The document as read (an old HPA is in autoscaling/v2 by now).
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let api_version = api_version.as_str();
    let kind = doc.kind();
    if api_version.is_empty() || kind.is_empty() {
        return Err(invalid("an object needs apiVersion and kind".into()));
    }
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let gvk = GroupVersionKind::gvk(group, version, kind);
    let Ok((ar, caps)) = kube::discovery::pinned_kind(client, &gvk).await else {
        tracing::debug!(kind, api_version, "render: kind not served, skipped");
        return Ok(false);
    };
    let mut obj: DynamicObject = serde_json::from_value(value)
        .map_err(|e| invalid(format!("{kind} {}: {e}", doc.name())))?;
    obj.metadata.resource_version = None;
    let name = obj.name_any();
    let api: Api<DynamicObject> = match caps.scope {
        Scope::Cluster => {
            obj.metadata.namespace = None;
            Api::all_with(client.clone(), &ar)
        }
        Scope::Namespaced => {
            let ns = obj
                .metadata
                .namespace
                .clone()
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| opts.default_namespace.clone());
            ensure_namespace(client, &ns, namespaces).await?;
            obj.metadata.namespace = Some(ns.clone());
            Api::namespaced_with(client.clone(), &ns, &ar)
        }
    };
    if kind == "Namespace" && namespaces.contains(&name) {
        return Ok(true);
    }
    let stored = api
        .create(&PostParams::default(), &obj)
        .await
        .map_err(|e| {
            invalid(match &e {
                kube::Error::Api(s) => format!("{kind} {name}: {}", s.message),
                other => format!("{kind} {name}: {other}"),
            })
        })?;
    if kind == "Namespace" {
        namespaces.insert(name.clone());
    }
    // Versions of one group share storage, so objects are known by group and kind.
    let mut stored = stored;
    stored.types = obj.types.clone();
    created.insert(
        key(
            group,
            kind,
            obj.metadata.namespace.as_deref().unwrap_or_default(),
            &name,
        ),
        clean(stored),
    );
    Ok(true)
}

/// The object with `first` keys first, in that order, then the others as they were.
fn ordered(v: &Value, first: &[&str]) -> Value {
    let Some(o) = v.as_object() else {
        return v.clone();
    };
    let mut out = serde_json::Map::new();
    for k in first {
        if let Some(x) = o.get(*k) {
            out.insert((*k).to_string(), x.clone());
        }
    }
    for (k, x) in o {
        if !out.contains_key(k) {
            out.insert(k.clone(), x.clone());
        }
    }
    Value::Object(out)
}

/// Equal but for the API version they were read in.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(o) = v.as_object_mut() {
            o.remove("apiVersion");
        }
        v
    };
    strip(a) == strip(b)
}

/// The object without what the API server fills in (uids, versions, timestamps,
/// status, allocated cluster IPs), as a user would write it.
fn clean(obj: DynamicObject) -> Value {
    let mut v = serde_json::to_value(&obj).unwrap_or(Value::Null);
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        for k in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "managedFields",
            "selfLink",
        ] {
            meta.remove(k);
        }
        if let Some(refs) = meta
            .get_mut("ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for r in refs.iter_mut().filter_map(Value::as_object_mut) {
                r.remove("uid");
            }
        }
    }
    if let Some(o) = v.as_object_mut() {
        o.remove("status");
    }
    // Keys in the order people write them.
    if let Some(meta) = v.get_mut("metadata") {
        *meta = ordered(
            meta,
            &[
                "name",
                "namespace",
                "labels",
                "annotations",
                "ownerReferences",
            ],
        );
    }
    v = ordered(&v, &["apiVersion", "kind", "metadata"]);
    if obj.types.as_ref().is_some_and(|t| t.kind == "Service")
        && let Some(spec) = v.get_mut("spec").and_then(Value::as_object_mut)
    {
        if spec.get("clusterIP").and_then(Value::as_str) != Some("None") {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
        if spec.get("sessionAffinity").and_then(Value::as_str) == Some("None") {
            spec.remove("sessionAffinity");
        }
    }
    v
}
