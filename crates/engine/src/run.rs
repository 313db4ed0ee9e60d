//! One run of the analysis: the rules of SPEC.md's control loop, in order.

use chrono::{DateTime, Utc};
use serin_api::Canary;
use serin_api::canary::{
    AlertSeverity, CanaryMetric, CanaryPhase, CanaryStatus, HookType, Strategy,
};
use serin_api::manual::ManualState;

use crate::{
    Action, Alert, Decision, Event, EventType, MetricOutcome, Observe, Readiness, Routes,
    TargetRevision, effective_strategy, hooks, with_phase,
};

/// Decides what one run of a canary does. See the crate documentation.
pub async fn decide(canary: &Canary, now: DateTime<Utc>, observe: &mut dyn Observe) -> Decision {
    let mut run = Run {
        canary,
        now,
        status: canary.status_or_default(),
        decision: Decision::none(),
        first_status: canary.status.is_none(),
        manual: ManualState::of(canary),
    };
    run.decide(observe).await;
    let mut decision = run.decision;
    if decision.status.is_none() && run.first_status {
        // A new canary shows its phase at once, even while it waits for its primary.
        decision.status = Some(with_phase(
            canary,
            CanaryStatus::default(),
            CanaryPhase::Initializing,
            now,
        ));
    }
    decision
}

pub(crate) struct Run<'a> {
    pub(crate) canary: &'a Canary,
    pub(crate) now: DateTime<Utc>,
    /// The status as it was at the start of the run.
    pub(crate) status: CanaryStatus,
    pub(crate) decision: Decision,
    first_status: bool,
    /// Requests made by hand and the pause mark, from the annotations.
    pub(crate) manual: ManualState,
}

