//! The `Promoted` condition, so that `kubectl wait --for=condition=promoted` and Flux
//! health checks work.

use chrono::{DateTime, Utc};
use serin_api::Canary;
use serin_api::canary::{CanaryCondition, CanaryPhase, CanaryStatus};

pub const PROMOTED: &str = "Promoted";

/// The Promoted condition for a phase. As in Flagger, a condition whose status and
/// reason are unchanged is kept as it is (its `lastUpdateTime` included), and its
/// transition time moves only when its status changes.
pub fn promoted_condition(
    canary: &Canary,
    current: &CanaryStatus,
    phase: CanaryPhase,
    now: DateTime<Utc>,
) -> CanaryCondition {
    let kind = canary
        .spec
        .target_ref
        .kind
        .clone()
        .unwrap_or_else(|| "Deployment".into());
    let (status, message) = match phase {
        CanaryPhase::Initializing => (
            "Unknown",
            format!("New {kind} detected, starting initialization."),
        ),
        CanaryPhase::Initialized => ("True", format!("{kind} initialization completed.")),
        CanaryPhase::Waiting | CanaryPhase::WaitingPromotion => {
            ("Unknown", "Waiting for approval.".to_string())
        }
        CanaryPhase::Progressing => (
            "Unknown",
            "New revision detected, progressing canary analysis.".to_string(),
        ),
        CanaryPhase::Promoting => (
            "Unknown",
            "Canary analysis completed, starting primary rolling update.".to_string(),
        ),
        CanaryPhase::Finalising => (
            "Unknown",
            "Canary analysis completed, routing all traffic to primary.".to_string(),
        ),
        CanaryPhase::Succeeded => (
            "True",
            "Canary analysis completed successfully, promotion finished.".to_string(),
        ),
        CanaryPhase::Failed => (
            "False",
            format!("Canary analysis failed, {kind} scaled to zero."),
        ),
        CanaryPhase::Terminating => ("Unknown", "Canary is being deleted.".to_string()),
        CanaryPhase::Terminated => ("False", "Canary was deleted.".to_string()),
    };
    let previous = current.conditions.iter().find(|c| c.type_ == PROMOTED);
    if let Some(p) = previous
        && p.status == status
        && p.reason.as_deref() == Some(phase.as_str())
    {
        return p.clone();
    }
    let transition = match previous {
        Some(p) if p.status == status => p.last_transition_time.clone(),
        _ => Some(serin_api::clock::k8s_time(now)),
    };
    CanaryCondition {
        type_: PROMOTED.into(),
        status: status.into(),
        last_update_time: Some(serin_api::clock::k8s_time(now)),
        last_transition_time: transition,
        reason: Some(phase.as_str().into()),
        message: Some(message),
    }
}
