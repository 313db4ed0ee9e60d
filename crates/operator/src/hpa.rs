//! The primary's HorizontalPodAutoscaler: a copy of the target's HPA that scales
//! `<target>-primary`, with `autoscalerRef.primaryScalerReplicas` applied.
//!
//! As in Flagger, HPAs are read and written through `autoscaling/v2` whatever
//! version `autoscalerRef.apiVersion` names: every Kubernetes since 1.23 serves v2
//! and converts HPAs created in older versions to it, while `v2beta1` (gone in 1.25)
//! and `v2beta2` (gone in 1.26) are no longer served. The target's own HPA needs no
//! pausing: an HPA does not scale a workload that has zero replicas, which is where
//! serin keeps the target.

use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, ResourceExt};
use serde_json::{Map, Value};
use serin_api::Canary;

use crate::error::{Error, Result};
use crate::labels::{self, Applied};

pub const HPA_KIND: &str = "HorizontalPodAutoscaler";
/// The version HPAs are used through.
pub const API_VERSION: &str = "autoscaling/v2";

/// The HPA API in the given `group/version`.
pub fn hpa_resource(api_version: &str) -> ApiResource {
    let (group, version) = api_version.split_once('/').unwrap_or(("autoscaling", "v2"));
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk(group, version, HPA_KIND),
        "horizontalpodautoscalers",
    )
}

/// The HPA API serin uses: `autoscaling/v2`.
fn hpa_api(client: &Client, namespace: &str) -> Api<DynamicObject> {
    Api::namespaced_with(client.clone(), namespace, &hpa_resource(API_VERSION))
}

/// The name of the Canary's HPA, or `None` without one. Other autoscaler kinds are
/// an error serin reports. The reference's `apiVersion` is not used (see the module).
pub fn hpa_ref(canary: &Canary) -> Result<Option<String>> {
    let Some(r) = &canary.spec.autoscaler_ref else {
        return Ok(None);
    };
    if r.name.is_empty() {
        return Ok(None);
    }
    let kind = r.kind.as_deref().unwrap_or(HPA_KIND);
    if kind != HPA_KIND {
        return Err(Error::Invalid(format!(
            "canary {}: autoscalerRef kind {kind} is not supported (only {HPA_KIND})",
            canary.id()
        )));
    }
    Ok(Some(r.name.clone()))
}

/// Reads the target's HPA through `autoscaling/v2`.
pub async fn read_target_hpa(client: &Client, canary: &Canary) -> Result<Option<DynamicObject>> {
    let Some(name) = hpa_ref(canary)? else {
        return Ok(None);
    };
    let namespace = labels::namespace_of(canary)?;
    match hpa_api(client, &namespace).get(&name).await {
        Ok(mut hpa) => {
            hpa.types = Some(kube::api::TypeMeta {
                api_version: API_VERSION.into(),
                kind: HPA_KIND.into(),
            });
            Ok(Some(hpa))
        }
        Err(e) if labels::is_status(&e, 404) => Err(Error::NotFound {
            kind: HPA_KIND.into(),
            namespace,
            name,
        }),
        Err(e) => Err(Error::kube(
            format!(
                "HorizontalPodAutoscaler {} get query error",
                labels::dotted(&name, &namespace)
            ),
            e,
        )),
    }
}

/// The `minReplicas` of an HPA (1 when unset, as Kubernetes defaults it).
pub fn min_replicas(hpa: &DynamicObject) -> i32 {
    hpa.data
        .pointer("/spec/minReplicas")
        .and_then(Value::as_i64)
        .and_then(|v| i32::try_from(v).ok())
        .unwrap_or(1)
}

