//! The pod template of a primary, made from its target's, and what the routers need
//! to know about a target's pods.

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::Client;
use kube::api::{Api, GetParams, ObjectMeta};
use serde_json::Value;
use serin_api::Canary;

use crate::configs::{TrackedConfigs, rewrite_to_primary};
use crate::error::{Error, Result};
use crate::labels::{self, LabelOptions, REVISION_ANNOTATION, SelectorLabel};

use super::flagger_hash;

/// A target's pods as the routers see them: the label that selects them and their
/// template (for port discovery).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetPods {
    pub kind: String,
    pub selector: SelectorLabel,
    pub template: PodTemplateSpec,
}

/// Reads the canary's target (Deployment or DaemonSet) and finds its selector label.
pub async fn read_target_pods(
    client: &Client,
    canary: &Canary,
    opts: &LabelOptions,
) -> Result<TargetPods> {
    let namespace = labels::namespace_of(canary)?;
    let name = &canary.spec.target_ref.name;
    let kind = super::target_kind(canary).to_string();
    let (selector, template) = match kind.as_str() {
        "Deployment" => {
            let api: Api<Deployment> = Api::namespaced(client.clone(), &namespace);
            let d = get_target(&api, &kind, &namespace, name).await?;
            let spec = d.spec.unwrap_or_default();
            (Some(spec.selector), spec.template)
        }
        "DaemonSet" => {
            let api: Api<DaemonSet> = Api::namespaced(client.clone(), &namespace);
            let d = get_target(&api, &kind, &namespace, name).await?;
            let spec = d.spec.unwrap_or_default();
            (Some(spec.selector), spec.template)
        }
        other => {
            return Err(Error::Invalid(format!(
                "canary {}: targetRef kind {other} is not supported (Deployment or DaemonSet)",
                canary.id()
            )));
        }
    };
    let selector = SelectorLabel::find(
        &kind,
        &namespace,
        name,
        selector.as_ref(),
        &opts.selector_labels,
    )?;
    Ok(TargetPods {
        kind,
        selector,
        template,
    })
}

/// Reads a target, `NotFound` naming it when it does not exist.
pub(crate) async fn get_target<K>(
    api: &Api<K>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<K>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    api.get_opt(name)
        .await
        .map_err(|e| {
            Error::kube(
                format!(
                    "{} {} get query error",
                    kind.to_lowercase(),
                    labels::dotted(name, namespace)
                ),
                e,
            )
        })?
        .ok_or_else(|| Error::NotFound {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
}

/// The hash serin compares with `status.lastAppliedSpec` to see a new revision:
/// Flagger's own ([`flagger_hash`]), so a canary Flagger promoted is not a new
/// revision when serin takes it over. Computed from the typed template, it cannot
/// see fields newer than serin's Kubernetes types; the controllers hash the API
/// server's JSON instead ([`get_target_with_template`]).
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_value(template).unwrap_or(Value::Null);
    flagger_hash::pod_template_hash(&json).hash
}

/// Reads a target as [`get_target`] does, with the JSON of its pod template as the
/// API server sent it (`spec.template`), which Flagger's decoder reads whole: fields
/// serin's k8s-openapi types drop still count in its hash.
pub(crate) async fn get_target_with_template<K>(
    api: &Api<K>,
    kind: &str,
    namespace: &str,
    name: &str,
) -> Result<(K, Value)>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned,
{
    let context = || {
        format!(
            "{} {} get query error",
            kind.to_lowercase(),
            labels::dotted(name, namespace)
        )
    };
    let request = kube::core::Request::new(api.resource_url())
        .get(name, &GetParams::default())
        .map_err(|e| Error::kube(context(), kube::Error::BuildRequest(e)))?;
    let raw: Value = match api.clone().into_client().request(request).await {
        Ok(raw) => raw,
        Err(kube::Error::Api(status)) if status.is_not_found() => {
            return Err(Error::NotFound {
                kind: kind.to_string(),
                namespace: namespace.to_string(),
                name: name.to_string(),
            });
        }
        Err(e) => return Err(Error::kube(context(), e)),
    };
    let template = raw
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let typed: K = serde_json::from_value(raw)
        .map_err(|e| Error::kube(context(), kube::Error::SerdeError(e)))?;
    Ok((typed, template))
}

/// Flagger's hash of the JSON pod template of a target; logs when serin cannot be
/// sure it is the value Flagger would have recorded.
pub(crate) fn flagger_template_hash(canary: &Canary, hash: flagger_hash::FlaggerHash) -> String {
    if !hash.exact {
        tracing::debug!(
            canary = %canary.id(),
            "the pod template's revision hash may differ from Flagger's for the same template \
             (managed fields, an unusual timestamp or a value Go would reject): a canary taken \
             over from Flagger sees one new revision"
        );
    }
    hash.hash
}

/// The primary's pod template: the target's, with the primary's selector label, its
/// tracked configs pointing at their `-primary` copies, pod (anti-)affinity and
/// topology spread selectors aimed at the primary's pods, and a `flagger-id`
/// annotation that changes exactly when the template or a tracked config changes,
/// so the primary rolls its pods then.
pub fn primary_pod_template(
    target_name: &str,
    template: &PodTemplateSpec,
    selector: &SelectorLabel,
    configs: &TrackedConfigs,
    label_keys: &[String],
) -> PodTemplateSpec {
    let meta = template.metadata.clone().unwrap_or_default();
    let mut annotations = labels::filter_metadata(meta.annotations.as_ref());
    annotations.remove(REVISION_ANNOTATION);
    let mut seed = template_hash(template);
    for (k, v) in configs.checksums() {
        seed.push_str(&format!(";{k}={v}"));
    }
    annotations.insert(REVISION_ANNOTATION.into(), labels::revision_id(&seed));

    let mut spec = template.spec.clone().unwrap_or_default();
    spec = rewrite_to_primary(&spec, &configs.refs());
    let retarget = |sel: &mut Option<LabelSelector>| {
        if let Some(sel) = sel {
            retarget_selector(sel, target_name, selector, label_keys);
        }
    };
    for c in spec.topology_spread_constraints.iter_mut().flatten() {
        retarget(&mut c.label_selector);
    }
    if let Some(anti) = spec
        .affinity
        .as_mut()
        .and_then(|a| a.pod_anti_affinity.as_mut())
    {
        for t in anti
            .preferred_during_scheduling_ignored_during_execution
            .iter_mut()
            .flatten()
        {
            retarget(&mut t.pod_affinity_term.label_selector);
        }
        for t in anti
            .required_during_scheduling_ignored_during_execution
            .iter_mut()
            .flatten()
        {
            retarget(&mut t.label_selector);
        }
    }

    PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(labels::primary_labels(meta.labels.as_ref(), selector)),
            annotations: Some(annotations),
            ..Default::default()
        }),
        spec: Some(spec),
    }
}

