//! DaemonSet targets: `<target>-primary` is a DaemonSet copied from the target. A
//! DaemonSet has no replica count, so "scaled to zero" means a node selector no node
//! matches (`flagger.app/scale-to-zero: "true"`), as in Flagger.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{DaemonSet, DaemonSetSpec};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ObjectMeta, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serin_api::Canary;

use super::flagger_hash;
use super::template::{
    flagger_template_hash, get_target, get_target_with_template, primary_pod_template,
};
use super::{Readiness, TargetRevision, WorkloadController, WorkloadOptions, primary_name};
use super::{Role, set_primary_metadata};
use crate::configs::TrackedConfigs;
use crate::error::{Error, Result};
use crate::labels::{self, Applied, LabelOptions, SelectorLabel};

const KIND: &str = "DaemonSet";

/// The node selector that keeps a scaled-down DaemonSet off every node.
pub const SCALE_DOWN_NODE_SELECTOR: (&str, &str) = ("flagger.app/scale-to-zero", "true");

pub struct DaemonSetController {
    client: Client,
    options: WorkloadOptions,
}

impl DaemonSetController {
    pub fn new(client: Client, options: WorkloadOptions) -> Self {
        DaemonSetController { client, options }
    }

    fn api(&self, canary: &Canary) -> Result<Api<DaemonSet>> {
        Ok(Api::namespaced(
            self.client.clone(),
            &labels::namespace_of(canary)?,
        ))
    }

    async fn target(&self, canary: &Canary) -> Result<DaemonSet> {
        let ns = labels::namespace_of(canary)?;
        get_target(&self.api(canary)?, KIND, &ns, &canary.spec.target_ref.name).await
    }

    async fn primary(&self, canary: &Canary) -> Result<DaemonSet> {
        let ns = labels::namespace_of(canary)?;
        get_target(&self.api(canary)?, KIND, &ns, &primary_name(canary)).await
    }

    fn selector(&self, target: &DaemonSet) -> Result<SelectorLabel> {
        SelectorLabel::find(
            KIND,
            target.namespace().as_deref().unwrap_or_default(),
            &target.name_any(),
            target.spec.as_ref().map(|s| &s.selector),
            &self.options.labels.selector_labels,
        )
    }

    async fn configs(&self, canary: &Canary, target: &DaemonSet) -> Result<TrackedConfigs> {
        if self.options.skip_config_tracking {
            return Ok(TrackedConfigs::default());
        }
        let spec = target
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .unwrap_or_default();
        TrackedConfigs::read(&self.client, &labels::namespace_of(canary)?, &spec).await
    }

    async fn set_scale_down_selector(&self, canary: &Canary, on: bool) -> Result<()> {
        let name = &canary.spec.target_ref.name;
        let ns = labels::namespace_of(canary)?;
        let value = if on {
            serde_json::Value::from(SCALE_DOWN_NODE_SELECTOR.1)
        } else {
            serde_json::Value::Null
        };
        let patch = serde_json::json!({
            "spec": { "template": { "spec": { "nodeSelector": { SCALE_DOWN_NODE_SELECTOR.0: value } } } }
        });
        self.api(canary)?
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                Error::kube(
                    format!(
                        "scaling {} {} failed",
                        if on { "down" } else { "up" },
                        labels::dotted(name, &ns)
                    ),
                    e,
                )
            })?;
        Ok(())
    }

    fn readiness(&self, ds: &DaemonSet, canary: &Canary, threshold: i32, role: Role) -> Readiness {
        let since = canary
            .status
            .as_ref()
            .and_then(|s| s.last_transition_time.as_ref())
            .and_then(labels::to_utc);
        daemonset_readiness(
            ds,
            canary.progress_deadline(),
            threshold,
            since,
            self.options.clock.now(),
            role,
        )
    }
}

/// Whether the DaemonSet carries serin's scale-down node selector.
fn scaled_down(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| p.node_selector.as_ref())
        .is_some_and(|n| n.contains_key(SCALE_DOWN_NODE_SELECTOR.0))
}

/// The template without serin's scale-down node selector: what the user wrote.
fn without_scale_down(template: &PodTemplateSpec) -> PodTemplateSpec {
    let mut t = template.clone();
    if let Some(spec) = t.spec.as_mut() {
        if let Some(sel) = spec.node_selector.as_mut() {
            sel.remove(SCALE_DOWN_NODE_SELECTOR.0);
        }
        if spec.node_selector.as_ref().is_some_and(|s| s.is_empty()) {
            spec.node_selector = None;
        }
    }
    t
}

