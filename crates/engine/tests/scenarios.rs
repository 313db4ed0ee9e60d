//! The rules of the control loop, run against an in-memory world that applies the
//! engine's actions: every strategy, gate and failure path, checked by the events a
//! user would see and by the traffic invariants at every step.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use serin_api::Canary;
use serin_api::canary::{CanaryMetric, CanaryPhase, CanaryWebhook};
use serin_api::load::{Object, parse_documents, to_object};
use serin_api::manual;
use serin_engine::{
    Action, Decision, EventType, MetricOutcome, Observe, Readiness, Routes, TargetRevision, decide,
};

/// The cluster as the engine sees it, reduced to what it asks and changes.
struct World {
    target_hash: String,
    configs: BTreeMap<String, String>,
    target_scaled_up: bool,
    primary_hash: String,
    routes: Routes,
    canary_ready: Readiness,
    primary_ready: Readiness,
    /// Webhooks by name: true passes. Unlisted webhooks pass.
    webhooks: HashMap<String, bool>,
    /// Metrics by name: the halt message, or pass when unlisted.
    metric_halts: HashMap<String, String>,
    /// Metrics by name: a warning that comes with their result.
    metric_notes: HashMap<String, String>,
    webhook_calls: Vec<(String, CanaryPhase)>,
    post_rollout: Vec<CanaryPhase>,
    /// Every metric check asked for: the metric's name and whether it came with its
    /// `templateRef`.
    metric_calls: Vec<(String, bool)>,
}

impl World {
    fn new() -> Self {
        World {
            target_hash: "rev-1".into(),
            configs: BTreeMap::new(),
            target_scaled_up: true,
            primary_hash: "rev-1".into(),
            routes: Routes::PRIMARY,
            canary_ready: Readiness::Ready,
            primary_ready: Readiness::Ready,
            webhooks: HashMap::new(),
            metric_halts: HashMap::new(),
            metric_notes: HashMap::new(),
            webhook_calls: Vec::new(),
            post_rollout: Vec::new(),
            metric_calls: Vec::new(),
        }
    }

    fn apply(&mut self, action: &Action) {
        match action {
            Action::ScaleToZero => self.target_scaled_up = false,
            Action::ScaleFromZero => self.target_scaled_up = true,
            Action::SetRoutes(r) => self.routes = *r,
            Action::Promote => self.primary_hash = self.target_hash.clone(),
            Action::RunPostRolloutHooks(phase) => self.post_rollout.push(*phase),
        }
    }

    /// The invariants of SPEC.md: weights sum to 100, and no traffic goes to a
    /// target scaled to zero.
    fn check_invariants(&self) {
        assert_eq!(
            self.routes.primary + self.routes.canary,
            100,
            "{:?}",
            self.routes
        );
        if !self.target_scaled_up {
            assert_eq!(self.routes.canary, 0, "traffic to a scaled-down canary");
            assert!(!self.routes.mirrored, "mirroring to a scaled-down canary");
        }
    }
}

#[async_trait]
impl Observe for World {
    async fn target_revision(&mut self) -> Result<TargetRevision, String> {
        Ok(TargetRevision {
            spec_hash: self.target_hash.clone(),
            tracked_configs: self.configs.clone(),
        })
    }
    async fn canary_readiness(&mut self) -> Result<Readiness, String> {
        Ok(self.canary_ready.clone())
    }
    async fn primary_readiness(&mut self) -> Result<Readiness, String> {
        Ok(self.primary_ready.clone())
    }
    async fn routes(&mut self) -> Result<Routes, String> {
        Ok(self.routes)
    }
    async fn call_webhook(
        &mut self,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
    ) -> Result<(), String> {
        self.webhook_calls.push((webhook.name.clone(), phase));
        if self.webhooks.get(&webhook.name).copied().unwrap_or(true) {
            Ok(())
        } else {
            Err("500 Internal Server Error".into())
        }
    }
    async fn check_metric(&mut self, metric: &CanaryMetric) -> MetricOutcome {
        self.metric_calls
            .push((metric.name.clone(), metric.template_ref.is_some()));
        match self.metric_halts.get(&metric.name) {
            Some(m) => MetricOutcome::Halt(m.clone()),
            None => MetricOutcome::Pass,
        }
        .noted(self.metric_notes.get(&metric.name).cloned())
    }
}

struct Harness {
    canary: Canary,
    world: World,
    now: DateTime<Utc>,
    events: Vec<String>,
}

impl Harness {
    fn new(yaml: &str) -> Self {
        let doc = &parse_documents("test.yaml", yaml).unwrap()[0];
        let Object::Canary(canary) = to_object(doc).unwrap() else {
            panic!("not a canary")
        };
        Harness {
            canary: *canary,
            world: World::new(),
            now: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            events: Vec::new(),
        }
    }

    fn seed() -> Self {
        Self::new(include_str!(
            "../../../tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"
        ))
    }

    fn phase(&self) -> CanaryPhase {
        self.canary
            .status
            .as_ref()
            .map(|s| s.phase)
            .unwrap_or_default()
    }

    async fn step(&mut self) -> Decision {
        let decision = decide(&self.canary, self.now, &mut self.world).await;
        for action in &decision.actions {
            self.world.apply(action);
            self.world.check_invariants();
        }
        if let Some(status) = &decision.status {
            self.canary.status = Some(status.clone());
        }
        let annotations = self.canary.metadata.annotations.get_or_insert_default();
        for (key, value) in &decision.annotations {
            match value {
                Some(v) => annotations.insert(key.clone(), v.clone()),
                None => annotations.remove(key),
            };
        }
        for e in &decision.events {
            let prefix = match e.type_ {
                EventType::Normal => "",
                EventType::Warning => "W: ",
            };
            self.events.push(format!("{prefix}{}", e.message));
        }
        self.now += chrono::Duration::seconds(60);
        decision
    }

