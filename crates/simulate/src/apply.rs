//! Putting manifests into the sandbox, as `kubectl apply` would (the stand-ins for a
//! Canary's target and HPA come from [`serin_api::stand_in`], shared with `render`).

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::core::ObjectMeta;
use serde_json::Value;
use serin_api::Canary;
use serin_api::load::{Document, normalise};

use crate::Error;

/// Installs serin's CRDs.
pub async fn install_crds(client: &kube::Client) -> Result<(), Error> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in serin_api::crd::crds() {
        match api.create(&PostParams::default(), &crd).await {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(Error::Apply(format!("CRD: {e}"))),
        }
    }
    Ok(())
}

pub async fn ensure_namespace(client: &kube::Client, name: &str) -> Result<(), Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        ..Default::default()
    };
    match api.create(&PostParams::default(), &ns).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => Err(Error::Apply(format!("namespace {name}: {e}"))),
    }
}

/// Creates (or replaces) one document.
pub async fn apply_value(client: &kube::Client, mut value: Value) -> Result<(), Error> {
    // Old Flagger documents and HPAs of versions Kubernetes no longer serves are
    // applied as serin reads them.
    normalise(&mut value);
    let api_version = value
        .get("apiVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let kind = value
        .get("kind")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if kind.is_empty() || name.is_empty() {
        return Err(Error::Apply(format!(
            "a document without kind or metadata.name ({api_version} {kind})"
        )));
    }
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let gvk = GroupVersionKind::gvk(&group, &version, &kind);
    let (resource, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .map_err(|e| Error::Apply(format!("{kind} {name}: unknown kind: {e}")))?;
    let api: Api<DynamicObject> = if caps.scope == kube::discovery::Scope::Namespaced {
        let ns = value
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
            .unwrap_or("default")
            .to_string();
        ensure_namespace(client, &ns).await?;
        if let Some(meta) = value.get_mut("metadata").and_then(Value::as_object_mut) {
            meta.insert("namespace".into(), Value::String(ns.clone()));
        }
        Api::namespaced_with(client.clone(), &ns, &resource)
    } else {
        Api::all_with(client.clone(), &resource)
    };
    let object: DynamicObject =
        serde_json::from_value(value).map_err(|e| Error::Apply(format!("{kind} {name}: {e}")))?;
    match api.create(&PostParams::default(), &object).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let current = api
                .get(&name)
                .await
                .map_err(|e| Error::Apply(format!("{kind} {name}: {e}")))?;
            let mut next = object;
            next.metadata.resource_version = current.metadata.resource_version;
            api.replace(&name, &PostParams::default(), &next)
                .await
                .map(|_| ())
                .map_err(|e| Error::Apply(format!("{kind} {name}: {e}")))
        }
        Err(e) => Err(Error::Apply(format!("{kind} {name}: {e}"))),
    }
}

/// The canaries among the documents.
pub fn canaries(docs: &[Document]) -> Result<Vec<Canary>, Error> {
    let mut out = Vec::new();
    for doc in docs {
        if doc.is_flagger() && doc.kind() == "Canary" {
            let mut value = doc.value.clone();
            normalise(&mut value);
            let mut canary: Canary = serde_json::from_value(value)
                .map_err(|e| Error::Apply(format!("{}:{}: Canary: {e}", doc.source, doc.line)))?;
            if canary.metadata.namespace.is_none() {
                canary.metadata.namespace = Some("default".into());
            }
            out.push(canary);
        }
    }
    Ok(out)
}

/// Orders documents so that what others depend on is created first.
pub fn apply_order(doc: &Value) -> u8 {
    match doc.get("kind").and_then(Value::as_str).unwrap_or_default() {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ConfigMap" | "Secret" | "MetricTemplate" | "AlertProvider" => 2,
        "Deployment" | "DaemonSet" | "HorizontalPodAutoscaler" | "Service" => 3,
        "Canary" => 5,
        _ => 4,
    }
}
