//! Workload controllers: one per target kind (Deployment, DaemonSet), behind
//! [`WorkloadController`].

use async_trait::async_trait;
use serin_api::Canary;
use serin_api::clock::Clock;

use crate::error::{Error, Result};
use crate::labels::LabelOptions;

mod daemonset;
mod deployment;
pub mod flagger_hash;
mod template;

pub use daemonset::{
    DaemonSetController, SCALE_DOWN_NODE_SELECTOR, daemonset_readiness, primary_daemonset,
};
pub use deployment::{DeploymentController, deployment_readiness, primary_deployment};
pub use template::{TargetPods, primary_pod_template, read_target_pods, template_hash};

/// Which of a canary's two workloads a readiness answer is about: Flagger words
/// their waits differently ("podinfo-primary.test not ready: ...", "canary
/// deployment podinfo.test not ready: ...").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Primary,
    Canary,
}

/// Readiness and revisions are the engine's own observation types.
pub use serin_engine::{Readiness, TargetRevision};

/// Acts on a canary's target and its `-primary` copy.
#[async_trait]
pub trait WorkloadController: Send + Sync {
    /// Creates the primary workload (and its HPA and config copies) from the target
    /// when it does not exist yet; keeps its selector, labels and owner reference right
    /// when it does.
    async fn initialize_primary(&self, canary: &Canary) -> Result<()>;

    /// The target's current revision.
    async fn target_revision(&self, canary: &Canary) -> Result<TargetRevision>;

    /// Readiness of the target (the canary), honouring canaryReadyThreshold and the
    /// progress deadline.
    async fn canary_readiness(&self, canary: &Canary) -> Result<Readiness>;

    /// Readiness of the primary, honouring primaryReadyThreshold and the deadline.
    async fn primary_readiness(&self, canary: &Canary) -> Result<Readiness>;

    /// Scales the target to zero replicas and pauses its HPA.
    async fn scale_to_zero(&self, canary: &Canary) -> Result<()>;

    /// Scales the target back up (from its HPA minimum or its declared replicas).
    async fn scale_from_zero(&self, canary: &Canary) -> Result<()>;

    /// Copies the target's pod template, tracked configs and HPA to the primary.
    async fn promote(&self, canary: &Canary) -> Result<()>;

    /// Restores the target when a canary with `revertOnDeletion` is deleted.
    async fn finalize(&self, canary: &Canary) -> Result<()>;
}

/// How workload controllers label what they make and tell time.
#[derive(Debug, Clone, Default)]
pub struct WorkloadOptions {
    pub labels: LabelOptions,
    /// The one time source: progress deadlines are measured on it.
    pub clock: Clock,
    /// `--enable-config-tracking=false`: the primary uses the target's own
    /// ConfigMaps and Secrets and a change of them is no new revision.
    pub skip_config_tracking: bool,
}

/// The workload controller for the canary's target kind (`Deployment` when unset).
pub fn workload_for(client: kube::Client, canary: &Canary) -> Result<Box<dyn WorkloadController>> {
    workload_with(client, canary, WorkloadOptions::default())
}

/// [`workload_for`] with explicit options (label settings, clock).
pub fn workload_with(
    client: kube::Client,
    canary: &Canary,
    options: WorkloadOptions,
) -> Result<Box<dyn WorkloadController>> {
    match target_kind(canary) {
        "Deployment" => Ok(Box::new(DeploymentController::new(client, options))),
        "DaemonSet" => Ok(Box::new(DaemonSetController::new(client, options))),
        other => Err(Error::Invalid(format!(
            "canary {}: targetRef kind {other} is not supported (Deployment or DaemonSet)",
            canary.id()
        ))),
    }
}

/// The target's kind, `Deployment` when the reference names none.
pub fn target_kind(canary: &Canary) -> &str {
    canary
        .spec
        .target_ref
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .unwrap_or("Deployment")
}

/// `<target>-primary`.
pub fn primary_name(canary: &Canary) -> String {
    format!("{}-primary", canary.spec.target_ref.name)
}

/// Labels, annotations and owner reference of a primary workload: the target's (those
/// the include prefixes let through), with the primary's selector label.
pub(crate) fn set_primary_metadata(
    meta: &mut k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    canary: &Canary,
    target: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    selector: &crate::labels::SelectorLabel,
    opts: &crate::labels::LabelOptions,
) -> Result<()> {
    use crate::labels;
    let included = labels::include_by_prefix(target.labels.as_ref(), &opts.include_label_prefix);
    meta.labels = Some(labels::primary_labels(Some(&included), selector));
    let mut annotations =
        labels::include_by_prefix(target.annotations.as_ref(), &opts.include_label_prefix);
    annotations.remove(labels::KUBECTL_LAST_APPLIED);
    // Annotations Kubernetes itself keeps on the primary stay: the deployment
    // controller's revision, the DaemonSet registry's template generation. Removing
    // one bumps a Deployment's generation (annotation changes do, as spec changes),
    // the controller writes it back, and the primary is never seen rolled out.
    for (k, v) in meta.annotations.iter().flatten() {
        if k.starts_with("deployment.kubernetes.io/")
            || k == "deprecated.daemonset.template.generation"
        {
            annotations.insert(k.clone(), v.clone());
        }
    }
    meta.annotations = Some(annotations).filter(|a| !a.is_empty());
    let owner = labels::owner_reference(canary)?;
    let mut owners: Vec<_> = meta
        .owner_references
        .take()
        .unwrap_or_default()
        .into_iter()
        .filter(|o| o.controller != Some(true) && o.uid != owner.uid)
        .collect();
    owners.insert(0, owner);
    meta.owner_references = Some(owners);
    Ok(())
}
