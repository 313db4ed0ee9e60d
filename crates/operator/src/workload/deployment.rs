//! Deployment targets: `<target>-primary` is a Deployment copied from the target;
//! the target is scaled to zero between rollouts.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentCondition, DeploymentSpec};
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
use crate::hpa;
use crate::labels::{self, Applied, LabelOptions, SelectorLabel};

const KIND: &str = "Deployment";

pub struct DeploymentController {
    client: Client,
    options: WorkloadOptions,
}

impl DeploymentController {
    pub fn new(client: Client, options: WorkloadOptions) -> Self {
        DeploymentController { client, options }
    }

    fn api(&self, canary: &Canary) -> Result<Api<Deployment>> {
        Ok(Api::namespaced(
            self.client.clone(),
            &labels::namespace_of(canary)?,
        ))
    }

    async fn target(&self, canary: &Canary) -> Result<Deployment> {
        let ns = labels::namespace_of(canary)?;
        get_target(&self.api(canary)?, KIND, &ns, &canary.spec.target_ref.name).await
    }

    async fn primary(&self, canary: &Canary) -> Result<Deployment> {
        let ns = labels::namespace_of(canary)?;
        get_target(&self.api(canary)?, KIND, &ns, &primary_name(canary)).await
    }

    fn selector(&self, target: &Deployment) -> Result<SelectorLabel> {
        SelectorLabel::find(
            KIND,
            target.namespace().as_deref().unwrap_or_default(),
            &target.name_any(),
            target.spec.as_ref().map(|s| &s.selector),
            &self.options.labels.selector_labels,
        )
    }

    async fn configs(&self, canary: &Canary, target: &Deployment) -> Result<TrackedConfigs> {
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

    async fn scale(&self, canary: &Canary, replicas: i32) -> Result<()> {
        let name = &canary.spec.target_ref.name;
        let ns = labels::namespace_of(canary)?;
        let patch = serde_json::json!({ "spec": { "replicas": replicas } });
        self.api(canary)?
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|e| {
                Error::kube(
                    format!("scaling {} to {replicas} failed", labels::dotted(name, &ns)),
                    e,
                )
            })?;
        Ok(())
    }

    async fn readiness(
        &self,
        dep: &Deployment,
        canary: &Canary,
        threshold: i32,
        role: Role,
    ) -> Readiness {
        deployment_readiness(
            dep,
            canary.progress_deadline(),
            threshold,
            self.options.clock.now(),
            role,
        )
    }
}