/// The primary DaemonSet made from the target, owned by the Canary.
pub fn primary_daemonset(
    canary: &Canary,
    target: &DaemonSet,
    selector: &SelectorLabel,
    configs: &TrackedConfigs,
    opts: &LabelOptions,
) -> Result<DaemonSet> {
    let mut out = DaemonSet {
        metadata: ObjectMeta {
            name: Some(primary_name(canary)),
            namespace: target.namespace().or_else(|| canary.namespace()),
            ..Default::default()
        },
        spec: Some(DaemonSetSpec {
            selector: LabelSelector {
                match_labels: Some(selector.primary_selector()),
                ..Default::default()
            },
            ..Default::default()
        }),
        status: None,
    };
    set_primary_metadata(&mut out.metadata, canary, &target.metadata, selector, opts)?;
    copy_template(&mut out, canary, target, selector, configs, opts);
    Ok(out)
}

fn copy_template(
    primary: &mut DaemonSet,
    canary: &Canary,
    target: &DaemonSet,
    selector: &SelectorLabel,
    configs: &TrackedConfigs,
    opts: &LabelOptions,
) {
    let t = target.spec.clone().unwrap_or_default();
    let spec = primary.spec.get_or_insert_with(Default::default);
    spec.min_ready_seconds = t.min_ready_seconds;
    spec.revision_history_limit = t.revision_history_limit;
    spec.update_strategy = t.update_strategy.clone();
    spec.template = primary_pod_template(
        &canary.spec.target_ref.name,
        &without_scale_down(&t.template),
        selector,
        configs,
        &opts.selector_labels,
    );
}

/// Whether a DaemonSet's rollout is done: every scheduled pod updated and at least
/// `threshold` percent of them available. Not done `deadline` after `since` (the
/// canary's last transition) means it failed.
///
/// The texts are Flagger's, its spelling included ("primary daemonset
/// agent-primary.test not ready: waiting for rollout to finish: ...", "canary
/// damonset agent.test not ready with retryable true: ..."), except the wait for
/// available pods, in the seeds' words ("Waiting for agent.test rollout to finish:
/// 1 of 3 updated pods are available").
pub fn daemonset_readiness(
    ds: &DaemonSet,
    deadline: Duration,
    threshold: i32,
    since: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
    role: Role,
) -> Readiness {
    let id = labels::dotted(
        &ds.name_any(),
        ds.namespace().as_deref().unwrap_or_default(),
    );
    let not_ready = match role {
        Role::Primary => format!("primary daemonset {id} not ready"),
        Role::Canary => format!("canary damonset {id} not ready with retryable true"),
    };
    let status = ds.status.clone().unwrap_or_default();
    if ds.metadata.generation.unwrap_or(0) > status.observed_generation.unwrap_or(0) {
        return Readiness::Waiting(format!(
            "{not_ready}: waiting for rollout to finish: observed daemonset generation less than desired generation"
        ));
    }
    let desired = status.desired_number_scheduled;
    let updated = status.updated_number_scheduled.unwrap_or(0);
    let available = status.number_available.unwrap_or(0);
    let needed = (i64::from(desired) * i64::from(threshold.clamp(0, 100)) / 100) as i32;
    let (what, text) = if updated < desired {
        let what = format!("{updated} out of {desired} new pods have been updated");
        let text = format!("{not_ready}: waiting for rollout to finish: {what}");
        (what, text)
    } else if available < needed {
        let what = if threshold == 100 {
            format!("{available} of {needed} updated pods are available")
        } else {
            format!(
                "{available} of {needed} (readyThreshold {threshold}%) updated pods are available"
            )
        };
        let text = format!("Waiting for {id} rollout to finish: {what}");
        (what, text)
    } else {
        return Readiness::Ready;
    };
    if let Some(from) = since {
        let limit = chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX);
        if from + limit < now {
            return Readiness::DeadlineExceeded(format!(
                "DaemonSet {id} exceeded its progressDeadlineSeconds {}: {what}",
                deadline.as_secs()
            ));
        }
    }
    Readiness::Waiting(text)
}

