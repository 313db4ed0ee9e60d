//! Workload controllers: one per target kind (Deployment, DaemonSet), behind
//! [`WorkloadController`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serin_api::Canary;

use crate::error::Result;

/// Whether a workload's rollout is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Still rolling out; check again later. The message is what serin logs, for
    /// instance "Waiting for podinfo.test rollout to finish: 0 of 1 updated replicas
    /// are available".
    Waiting(String),
    /// No progress within `progressDeadlineSeconds`: roll back.
    DeadlineExceeded(String),
}

/// What a canary's target looks like now: the revision serin compares with
/// `status.lastAppliedSpec` and the checksums of its tracked configs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetRevision {
    /// Hash of the target's pod template (stable across equal templates).
    pub spec_hash: String,
    /// `configmap/NAME` or `secret/NAME` to checksum, as status.trackedConfigs holds them.
    pub tracked_configs: BTreeMap<String, String>,
}

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
