//! Requests made by hand (`serin promote|abort|retry|pause|resume`): an input of the
//! decision like the spec and the status. A request either fits the phase and acts
//! through the normal paths (promotion, rollback, a fresh start), or is refused with a
//! message; either way it is closed in the same run, with an event naming who asked.

use serin_api::canary::{AlertSeverity, CanaryPhase};
use serin_api::manual::{self, Request, RequestKind};

use crate::run::Run;
use crate::{Observe, Readiness};

impl Run<'_> {
    /// Acts on a pending request. Nothing else happens in this run.
    pub(crate) async fn handle_request(&mut self, observe: &mut dyn Observe, request: &Request) {
        let kind = match request.kind.clone() {
            Ok(k) => k,
            Err(unknown) => {
                return self.refuse(
                    request,
                    format!(
                        "unknown request {unknown:?}: expected promote, abort, retry, pause or resume"
                    ),
                );
            }
        };
        if self.canary.spec.suspend {
            return self.refuse(
                request,
                "the canary is suspended (spec.suspend is true)".into(),
            );
        }
        let phase = self.status.phase;
        let weight = self.status.canary_weight;
        let id = self.id();
        let who = request.who_and_why();
        let refusal = match (kind, phase) {
            (_, CanaryPhase::Terminating | CanaryPhase::Terminated) => {
                Some("the canary is being deleted".to_string())
            }
            (
                RequestKind::Promote | RequestKind::Abort,
                CanaryPhase::Promoting | CanaryPhase::Finalising,
            ) => Some(format!(
                "the promotion is under way (phase {phase}): the primary already runs the new version"
            )),
            (RequestKind::Promote | RequestKind::Abort | RequestKind::Pause, p)
                if !p.is_running() =>
            {
                Some(format!("no rollout is under way (phase {phase})"))
            }
            (RequestKind::Pause, CanaryPhase::Promoting | CanaryPhase::Finalising) => Some(
                format!("the promotion is under way (phase {phase}) and finishes on its own"),
            ),
            (RequestKind::Pause, _) if self.manual.paused.is_some() => {
                Some("the canary is already paused".to_string())
            }
            (RequestKind::Resume, _) if self.manual.paused.is_none() => {
                Some(format!("the canary is not paused (phase {phase})"))
            }
            (RequestKind::Retry, CanaryPhase::Failed) if weight > 0 => Some(format!(
                "the promotion failed with traffic on the canary ({weight}%): the primary is not ready, fix it first"
            )),
            (RequestKind::Retry, p) if p != CanaryPhase::Failed => Some(format!(
                "only a Failed canary can be retried (phase {phase})"
            )),
            _ => None,
        };
        if let Some(message) = refusal {
            return self.refuse(request, message);
        }
        let done = match kind {
            RequestKind::Promote => {
                if !self.adopt_waiting_revision(observe).await {
                    return;
                }
                let message =
                    format!("Promotion of {id} requested {who}: skipping the remaining analysis");
                self.normal(message.clone());
                self.alert(AlertSeverity::Info, message.clone(), false);
                self.promote();
                message
            }
            RequestKind::Abort => {
                if !self.adopt_waiting_revision(observe).await {
                    return;
                }
                let message = format!("Rolling back {id} abort requested {who}");
                self.warning(message.clone());
                self.alert(AlertSeverity::Warn, message.clone(), false);
                self.rollback();
                message
            }
            RequestKind::Retry => {
                let Some(revision) = self.revision(observe).await else {
                    return;
                };
                let message = format!("Retrying the analysis of {id} requested {who}");
                self.normal(message.clone());
                self.start(observe, revision).await;
                message
            }
            RequestKind::Pause => {
                let message = format!("Paused {id} at canary weight {weight}, requested {who}");
                self.normal(message.clone());
                self.annotate(manual::PAUSED, Some(self.timestamp()));
                message
            }
            RequestKind::Resume => {
                let message = format!(
                    "Resumed {id} at canary weight {weight}, requested {who}; the progress deadline counts from now"
                );
                self.normal(message.clone());
                self.annotate(manual::PAUSED, None);
                self.annotate(manual::RESUMED, Some(self.timestamp()));
                message
            }
        };
        if matches!(kind, RequestKind::Promote | RequestKind::Abort) && self.manual.paused.is_some()
        {
            self.annotate(manual::PAUSED, None);
        }
        self.decision
            .annotations
            .extend(manual::close_request(request, false, &done));
    }

    fn refuse(&mut self, request: &Request, message: String) {
        let kind = match &request.kind {
            Ok(k) => k.as_str().to_string(),
            Err(v) => v.clone(),
        };
        self.warning(format!(
            "Refused {kind} of {} requested {}: {message}",
            self.id(),
            request.who_and_why()
        ));
        self.decision
            .annotations
            .extend(manual::close_request(request, true, &message));
    }

    /// A canary held at a confirm-rollout gate has not taken its new revision yet:
    /// take it now, so the promotion or rollback is of that revision and a Failed or
    /// Succeeded canary does not start it again on the next run.
    async fn adopt_waiting_revision(&mut self, observe: &mut dyn Observe) -> bool {
        if self.status.phase != CanaryPhase::Waiting {
            return true;
        }
        let Some(revision) = self.revision(observe).await else {
            return false;
        };
        let status = self.restarted_status(revision);
        let phase = status.phase;
        self.set_status(status, phase);
        true
    }

    fn annotate(&mut self, key: &str, value: Option<String>) {
        self.decision.annotations.insert(key.to_string(), value);
    }

    fn timestamp(&self) -> String {
        self.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    }

    /// A stale pause mark on a canary whose rollout has ended is removed.
    pub(crate) fn clear_stale_pause(&mut self) {
        if self.manual.paused.is_some() && !self.status.phase.is_running() {
            self.annotate(manual::PAUSED, None);
        }
    }

    /// A workload past its progress deadline within `progressDeadlineSeconds` of a
    /// resume is still waiting: the time spent paused does not count.
    pub(crate) fn forgive_paused_time(&self, readiness: Readiness) -> Readiness {
        let Readiness::DeadlineExceeded(message) = readiness else {
            return readiness;
        };
        let Some(resumed) = self.manual.resumed else {
            return Readiness::DeadlineExceeded(message);
        };
        let window = chrono::Duration::from_std(self.canary.progress_deadline())
            .unwrap_or(chrono::Duration::MAX);
        if resumed + window > self.now {
            Readiness::Waiting(message)
        } else {
            Readiness::DeadlineExceeded(message)
        }
    }
}