#[async_trait]
impl WorkloadController for DaemonSetController {
    async fn initialize_primary(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        let strategy = target
            .spec
            .as_ref()
            .and_then(|s| s.update_strategy.as_ref())
            .and_then(|s| s.type_.clone())
            .unwrap_or_default();
        if !strategy.is_empty() && strategy != "RollingUpdate" {
            return Err(Error::Invalid(format!(
                "daemonset {} must have RollingUpdate strategy but has {strategy}",
                labels::dotted(&target.name_any(), &target.namespace().unwrap_or_default())
            )));
        }
        let selector = self.selector(&target)?;
        let api = self.api(canary)?;
        let name = primary_name(canary);
        let exists = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("daemonset {name} get query error"), e))?
            .is_some();
        if !exists {
            let configs = self.configs(canary, &target).await?;
            configs
                .sync_primary_copies(&self.client, canary, &self.options.labels)
                .await?;
            let primary =
                primary_daemonset(canary, &target, &selector, &configs, &self.options.labels)?;
            let applied =
                labels::create_or_update(&api, "daemonset", &name, |current| match current {
                    None => Ok(Some(primary.clone())),
                    Some(_) => Ok(None),
                })
                .await?;
            if applied == Applied::Created {
                tracing::info!(canary = %canary.id(), "DaemonSet {} created", labels::dotted(&name, &target.namespace().unwrap_or_default()));
            }
        } else {
            labels::create_or_update(&api, "daemonset", &name, |current| {
                let Some(cur) = current else {
                    return Ok(None);
                };
                let mut next = cur.clone();
                set_primary_metadata(
                    &mut next.metadata,
                    canary,
                    &target.metadata,
                    &selector,
                    &self.options.labels,
                )?;
                Ok((next.metadata != cur.metadata).then_some(next))
            })
            .await?;
        }
        Ok(())
    }

    async fn target_revision(&self, canary: &Canary) -> Result<TargetRevision> {
        let ns = labels::namespace_of(canary)?;
        let (target, template) =
            get_target_with_template(&self.api(canary)?, KIND, &ns, &canary.spec.target_ref.name)
                .await?;
        let configs = self.configs(canary, &target).await?;
        // Flagger's hash leaves out the scale-down node selector, as the
        // revision must.
        let hash = flagger_hash::daemonset_pod_template_hash(&template);
        Ok(TargetRevision {
            spec_hash: flagger_template_hash(canary, hash),
            tracked_configs: configs.checksums(),
        })
    }

    async fn canary_readiness(&self, canary: &Canary) -> Result<Readiness> {
        let target = self.target(canary).await?;
        Ok(self.readiness(
            &target,
            canary,
            canary.canary_ready_threshold(),
            Role::Canary,
        ))
    }

    async fn primary_readiness(&self, canary: &Canary) -> Result<Readiness> {
        let primary = self.primary(canary).await?;
        Ok(self.readiness(
            &primary,
            canary,
            canary.primary_ready_threshold(),
            Role::Primary,
        ))
    }

    async fn scale_to_zero(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        if !scaled_down(&target) {
            self.set_scale_down_selector(canary, true).await?;
        }
        Ok(())
    }

    async fn scale_from_zero(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        if scaled_down(&target) {
            self.set_scale_down_selector(canary, false).await?;
        }
        Ok(())
    }

    async fn promote(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        let selector = self.selector(&target)?;
        let configs = self.configs(canary, &target).await?;
        configs
            .sync_primary_copies(&self.client, canary, &self.options.labels)
            .await?;
        let api = self.api(canary)?;
        let name = primary_name(canary);
        let ns = labels::namespace_of(canary)?;
        let opts = &self.options.labels;
        let applied = labels::create_or_update(&api, "daemonset", &name, |current| {
            let Some(cur) = current else {
                return Err(Error::NotFound {
                    kind: KIND.into(),
                    namespace: ns.clone(),
                    name: name.clone(),
                });
            };
            let mut next = cur.clone();
            copy_template(&mut next, canary, &target, &selector, &configs, opts);
            set_primary_metadata(
                &mut next.metadata,
                canary,
                &target.metadata,
                &selector,
                opts,
            )?;
            Ok((next.spec != cur.spec || next.metadata != cur.metadata).then_some(next))
        })
        .await?;
        if applied != Applied::Unchanged {
            tracing::info!(canary = %canary.id(), "DaemonSet {} template spec updated", labels::dotted(&name, &ns));
        }
        Ok(())
    }

    async fn finalize(&self, canary: &Canary) -> Result<()> {
        let target = match self.target(canary).await {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        if scaled_down(&target) {
            self.set_scale_down_selector(canary, false).await?;
        }
        labels::delete_if_owned(
            &self.api(canary)?,
            "daemonset",
            &primary_name(canary),
            canary,
        )
        .await?;
        let spec = target
            .spec
            .and_then(|s| s.template.spec)
            .unwrap_or_default();
        TrackedConfigs::delete_primary_copies(&self.client, canary, &spec).await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::template::template_hash;
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetStatus;
    use k8s_openapi::api::core::v1::PodSpec;
    use std::collections::BTreeMap;

    fn ds(status: DaemonSetStatus) -> DaemonSet {
        DaemonSet {
            metadata: ObjectMeta {
                name: Some("agent".into()),
                namespace: Some("test".into()),
                generation: Some(1),
                ..Default::default()
            },
            spec: None,
            status: Some(DaemonSetStatus {
                observed_generation: Some(1),
                ..status
            }),
        }
    }

    #[test]
    fn waits_other_than_for_available_pods_are_in_flaggers_words() {
        let now = Utc::now();
        let d = ds(DaemonSetStatus {
            desired_number_scheduled: 3,
            updated_number_scheduled: Some(1),
            number_available: Some(1),
            ..Default::default()
        });
        let wait =
            |role| daemonset_readiness(&d, Duration::from_secs(60), 100, Some(now), now, role);
        assert_eq!(
            wait(Role::Primary),
            Readiness::Waiting(
                "primary daemonset agent.test not ready: waiting for rollout to finish: 1 out of 3 new pods have been updated"
                    .into()
            )
        );
        assert_eq!(
            wait(Role::Canary),
            Readiness::Waiting(
                "canary damonset agent.test not ready with retryable true: waiting for rollout to finish: 1 out of 3 new pods have been updated"
                    .into()
            )
        );
    }

    #[test]
    fn readiness_counts_scheduled_pods() {
        let now = Utc::now();
        let d = ds(DaemonSetStatus {
            desired_number_scheduled: 3,
            updated_number_scheduled: Some(3),
            number_available: Some(1),
            ..Default::default()
        });
        assert_eq!(
            daemonset_readiness(
                &d,
                Duration::from_secs(60),
                100,
                Some(now),
                now,
                Role::Canary
            ),
            Readiness::Waiting(
                "Waiting for agent.test rollout to finish: 1 of 3 updated pods are available"
                    .into()
            )
        );
        assert_eq!(
            daemonset_readiness(
                &d,
                Duration::from_secs(60),
                30,
                Some(now),
                now,
                Role::Canary
            ),
            Readiness::Ready
        );
        let late = now + chrono::Duration::seconds(61);
        assert!(matches!(
            daemonset_readiness(
                &d,
                Duration::from_secs(60),
                100,
                Some(now),
                late,
                Role::Canary
            ),
            Readiness::DeadlineExceeded(_)
        ));
    }

    #[test]
    fn scale_down_selector_is_not_part_of_the_revision() {
        let selector = |pairs: &[(&str, &str)]| -> PodTemplateSpec {
            PodTemplateSpec {
                spec: Some(PodSpec {
                    node_selector: (!pairs.is_empty()).then(|| {
                        pairs
                            .iter()
                            .map(|(k, v)| (k.to_string(), v.to_string()))
                            .collect::<BTreeMap<_, _>>()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let scale_down = SCALE_DOWN_NODE_SELECTOR;
        // Only serin's own key is removed; what the user wrote stays as written.
        assert_eq!(without_scale_down(&selector(&[scale_down])), selector(&[]));
        assert_eq!(
            without_scale_down(&selector(&[("disk", "ssd"), scale_down])),
            selector(&[("disk", "ssd")])
        );
        assert_eq!(
            without_scale_down(&selector(&[("disk", "ssd")])),
            selector(&[("disk", "ssd")])
        );
        // So a scaled-down target has the revision of the template the user wrote,
        // while a change of the user's own node selector is a new revision.
        let revision = |t: &PodTemplateSpec| template_hash(&without_scale_down(t));
        assert_eq!(
            revision(&selector(&[("disk", "ssd"), scale_down])),
            template_hash(&selector(&[("disk", "ssd")]))
        );
        assert_ne!(
            revision(&selector(&[("disk", "ssd")])),
            revision(&selector(&[("disk", "hdd")]))
        );
        assert_ne!(
            template_hash(&selector(&[scale_down])),
            template_hash(&selector(&[])),
            "the hash itself sees the selector: the stripping is what hides it"
        );
        // What target_revision computes, as Flagger does: the scale-down key
        // dropped, and no selector hashing as an empty one.
        let flagger = |t: &PodTemplateSpec| {
            flagger_hash::daemonset_pod_template_hash(&serde_json::to_value(t).unwrap())
        };
        assert_eq!(
            flagger(&selector(&[("disk", "ssd"), scale_down])),
            flagger(&selector(&[("disk", "ssd")]))
        );
        assert_eq!(flagger(&selector(&[scale_down])), flagger(&selector(&[])));
        assert_ne!(
            flagger(&selector(&[("disk", "ssd")])),
            flagger(&selector(&[("disk", "hdd")]))
        );
    }
}