    /// Runs until the phase is one of `phases`, at most `limit` runs.
    async fn run_until(&mut self, phases: &[CanaryPhase], limit: usize) {
        for _ in 0..limit {
            self.step().await;
            if phases.contains(&self.phase()) {
                return;
            }
        }
        panic!(
            "not in {phases:?} after {limit} runs: {:?}\n{:#?}",
            self.phase(),
            self.events
        );
    }

    async fn initialize(&mut self) {
        self.run_until(&[CanaryPhase::Initialized], 3).await;
        assert!(
            !self.world.target_scaled_up,
            "target scaled to zero after init"
        );
        self.events.clear();
    }

    fn new_revision(&mut self, hash: &str) {
        self.world.target_hash = hash.into();
    }

    /// Writes a request as `serin abort` ... does.
    fn request(&mut self, kind: &str, by: &str, reason: Option<&str>) {
        let a = self.canary.metadata.annotations.get_or_insert_default();
        a.insert(manual::REQUEST.into(), kind.into());
        a.insert(manual::REQUEST_BY.into(), by.into());
        a.insert(manual::REQUEST_ID.into(), format!("{kind}-1"));
        if let Some(r) = reason {
            a.insert(manual::REQUEST_REASON.into(), r.into());
        }
    }

    fn annotation(&self, key: &str) -> Option<String> {
        self.canary.metadata.annotations.as_ref()?.get(key).cloned()
    }

    async fn rollout(&mut self) -> CanaryPhase {
        self.run_until(&[CanaryPhase::Succeeded, CanaryPhase::Failed], 60)
            .await;
        self.phase()
    }
}

fn with_analysis(extra_spec: &str, analysis: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {{name: podinfo, namespace: test}}
spec:
  targetRef: {{apiVersion: apps/v1, kind: Deployment, name: podinfo}}
  service: {{port: 9898}}
{extra_spec}  analysis:
    interval: 1m
    threshold: 3
{analysis}"
    )
}

#[tokio::test]
async fn the_seed_canary_is_promoted_with_the_guides_events() {
    let mut h = Harness::seed();
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Initialized);
    // Flagger v1.x checks the metric providers first (the seeds' 2019 output predates it).
    assert_eq!(
        h.events,
        [
            "all the metrics providers are available!",
            "Initialization done! podinfo.test"
        ]
    );
    assert_eq!(h.world.routes, Routes::PRIMARY);
    h.events.clear();

    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(
        h.events,
        [
            "New revision detected! Scaling up podinfo.test",
            "Starting canary analysis for podinfo.test",
            "Pre-rollout check acceptance-test passed",
            "Advance podinfo.test canary weight 10",
            "Advance podinfo.test canary weight 20",
            "Advance podinfo.test canary weight 30",
            "Advance podinfo.test canary weight 40",
            "Advance podinfo.test canary weight 50",
            "Copying podinfo.test template spec to podinfo-primary.test",
            "Routing all traffic to primary",
            "Promotion completed! Scaling down podinfo.test",
        ]
    );
    assert_eq!(h.world.primary_hash, "rev-2");
    assert!(!h.world.target_scaled_up);
    assert_eq!(h.world.routes, Routes::PRIMARY);
    let status = h.canary.status.clone().unwrap();
    assert_eq!(status.last_promoted_spec.as_deref(), Some("rev-2"));
    let promoted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Promoted")
        .unwrap();
    assert_eq!(promoted.status, "True");
    assert_eq!(h.world.post_rollout, [CanaryPhase::Succeeded]);
    // The load test ran at every analysis step, the acceptance test once.
    let calls = |name: &str| h.world.webhook_calls.iter().filter(|c| c.0 == name).count();
    assert_eq!(calls("acceptance-test"), 1);
    assert_eq!(calls("load-test"), 5);

    // Nothing more happens until the next revision.
    let d = h.step().await;
    assert_eq!((d.status, d.actions, d.events), (None, vec![], vec![]));
}

#[tokio::test]
async fn a_low_success_rate_rolls_back_at_the_threshold() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 69.17% < 99%".into(),
    );
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Failed);
    let halts = h
        .events
        .iter()
        .filter(|e| *e == "W: Halt podinfo.test advancement success rate 69.17% < 99%")
        .count();
    assert_eq!(
        halts, 5,
        "metric halts are Warnings, as in Flagger: {:#?}",
        h.events
    );
    assert_eq!(
        h.events[h.events.len() - 2..],
        [
            "W: Rolling back podinfo.test failed checks threshold reached 5",
            "W: Canary failed! Scaling down podinfo.test",
        ]
    );
    assert_eq!(h.world.routes, Routes::PRIMARY);
    assert!(!h.world.target_scaled_up);
    assert_eq!(
        h.world.primary_hash, "rev-1",
        "the primary keeps the old version"
    );
    assert_eq!(h.world.post_rollout, [CanaryPhase::Failed]);
    let status = h.canary.status.clone().unwrap();
    assert_eq!(status.canary_weight, 0);
    let promoted = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Promoted")
        .unwrap();
    assert_eq!(promoted.status, "False");

    // A fixed revision starts again from Failed.
    h.world.metric_halts.clear();
    h.events.clear();
    h.new_revision("rev-3");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(h.world.primary_hash, "rev-3");
}

