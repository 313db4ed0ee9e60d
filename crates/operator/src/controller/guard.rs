//! What stops a run before it touches a route or a workload: a spec that `serin
//! validate` rejects (the same checks, [`serin_api::validate`]) and a target that an
//! older Canary already drives. Either becomes a `Ready=False` condition naming the
//! reason and a Warning event; nothing in the cluster changes. And what a run does when
//! the target disappears in the middle of an analysis: all traffic back to the primary.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::{Api, ResourceExt};
use serin_api::Canary;
use serin_api::canary::{CanaryCondition, CanaryPhase};
use serin_api::validate::{Severity, validate_canary_object};
use serin_engine::{EventType, Routes};

use super::Context;
use crate::router::Router;

/// The condition serin sets to False when it refuses to act on a Canary. It is absent
/// while serin acts on it (the `Promoted` condition then tells the progress).
pub const READY: &str = "Ready";
/// Reason of a refusal for a spec that does not validate.
pub const INVALID_SPEC: &str = "InvalidSpec";
/// Reason of a refusal for a target another Canary drives.
pub const TARGET_IN_USE: &str = "TargetInUse";

/// Why a run must not act.
pub(super) struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

/// A Canary's claim on its target, as the watch last saw it.
#[derive(Debug, Clone)]
pub(super) struct Claim {
    pub namespace: String,
    pub target_kind: String,
    pub target_name: String,
    pub created: Option<Time>,
    pub name: String,
}

impl Claim {
    pub fn of(canary: &Canary) -> Self {
        Claim {
            namespace: canary.namespace().unwrap_or_default(),
            target_kind: crate::workload::target_kind(canary).to_string(),
            target_name: canary.spec.target_ref.name.clone(),
            created: canary.metadata.creation_timestamp.clone(),
            name: canary.name_any(),
        }
    }

    fn same_target(&self, other: &Claim) -> bool {
        self.namespace == other.namespace
            && self.target_kind == other.target_kind
            && self.target_name == other.target_name
    }

    /// The older Canary owns a target; the name breaks a tie.
    fn order(&self) -> (Option<k8s_openapi::jiff::Timestamp>, &str) {
        (self.created.as_ref().map(|t| t.0), self.name.as_str())
    }
}

/// Why this run must not act, if it must not.
pub(super) fn refusal(ctx: &Context, canary: &Canary) -> Option<Refusal> {
    let errors: Vec<String> = validate_canary_object(canary)
        .into_iter()
        .filter(|f| f.severity == Severity::Error)
        .map(|f| format!("{}: {}", f.path, f.message))
        .collect();
    if !errors.is_empty() {
        return Some(Refusal {
            reason: INVALID_SPEC,
            message: format!(
                "Canary {} is invalid, nothing was changed: {}",
                canary.id(),
                errors.join("; ")
            ),
        });
    }
    let me = Claim::of(canary);
    let owner = {
        let mut claims = ctx.claims();
        claims.insert(super::key_of(canary), me.clone());
        claims
            .values()
            .filter(|c| c.same_target(&me))
            .min_by(|a, b| a.order().cmp(&b.order()))
            .cloned()
    };
    match owner {
        Some(owner) if owner.name != me.name => Some(Refusal {
            reason: TARGET_IN_USE,
            message: format!(
                "{} {}/{} is already the target of Canary {}.{}; Canary {} is not acted on while that Canary exists",
                me.target_kind,
                me.namespace,
                me.target_name,
                owner.name,
                owner.namespace,
                canary.id()
            ),
        }),
        _ => None,
    }
}

/// Records the refusal: a `Ready=False` condition (written when it changes) and a
/// Warning event.
pub(super) async fn refuse(ctx: &Context, api: &Api<Canary>, canary: &Canary, refusal: Refusal) {
    let mut status = canary.status_or_default();
    let current = status.conditions.iter().find(|c| c.type_ == READY);
    let unchanged = current.is_some_and(|c| {
        c.status == "False"
            && c.reason.as_deref() == Some(refusal.reason)
            && c.message.as_deref() == Some(refusal.message.as_str())
    });
    if !unchanged {
        let now = Some(ctx.clock.now_k8s());
        status.conditions.retain(|c| c.type_ != READY);
        status.conditions.push(CanaryCondition {
            type_: READY.into(),
            status: "False".into(),
            last_update_time: now.clone(),
            last_transition_time: now,
            reason: Some(refusal.reason.into()),
            message: Some(refusal.message.clone()),
        });
        if let Err(e) = super::write_status(api, canary, status.clone()).await {
            tracing::warn!(msg = format!("cannot write status: {e}"), canary = %canary.id());
        }
    }
    ctx.recorder
        .record(
            canary,
            EventType::Warning,
            &refusal.message,
            status.phase,
            status.canary_weight,
        )
        .await;
}

/// Takes a refusal condition off the status of a Canary that is acted on again; true
/// when there was one (the status must then be written).
pub(super) fn clear(canary: &mut Canary) -> bool {
    let Some(status) = canary.status.as_mut() else {
        return false;
    };
    let before = status.conditions.len();
    status.conditions.retain(|c| c.type_ != READY);
    status.conditions.len() != before
}

/// The target was deleted while traffic went to the canary: route everything to the
/// primary at once, mark the analysis Failed and say why. True when that was done
/// (or nothing had to be done because no traffic went to the canary).
pub(super) async fn target_deleted(
    ctx: &Context,
    api: &Api<Canary>,
    canary: &Canary,
    router: &dyn Router,
) -> bool {
    let mut status = canary.status_or_default();
    if !status.phase.is_running() && status.canary_weight == 0 {
        return false;
    }
    let kind = crate::workload::target_kind(canary);
    let target = format!(
        "{kind} {}/{}",
        canary.namespace().unwrap_or_default(),
        canary.spec.target_ref.name
    );
    if let Err(e) = router.set_routes(canary, Routes::PRIMARY).await {
        tracing::warn!(msg = format!("{target} was deleted, cannot route all traffic to the primary: {e}"), canary = %canary.id());
        return false;
    }
    let message = format!(
        "{target} was deleted during the analysis: all traffic routed to the primary {}",
        crate::workload::primary_name(canary)
    );
    let now = ctx.clock.now();
    let mut promoted = serin_engine::promoted_condition(canary, &status, CanaryPhase::Failed, now);
    promoted.reason = Some("TargetDeleted".into());
    promoted.message = Some(message.clone());
    status.conditions.retain(|c| c.type_ != promoted.type_);
    status.conditions.push(promoted);
    status.phase = CanaryPhase::Failed;
    status.canary_weight = 0;
    status.last_transition_time = Some(serin_api::clock::k8s_time(now));
    if let Err(e) = super::write_status(api, canary, status.clone()).await {
        tracing::warn!(msg = format!("cannot write status: {e}"), canary = %canary.id());
    }
    ctx.running().remove(&super::key_of(canary));
    ctx.recorder
        .record(canary, EventType::Warning, &message, CanaryPhase::Failed, 0)
        .await;
    true
}
