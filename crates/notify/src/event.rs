//! The alerts a canary's life produces, with Flagger's texts and severities, and
//! how one becomes a `Message` for a given Canary.

use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryWebhook, HookType, Strategy};

use crate::gate::{gate_open_command, gate_open_url};
use crate::{Field, Message, Severity};

/// One thing worth telling people about a canary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertEvent {
    pub text: String,
    pub severity: Severity,
    /// Adds the canary's details (target, failed checks threshold, progress
    /// deadline, interval, traffic routing) as fields.
    pub details: bool,
    /// The phase the alert is about, when it is not yet the status phase (a
    /// promotion alert is sent as the canary becomes Succeeded).
    pub phase: Option<CanaryPhase>,
    /// The URL of the confirm-* webhook the canary waits on.
    pub gate_url: Option<String>,
}

impl AlertEvent {
    pub fn new(text: impl Into<String>, severity: Severity) -> Self {
        Self {
            text: text.into(),
            severity,
            details: false,
            phase: None,
            gate_url: None,
        }
    }

    pub fn with_details(mut self) -> Self {
        self.details = true;
        self
    }

    pub fn in_phase(mut self, phase: CanaryPhase) -> Self {
        self.phase = Some(phase);
        self
    }

    /// A new workload was set up (primary created, traffic on the primary).
    pub fn initialized(target_kind: &str) -> Self {
        let kind = if target_kind.is_empty() {
            "Deployment"
        } else {
            target_kind
        };
        Self::new(
            format!("New {kind} detected, initialization completed."),
            Severity::Info,
        )
        .with_details()
        .in_phase(CanaryPhase::Initialized)
    }

    pub fn new_revision() -> Self {
        Self::new(
            "New revision detected, progressing canary analysis.",
            Severity::Info,
        )
        .with_details()
        .in_phase(CanaryPhase::Progressing)
    }

    pub fn promoted() -> Self {
        Self::new(
            "Canary analysis completed successfully, promotion finished.",
            Severity::Info,
        )
        .with_details()
        .in_phase(CanaryPhase::Succeeded)
    }

    pub fn analysis_skipped() -> Self {
        Self::new(
            "Canary analysis was skipped, promotion finished.",
            Severity::Info,
        )
        .with_details()
        .in_phase(CanaryPhase::Succeeded)
    }

    /// Rollback after `failed_checks` reached `analysis.threshold`.
    pub fn failed_checks(failed_checks: i32) -> Self {
        Self::new(
            format!("Failed checks threshold reached {failed_checks}"),
            Severity::Error,
        )
        .with_details()
        .in_phase(CanaryPhase::Failed)
    }

    pub fn progress_deadline(reason: &str) -> Self {
        Self::new(
            format!("Progress deadline exceeded {reason}"),
            Severity::Error,
        )
        .with_details()
        .in_phase(CanaryPhase::Failed)
    }

    pub fn promotion_failed(reason: &str) -> Self {
        Self::new(
            format!("Promotion failed, primary not ready: {reason}"),
            Severity::Error,
        )
        .with_details()
        .in_phase(CanaryPhase::Failed)
    }

    /// A rollback webhook answered OK (manual abort).
    pub fn manual_rollback() -> Self {
        Self::new("Rolling back manual webhook invoked", Severity::Warn)
    }

    /// The canary waits on a confirm-* gate. `None` for a webhook that is not a gate.
    pub fn waiting_for_approval(webhook: &CanaryWebhook) -> Option<Self> {
        let (text, phase) = match webhook.hook_type()? {
            HookType::ConfirmRollout => ("Canary is waiting for approval.", CanaryPhase::Waiting),
            HookType::ConfirmTrafficIncrease => (
                "Canary traffic increase is waiting for approval.",
                CanaryPhase::Progressing,
            ),
            HookType::ConfirmPromotion => (
                "Canary promotion is waiting for approval.",
                CanaryPhase::WaitingPromotion,
            ),
            _ => return None,
        };
        let mut event = Self::new(text, Severity::Warn).in_phase(phase);
        event.gate_url = Some(webhook.url.clone());
        Some(event)
    }

    /// The message for `canary`; `cluster_name` adds a Cluster field, as Flagger's
    /// `-cluster-name` does.
    pub fn message(&self, canary: &Canary, cluster_name: Option<&str>) -> Message {
        let name = canary.metadata.name.clone().unwrap_or_default();
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let mut fields = Vec::new();
        if let Some(cluster) = cluster_name.filter(|c| !c.is_empty()) {
            fields.push(Field::new("Cluster", cluster));
        }
        if self.details {
            fields.extend(canary_details(canary));
        }
        let mut text = self.text.clone();
        if let Some(open) = self.gate_url.as_deref().and_then(gate_open_url) {
            text.push_str(&format!(
                " To approve, open the gate: `{}`",
                gate_open_command(&open, &name, &namespace)
            ));
            fields.push(Field::new("Gate", open));
        }
        let phase = self
            .phase
            .or_else(|| canary.status.as_ref().map(|s| s.phase))
            .map(|p| p.as_str().to_string());
        Message {
            name,
            namespace,
            phase,
            text,
            fields,
            severity: self.severity,
        }
    }
}

/// Target, Failed checks threshold, Progress deadline, Interval, Traffic routing.
pub fn canary_details(canary: &Canary) -> Vec<Field> {
    let namespace = canary.metadata.namespace.as_deref().unwrap_or_default();
    let target = &canary.spec.target_ref;
    let kind = target
        .kind
        .as_deref()
        .filter(|k| !k.is_empty())
        .unwrap_or("Deployment");
    let mut fields = vec![
        Field::new("Target", format!("{kind}/{}.{namespace}", target.name)),
        Field::new(
            "Failed checks threshold",
            canary.analysis_threshold().to_string(),
        ),
        Field::new(
            "Progress deadline",
            format!("{}s", canary.progress_deadline().as_secs()),
        ),
        Field::new("Interval", short_duration(canary.analysis_interval())),
    ];
    let routing = match canary.strategy() {
        Strategy::ABTesting => Some("A/B Testing".to_string()),
        Strategy::BlueGreen => Some("Blue/Green".to_string()),
        Strategy::Canary => canary.analysis().and_then(|a| {
            if let Some(step) = a.step_weight.filter(|s| *s > 0) {
                Some(format!("Weight step: {step} max: {}", canary.max_weight()))
            } else if !a.step_weights.is_empty() {
                let steps: Vec<String> = a.step_weights.iter().map(i32::to_string).collect();
                Some(format!(
                    "Weight steps: {} max: {}",
                    steps.join(","),
                    canary.max_weight()
                ))
            } else {
                None
            }
        }),
    };
    if let Some(routing) = routing {
        fields.push(Field::new("Traffic routing", routing));
    }
    fields
}

/// `1m`, `90s`, `2h`: the way intervals are written in manifests.
fn short_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    if d.subsec_nanos() != 0 {
        serin_api::duration::format_duration(d)
    } else if secs > 0 && secs.is_multiple_of(3600) {
        format!("{}h", secs / 3600)
    } else if secs > 0 && secs.is_multiple_of(60) {
        format!("{}m", secs / 60)
    } else {
        format!("{secs}s")
    }
}