#[tokio::test]
async fn a_manual_rollback_to_the_promoted_version_starts_no_analysis() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 69.17% < 99%".into(),
    );
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Failed);
    h.world.metric_halts.clear();
    h.events.clear();
    // The user sets the target back to what the primary runs.
    h.new_revision("rev-1");
    for _ in 0..5 {
        h.step().await;
    }
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert!(h.events.is_empty(), "{:#?}", h.events);
    assert!(!h.world.target_scaled_up, "the target stays scaled down");
    // The failed version, applied again, is analysed again.
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(h.world.primary_hash, "rev-2");
}

#[tokio::test]
async fn a_metric_from_several_series_is_a_warning_and_its_result_counts() {
    let mut h = Harness::seed();
    h.initialize().await;
    let note = "Metric request-success-rate of podinfo.test: the query returned 3 series instead of one, the last one's value 99.5 is used";
    h.world
        .metric_notes
        .insert("request-success-rate".into(), note.into());
    h.new_revision("rev-2");
    assert_eq!(
        h.rollout().await,
        CanaryPhase::Succeeded,
        "the value passes"
    );
    assert!(
        h.events.iter().any(|e| *e == format!("W: {note}")),
        "{:#?}",
        h.events
    );
    // A value that fails still halts, after the same warning.
    h.events.clear();
    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 42.00% < 99%".into(),
    );
    h.new_revision("rev-3");
    assert_eq!(h.rollout().await, CanaryPhase::Failed);
    let at = |text: &str| {
        h.events
            .iter()
            .position(|e| e == text)
            .unwrap_or_else(|| panic!("no {text:?} in {:#?}", h.events))
    };
    assert!(
        at(&format!("W: {note}"))
            < at("W: Halt podinfo.test advancement success rate 42.00% < 99%")
    );
}

#[tokio::test]
async fn step_weights_are_followed() {
    let mut h = Harness::new(&with_analysis("", "    stepWeights: [1, 20, 80]\n"));
    h.initialize().await;
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    let advances: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.starts_with("Advance"))
        .collect();
    assert_eq!(
        advances,
        [
            "Advance podinfo.test canary weight 1",
            "Advance podinfo.test canary weight 20",
            "Advance podinfo.test canary weight 80",
        ]
    );
}

