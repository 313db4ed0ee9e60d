//! The canary state machine.
//!
//! [`decide`] takes a Canary (spec and status), the time, and an [`Observe`]r that
//! answers questions about the world (readiness, current routes, webhook and metric
//! results), and returns the next status, the actions to take in order, the events to
//! record and the alerts to send. It does no I/O of its own: the operator answers the
//! questions from the cluster, tests and `serin simulate` answer them from a script.
//!
//! Every run makes at most one step of progress, as Flagger's scheduler does, so a
//! crash between any two runs loses nothing: the next run starts from the status and
//! from the routes read back from the cluster.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serin_api::Canary;
use serin_api::canary::{
    AlertSeverity, CanaryCondition, CanaryMetric, CanaryPhase, CanaryStatus, CanaryWebhook,
    HookType, Strategy,
};

mod conditions;
mod manual;
mod run;

pub use conditions::promoted_condition;
pub use run::decide;

/// Whether a workload's rollout is done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    /// Still rolling out: check again next run. The message says what is awaited, for
    /// instance "Waiting for podinfo.test rollout to finish: 0 of 1 updated replicas
    /// are available".
    Waiting(String),
    /// No progress within `progressDeadlineSeconds`: roll back.
    DeadlineExceeded(String),
}

/// The traffic split between primary and canary. The weights always sum to 100.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routes {
    pub primary: i32,
    pub canary: i32,
    /// The canary receives a copy of the primary's traffic.
    pub mirrored: bool,
}

impl Routes {
    /// All traffic to the primary.
    pub const PRIMARY: Routes = Routes {
        primary: 100,
        canary: 0,
        mirrored: false,
    };

    /// `canary` percent to the canary, the rest to the primary.
    pub fn to_canary(canary: i32) -> Routes {
        let canary = canary.clamp(0, 100);
        Routes {
            primary: 100 - canary,
            canary,
            mirrored: false,
        }
    }
}

/// What a canary's target looks like now.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetRevision {
    /// Hash of the target's pod template.
    pub spec_hash: String,
    /// `configmap/NAME` or `secret/NAME` to checksum.
    pub tracked_configs: BTreeMap<String, String>,
}

/// The result of one metric check.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricOutcome {
    Pass,
    /// The check failed; the message is the event text, for instance "Halt
    /// podinfo.test advancement success rate 69.17% < 99%".
    Halt(String),
    /// The check ran but something is worth a Warning event (a query that gave
    /// several series); its result follows.
    Noted {
        warning: String,
        outcome: Box<MetricOutcome>,
    },
}

impl MetricOutcome {
    /// `self`, with `warning` (when there is one) recorded before it.
    pub fn noted(self, warning: Option<String>) -> MetricOutcome {
        match warning {
            Some(warning) => MetricOutcome::Noted {
                warning,
                outcome: Box::new(self),
            },
            None => self,
        }
    }
}

/// How a webhook caller words a 401 answer (`webhook NAME at URL answered 401
/// Unauthorized: ...`). A gate whose webhook refused the operator's credentials is
/// not closed but failing: the engine halts with that message instead of "waiting
/// for approval". (A 403 stays a closed gate: Flagger's load tester answers a closed
/// gate with 403 Forbidden.)
pub const UNAUTHORIZED_ANSWER: &str = "answered 401 Unauthorized";

/// Whether a webhook's error is its refusal of the operator's credentials.
pub fn refused_credentials(error: &str) -> bool {
    error.contains(UNAUTHORIZED_ANSWER)
}

/// The questions the engine asks about the world during one run. Each answer is
/// asked for at most once per run, and only when the decision needs it.
#[async_trait]
pub trait Observe: Send {
    async fn target_revision(&mut self) -> Result<TargetRevision, String>;
    async fn canary_readiness(&mut self) -> Result<Readiness, String>;
    async fn primary_readiness(&mut self) -> Result<Readiness, String>;
    async fn routes(&mut self) -> Result<Routes, String>;
    /// Calls a webhook; `Ok` for a 2xx answer. `phase` goes into the payload.
    async fn call_webhook(
        &mut self,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
    ) -> Result<(), String>;
    /// Runs one metric check of the analysis.
    async fn check_metric(&mut self, metric: &CanaryMetric) -> MetricOutcome;
    /// Whether the analysis' metric providers answer, asked (as Flagger does) at each
    /// run while the canary initializes; `Err` says which one does not.
    async fn metric_providers(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// A change to make in the cluster, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Scale the target to zero (and pause its HPA).
    ScaleToZero,
    /// Scale the target up (and resume its HPA).
    ScaleFromZero,
    /// Set the traffic split.
    SetRoutes(Routes),
    /// Copy the target's template, tracked configs and HPA to the primary.
    Promote,
    /// Call the post-rollout webhooks with this phase, once the status is written;
    /// their results change nothing. Their events go where
    /// [`Decision::post_rollout_after`] says.
    RunPostRolloutHooks(CanaryPhase),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// An event to record on the Canary (and to log).
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub type_: EventType,
    pub message: String,
}

/// An alert to send through the configured notifiers.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    pub severity: AlertSeverity,
    pub message: String,
    /// Include the canary's details (target, strategy, thresholds) as fields.
    pub with_details: bool,
}

/// The decision of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// The status to write, `None` when it stays as it is.
    pub status: Option<CanaryStatus>,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    pub alerts: Vec<Alert>,
    /// Changes to the Canary's annotations: a request made by hand closed with its
    /// outcome, the pause mark set or removed. Applied after the status is written.
    pub annotations: serin_api::manual::AnnotationChanges,
    /// With [`Action::RunPostRolloutHooks`]: the hooks' results are recorded after
    /// this many of `events`, before the others, in Flagger's order ("Post-rollout
    /// check ... passed" before "Promotion completed!", after "Canary failed!").
    pub post_rollout_after: usize,
}

impl Decision {
    fn none() -> Self {
        Decision {
            status: None,
            actions: Vec::new(),
            events: Vec::new(),
            alerts: Vec::new(),
            annotations: Default::default(),
            post_rollout_after: 0,
        }
    }
}

/// A status to write in `phase`, with its Promoted condition. `lastTransitionTime`
/// is the time of the write, as Flagger sets it on every status write (so
/// `kubectl get canaries` shows when the analysis last moved).
pub(crate) fn with_phase(
    canary: &Canary,
    mut status: CanaryStatus,
    phase: CanaryPhase,
    now: DateTime<Utc>,
) -> CanaryStatus {
    status.last_transition_time = Some(serin_api::clock::k8s_time(now));
    status.phase = phase;
    let condition: CanaryCondition = promoted_condition(canary, &status, phase, now);
    status.conditions.retain(|c| c.type_ != condition.type_);
    status.conditions.push(condition);
    status
}

/// The strategy the engine runs, with the kubernetes provider's limits applied.
pub(crate) fn effective_strategy(canary: &Canary) -> Strategy {
    if canary.provider() == "kubernetes" {
        return Strategy::BlueGreen;
    }
    canary.strategy()
}

/// Every webhook of a type, in the order written.
pub(crate) fn hooks(canary: &Canary, hook: HookType) -> Vec<CanaryWebhook> {
    canary
        .analysis()
        .map(|a| {
            a.webhooks
                .iter()
                .filter(|w| w.hook_type() == Some(hook))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}