impl Run<'_> {
    /// `name.namespace` of the canary.
    pub(crate) fn id(&self) -> String {
        self.canary.id()
    }

    /// `name.namespace` of the target workload.
    fn target_id(&self) -> String {
        format!(
            "{}.{}",
            self.canary.spec.target_ref.name,
            self.canary
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default()
        )
    }

    fn primary_id(&self) -> String {
        format!(
            "{}-primary.{}",
            self.canary.spec.target_ref.name,
            self.canary
                .metadata
                .namespace
                .as_deref()
                .unwrap_or_default()
        )
    }

    pub(crate) fn normal(&mut self, message: impl Into<String>) {
        self.decision.events.push(Event {
            type_: EventType::Normal,
            message: message.into(),
        });
    }

    pub(crate) fn warning(&mut self, message: impl Into<String>) {
        self.decision.events.push(Event {
            type_: EventType::Warning,
            message: message.into(),
        });
    }

    pub(crate) fn alert(
        &mut self,
        severity: AlertSeverity,
        message: impl Into<String>,
        with_details: bool,
    ) {
        self.decision.alerts.push(Alert {
            severity,
            message: message.into(),
            with_details,
        });
    }

    fn act(&mut self, action: Action) {
        if matches!(action, Action::RunPostRolloutHooks(_)) {
            // Their results are recorded after the events so far, before the rest.
            self.decision.post_rollout_after = self.decision.events.len();
        }
        self.decision.actions.push(action);
    }

    /// The status to write: the one decided so far this run, else the current one.
    fn next_status(&self) -> CanaryStatus {
        self.decision
            .status
            .clone()
            .unwrap_or_else(|| self.status.clone())
    }

    pub(crate) fn set_status(&mut self, status: CanaryStatus, phase: CanaryPhase) {
        self.decision.status = Some(with_phase(self.canary, status, phase, self.now));
    }

    fn set_phase(&mut self, phase: CanaryPhase) {
        let status = self.next_status();
        self.set_status(status, phase);
    }

    async fn decide(&mut self, observe: &mut dyn Observe) {
        if let Some(request) = self.manual.request.clone() {
            return self.handle_request(observe, &request).await;
        }
        self.clear_stale_pause();
        if self.manual.paused.is_some() && self.status.phase.is_running() {
            // Held by hand at the current weight until resumed (or promoted, aborted).
            return;
        }
        if self.canary.spec.suspend {
            self.normal("skipping canary run as object is suspended");
            return;
        }
        match self.status.phase {
            CanaryPhase::Initializing => self.initialize(observe).await,
            CanaryPhase::Initialized | CanaryPhase::Succeeded | CanaryPhase::Failed => {
                let Some(revision) = self.revision(observe).await else {
                    return;
                };
                if self.is_manual_rollback(&revision) {
                    return self.accept_manual_rollback(revision);
                }
                if self.is_new_revision(&revision) {
                    self.start(observe, revision).await;
                }
            }
            CanaryPhase::Waiting => {
                if let Some(revision) = self.revision(observe).await {
                    self.start(observe, revision).await;
                }
            }
            CanaryPhase::Progressing
            | CanaryPhase::WaitingPromotion
            | CanaryPhase::Promoting
            | CanaryPhase::Finalising => self.advance(observe).await,
            CanaryPhase::Terminating | CanaryPhase::Terminated => {}
        }
    }

    pub(crate) async fn revision(&mut self, observe: &mut dyn Observe) -> Option<TargetRevision> {
        match observe.target_revision().await {
            Ok(r) => Some(r),
            Err(e) => {
                self.warning(e);
                None
            }
        }
    }

    fn is_new_revision(&self, revision: &TargetRevision) -> bool {
        let applied = self.status.last_applied_spec.as_deref().unwrap_or_default();
        let tracked = self.status.tracked_configs.clone().unwrap_or_default();
        revision.spec_hash != applied || revision.tracked_configs != tracked
    }

    /// The target was set back to the version the primary runs (a manual rollback
    /// after a failed analysis): as in Flagger, that is no new revision to analyse.
    fn is_manual_rollback(&self, revision: &TargetRevision) -> bool {
        let tracked = self.status.tracked_configs.clone().unwrap_or_default();
        self.status.last_promoted_spec.as_deref() == Some(revision.spec_hash.as_str())
            && self.status.last_applied_spec.as_deref() != Some(revision.spec_hash.as_str())
            && revision.tracked_configs == tracked
    }

    /// Records the rolled-back version as the applied one, so that the version
    /// that failed, applied again, is analysed again.
    fn accept_manual_rollback(&mut self, revision: TargetRevision) {
        let mut status = self.next_status();
        status.last_applied_spec = Some(revision.spec_hash);
        let phase = status.phase;
        self.set_status(status, phase);
    }

    /// Waits for the primary, then scales the target to zero: all traffic goes to the
    /// primary from now on.
    async fn initialize(&mut self, observe: &mut dyn Observe) {
        if !self.canary.skips_analysis() {
            match observe.metric_providers().await {
                Ok(()) => self.normal("all the metrics providers are available!"),
                Err(e) => self.warning(format!("Error checking metric providers: {e}")),
            }
        }
        match observe.primary_readiness().await {
            Err(e) => return self.warning(e),
            Ok(Readiness::Waiting(m)) | Ok(Readiness::DeadlineExceeded(m)) => {
                return self.warning(m);
            }
            Ok(Readiness::Ready) => {}
        }
        let Some(revision) = self.revision(observe).await else {
            return;
        };
        self.act(Action::ScaleToZero);
        let mut status = self.next_status();
        status.canary_weight = 0;
        status.failed_checks = 0;
        status.iterations = 0;
        status.last_applied_spec = Some(revision.spec_hash.clone());
        status.last_promoted_spec = Some(revision.spec_hash);
        status.tracked_configs = Some(revision.tracked_configs);
        self.set_status(status, CanaryPhase::Initialized);
        self.normal(format!("Initialization done! {}", self.id()));
        let kind = self.canary.spec.target_ref.kind.clone().unwrap_or_default();
        self.alert(
            AlertSeverity::Info,
            format!("New {kind} detected, initialization completed."),
            true,
        );
    }

    /// Confirm-rollout gates, then scale the target up and start the analysis.
    pub(crate) async fn start(&mut self, observe: &mut dyn Observe, revision: TargetRevision) {
        for hook in hooks(self.canary, HookType::ConfirmRollout) {
            if let Err(e) = observe.call_webhook(&hook, self.status.phase).await {
                if crate::refused_credentials(&e) {
                    return self.gate_failed("confirm-rollout", &hook.name, &e);
                }
                if self.status.phase != CanaryPhase::Waiting {
                    self.set_phase(CanaryPhase::Waiting);
                    self.warning(format!(
                        "Halt {} advancement waiting for approval {}",
                        self.id(),
                        hook.name
                    ));
                    if !hook.mute_alert {
                        self.alert(
                            AlertSeverity::Warn,
                            "Canary is waiting for approval.",
                            false,
                        );
                    }
                }
                return;
            }
            self.normal(format!("Confirm-rollout check {} passed", hook.name));
        }
        self.normal(format!(
            "New revision detected! Scaling up {}",
            self.target_id()
        ));
        self.alert(
            AlertSeverity::Info,
            "New revision detected, progressing canary analysis.",
            true,
        );
        self.act(Action::ScaleFromZero);
        let status = self.restarted_status(revision);
        self.set_status(status, CanaryPhase::Progressing);
    }

    /// A gate whose webhook refused the operator's credentials (401): the canary
    /// does not move, and the event says the check failed and why, not that it
    /// waits for approval.
    fn gate_failed(&mut self, kind: &str, name: &str, error: &str) {
        self.warning(format!(
            "Halt {} advancement {kind} check {name} failed: {error}",
            self.id()
        ));
    }

    /// A status for a fresh analysis of `revision`.
    pub(crate) fn restarted_status(&self, revision: TargetRevision) -> CanaryStatus {
        let mut status = self.next_status();
        status.canary_weight = 0;
        status.failed_checks = 0;
        status.iterations = 0;
        status.last_applied_spec = Some(revision.spec_hash);
        status.tracked_configs = Some(revision.tracked_configs);
        status
    }

    async fn advance(&mut self, observe: &mut dyn Observe) {
        let phase = self.status.phase;
        if !self.canary.skips_analysis() {
            match observe
                .primary_readiness()
                .await
                .map(|r| self.forgive_paused_time(r))
            {
                Err(e) => return self.warning(e),
                Ok(Readiness::Waiting(m)) => return self.warning(m),
                Ok(Readiness::DeadlineExceeded(m)) => {
                    if matches!(phase, CanaryPhase::Promoting | CanaryPhase::Finalising) {
                        return self.failed_promotion(&m);
                    }
                    self.warning(m);
                    return self.rollback();
                }
                Ok(Readiness::Ready) => {}
            }
        }
        let routes = match observe.routes().await {
            Ok(r) => r,
            Err(e) => return self.warning(e),
        };
        if matches!(
            phase,
            CanaryPhase::Progressing | CanaryPhase::WaitingPromotion
        ) {
            let Some(revision) = self.revision(observe).await else {
                return;
            };
            if self.is_new_revision(&revision) {
                self.normal(format!(
                    "New revision detected! Restarting analysis for {}",
                    self.target_id()
                ));
                self.act(Action::SetRoutes(Routes::PRIMARY));
                let status = self.restarted_status(revision);
                return self.set_status(status, CanaryPhase::Progressing);
            }
        }
        let mut deadline = None;
        match observe
            .canary_readiness()
            .await
            .map(|r| self.forgive_paused_time(r))
        {
            Err(e) => return self.warning(e),
            Ok(Readiness::Waiting(m)) => return self.warning(m),
            Ok(Readiness::DeadlineExceeded(m)) => deadline = Some(m),
            Ok(Readiness::Ready) => {}
        }
        if self.canary.skips_analysis() {
            return self.promote_without_analysis(deadline);
        }
        if matches!(
            phase,
            CanaryPhase::Progressing | CanaryPhase::Waiting | CanaryPhase::WaitingPromotion
        ) {
            for hook in hooks(self.canary, HookType::Rollback) {
                if observe.call_webhook(&hook, phase).await.is_err() {
                    // Flagger's words, each run, for a rollback hook that says no.
                    self.normal(format!(
                        "Rollback hook {} not signaling a rollback",
                        hook.name
                    ));
                } else {
                    self.warning(format!("Rollback check {} passed", hook.name));
                    self.warning(format!("Rolling back {} manual webhook invoked", self.id()));
                    self.alert(
                        AlertSeverity::Warn,
                        "Rolling back manual webhook invoked",
                        false,
                    );
                    return self.rollback();
                }
            }
        }
        match phase {
            CanaryPhase::Promoting => return self.shift_traffic_to_primary(routes),
            CanaryPhase::Finalising => return self.finish_promotion(),
            _ => {}
        }
        let threshold = self.canary.analysis_threshold();
        if deadline.is_some() || self.status.failed_checks >= threshold {
            if let Some(m) = &deadline {
                self.warning(format!(
                    "Rolling back {} progress deadline exceeded {m}",
                    self.id()
                ));
                self.alert(
                    AlertSeverity::Error,
                    format!("Progress deadline exceeded {m}"),
                    false,
                );
            }
            return self.rollback();
        }
        if !self.run_checks(observe, routes).await {
            let mut status = self.next_status();
            status.failed_checks += 1;
            let phase = status.phase;
            return self.set_status(status, phase);
        }
        match effective_strategy(self.canary) {
            Strategy::ABTesting => self.run_ab(observe).await,
            Strategy::BlueGreen => self.run_blue_green(observe, routes).await,
            Strategy::Canary => self.run_canary(observe, routes).await,
        }
    }

    /// Pre-rollout hooks on the first step, rollout hooks and metrics on every other.
    /// False when a check failed (its event is recorded).
    async fn run_checks(&mut self, observe: &mut dyn Observe, routes: Routes) -> bool {
        let mirroring = self.canary.analysis().is_some_and(|a| a.mirror) && routes.mirrored;
        if routes.canary == 0 && self.status.iterations == 0 && !mirroring {
            self.normal(format!("Starting canary analysis for {}", self.target_id()));
            self.start_session_affinity();
            if self.canary.provider() == "kubernetes" {
                self.kubernetes_provider_notices();
            }
            for hook in hooks(self.canary, HookType::PreRollout) {
                if let Err(e) = observe.call_webhook(&hook, CanaryPhase::Progressing).await {
                    self.warning(format!(
                        "Halt {} advancement pre-rollout check {} failed {e}",
                        self.id(),
                        hook.name
                    ));
                    return false;
                }
                self.normal(format!("Pre-rollout check {} passed", hook.name));
            }
            return true;
        }
        for hook in hooks(self.canary, HookType::Rollout) {
            if let Err(e) = observe.call_webhook(&hook, CanaryPhase::Progressing).await {
                self.warning(format!(
                    "Halt {} advancement external check {} failed {e}",
                    self.id(),
                    hook.name
                ));
                return false;
            }
        }
        let metrics = self
            .canary
            .analysis()
            .map(|a| a.metrics.clone())
            .unwrap_or_default();
        for metric in &metric_checks(&metrics) {
            let mut outcome = observe.check_metric(metric).await;
            while let MetricOutcome::Noted {
                warning,
                outcome: next,
            } = outcome
            {
                self.warning(warning);
                outcome = *next;
            }
            if let MetricOutcome::Halt(message) = outcome {
                // A Warning, as Flagger records metric halts, "no values found" and
                // query errors today (the seeds, from 2019, show them as Normal).
                self.warning(message);
                return false;
            }
        }
        true
    }

    fn kubernetes_provider_notices(&mut self) {
        let Some(analysis) = self.canary.analysis() else {
            return;
        };
        if !analysis.match_.is_empty() {
            self.warning("A/B testing is not supported when using the kubernetes provider");
        }
        if analysis.iterations.unwrap_or(0) < 1 {
            self.warning("Progressive traffic is not supported when using the kubernetes provider");
            self.warning("Setting canaryAnalysis.iterations: 10");
        }
    }

    /// Cookies for session affinity, derived from the revision so a restarted run
    /// gives the same ones.
    fn start_session_affinity(&mut self) {
        let Some(affinity) = self
            .canary
            .analysis()
            .and_then(|a| a.session_affinity.clone())
        else {
            return;
        };
        let mut status = self.next_status();
        let token = cookie_token(status.last_applied_spec.as_deref().unwrap_or_default());
        let cookie = format!("{}={token}", affinity.cookie_name);
        if status.session_affinity_cookie.as_deref() != Some(cookie.as_str()) {
            status.previous_session_affinity_cookie = status.session_affinity_cookie.take();
            status.session_affinity_cookie = Some(cookie);
        }
        if let Some(primary) = affinity.primary_cookie_name.filter(|n| !n.is_empty()) {
            status.primary_session_affinity_cookie = Some(format!("{primary}={token}"));
        }
        let phase = status.phase;
        self.set_status(status, phase);
    }

    fn iterations(&self) -> i32 {
        let declared = self
            .canary
            .analysis()
            .and_then(|a| a.iterations)
            .unwrap_or(0);
        if self.canary.provider() == "kubernetes" && declared < 1 {
            return 10;
        }
        declared
    }

    /// Confirm-promotion gates; true when all are open.
    async fn promotion_approved(&mut self, observe: &mut dyn Observe) -> bool {
        for hook in hooks(self.canary, HookType::ConfirmPromotion) {
            if let Err(e) = observe.call_webhook(&hook, CanaryPhase::Progressing).await {
                if crate::refused_credentials(&e) {
                    self.gate_failed("confirm-promotion", &hook.name, &e);
                    return false;
                }
                if self.status.phase != CanaryPhase::WaitingPromotion {
                    self.set_phase(CanaryPhase::WaitingPromotion);
                    self.warning(format!(
                        "Halt {} advancement waiting for promotion approval {}",
                        self.id(),
                        hook.name
                    ));
                    if !hook.mute_alert {
                        self.alert(
                            AlertSeverity::Warn,
                            "Canary promotion is waiting for approval.",
                            false,
                        );
                    }
                }
                return false;
            }
            self.normal(format!("Confirm-promotion check {} passed", hook.name));
        }
        true
    }

    pub(crate) fn promote(&mut self) {
        self.normal(format!(
            "Copying {} template spec to {}",
            self.target_id(),
            self.primary_id()
        ));
        self.act(Action::Promote);
        self.set_phase(CanaryPhase::Promoting);
    }

    async fn run_canary(&mut self, observe: &mut dyn Observe, routes: Routes) {
        // As in Flagger, the traffic-increase gate holds every step of an unmirrored
        // analysis, the promotion at max weight included.
        if !routes.mirrored && self.status.phase != CanaryPhase::WaitingPromotion {
            for hook in hooks(self.canary, HookType::ConfirmTrafficIncrease) {
                if let Err(e) = observe.call_webhook(&hook, CanaryPhase::Progressing).await {
                    if crate::refused_credentials(&e) {
                        return self.gate_failed("confirm-traffic-increase", &hook.name, &e);
                    }
                    self.warning(format!(
                        "Halt {} advancement waiting for traffic increase approval {}",
                        self.id(),
                        hook.name
                    ));
                    if !hook.mute_alert {
                        self.alert(
                            AlertSeverity::Warn,
                            "Canary traffic increase is waiting for approval.",
                            false,
                        );
                    }
                    return;
                }
                self.normal(format!(
                    "Confirm-traffic-increase check {} passed",
                    hook.name
                ));
            }
        }
        let max_weight = self.canary.max_weight();
        if routes.canary >= max_weight {
            if self.promotion_approved(observe).await {
                self.promote();
            }
            return;
        }
        let step = self.next_step_weight(routes.canary);
        if step <= 0 {
            return;
        }
        let mirror = self.canary.analysis().is_some_and(|a| a.mirror);
        let next = if mirror && routes.canary == 0 {
            if routes.mirrored {
                Routes::to_canary(step)
            } else {
                Routes {
                    primary: 100,
                    canary: 0,
                    mirrored: true,
                }
            }
        } else {
            Routes::to_canary((routes.canary + step).min(100))
        };
        self.act(Action::SetRoutes(next));
        let mut status = self.next_status();
        status.canary_weight = next.canary;
        let phase = status.phase;
        self.set_status(status, phase);
        self.normal(format!(
            "Advance {} canary weight {}",
            self.id(),
            next.canary
        ));
    }

    /// The weight to add to `current`, from stepWeight or stepWeights.
    fn next_step_weight(&self, current: i32) -> i32 {
        let Some(a) = self.canary.analysis() else {
            return 0;
        };
        let step = a.step_weight.unwrap_or(0);
        if step > 0 || a.step_weights.is_empty() {
            return step;
        }
        let room = 100 - current;
        if room == 0 {
            return 1;
        }
        if current == 0 {
            return room.min(a.step_weights[0]);
        }
        for pair in a.step_weights.windows(2) {
            if pair[0] == current {
                return room.min(pair[1] - current);
            }
        }
        room
    }

    async fn run_ab(&mut self, observe: &mut dyn Observe) {
        let total = self.iterations();
        let done = self.status.iterations;
        if total > done {
            self.act(Action::SetRoutes(Routes::to_canary(100)));
            // As in Flagger, an A/B canary's weight stays 0: its routes send the
            // requests that match to the canary, not a share of all traffic.
            let mut status = self.next_status();
            status.iterations = done + 1;
            let phase = status.phase;
            self.set_status(status, phase);
            self.normal(format!(
                "Advance {} canary iteration {}/{total}",
                self.id(),
                done + 1
            ));
            return;
        }
        if self.promotion_approved(observe).await && total == done {
            self.promote();
        }
    }

    async fn run_blue_green(&mut self, observe: &mut dyn Observe, routes: Routes) {
        let total = self.iterations();
        let done = self.status.iterations;
        let mesh = self.canary.provider() != "kubernetes";
        let mirror = self.canary.analysis().is_some_and(|a| a.mirror);
        if total > done {
            if mesh && mirror && !routes.mirrored {
                self.act(Action::SetRoutes(Routes {
                    primary: 100,
                    canary: 0,
                    mirrored: true,
                }));
            }
            let mut status = self.next_status();
            status.iterations = done + 1;
            let phase = status.phase;
            self.set_status(status, phase);
            self.normal(format!(
                "Advance {} canary iteration {}/{total}",
                self.id(),
                done + 1
            ));
            return;
        }
        if !self.promotion_approved(observe).await {
            return;
        }
        if total == done {
            let mut status = self.next_status();
            if mesh {
                self.normal(if mirror {
                    "Stop traffic mirroring and route all traffic to canary"
                } else {
                    "Routing all traffic to canary"
                });
                self.act(Action::SetRoutes(Routes::to_canary(100)));
                status.canary_weight = 100;
            }
            status.iterations = done + 1;
            let phase = status.phase;
            return self.set_status(status, phase);
        }
        self.promote();
    }

    /// Promoting: the primary runs the new version; move traffic back to it.
    fn shift_traffic_to_primary(&mut self, routes: Routes) {
        let step = self
            .canary
            .analysis()
            .and_then(|a| a.step_weight_promotion)
            .unwrap_or(0);
        if self.canary.provider() == "kubernetes" {
            return self.finalising(self.next_status());
        }
        if step <= 0 || routes.canary <= step {
            if step <= 0 {
                self.normal("Routing all traffic to primary");
            } else {
                self.normal(format!("Advance {} primary weight 100", self.id()));
            }
            self.act(Action::SetRoutes(Routes::PRIMARY));
            return self.finalising(self.next_status());
        }
        let next = Routes::to_canary(routes.canary - step);
        self.act(Action::SetRoutes(next));
        self.normal(format!(
            "Advance {} primary weight {}",
            self.id(),
            next.primary
        ));
        let mut status = self.next_status();
        status.canary_weight = next.canary;
        self.set_status(status, CanaryPhase::Promoting);
    }

    /// All traffic is on the primary: Flagger's Finalising status has weight and
    /// iterations back to 0.
    fn finalising(&mut self, mut status: CanaryStatus) {
        status.canary_weight = 0;
        status.iterations = 0;
        self.set_status(status, CanaryPhase::Finalising);
    }

    fn finish_promotion(&mut self) {
        self.act(Action::ScaleToZero);
        self.act(Action::RunPostRolloutHooks(CanaryPhase::Succeeded));
        let mut status = self.next_status();
        // Flagger's Succeeded status: weight and iterations back to 0; failedChecks
        // keeps the count of the analysis that passed.
        status.canary_weight = 0;
        status.iterations = 0;
        status.last_promoted_spec = status.last_applied_spec.clone();
        retire_session_cookie(&mut status);
        self.set_status(status, CanaryPhase::Succeeded);
        self.normal(format!(
            "Promotion completed! Scaling down {}",
            self.target_id()
        ));
        self.alert(
            AlertSeverity::Info,
            "Canary analysis completed successfully, promotion finished.",
            false,
        );
    }

    fn promote_without_analysis(&mut self, deadline: Option<String>) {
        if let Some(m) = deadline {
            self.warning(format!(
                "Rolling back {} progress deadline exceeded {m}",
                self.id()
            ));
            self.alert(
                AlertSeverity::Error,
                format!("Progress deadline exceeded {m}"),
                false,
            );
            return self.rollback();
        }
        self.normal(format!(
            "Copying {} template spec to {}",
            self.target_id(),
            self.primary_id()
        ));
        self.act(Action::SetRoutes(Routes::PRIMARY));
        self.act(Action::Promote);
        self.act(Action::ScaleToZero);
        self.act(Action::RunPostRolloutHooks(CanaryPhase::Succeeded));
        let mut status = self.next_status();
        status.canary_weight = 0;
        status.iterations = 0;
        status.last_promoted_spec = status.last_applied_spec.clone();
        self.set_status(status, CanaryPhase::Succeeded);
        self.normal(format!(
            "Promotion completed! Canary analysis was skipped for {}",
            self.target_id()
        ));
        self.alert(
            AlertSeverity::Info,
            "Canary analysis was skipped, promotion finished.",
            false,
        );
    }

    /// All traffic back to the primary, the target scaled to zero, phase Failed.
    pub(crate) fn rollback(&mut self) {
        let failed = self.next_status().failed_checks;
        if failed >= self.canary.analysis_threshold() {
            self.warning(format!(
                "Rolling back {} failed checks threshold reached {failed}",
                self.id()
            ));
            self.alert(
                AlertSeverity::Error,
                format!("Failed checks threshold reached {failed}"),
                false,
            );
        }
        // The post-rollout hooks' results follow "Canary failed!", as in Flagger.
        self.warning(format!("Canary failed! Scaling down {}", self.id()));
        self.act(Action::SetRoutes(Routes::PRIMARY));
        self.act(Action::ScaleToZero);
        self.act(Action::RunPostRolloutHooks(CanaryPhase::Failed));
        // Flagger's Failed status: weight, failed checks and iterations back to 0 (the
        // events and the Promoted condition keep why).
        let mut status = self.next_status();
        status.canary_weight = 0;
        status.failed_checks = 0;
        status.iterations = 0;
        retire_session_cookie(&mut status);
        self.set_status(status, CanaryPhase::Failed);
    }

    /// The primary did not become ready with the new version: traffic stays on the
    /// canary, the only healthy copy.
    fn failed_promotion(&mut self, message: &str) {
        self.warning(format!(
            "Promotion of {} failed, primary not ready: {message}",
            self.target_id()
        ));
        self.alert(
            AlertSeverity::Error,
            format!("Promotion failed, primary not ready: {message}"),
            false,
        );
        // The kubernetes provider has no split: its apex stays on the primary.
        let mesh = self.canary.provider() != "kubernetes";
        if mesh {
            self.act(Action::SetRoutes(Routes::to_canary(100)));
        }
        self.act(Action::RunPostRolloutHooks(CanaryPhase::Failed));
        let mut status = self.next_status();
        if mesh {
            status.canary_weight = 100;
        }
        // Flagger's Failed status: failed checks and iterations back to 0.
        status.failed_checks = 0;
        status.iterations = 0;
        self.set_status(status, CanaryPhase::Failed);
    }
}