#[tokio::test]
async fn step_weight_promotion_moves_traffic_back_in_steps() {
    let mut h = Harness::new(&with_analysis(
        "",
        "    maxWeight: 50\n    stepWeight: 25\n    stepWeightPromotion: 20\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    let after_copy: Vec<_> = h
        .events
        .iter()
        .skip_while(|e| !e.starts_with("Copying"))
        .cloned()
        .collect();
    assert_eq!(
        after_copy,
        [
            "Copying podinfo.test template spec to podinfo-primary.test",
            "Advance podinfo.test primary weight 70",
            "Advance podinfo.test primary weight 90",
            "Advance podinfo.test primary weight 100",
            "Promotion completed! Scaling down podinfo.test",
        ]
    );
}

#[tokio::test]
async fn ab_testing_runs_its_iterations() {
    let mut h = Harness::new(&with_analysis(
        "",
        "    iterations: 3\n    match:\n    - headers:\n        user-agent: {regex: \".*Firefox.*\"}\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    let iterations: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.starts_with("Advance"))
        .collect();
    assert_eq!(
        iterations,
        [
            "Advance podinfo.test canary iteration 1/3",
            "Advance podinfo.test canary iteration 2/3",
            "Advance podinfo.test canary iteration 3/3",
        ]
    );
    assert!(
        h.events
            .contains(&"Routing all traffic to primary".to_string())
    );
}

#[tokio::test]
async fn blue_green_with_the_kubernetes_provider_never_routes_by_weight() {
    let mut h = Harness::new(&with_analysis(
        "  provider: kubernetes\n",
        "    iterations: 2\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    let mut max_canary = 0;
    for _ in 0..20 {
        h.step().await;
        max_canary = max_canary.max(h.world.routes.canary);
        if h.phase() == CanaryPhase::Succeeded {
            break;
        }
    }
    assert_eq!(h.phase(), CanaryPhase::Succeeded, "{:#?}", h.events);
    assert_eq!(
        max_canary, 0,
        "the kubernetes provider keeps the apex on the primary"
    );
    assert!(
        h.events
            .iter()
            .any(|e| e == "Advance podinfo.test canary iteration 2/2")
    );
}

#[tokio::test]
async fn blue_green_with_istio_switches_all_traffic_before_promotion() {
    let mut h = Harness::new(&with_analysis("", "    iterations: 2\n"));
    h.initialize().await;
    h.new_revision("rev-2");
    // After each run: its events, the routes, and the primary's revision.
    let mut trace: Vec<(Vec<String>, Routes, String)> = Vec::new();
    for _ in 0..20 {
        let seen = h.events.len();
        h.step().await;
        trace.push((
            h.events[seen..].to_vec(),
            h.world.routes,
            h.world.primary_hash.clone(),
        ));
        if h.phase() == CanaryPhase::Succeeded {
            break;
        }
    }
    assert_eq!(h.phase(), CanaryPhase::Succeeded, "{:#?}", h.events);
    let run_of = |message: &str| {
        trace
            .iter()
            .position(|(events, _, _)| events.iter().any(|e| e == message))
            .unwrap_or_else(|| panic!("no {message:?} in {trace:#?}"))
    };
    let iteration = run_of("Advance podinfo.test canary iteration 2/2");
    let switch = run_of("Routing all traffic to canary");
    let copy = run_of("Copying podinfo.test template spec to podinfo-primary.test");
    let back = run_of("Routing all traffic to primary");
    // The iterations run with all traffic on the primary (tests hit the canary
    // service directly), then every request goes to the canary while the primary is
    // still the old version, then the primary is updated, then traffic returns.
    for (_, routes, _) in &trace[..=iteration] {
        assert_eq!(*routes, Routes::PRIMARY, "{trace:#?}");
    }
    assert!(
        iteration < switch && switch < copy && copy < back,
        "{trace:#?}"
    );
    assert_eq!(trace[switch].1, Routes::to_canary(100), "{trace:#?}");
    assert_eq!(trace[switch].2, "rev-1", "switched before the promotion");
    for (_, routes, _) in &trace[switch..back] {
        assert_eq!(*routes, Routes::to_canary(100), "{trace:#?}");
    }
    assert_eq!(trace[copy].2, "rev-2");
    assert_eq!(trace[back].1, Routes::PRIMARY);
}

#[tokio::test]
async fn mirroring_copies_traffic_before_shifting_it() {
    let mut h = Harness::new(&with_analysis(
        "",
        "    maxWeight: 20\n    stepWeight: 10\n    mirror: true\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    let mut seen_mirror = false;
    for _ in 0..30 {
        h.step().await;
        if h.world.routes.mirrored {
            seen_mirror = true;
            assert_eq!(
                h.world.routes,
                Routes {
                    primary: 100,
                    canary: 0,
                    mirrored: true
                }
            );
        }
        if h.phase() == CanaryPhase::Succeeded {
            break;
        }
    }
    assert!(seen_mirror, "{:#?}", h.events);
    assert_eq!(h.phase(), CanaryPhase::Succeeded);
    let advances: Vec<_> = h
        .events
        .iter()
        .filter(|e| e.starts_with("Advance"))
        .collect();
    assert_eq!(
        advances,
        [
            "Advance podinfo.test canary weight 0",
            "Advance podinfo.test canary weight 10",
            "Advance podinfo.test canary weight 20",
        ]
    );
}

#[tokio::test]
async fn skip_analysis_promotes_at_once() {
    let mut h = Harness::new(&with_analysis(
        "  skipAnalysis: true\n",
        "    stepWeight: 10\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(
        h.events,
        [
            "New revision detected! Scaling up podinfo.test",
            "Copying podinfo.test template spec to podinfo-primary.test",
            "Promotion completed! Canary analysis was skipped for podinfo.test",
        ]
    );
    assert_eq!(h.world.primary_hash, "rev-2");
}

#[tokio::test]
async fn a_failing_rollout_webhook_counts_as_a_failed_check() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 30\n    stepWeight: 10\n    webhooks:\n    - name: smoke\n      url: http://tester/\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.world.webhooks.insert("smoke".into(), false);
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Failed);
    assert!(
        h.events.contains(&"W: Halt podinfo.test advancement external check smoke failed 500 Internal Server Error".to_string()),
        "{:#?}",
        h.events
    );
    assert!(
        h.events.contains(
            &"W: Rolling back podinfo.test failed checks threshold reached 3".to_string()
        )
    );
}

#[tokio::test]
async fn confirm_promotion_holds_until_the_gate_opens() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 20\n    stepWeight: 10\n    webhooks:\n    - name: approve\n      type: confirm-promotion\n      url: http://tester/gate/check\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.world.webhooks.insert("approve".into(), false);
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::WaitingPromotion], 10).await;
    assert!(h.events.contains(
        &"W: Halt podinfo.test advancement waiting for promotion approval approve".to_string()
    ));
    for _ in 0..5 {
        h.step().await;
        assert_eq!(h.phase(), CanaryPhase::WaitingPromotion);
        assert_eq!(h.world.routes.canary, 20, "traffic holds at max weight");
    }
    let halts = h
        .events
        .iter()
        .filter(|e| e.contains("waiting for promotion approval"))
        .count();
    assert_eq!(halts, 1, "the wait is announced once");
    h.world.webhooks.insert("approve".into(), true);
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert!(
        h.events
            .contains(&"Confirm-promotion check approve passed".to_string())
    );
}

#[tokio::test]
async fn confirm_rollout_holds_the_canary_in_waiting() {
    let yaml = with_analysis(
        "",
        "    stepWeight: 50\n    webhooks:\n    - name: gate\n      type: confirm-rollout\n      url: http://tester/gate/check\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.world.webhooks.insert("gate".into(), false);
    h.new_revision("rev-2");
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Waiting);
    assert!(
        !h.world.target_scaled_up,
        "nothing scales up before approval"
    );
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Waiting);
    h.world.webhooks.insert("gate".into(), true);
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(
        h.events[0],
        "W: Halt podinfo.test advancement waiting for approval gate"
    );
}

#[tokio::test]
async fn a_rollback_gate_aborts_at_once() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 50\n    stepWeight: 10\n    webhooks:\n    - name: abort\n      type: rollback\n      url: http://tester/rollback/check\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.world.webhooks.insert("abort".into(), false);
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    h.step().await;
    h.step().await;
    assert!(h.world.routes.canary > 0);
    h.world.webhooks.insert("abort".into(), true);
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert!(
        h.events
            .contains(&"W: Rolling back podinfo.test manual webhook invoked".to_string())
    );
    assert_eq!(h.world.routes, Routes::PRIMARY);
}

#[tokio::test]
async fn a_canary_past_its_progress_deadline_is_rolled_back() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.world.canary_ready = Readiness::Waiting(
        "Waiting for podinfo.test rollout to finish: 0 of 1 updated replicas are available".into(),
    );
    h.new_revision("rev-2");
    h.step().await;
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Progressing);
    assert_eq!(
        h.world.routes,
        Routes::PRIMARY,
        "no traffic before the canary is ready"
    );
    assert!(
        h.events.contains(
            &"W: Waiting for podinfo.test rollout to finish: 0 of 1 updated replicas are available"
                .to_string()
        )
    );
    h.world.canary_ready =
        Readiness::DeadlineExceeded("podinfo.test exceeded its progress deadline".into());
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert!(h.events.contains(&"W: Rolling back podinfo.test progress deadline exceeded podinfo.test exceeded its progress deadline".to_string()), "{:#?}", h.events);
}