/// A selector that picks the target's pods by its selector label picks the
/// primary's instead.
fn retarget_selector(
    sel: &mut LabelSelector,
    target_name: &str,
    selector: &SelectorLabel,
    keys: &[String],
) {
    let is_target = |v: &str| v == target_name || v == selector.value;
    for e in sel.match_expressions.iter_mut().flatten() {
        if keys.contains(&e.key) {
            for v in e.values.iter_mut().flatten() {
                if is_target(v) {
                    v.push_str("-primary");
                    break;
                }
            }
        }
    }
    for (k, v) in sel.match_labels.iter_mut().flatten() {
        if keys.contains(k) && is_target(v) {
            v.push_str("-primary");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        Affinity, PodAffinityTerm, PodAntiAffinity, PodSpec, TopologySpreadConstraint,
    };
    use std::collections::BTreeMap;

    fn sel() -> SelectorLabel {
        SelectorLabel {
            key: "app".into(),
            value: "podinfo".into(),
        }
    }

    fn template() -> PodTemplateSpec {
        let by_app = LabelSelector {
            match_labels: Some(BTreeMap::from([("app".to_string(), "podinfo".to_string())])),
            ..Default::default()
        };
        PodTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(BTreeMap::from([
                    ("app".to_string(), "podinfo".to_string()),
                    ("version".to_string(), "1".to_string()),
                ])),
                annotations: Some(BTreeMap::from([
                    ("prometheus.io/scrape".to_string(), "true".to_string()),
                    ("flagger-id".to_string(), "stale".to_string()),
                ])),
                ..Default::default()
            }),
            spec: Some(PodSpec {
                topology_spread_constraints: Some(vec![TopologySpreadConstraint {
                    label_selector: Some(by_app.clone()),
                    max_skew: 1,
                    topology_key: "zone".into(),
                    when_unsatisfiable: "DoNotSchedule".into(),
                    ..Default::default()
                }]),
                affinity: Some(Affinity {
                    pod_anti_affinity: Some(PodAntiAffinity {
                        required_during_scheduling_ignored_during_execution: Some(vec![
                            PodAffinityTerm {
                                label_selector: Some(by_app),
                                topology_key: "host".into(),
                                ..Default::default()
                            },
                        ]),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn primary_template_selects_primary_pods() {
        let keys = LabelOptions::default().selector_labels;
        let t = primary_pod_template(
            "podinfo",
            &template(),
            &sel(),
            &TrackedConfigs::default(),
            &keys,
        );
        let meta = t.metadata.unwrap();
        let labels = meta.labels.unwrap();
        assert_eq!(labels["app"], "podinfo-primary");
        assert_eq!(labels["version"], "1");
        let annotations = meta.annotations.unwrap();
        assert_eq!(annotations["prometheus.io/scrape"], "true");
        assert_ne!(annotations["flagger-id"], "stale");
        let spec = t.spec.unwrap();
        let tsc = &spec.topology_spread_constraints.unwrap()[0];
        assert_eq!(
            tsc.label_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app"],
            "podinfo-primary"
        );
        let anti = spec.affinity.unwrap().pod_anti_affinity.unwrap();
        let term = &anti
            .required_during_scheduling_ignored_during_execution
            .unwrap()[0];
        assert_eq!(
            term.label_selector
                .as_ref()
                .unwrap()
                .match_labels
                .as_ref()
                .unwrap()["app"],
            "podinfo-primary"
        );
    }

    #[test]
    fn revision_annotation_changes_with_template_only() {
        let keys = LabelOptions::default().selector_labels;
        let id = |t: &PodTemplateSpec| {
            primary_pod_template("podinfo", t, &sel(), &TrackedConfigs::default(), &keys)
                .metadata
                .unwrap()
                .annotations
                .unwrap()["flagger-id"]
                .clone()
        };
        let a = template();
        let mut b = template();
        assert_eq!(id(&a), id(&b));
        b.metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert("version".into(), "2".into());
        assert_ne!(id(&a), id(&b));
    }
}