/// The metric checks of one step, in Flagger's order: first each built-in metric
/// and inline query, then each MetricTemplate. A metric with a built-in name and a
/// `templateRef` is checked twice, as Flagger does: by the built-in query (with the
/// built-in's meaning of its threshold), then by its template (as any template
/// metric). A metric with none of them comes last, for its check to report it.
fn metric_checks(metrics: &[CanaryMetric]) -> Vec<CanaryMetric> {
    let builtin = |m: &CanaryMetric| {
        serin_api::defaults::BUILTIN_METRICS.contains(&m.name.as_str())
            || serin_api::defaults::LEGACY_METRIC_NAMES
                .iter()
                .any(|(old, _)| *old == m.name)
    };
    let has_query = |m: &CanaryMetric| m.query.as_deref().is_some_and(|q| !q.trim().is_empty());
    let mut checks = Vec::new();
    for m in metrics {
        if builtin(m) {
            checks.push(CanaryMetric {
                template_ref: None,
                query: None,
                ..m.clone()
            });
        } else if has_query(m) {
            checks.push(CanaryMetric {
                template_ref: None,
                ..m.clone()
            });
        }
    }
    for m in metrics {
        if m.template_ref.is_some() {
            checks.push(CanaryMetric {
                query: None,
                ..m.clone()
            });
        } else if !builtin(m) && !has_query(m) {
            checks.push(m.clone());
        }
    }
    checks
}

/// Users holding the canary's cookie are sent back to the primary (the router expires
/// the previous cookie on them).
fn retire_session_cookie(status: &mut CanaryStatus) {
    if status.session_affinity_cookie.is_some() {
        status.previous_session_affinity_cookie = status.session_affinity_cookie.take();
    }
}

/// A short stable token for session-affinity cookie values.
fn cookie_token(seed: &str) -> String {
    // FNV-1a: stable across runs and processes, which is all a cookie value needs.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in seed.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{hash:016x}")
}