#[tokio::test]
async fn a_new_revision_mid_analysis_restarts_it() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    h.step().await;
    h.step().await;
    h.step().await;
    assert_eq!(h.world.routes.canary, 30);
    h.new_revision("rev-3");
    h.step().await;
    assert_eq!(h.world.routes, Routes::PRIMARY);
    assert_eq!(h.canary.status.as_ref().unwrap().canary_weight, 0);
    assert!(
        h.events
            .contains(&"New revision detected! Restarting analysis for podinfo.test".to_string())
    );
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(h.world.primary_hash, "rev-3");
}

#[tokio::test]
async fn a_config_change_is_a_new_revision() {
    let mut h = Harness::seed();
    h.world
        .configs
        .insert("configmap/podinfo-config".into(), "sum-1".into());
    h.initialize().await;
    h.step().await;
    assert!(h.events.is_empty(), "same configs, nothing to do");
    h.world
        .configs
        .insert("configmap/podinfo-config".into(), "sum-2".into());
    h.step().await;
    assert_eq!(h.events, ["New revision detected! Scaling up podinfo.test"]);
}

#[tokio::test]
async fn a_primary_that_fails_promotion_keeps_traffic_on_the_canary() {
    let mut h = Harness::new(&with_analysis(
        "",
        "    maxWeight: 20\n    stepWeight: 10\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Promoting], 10).await;
    h.world.primary_ready =
        Readiness::DeadlineExceeded("podinfo-primary.test exceeded its progress deadline".into());
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert_eq!(h.world.routes, Routes::to_canary(100));
    assert!(h.world.target_scaled_up, "the canary keeps serving");
    assert!(
        h.events
            .iter()
            .any(|e| e.starts_with("W: Promotion of podinfo.test failed, primary not ready"))
    );
}

#[tokio::test]
async fn a_suspended_canary_does_nothing() {
    let mut h = Harness::new(&with_analysis("  suspend: true\n", "    stepWeight: 10\n"));
    let d = h.step().await;
    assert!(d.actions.is_empty());
    assert_eq!(h.events, ["skipping canary run as object is suspended"]);
}

#[tokio::test]
async fn confirm_traffic_increase_gates_each_step() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 30\n    stepWeight: 10\n    webhooks:\n    - name: more\n      type: confirm-traffic-increase\n      url: http://tester/gate/check\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.world.webhooks.insert("more".into(), false);
    h.new_revision("rev-2");
    let halt = "W: Halt podinfo.test advancement waiting for traffic increase approval more";
    // Closed before every step: the weight holds wherever it is; opened for exactly
    // one run, it moves one step.
    for weight in [0, 10, 20] {
        let halts = h.events.iter().filter(|e| *e == halt).count();
        for _ in 0..3 {
            h.step().await;
            assert_eq!(h.world.routes.canary, weight, "{:#?}", h.events);
            assert!(h.phase().is_running(), "{:#?}", h.events);
        }
        assert!(
            h.events.iter().filter(|e| *e == halt).count() >= halts + 2,
            "each held run says why: {:#?}",
            h.events
        );
        h.world.webhooks.insert("more".into(), true);
        h.step().await;
        h.world.webhooks.insert("more".into(), false);
        assert_eq!(h.world.routes.canary, weight + 10, "{:#?}", h.events);
    }
    // At maxWeight the closed gate holds the promotion too, as in Flagger; opened, the
    // canary is promoted.
    for _ in 0..3 {
        h.step().await;
        assert_eq!(h.world.routes.canary, 30, "{:#?}", h.events);
        assert!(h.phase().is_running(), "{:#?}", h.events);
    }
    h.world.webhooks.insert("more".into(), true);
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded, "{:#?}", h.events);
    let passed = "Confirm-traffic-increase check more passed";
    assert!(
        h.events.iter().filter(|e| *e == passed).count() >= 4,
        "{:#?}",
        h.events
    );
}