/// The primary's HPA: the source's spec with `scaleTargetRef` pointing at the primary
/// workload and `primaryScalerReplicas` applied.
pub fn primary_hpa(canary: &Canary, source: &DynamicObject) -> Result<DynamicObject> {
    let name = format!("{}-primary", source.name_any());
    let mut spec = source
        .data
        .get("spec")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_default();
    let mut target_ref = spec
        .get("scaleTargetRef")
        .and_then(Value::as_object)
        .cloned()
        .unwrap_or_else(|| {
            Map::from_iter([
                ("apiVersion".to_string(), Value::from("apps/v1")),
                (
                    "kind".to_string(),
                    Value::from(
                        canary
                            .spec
                            .target_ref
                            .kind
                            .clone()
                            .unwrap_or_else(|| "Deployment".into()),
                    ),
                ),
            ])
        });
    target_ref.insert(
        "name".into(),
        Value::from(format!("{}-primary", canary.spec.target_ref.name)),
    );
    spec.insert("scaleTargetRef".into(), Value::Object(target_ref));
    if let Some(r) = canary
        .spec
        .autoscaler_ref
        .as_ref()
        .and_then(|a| a.primary_scaler_replicas.as_ref())
    {
        if let Some(min) = r.min_replicas {
            spec.insert("minReplicas".into(), Value::from(min));
        }
        if let Some(max) = r.max_replicas {
            spec.insert("maxReplicas".into(), Value::from(max));
        }
    }
    let mut out = DynamicObject::new(&name, &hpa_resource(API_VERSION));
    out.metadata.namespace = canary.namespace();
    out.metadata.labels =
        Some(labels::filter_metadata(source.metadata.labels.as_ref())).filter(|l| !l.is_empty());
    out.metadata.owner_references = Some(vec![labels::owner_reference(canary)?]);
    out.data = serde_json::json!({ "spec": Value::Object(spec) });
    Ok(out)
}

/// Creates the primary HPA when it is missing; with `update`, also brings an existing
/// one in line with the target's HPA (at promotion).
pub async fn reconcile_primary_hpa(
    client: &Client,
    canary: &Canary,
    update: bool,
) -> Result<Applied> {
    let Some(source) = read_target_hpa(client, canary).await? else {
        return Ok(Applied::Unchanged);
    };
    let desired = primary_hpa(canary, &source)?;
    let namespace = labels::namespace_of(canary)?;
    let api = hpa_api(client, &namespace);
    let name = desired.name_any();
    let applied = labels::create_or_update(&api, "HorizontalPodAutoscaler", &name, |current| {
        let Some(cur) = current else {
            return Ok(Some(desired.clone()));
        };
        if !update {
            return Ok(None);
        }
        let mut next = cur.clone();
        let mut changed =
            labels::assign(&mut next.metadata.labels, desired.metadata.labels.clone());
        let spec = desired.data.get("spec").cloned().unwrap_or(Value::Null);
        if next.data.get("spec") != Some(&spec) {
            if let Some(obj) = next.data.as_object_mut() {
                obj.insert("spec".into(), spec);
            } else {
                next.data = serde_json::json!({ "spec": spec });
            }
            changed = true;
        }
        Ok(changed.then_some(next))
    })
    .await?;
    if applied != Applied::Unchanged {
        tracing::info!(canary = %canary.id(), "HorizontalPodAutoscaler {} {:?}", labels::dotted(&name, &namespace), applied);
    }
    Ok(applied)
}

/// Deletes the primary HPA when this canary made it.
pub async fn delete_primary_hpa(client: &Client, canary: &Canary) -> Result<()> {
    let Some(name) = hpa_ref(canary)? else {
        return Ok(());
    };
    let namespace = labels::namespace_of(canary)?;
    let primary = format!("{name}-primary");
    let api = hpa_api(client, &namespace);
    match labels::delete_if_owned(&api, "HorizontalPodAutoscaler", &primary, canary).await {
        Ok(_) => Ok(()),
        Err(Error::Kube { source, .. }) if labels::is_status(&source, 404) => Ok(()),
        Err(e) => Err(e),
    }
}
