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

    /// The canary waits on a confirm-* gate. `None` for a webhook that is not a
    /// gate, or that mutes its alerts (`muteAlert: true`).
    pub fn waiting_for_approval(webhook: &CanaryWebhook) -> Option<Self> {
        if webhook.mute_alert {
            return None;
        }
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

    /// An alert decided elsewhere (the engine gives severity, text and whether to add
    /// details): the texts of the canary's life above get their phase, details and,
    /// for a gate, the gate link of the first unmuted confirm-* webhook of that kind
    /// in `canary` (a load tester gate preferred). Other texts are sent as given.
    pub fn from_text(severity: Severity, text: &str, with_details: bool, canary: &Canary) -> Self {
        let waiting = [
            (HookType::ConfirmRollout, "Canary is waiting for approval."),
            (
                HookType::ConfirmTrafficIncrease,
                "Canary traffic increase is waiting for approval.",
            ),
            (
                HookType::ConfirmPromotion,
                "Canary promotion is waiting for approval.",
            ),
        ];
        let mut event = if let Some((hook_type, _)) = waiting.iter().find(|(_, t)| *t == text) {
            let hooks: Vec<&CanaryWebhook> = canary
                .analysis()
                .map(|a| a.webhooks.iter().collect())
                .unwrap_or_default();
            let candidates = || {
                hooks
                    .iter()
                    .copied()
                    .filter(|h| h.hook_type() == Some(*hook_type) && !h.mute_alert)
            };
            candidates()
                .find(|h| gate_open_url(&h.url).is_some())
                .or_else(|| candidates().next())
                .and_then(Self::waiting_for_approval)
                .unwrap_or_else(|| Self::new(text, severity))
        } else if text == Self::new_revision().text {
            Self::new_revision()
        } else if text == Self::promoted().text {
            Self::promoted()
        } else if text == Self::analysis_skipped().text {
            Self::analysis_skipped()
        } else if text.ends_with(" detected, initialization completed.") {
            Self::new(text, severity)
                .with_details()
                .in_phase(CanaryPhase::Initialized)
        } else if text.starts_with("Failed checks threshold reached ")
            || text.starts_with("Progress deadline exceeded")
            || text.starts_with("Promotion failed, primary not ready")
        {
            Self::new(text, severity)
                .with_details()
                .in_phase(CanaryPhase::Failed)
        } else {
            Self::new(text, severity)
        };
        event.severity = severity;
        event.details |= with_details;
        event
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canary(analysis: serde_json::Value) -> Canary {
        serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": "frontend", "namespace": "prod"},
            "spec": {
                "targetRef": {"kind": "DaemonSet", "name": "frontend"},
                "service": {"port": 80},
                "analysis": analysis,
            }
        }))
        .expect("canary")
    }

    fn field<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|f| f.name == name)
            .map(|f| f.value.as_str())
    }

    #[test]
    fn details_follow_the_strategy_and_defaults() {
        let ab = canary(json!({"iterations": 10, "match": [{"headers": {"x": {"exact": "1"}}}]}));
        let fields = canary_details(&ab);
        assert_eq!(field(&fields, "Target"), Some("DaemonSet/frontend.prod"));
        assert_eq!(field(&fields, "Failed checks threshold"), Some("1"));
        assert_eq!(field(&fields, "Progress deadline"), Some("600s"));
        assert_eq!(field(&fields, "Interval"), Some("1m"));
        assert_eq!(field(&fields, "Traffic routing"), Some("A/B Testing"));

        let blue_green = canary(json!({"iterations": 5, "interval": "90s"}));
        let fields = canary_details(&blue_green);
        assert_eq!(field(&fields, "Traffic routing"), Some("Blue/Green"));
        assert_eq!(field(&fields, "Interval"), Some("90s"));

        let steps = canary(json!({"stepWeights": [1, 10, 50]}));
        assert_eq!(
            field(&canary_details(&steps), "Traffic routing"),
            Some("Weight steps: 1,10,50 max: 50")
        );
        let no_weights = canary(json!({}));
        assert_eq!(field(&canary_details(&no_weights), "Traffic routing"), None);
    }

    #[test]
    fn the_cluster_name_comes_first_and_only_some_alerts_carry_details() {
        let c = canary(json!({"stepWeight": 5}));
        let message = AlertEvent::manual_rollback().message(&c, Some("eu-1"));
        assert_eq!(message.fields, vec![Field::new("Cluster", "eu-1")]);
        assert_eq!(message.severity, Severity::Warn);
        // Without a status nor an event phase, the phase is unknown.
        assert_eq!(message.phase, None);

        let message = AlertEvent::initialized("DaemonSet").message(&c, Some("eu-1"));
        assert_eq!(
            message.text,
            "New DaemonSet detected, initialization completed."
        );
        assert_eq!(message.fields[0], Field::new("Cluster", "eu-1"));
        assert_eq!(message.fields[1].name, "Target");
        assert_eq!(message.phase.as_deref(), Some("Initialized"));
        assert_eq!(message.canary(), "frontend.prod");
    }

    #[test]
    fn engine_texts_get_their_phase_details_and_gate() {
        let c = canary(json!({"webhooks": [
            {"name": "muted", "type": "confirm-promotion", "url": "http://other/gate/check", "muteAlert": true},
            {"name": "ask", "type": "confirm-promotion", "url": "http://approvals/ask"},
            {"name": "gate", "type": "confirm-promotion", "url": "http://lt.prod/gate/check"},
        ]}));
        let event = AlertEvent::from_text(
            Severity::Warn,
            "Canary promotion is waiting for approval.",
            false,
            &c,
        );
        assert_eq!(event.gate_url.as_deref(), Some("http://lt.prod/gate/check"));
        assert_eq!(event.phase, Some(CanaryPhase::WaitingPromotion));
        let message = event.message(&c, None);
        assert!(
            message.text.ends_with("http://lt.prod/gate/open`"),
            "{}",
            message.text
        );

        let event = AlertEvent::from_text(
            Severity::Info,
            "Canary analysis completed successfully, promotion finished.",
            false,
            &c,
        );
        assert_eq!(event, AlertEvent::promoted());
        let event = AlertEvent::from_text(
            Severity::Error,
            "Failed checks threshold reached 3",
            false,
            &c,
        );
        assert_eq!(event, AlertEvent::failed_checks(3));
        let event = AlertEvent::from_text(Severity::Warn, "Something new", true, &c);
        assert_eq!(
            event,
            AlertEvent::new("Something new", Severity::Warn).with_details()
        );
    }

    #[test]
    fn only_unmuted_confirm_gates_raise_waiting_alerts() {
        let hook =
            |v: serde_json::Value| -> CanaryWebhook { serde_json::from_value(v).expect("hook") };
        let gate = hook(
            json!({"name": "g", "type": "confirm-traffic-increase", "url": "http://lt/gate/check"}),
        );
        let event = AlertEvent::waiting_for_approval(&gate).expect("a gate");
        assert_eq!(
            event.text,
            "Canary traffic increase is waiting for approval."
        );
        assert_eq!(event.severity, Severity::Warn);

        let muted = hook(
            json!({"name": "g", "type": "confirm-rollout", "url": "http://lt/gate/check", "muteAlert": true}),
        );
        assert_eq!(AlertEvent::waiting_for_approval(&muted), None);
        let rollout = hook(json!({"name": "load", "url": "http://lt/"}));
        assert_eq!(AlertEvent::waiting_for_approval(&rollout), None);
    }
}