#[tokio::test]
async fn confirm_traffic_increase_also_holds_the_promotion_at_max_weight() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 20\n    stepWeight: 10\n    webhooks:\n    - name: more\n      type: confirm-traffic-increase\n      url: http://tester/gate/check\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.new_revision("rev-2");
    for _ in 0..10 {
        h.step().await;
        if h.world.routes.canary == 20 {
            break;
        }
    }
    assert_eq!(h.world.routes.canary, 20, "{:#?}", h.events);
    h.world.webhooks.insert("more".into(), false);
    h.events.clear();
    for _ in 0..4 {
        h.step().await;
    }
    assert_eq!(h.phase(), CanaryPhase::Progressing, "{:#?}", h.events);
    assert_eq!(
        h.world.primary_hash, "rev-1",
        "not promoted while the gate is closed"
    );
    assert!(h.events.iter().any(
        |e| e == "W: Halt podinfo.test advancement waiting for traffic increase approval more"
    ));
    h.world.webhooks.insert("more".into(), true);
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
}

#[tokio::test]
async fn session_affinity_sets_cookies_for_the_router() {
    let mut h = Harness::new(&with_analysis(
        "",
        "    maxWeight: 20\n    stepWeight: 10\n    sessionAffinity:\n      cookieName: flagger-cookie\n      primaryCookieName: primary-cookie\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    h.step().await;
    let status = h.canary.status.clone().unwrap();
    let cookie = status.session_affinity_cookie.expect("a canary cookie");
    assert!(cookie.starts_with("flagger-cookie="), "{cookie}");
    assert!(
        status
            .primary_session_affinity_cookie
            .unwrap()
            .starts_with("primary-cookie=")
    );
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    let status = h.canary.status.clone().unwrap();
    assert_eq!(
        status.previous_session_affinity_cookie.as_deref(),
        Some(cookie.as_str())
    );
}

/// Crash safety: a decision whose actions ran but whose status was never written
/// (the process died in between) still reaches the same outcome.
#[tokio::test]
async fn losing_any_status_write_reaches_the_same_outcome() {
    for lost_step in 0..12 {
        let mut h = Harness::seed();
        h.initialize().await;
        h.new_revision("rev-2");
        for step in 0..40 {
            let before = h.canary.status.clone();
            h.step().await;
            if step == lost_step {
                h.canary.status = before;
            }
            if matches!(h.phase(), CanaryPhase::Succeeded | CanaryPhase::Failed) {
                break;
            }
        }
        assert_eq!(
            h.phase(),
            CanaryPhase::Succeeded,
            "lost write at step {lost_step}: {:#?}",
            h.events
        );
        assert_eq!(h.world.primary_hash, "rev-2");
        assert_eq!(h.world.routes, Routes::PRIMARY);
        assert!(!h.world.target_scaled_up);
    }
}

/// The seed canary mid-analysis at canary weight 20.
async fn mid_analysis() -> Harness {
    let mut h = Harness::seed();
    h.initialize().await;
    h.new_revision("rev-2");
    for _ in 0..10 {
        h.step().await;
        if h.world.routes.canary == 20 {
            h.events.clear();
            return h;
        }
    }
    panic!("never reached weight 20: {:#?}", h.events);
}

#[tokio::test]
async fn abort_by_hand_rolls_back_at_once_and_names_who_asked() {
    let mut h = mid_analysis().await;
    h.request("abort", "alice", Some("latency is up"));
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert_eq!(h.world.routes, Routes::PRIMARY);
    assert!(!h.world.target_scaled_up);
    assert_eq!(
        h.events[0],
        "W: Rolling back podinfo.test abort requested by alice: latency is up"
    );
    assert_eq!(h.annotation(manual::REQUEST), None, "the request is closed");
    assert_eq!(
        h.annotation(manual::RESULT).as_deref(),
        Some("abort-1 done: Rolling back podinfo.test abort requested by alice: latency is up")
    );
    // The same revision stays Failed.
    h.step().await;
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert_eq!(h.world.routes, Routes::PRIMARY);
}

#[tokio::test]
async fn promote_by_hand_skips_the_remaining_steps_through_the_promotion_path() {
    let mut h = mid_analysis().await;
    h.request("promote", "bob", None);
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Promoting);
    assert_eq!(h.world.primary_hash, "rev-2", "the primary is copied");
    h.world.primary_ready = Readiness::Waiting("primary rolling out".into());
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Promoting, "waits for the primary");
    h.world.primary_ready = Readiness::Ready;
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(h.world.routes, Routes::PRIMARY);
    assert_eq!(
        h.events[0],
        "Promotion of podinfo.test requested by bob: skipping the remaining analysis"
    );
    assert!(!h.events.iter().any(|e| e.contains("canary weight 30")));
}

#[tokio::test]
async fn a_request_that_does_not_fit_the_phase_is_refused_and_changes_nothing() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.new_revision("rev-2");
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    h.events.clear();
    let before = h.canary.status.clone();
    h.request("promote", "carol", None);
    let d = h.step().await;
    assert!(d.actions.is_empty(), "{:?}", d.actions);
    assert_eq!(h.canary.status, before);
    assert_eq!(
        h.events,
        [
            "W: Refused promote of podinfo.test requested by carol: no rollout is under way (phase Succeeded)"
        ]
    );
    assert_eq!(
        h.annotation(manual::RESULT).as_deref(),
        Some("promote-1 refused: no rollout is under way (phase Succeeded)")
    );
    assert_eq!(h.annotation(manual::REQUEST), None);
    h.request("explode", "carol", None);
    h.step().await;
    assert!(
        h.events[1]
            .starts_with("W: Refused explode of podinfo.test requested by carol: unknown request"),
        "{:?}",
        h.events
    );
}