/// The primary Deployment made from the target: its own selector and labels, the
/// target's pod template (configs pointing at their `-primary` copies) and rollout
/// settings, `replicas` pods, owned by the Canary.
pub fn primary_deployment(
    canary: &Canary,
    target: &Deployment,
    selector: &SelectorLabel,
    configs: &TrackedConfigs,
    replicas: i32,
    opts: &LabelOptions,
) -> Result<Deployment> {
    let mut out = Deployment {
        metadata: ObjectMeta {
            name: Some(primary_name(canary)),
            namespace: target.namespace().or_else(|| canary.namespace()),
            ..Default::default()
        },
        spec: Some(DeploymentSpec {
            replicas: Some(replicas),
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

/// Copies the target's pod template and rollout settings onto the primary.
fn copy_template(
    primary: &mut Deployment,
    canary: &Canary,
    target: &Deployment,
    selector: &SelectorLabel,
    configs: &TrackedConfigs,
    opts: &LabelOptions,
) {
    let t = target.spec.clone().unwrap_or_default();
    let spec = primary.spec.get_or_insert_with(Default::default);
    spec.progress_deadline_seconds = t.progress_deadline_seconds;
    spec.min_ready_seconds = t.min_ready_seconds;
    spec.revision_history_limit = t.revision_history_limit;
    spec.strategy = t.strategy.clone();
    spec.template = primary_pod_template(
        &canary.spec.target_ref.name,
        &t.template,
        selector,
        configs,
        &opts.selector_labels,
    );
}

/// Whether a Deployment's rollout is done, as Flagger judges it: all replicas
/// updated, no old ones left, and at least `threshold` percent of the updated ones
/// available. A rollout Kubernetes marks `ProgressDeadlineExceeded`, or that made no
/// progress for `deadline`, has failed.
///
/// The texts are Flagger's ("podinfo-primary.test not ready: waiting for rollout to
/// finish: 0 out of 2 new replicas have been updated", "canary deployment
/// podinfo.test not ready: ..."), except the wait for available replicas, which
/// keeps the words of the seeds' `kubectl describe` ("Waiting for podinfo.test
/// rollout to finish: 0 of 1 updated replicas are available").
pub fn deployment_readiness(
    dep: &Deployment,
    deadline: Duration,
    threshold: i32,
    now: DateTime<Utc>,
    role: Role,
) -> Readiness {
    let id = labels::dotted(
        &dep.name_any(),
        dep.namespace().as_deref().unwrap_or_default(),
    );
    let not_ready = match role {
        Role::Primary => format!("{id} not ready"),
        Role::Canary => format!("canary deployment {id} not ready"),
    };
    let status = dep.status.clone().unwrap_or_default();
    let generation = dep.metadata.generation.unwrap_or(0);
    if generation > status.observed_generation.unwrap_or(0) {
        return Readiness::Waiting(format!(
            "{not_ready}: waiting for rollout to finish: observed deployment generation less than desired generation"
        ));
    }
    let condition = |t: &str| -> Option<&DeploymentCondition> {
        status.conditions.iter().flatten().find(|c| c.type_ == t)
    };
    let progressing = condition("Progressing");
    if progressing.is_some_and(|c| c.reason.as_deref() == Some("ProgressDeadlineExceeded")) {
        return Readiness::DeadlineExceeded(format!(
            "{not_ready}: deployment \"{}\" exceeded its progress deadline",
            dep.name_any()
        ));
    }
    let desired = dep.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = status.updated_replicas.unwrap_or(0);
    let replicas = status.replicas.unwrap_or(0);
    let available = status.available_replicas.unwrap_or(0);
    let needed = (i64::from(updated) * i64::from(threshold.clamp(0, 100)) / 100) as i32;
    // What is awaited, and the text of the wait.
    let (what, text) = if updated < desired {
        let what = format!("{updated} out of {desired} new replicas have been updated");
        let text = format!("{not_ready}: waiting for rollout to finish: {what}");
        (what, text)
    } else if replicas > updated {
        let what = format!(
            "{} old replicas are pending termination",
            replicas - updated
        );
        let text = format!("{not_ready}: waiting for rollout to finish: {what}");
        (what, text)
    } else if available < needed {
        let what = if threshold == 100 {
            format!("{available} of {needed} updated replicas are available")
        } else {
            format!(
                "{available} of {needed} (readyThreshold {threshold}%) updated replicas are available"
            )
        };
        let text = format!("Waiting for {id} rollout to finish: {what}");
        (what, text)
    } else {
        return Readiness::Ready;
    };
    // The last sign of progress: Kubernetes moves these timestamps as pods come up.
    let available_cond = condition("Available").filter(|c| {
        c.status == "False" && c.reason.as_deref() == Some("MinimumReplicasUnavailable")
    });
    let last_progress = [progressing, available_cond]
        .into_iter()
        .flatten()
        .filter_map(|c| c.last_update_time.as_ref().and_then(labels::to_utc))
        .max();
    if let Some(from) = last_progress {
        let limit = chrono::Duration::from_std(deadline).unwrap_or(chrono::Duration::MAX);
        if from + limit < now {
            return Readiness::DeadlineExceeded(format!(
                "Deployment {id} made no progress within progressDeadlineSeconds {}: {what}",
                deadline.as_secs()
            ));
        }
    }
    Readiness::Waiting(text)
}

#[async_trait]
impl WorkloadController for DeploymentController {
    async fn initialize_primary(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        let selector = self.selector(&target)?;
        let api = self.api(canary)?;
        let name = primary_name(canary);
        let exists = api
            .get_opt(&name)
            .await
            .map_err(|e| Error::kube(format!("deployment {name} get query error"), e))?
            .is_some();
        if !exists {
            let configs = self.configs(canary, &target).await?;
            configs
                .sync_primary_copies(&self.client, canary, &self.options.labels)
                .await?;
            // With an HPA, the primary starts at its minimum (the HPA would scale it
            // there anyway) or at the target's replicas when those are more.
            let mut replicas = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            if let Some(h) = hpa::read_target_hpa(&self.client, canary).await? {
                replicas = replicas.max(hpa::min_replicas(&h));
            }
            let primary = primary_deployment(
                canary,
                &target,
                &selector,
                &configs,
                replicas.max(1),
                &self.options.labels,
            )?;
            let applied =
                labels::create_or_update(&api, "deployment", &name, |current| match current {
                    None => Ok(Some(primary.clone())),
                    Some(_) => Ok(None),
                })
                .await?;
            if applied == Applied::Created {
                tracing::info!(canary = %canary.id(), "Deployment {} created", labels::dotted(&name, &target.namespace().unwrap_or_default()));
            }
        } else {
            labels::create_or_update(&api, "deployment", &name, |current| {
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
        hpa::reconcile_primary_hpa(&self.client, canary, false).await?;
        Ok(())
    }

    async fn target_revision(&self, canary: &Canary) -> Result<TargetRevision> {
        let ns = labels::namespace_of(canary)?;
        let (target, template) =
            get_target_with_template(&self.api(canary)?, KIND, &ns, &canary.spec.target_ref.name)
                .await?;
        let configs = self.configs(canary, &target).await?;
        Ok(TargetRevision {
            spec_hash: flagger_template_hash(canary, flagger_hash::pod_template_hash(&template)),
            tracked_configs: configs.checksums(),
        })
    }

    async fn canary_readiness(&self, canary: &Canary) -> Result<Readiness> {
        let target = self.target(canary).await?;
        Ok(self
            .readiness(
                &target,
                canary,
                canary.canary_ready_threshold(),
                Role::Canary,
            )
            .await)
    }

    async fn primary_readiness(&self, canary: &Canary) -> Result<Readiness> {
        let primary = self.primary(canary).await?;
        Ok(self
            .readiness(
                &primary,
                canary,
                canary.primary_ready_threshold(),
                Role::Primary,
            )
            .await)
    }

    async fn scale_to_zero(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        if target.spec.and_then(|s| s.replicas) == Some(0) {
            return Ok(());
        }
        self.scale(canary, 0).await
    }

    async fn scale_from_zero(&self, canary: &Canary) -> Result<()> {
        let target = self.target(canary).await?;
        let mut replicas = target.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        if replicas <= 0 {
            replicas = if canary.spec.autoscaler_ref.is_none() {
                match self.primary(canary).await {
                    Ok(p) => p.spec.and_then(|s| s.replicas).unwrap_or(1),
                    Err(Error::NotFound { .. }) => 1,
                    Err(e) => return Err(e),
                }
            } else {
                match hpa::read_target_hpa(&self.client, canary).await {
                    Ok(Some(h)) => hpa::min_replicas(&h),
                    _ => 1,
                }
            };
        }
        if target.spec.as_ref().and_then(|s| s.replicas) == Some(replicas.max(1)) {
            return Ok(());
        }
        self.scale(canary, replicas.max(1)).await
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
        let applied = labels::create_or_update(&api, "deployment", &name, |current| {
            let Some(cur) = current else {
                return Err(Error::NotFound {
                    kind: KIND.into(),
                    namespace: ns.clone(),
                    name: name.clone(),
                });
            };
            let mut next = cur.clone();
            copy_template(&mut next, canary, &target, &selector, &configs, opts);
            if canary.spec.autoscaler_ref.is_none() {
                let replicas = target.spec.as_ref().and_then(|s| s.replicas);
                if let Some(spec) = next.spec.as_mut()
                    && replicas.is_some_and(|r| r > 0)
                {
                    spec.replicas = replicas;
                }
            }
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
            tracing::info!(canary = %canary.id(), "Deployment {} template spec updated", labels::dotted(&name, &ns));
        }
        hpa::reconcile_primary_hpa(&self.client, canary, true).await?;
        Ok(())
    }

    async fn finalize(&self, canary: &Canary) -> Result<()> {
        let target = match self.target(canary).await {
            Ok(t) => t,
            Err(Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e),
        };
        match self.primary(canary).await {
            Ok(primary) => {
                let replicas = primary.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                if target.spec.as_ref().and_then(|s| s.replicas) != Some(replicas) {
                    self.scale(canary, replicas).await?;
                }
            }
            Err(Error::NotFound { .. }) => self.scale_from_zero(canary).await?,
            Err(e) => return Err(e),
        }
        labels::delete_if_owned(
            &self.api(canary)?,
            "deployment",
            &primary_name(canary),
            canary,
        )
        .await?;
        hpa::delete_primary_hpa(&self.client, canary).await?;
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
    use super::*;
    use k8s_openapi::api::apps::v1::DeploymentStatus;

    fn dep(replicas: i32, status: DeploymentStatus) -> Deployment {
        Deployment {
            metadata: ObjectMeta {
                name: Some("podinfo".into()),
                namespace: Some("test".into()),
                generation: Some(2),
                ..Default::default()
            },
            spec: Some(DeploymentSpec {
                replicas: Some(replicas),
                ..Default::default()
            }),
            status: Some(DeploymentStatus {
                observed_generation: Some(2),
                ..status
            }),
        }
    }

    fn cond(type_: &str, status: &str, reason: &str, at: DateTime<Utc>) -> DeploymentCondition {
        DeploymentCondition {
            type_: type_.into(),
            status: status.into(),
            reason: Some(reason.into()),
            last_update_time: Some(labels::to_time(at)),
            ..Default::default()
        }
    }

    const MIN: Duration = Duration::from_secs(60);

    #[test]
    fn waiting_message_is_the_one_users_know() {
        let now = Utc::now();
        let d = dep(
            1,
            DeploymentStatus {
                replicas: Some(1),
                updated_replicas: Some(1),
                available_replicas: Some(0),
                ..Default::default()
            },
        );
        assert_eq!(
            deployment_readiness(&d, MIN, 100, now, Role::Canary),
            Readiness::Waiting(
                "Waiting for podinfo.test rollout to finish: 0 of 1 updated replicas are available"
                    .into()
            )
        );
    }

    #[test]
    fn waits_other_than_for_available_replicas_are_in_flaggers_words() {
        let now = Utc::now();
        let d = dep(
            2,
            DeploymentStatus {
                replicas: Some(3),
                updated_replicas: Some(2),
                available_replicas: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(
            deployment_readiness(&d, MIN, 100, now, Role::Primary),
            Readiness::Waiting(
                "podinfo.test not ready: waiting for rollout to finish: 1 old replicas are pending termination"
                    .into()
            )
        );
        assert_eq!(
            deployment_readiness(&d, MIN, 100, now, Role::Canary),
            Readiness::Waiting(
                "canary deployment podinfo.test not ready: waiting for rollout to finish: 1 old replicas are pending termination"
                    .into()
            )
        );
        let mut d = d;
        d.status.as_mut().unwrap().conditions = Some(vec![cond(
            "Progressing",
            "False",
            "ProgressDeadlineExceeded",
            now,
        )]);
        assert_eq!(
            deployment_readiness(&d, MIN, 100, now, Role::Canary),
            Readiness::DeadlineExceeded(
                "canary deployment podinfo.test not ready: deployment \"podinfo\" exceeded its progress deadline"
                    .into()
            )
        );
    }

    #[test]
    fn ready_threshold_counts_a_share_of_updated_replicas() {
        let now = Utc::now();
        let d = dep(
            4,
            DeploymentStatus {
                replicas: Some(4),
                updated_replicas: Some(4),
                available_replicas: Some(2),
                ..Default::default()
            },
        );
        assert_eq!(
            deployment_readiness(&d, MIN, 50, now, Role::Canary),
            Readiness::Ready
        );
        assert!(
            matches!(deployment_readiness(&d, MIN, 75, now, Role::Canary), Readiness::Waiting(m) if m.contains("2 of 3 (readyThreshold 75%)"))
        );
    }

    #[test]
    fn kubernetes_deadline_and_our_deadline_both_fail() {
        let now = Utc::now();
        let mut d = dep(
            1,
            DeploymentStatus {
                replicas: Some(1),
                updated_replicas: Some(1),
                available_replicas: Some(0),
                conditions: Some(vec![cond(
                    "Progressing",
                    "False",
                    "ProgressDeadlineExceeded",
                    now,
                )]),
                ..Default::default()
            },
        );
        assert!(matches!(
            deployment_readiness(&d, MIN, 100, now, Role::Canary),
            Readiness::DeadlineExceeded(_)
        ));

        let stuck_since = now - chrono::Duration::seconds(61);
        d.status.as_mut().unwrap().conditions = Some(vec![
            cond("Progressing", "True", "ReplicaSetUpdated", stuck_since),
            cond(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                stuck_since,
            ),
        ]);
        assert!(
            matches!(deployment_readiness(&d, MIN, 100, now, Role::Canary), Readiness::DeadlineExceeded(m) if m.contains("progressDeadlineSeconds 60"))
        );
        // Within the deadline it is still rolling out.
        assert!(matches!(
            deployment_readiness(&d, Duration::from_secs(120), 100, now, Role::Canary),
            Readiness::Waiting(_)
        ));
    }

    #[test]
    fn old_generation_and_old_replicas_are_waits() {
        let now = Utc::now();
        let mut d = dep(
            2,
            DeploymentStatus {
                replicas: Some(3),
                updated_replicas: Some(2),
                available_replicas: Some(2),
                ..Default::default()
            },
        );
        assert!(
            matches!(deployment_readiness(&d, MIN, 100, now, Role::Canary), Readiness::Waiting(m) if m.ends_with("1 old replicas are pending termination"))
        );
        d.metadata.generation = Some(3);
        assert!(
            matches!(deployment_readiness(&d, MIN, 100, now, Role::Canary), Readiness::Waiting(m) if m.contains("generation"))
        );
    }

    #[test]
    fn scaled_to_zero_is_ready() {
        let d = dep(0, DeploymentStatus::default());
        assert_eq!(
            deployment_readiness(&d, MIN, 100, Utc::now(), Role::Canary),
            Readiness::Ready
        );
    }
}