#[tokio::test]
async fn pause_holds_the_weight_and_the_progress_deadline_does_not_count_while_paused() {
    let mut h = mid_analysis().await;
    h.request("pause", "dan", Some("checking dashboards"));
    h.step().await;
    assert!(h.annotation(manual::PAUSED).is_some());
    assert_eq!(
        h.events[0],
        "Paused podinfo.test at canary weight 20, requested by dan: checking dashboards"
    );
    // The canary stalls past its deadline while paused: nothing moves.
    h.world.canary_ready = Readiness::DeadlineExceeded("no progress".into());
    for _ in 0..5 {
        h.step().await;
    }
    assert_eq!(h.phase(), CanaryPhase::Progressing);
    assert_eq!(h.world.routes.canary, 20);
    h.request("resume", "dan", None);
    h.step().await;
    assert_eq!(h.annotation(manual::PAUSED), None);
    assert!(h.annotation(manual::RESUMED).is_some());
    // Within progressDeadlineSeconds (60s) of the resume the deadline has not passed.
    h.now -= chrono::Duration::seconds(30);
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Progressing);
    assert_eq!(h.world.routes.canary, 20);
    // Later it has.
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed, "{:#?}", h.events);
}

#[tokio::test]
async fn resume_continues_the_steps_and_pause_twice_is_refused() {
    let mut h = mid_analysis().await;
    h.request("pause", "dan", None);
    h.step().await;
    h.request("pause", "erin", None);
    h.step().await;
    assert_eq!(
        h.events.last().unwrap(),
        "W: Refused pause of podinfo.test requested by erin: the canary is already paused"
    );
    h.request("resume", "dan", None);
    h.step().await;
    assert_eq!(h.world.routes.canary, 20);
    h.step().await;
    assert_eq!(h.world.routes.canary, 30);
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
}

#[tokio::test]
async fn retry_runs_the_analysis_again_for_a_failed_revision() {
    let mut h = mid_analysis().await;
    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 69.17% < 99%".into(),
    );
    assert_eq!(h.rollout().await, CanaryPhase::Failed);
    h.request("retry", "frank", None);
    h.world.metric_halts.clear();
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Progressing);
    assert!(h.world.target_scaled_up);
    assert_eq!(h.canary.status.as_ref().unwrap().failed_checks, 0);
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    assert_eq!(h.world.primary_hash, "rev-2", "the same target revision");
    assert!(
        h.events
            .contains(&"Retrying the analysis of podinfo.test requested by frank".to_string())
    );
}

#[tokio::test]
async fn promote_and_abort_at_a_closed_confirm_rollout_gate() {
    let yaml = with_analysis(
        "",
        "    stepWeight: 50\n    webhooks:\n    - name: gate\n      type: confirm-rollout\n      url: http://tester/gate/check\n",
    );
    for (kind, end) in [
        ("promote", CanaryPhase::Succeeded),
        ("abort", CanaryPhase::Failed),
    ] {
        let mut h = Harness::new(&yaml);
        h.initialize().await;
        h.world.webhooks.insert("gate".into(), false);
        h.new_revision("rev-2");
        h.step().await;
        assert_eq!(h.phase(), CanaryPhase::Waiting);
        h.request(kind, "gina", None);
        h.run_until(&[end], 5).await;
        // The revision is taken: it does not start again at the next run.
        h.step().await;
        h.step().await;
        assert_eq!(h.phase(), end, "{kind}: {:#?}", h.events);
        let expected_primary = if kind == "promote" { "rev-2" } else { "rev-1" };
        assert_eq!(h.world.primary_hash, expected_primary);
        assert_eq!(h.world.routes, Routes::PRIMARY);
    }
}

/// The Promoted condition of the canary's status.
fn promoted(h: &Harness) -> serin_api::canary::CanaryCondition {
    h.canary
        .status
        .as_ref()
        .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Promoted"))
        .cloned()
        .expect("a Promoted condition")
}

#[tokio::test]
async fn every_status_write_moves_last_transition_time_but_not_an_unchanged_condition() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    let progressing = promoted(&h);
    // Two steps of the analysis: each writes the status (a new weight).
    for _ in 0..2 {
        let at = h.now;
        let d = h.step().await;
        let status = d.status.expect("a step writes the status");
        // As Flagger: the time of the write, shown by `kubectl get canaries`.
        assert_eq!(
            status.last_transition_time,
            Some(serin_api::clock::k8s_time(at))
        );
        // The condition says the same thing as before: Flagger leaves it as it was.
        assert_eq!(promoted(&h), progressing);
    }
    // A failed check is a write too.
    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 69.17% < 99%".into(),
    );
    let at = h.now;
    let status = h.step().await.status.expect("failedChecks written");
    assert_eq!(status.failed_checks, 1);
    assert_eq!(
        status.last_transition_time,
        Some(serin_api::clock::k8s_time(at))
    );
    assert_eq!(promoted(&h), progressing);
}

#[tokio::test]
async fn a_success_keeps_failed_checks_as_flagger_writes_it() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    h.step().await; // pre-rollout, first step
    h.world.metric_halts.insert(
        "request-duration".into(),
        "Halt podinfo.test advancement request duration 1.515s > 500ms".into(),
    );
    h.step().await;
    h.world.metric_halts.clear();
    assert_eq!(h.rollout().await, CanaryPhase::Succeeded);
    let status = h.canary.status.clone().unwrap();
    // Flagger's Succeeded status resets weight and iterations, not failedChecks.
    assert_eq!(
        (
            status.canary_weight,
            status.iterations,
            status.failed_checks
        ),
        (0, 0, 1)
    );

    // A rollback resets them all.
    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 69.17% < 99%".into(),
    );
    h.new_revision("rev-3");
    assert_eq!(h.rollout().await, CanaryPhase::Failed);
    let status = h.canary.status.clone().unwrap();
    assert_eq!(
        (
            status.canary_weight,
            status.iterations,
            status.failed_checks
        ),
        (0, 0, 0)
    );
}

#[tokio::test]
async fn an_ab_canary_shows_weight_0_and_finalising_resets_the_iterations() {
    let mut h = Harness::new(&with_analysis(
        "",
        "    iterations: 2\n    match:\n    - headers:\n        x-canary: {exact: insider}\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    let mut seen = Vec::new();
    for _ in 0..20 {
        h.step().await;
        let s = h.canary.status.clone().unwrap();
        seen.push((s.phase, s.canary_weight, s.iterations));
        if s.phase == CanaryPhase::Succeeded {
            break;
        }
    }
    assert_eq!(h.phase(), CanaryPhase::Succeeded, "{:#?}", h.events);
    // The matching requests went to the canary...
    assert!(
        h.events
            .iter()
            .any(|e| e == "Advance podinfo.test canary iteration 2/2")
    );
    // ...but `kubectl get canaries` shows weight 0 all along, as Flagger writes it.
    assert!(seen.iter().all(|(_, w, _)| *w == 0), "{seen:?}");
    assert!(seen.contains(&(CanaryPhase::Progressing, 0, 2)), "{seen:?}");
    assert!(seen.contains(&(CanaryPhase::Finalising, 0, 0)), "{seen:?}");
}

#[tokio::test]
async fn the_kubernetes_provider_finalises_with_iterations_back_to_0() {
    let mut h = Harness::new(&with_analysis(
        "  provider: kubernetes\n",
        "    iterations: 2\n",
    ));
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Finalising], 20).await;
    let s = h.canary.status.clone().unwrap();
    assert_eq!((s.canary_weight, s.iterations), (0, 0));
}

#[tokio::test]
async fn rollback_hooks_speak_flaggers_words() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 50\n    stepWeight: 10\n    webhooks:\n    - name: abort\n      type: rollback\n      url: http://tester/rollback/check\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.world.webhooks.insert("abort".into(), false);
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    h.events.clear();
    h.step().await;
    assert_eq!(
        h.events,
        [
            "Rollback hook abort not signaling a rollback",
            "Starting canary analysis for podinfo.test",
            "Advance podinfo.test canary weight 10",
        ]
    );
    h.events.clear();
    h.world.webhooks.insert("abort".into(), true);
    h.step().await;
    assert_eq!(h.phase(), CanaryPhase::Failed);
    assert_eq!(
        h.events,
        [
            "W: Rollback check abort passed",
            "W: Rolling back podinfo.test manual webhook invoked",
            "W: Canary failed! Scaling down podinfo.test",
        ]
    );
}

#[tokio::test]
async fn post_rollout_results_go_before_promotion_completed_and_after_canary_failed() {
    let mut h = Harness::seed();
    h.initialize().await;
    h.new_revision("rev-2");
    let mut last = None;
    for _ in 0..30 {
        let d = h.step().await;
        if h.phase() == CanaryPhase::Succeeded {
            last = Some(d);
            break;
        }
    }
    let d = last.expect("promoted");
    assert!(
        d.actions
            .contains(&Action::RunPostRolloutHooks(CanaryPhase::Succeeded))
    );
    let messages: Vec<_> = d.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages[d.post_rollout_after..],
        ["Promotion completed! Scaling down podinfo.test"],
        "the hooks' results come before this: {messages:?}"
    );

    h.world.metric_halts.insert(
        "request-success-rate".into(),
        "Halt podinfo.test advancement success rate 69.17% < 99%".into(),
    );
    h.new_revision("rev-3");
    let mut last = None;
    for _ in 0..30 {
        let d = h.step().await;
        if h.phase() == CanaryPhase::Failed {
            last = Some(d);
            break;
        }
    }
    let d = last.expect("rolled back");
    let messages: Vec<_> = d.events.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(
        messages[..d.post_rollout_after].last(),
        Some(&"Canary failed! Scaling down podinfo.test"),
        "{messages:?}"
    );
    assert_eq!(messages.len(), d.post_rollout_after, "{messages:?}");
}

#[tokio::test]
async fn metrics_are_checked_in_flaggers_order_and_a_builtin_name_with_a_template_twice() {
    let yaml = with_analysis(
        "",
        "    maxWeight: 50\n    stepWeight: 10\n    metrics:\n    - name: error-rate\n      templateRef: {name: error-rate}\n      thresholdRange: {max: 1}\n    - name: request-success-rate\n      templateRef: {name: success-rate}\n      thresholdRange: {min: 99}\n    - name: request-duration\n      thresholdRange: {max: 500}\n",
    );
    let mut h = Harness::new(&yaml);
    h.initialize().await;
    h.new_revision("rev-2");
    h.run_until(&[CanaryPhase::Progressing], 2).await;
    h.step().await; // the first step runs no metric
    h.world.metric_calls.clear();
    h.step().await;
    // Flagger runs the built-in checks (a built-in name runs its built-in query even
    // with a templateRef), then every MetricTemplate.
    assert_eq!(
        h.world.metric_calls,
        [
            ("request-success-rate".to_string(), false),
            ("request-duration".to_string(), false),
            ("error-rate".to_string(), true),
            ("request-success-rate".to_string(), true),
        ]
    );
}
