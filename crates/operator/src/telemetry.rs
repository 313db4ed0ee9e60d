//! The operator's own metrics, under Flagger's names, labels and values
//! (fluxcd/flagger pkg/metrics/recorder.go), so existing dashboards and alert rules
//! such as `flagger_canary_status > 1` show the same numbers, and the /metrics,
//! /healthz and /readyz endpoints.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryStatus};
use serin_api::manual::CheckResult;
use serin_metrics::builtin::BuiltinMetric;

type Labels = Vec<(String, String)>;

/// The buckets of `flagger_canary_duration_seconds`: Flagger's histogram uses
/// client_golang's `prometheus.DefBuckets`.
pub const DURATION_BUCKETS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// Flagger's `analysis_status` label: `completed` for a promotion or rollback after
/// an analysis, `skipped` for a promotion without one.
const ANALYSIS_COMPLETED: &str = "completed";
const ANALYSIS_SKIPPED: &str = "skipped";

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// Whole bucket bounds as Go's client writes them (`le="1"`, not `le="1.0"`), so
/// a rule or panel that selects one of Flagger's buckets by its bound finds it
/// (Prometheus before 3.0 compares `le` as a string).
fn go_bucket_bounds(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find("le=\"") {
        let label_start = i == 0 || matches!(rest.as_bytes()[i - 1], b'{' | b',');
        let (head, tail) = rest.split_at(i + 4);
        out.push_str(head);
        let end = tail.find('"').unwrap_or(tail.len());
        let value = &tail[..end];
        let whole = value
            .strip_suffix(".0")
            .filter(|v| label_start && !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
        out.push_str(whole.unwrap_or(value));
        rest = &tail[end..];
    }
    out.push_str(rest);
    out
}

/// What one run of a canary did, for the metrics.
#[derive(Debug, Clone)]
pub struct RunReport<'a> {
    /// The phase before the run; `None` for a canary without a status yet.
    pub before: Option<CanaryPhase>,
    /// The status after the run.
    pub status: &'a CanaryStatus,
    /// The last traffic split the run set, `(primary, canary)`, if it set one.
    pub routes: Option<(i32, i32)>,
    /// How long the run took.
    pub took: Duration,
}

/// What the metrics remember of one canary (by namespace and Canary name).
#[derive(Debug, Clone, Default)]
struct Seen {
    /// The target's name: Flagger's `name` label.
    target: String,
    /// The analysis metrics with a `flagger_canary_metric_analysis` series.
    metrics: BTreeSet<String>,
    /// Whether `flagger_canary_weight` has series for this canary.
    weighted: bool,
}

/// Flagger's metrics of the canaries this operator runs.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Mutex<Registry>>,
    status: Family<Labels, Gauge>,
    weight: Family<Labels, Gauge>,
    total: Family<Labels, Gauge>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    analysis: Family<Labels, Gauge<f64, AtomicU64>>,
    successes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    /// The canaries seen, by `(namespace, name)`.
    seen: Arc<Mutex<HashMap<(String, String), Seen>>>,
    /// What /readyz answers (see [`crate::health`]).
    health: crate::health::Health,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn key_and_target(canary: &Canary) -> ((String, String), String) {
    let namespace = canary.metadata.namespace.clone().unwrap_or_default();
    let name = canary.metadata.name.clone().unwrap_or_default();
    ((namespace, name), canary.spec.target_ref.name.clone())
}

impl Telemetry {
    pub fn new(mesh_provider: &str) -> Self {
        let mut registry = Registry::default();
        let status = Family::<Labels, Gauge>::default();
        let weight = Family::<Labels, Gauge>::default();
        let total = Family::<Labels, Gauge>::default();
        let duration = Family::<Labels, Histogram, fn() -> Histogram>::new_with_constructor(
            duration_histogram,
        );
        let analysis = Family::<Labels, Gauge<f64, AtomicU64>>::default();
        let successes = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let info = Family::<Labels, Gauge>::default();
        registry.register(
            "flagger_info",
            "Flagger version and mesh provider information",
            info.clone(),
        );
        registry.register(
            "flagger_canary_duration_seconds",
            "Seconds spent performing canary analysis",
            duration.clone(),
        );
        registry.register(
            "flagger_canary_total",
            "Total number of canary object",
            total.clone(),
        );
        registry.register(
            "flagger_canary_status",
            "Last canary analysis result: 0 progressing, 1 any other phase, 2 failed",
            status.clone(),
        );
        registry.register(
            "flagger_canary_weight",
            "The virtual service destination weight current value",
            weight.clone(),
        );
        registry.register(
            "flagger_canary_metric_analysis",
            "Last canary analysis result per metric",
            analysis.clone(),
        );
        registry.register(
            "flagger_canary_successes",
            "Total number of canary successes",
            successes.clone(),
        );
        registry.register(
            "flagger_canary_failures",
            "Total number of canary failures",
            failures.clone(),
        );
        info.get_or_create(&labels(&[
            ("version", env!("CARGO_PKG_VERSION")),
            ("mesh_provider", mesh_provider),
        ]))
        .set(1);
        Self {
            registry: Arc::new(Mutex::new(registry)),
            status,
            weight,
            total,
            duration,
            analysis,
            successes,
            failures,
            seen: Arc::new(Mutex::new(HashMap::new())),
            health: crate::health::Health::default(),
        }
    }

    /// Registers more metrics (the alert counters) in the same registry.
    pub fn register(&self, f: impl FnOnce(&mut Registry)) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut registry);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let _ = encode(&mut out, &registry);
        go_bucket_bounds(&out)
    }

    /// The operator has started (readiness also needs the API server and the watches).
    pub fn set_ready(&self, ready: bool) {
        self.health.set_started(ready);
    }

    pub fn is_ready(&self) -> bool {
        self.health.is_ready()
    }

    /// The readiness state the controller's watches and the API probe report to.
    pub fn health(&self) -> &crate::health::Health {
        &self.health
    }

    /// Records one run of a canary as Flagger's recorder does: the status gauge, the
    /// weights, the totals, a success or failure when the run ended an analysis, and
    /// the run's duration when it was an analysis step.
    pub fn observe_run(&self, canary: &Canary, run: &RunReport<'_>) {
        let (key, target) = key_and_target(canary);
        let namespace = key.0.clone();
        let phase = run.status.phase;
        self.status
            .get_or_create(&labels(&[("name", &target), ("namespace", &namespace)]))
            .set(phase.status_gauge());
        let weighted = {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let entry = seen.entry(key).or_default();
            if entry.target != target {
                // A new target (or the first run): its weight comes from the status.
                entry.target = target.clone();
                entry.weighted = false;
            }
            std::mem::replace(&mut entry.weighted, true)
        };
        // Flagger sets the weights from the routes it reads or sets; serin's routes
        // change only through the runs' SetRoutes, so the last one set is the split.
        let split = run.routes.or_else(|| {
            (!weighted).then(|| (100 - run.status.canary_weight, run.status.canary_weight))
        });
        if let Some((primary, canary_weight)) = split {
            self.weight
                .get_or_create(&labels(&[
                    ("workload", &format!("{target}-primary")),
                    ("namespace", &namespace),
                ]))
                .set(i64::from(primary));
            self.weight
                .get_or_create(&labels(&[("workload", &target), ("namespace", &namespace)]))
                .set(i64::from(canary_weight));
        }
        if run.before != Some(phase) {
            let status = if phase == CanaryPhase::Succeeded && canary.skips_analysis() {
                ANALYSIS_SKIPPED
            } else {
                ANALYSIS_COMPLETED
            };
            let set = labels(&[
                ("name", &target),
                ("namespace", &namespace),
                ("deployment_strategy", canary.strategy().as_str()),
                ("analysis_status", status),
            ]);
            match phase {
                CanaryPhase::Succeeded => {
                    self.successes.get_or_create(&set).inc();
                }
                CanaryPhase::Failed => {
                    self.failures.get_or_create(&set).inc();
                }
                _ => {}
            }
        }
        // Flagger times the runs that reach the analysis: a canary that is
        // progressing (or waiting for promotion) and is not rolled back or promoted
        // without analysis in that run.
        let analysing =
            |p: CanaryPhase| matches!(p, CanaryPhase::Progressing | CanaryPhase::WaitingPromotion);
        if run.before.is_some_and(analysing)
            && (analysing(phase)
                || matches!(phase, CanaryPhase::Promoting | CanaryPhase::Finalising))
            && !canary.skips_analysis()
        {
            self.duration
                .get_or_create(&labels(&[("name", &target), ("namespace", &namespace)]))
                .observe(run.took.as_secs_f64());
        }
        self.update_total(&namespace);
    }

    /// Records the value each analysis metric gave in a run, as
    /// `flagger_canary_metric_analysis{name,namespace,metric}`. Flagger reports the
    /// built-in request duration in seconds (serin checks it in milliseconds).
    pub fn observe_checks(&self, canary: &Canary, checks: &[CheckResult]) {
        let (key, target) = key_and_target(canary);
        let namespace = key.0.clone();
        let metrics = canary
            .analysis()
            .map(|a| a.metrics.as_slice())
            .unwrap_or_default();
        let mut recorded = Vec::new();
        for check in checks.iter().filter(|c| c.kind == "metric") {
            let Some(value) = check.value.filter(|v| v.is_finite()) else {
                continue;
            };
            let builtin_duration = metrics.iter().any(|m| {
                m.name == check.name
                    && m.template_ref.is_none()
                    && BuiltinMetric::from_name(&m.name) == Some(BuiltinMetric::RequestDuration)
            });
            let value = if builtin_duration {
                value / 1000.0
            } else {
                value
            };
            self.analysis
                .get_or_create(&labels(&[
                    ("name", &target),
                    ("namespace", &namespace),
                    ("metric", &check.name),
                ]))
                .set(value);
            recorded.push(check.name.clone());
        }
        if !recorded.is_empty() {
            let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            let entry = seen.entry(key).or_default();
            if entry.target.is_empty() {
                entry.target = target;
            }
            entry.metrics.extend(recorded);
        }
    }

    /// Forgets a deleted canary: its gauges go (its counters and histogram stay, as
    /// counters do).
    pub fn forget(&self, canary: &Canary) {
        let (key, target) = key_and_target(canary);
        let namespace = key.0.clone();
        let seen = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&key)
            .unwrap_or_default();
        let target = if seen.target.is_empty() {
            target
        } else {
            seen.target
        };
        self.status
            .remove(&labels(&[("name", &target), ("namespace", &namespace)]));
        for workload in [format!("{target}-primary"), target.clone()] {
            self.weight.remove(&labels(&[
                ("workload", &workload),
                ("namespace", &namespace),
            ]));
        }
        for metric in &seen.metrics {
            self.analysis.remove(&labels(&[
                ("name", &target),
                ("namespace", &namespace),
                ("metric", metric),
            ]));
        }
        self.update_total(&namespace);
    }

    fn update_total(&self, namespace: &str) {
        let count = self
            .seen
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|((ns, _), s)| ns == namespace && !s.target.is_empty())
            .count();
        self.total
            .get_or_create(&labels(&[("namespace", namespace)]))
            .set(count as i64);
    }

    /// The HTTP endpoints: /metrics, /healthz, /readyz.
    pub fn router(&self) -> axum::Router {
        use axum::http::StatusCode;
        use axum::routing::get;
        let metrics = self.clone();
        let ready = self.clone();
        axum::Router::new()
            .route(
                "/metrics",
                get(move || {
                    let t = metrics.clone();
                    async move {
                        (
                            [(
                                axum::http::header::CONTENT_TYPE,
                                "text/plain; version=0.0.4; charset=utf-8",
                            )],
                            t.render(),
                        )
                    }
                }),
            )
            .route("/healthz", get(|| async { "ok" }))
            .route(
                "/readyz",
                get(move || {
                    let t = ready.clone();
                    async move {
                        match t.health.check() {
                            Ok(()) => (StatusCode::OK, "ok".to_string()),
                            Err(reasons) => (
                                StatusCode::SERVICE_UNAVAILABLE,
                                format!("not ready: {}\n", reasons.join("\n")),
                            ),
                        }
                    }
                }),
            )
    }

    /// Serves the endpoints on `listener` until the future is dropped.
    pub async fn serve(self, listener: tokio::net::TcpListener) -> std::io::Result<()> {
        axum::serve(listener, self.router()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn canary(name: &str, target: &str, analysis: serde_json::Value) -> Canary {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                "service": {"port": 9898},
                "analysis": analysis,
            }
        }))
        .unwrap()
    }

    fn run<'a>(
        before: Option<CanaryPhase>,
        status: &'a CanaryStatus,
        routes: Option<(i32, i32)>,
    ) -> RunReport<'a> {
        RunReport {
            before,
            status,
            routes,
            took: Duration::from_millis(30),
        }
    }

    fn status(phase: CanaryPhase, weight: i32) -> CanaryStatus {
        CanaryStatus {
            phase,
            canary_weight: weight,
            ..Default::default()
        }
    }

    #[test]
    fn status_is_one_for_every_phase_but_progressing_and_failed() {
        use CanaryPhase::*;
        for phase in [
            Initializing,
            Initialized,
            Waiting,
            WaitingPromotion,
            Promoting,
            Finalising,
            Succeeded,
            Terminating,
            Terminated,
        ] {
            assert_eq!(phase.status_gauge(), 1, "{phase:?}");
        }
        assert_eq!(Progressing.status_gauge(), 0);
        assert_eq!(Failed.status_gauge(), 2);
    }

    #[test]
    fn series_carry_the_target_name_and_the_analysis_status() {
        let t = Telemetry::new("istio");
        let c = canary(
            "app-rollout",
            "podinfo",
            serde_json::json!({"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10}),
        );
        let s = status(CanaryPhase::Progressing, 10);
        t.observe_run(&c, &run(Some(CanaryPhase::Succeeded), &s, Some((90, 10))));
        let s = status(CanaryPhase::Failed, 0);
        t.observe_run(&c, &run(Some(CanaryPhase::Progressing), &s, Some((100, 0))));
        let text = t.render();
        for line in [
            "flagger_canary_status{name=\"podinfo\",namespace=\"test\"} 2",
            "flagger_canary_weight{workload=\"podinfo-primary\",namespace=\"test\"} 100",
            "flagger_canary_weight{workload=\"podinfo\",namespace=\"test\"} 0",
            "flagger_canary_failures_total{name=\"podinfo\",namespace=\"test\",deployment_strategy=\"canary\",analysis_status=\"completed\"} 1",
            "flagger_canary_total{namespace=\"test\"} 1",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        assert!(!text.contains("app-rollout"), "{text}");
        assert!(text.contains("flagger_info{version="), "{text}");
    }

    #[test]
    fn a_promotion_without_analysis_is_skipped() {
        let t = Telemetry::new("istio");
        let mut c = canary(
            "podinfo",
            "podinfo",
            serde_json::json!({"interval": "1m", "threshold": 2, "iterations": 3}),
        );
        c.spec.skip_analysis = true;
        let s = status(CanaryPhase::Succeeded, 0);
        t.observe_run(&c, &run(Some(CanaryPhase::Progressing), &s, Some((100, 0))));
        // The same phase again is no new success.
        t.observe_run(&c, &run(Some(CanaryPhase::Succeeded), &s, None));
        let text = t.render();
        assert!(
            text.contains("flagger_canary_successes_total{name=\"podinfo\",namespace=\"test\",deployment_strategy=\"blue-green\",analysis_status=\"skipped\"} 1"),
            "{text}"
        );
    }

    #[test]
    fn metric_values_and_the_request_duration_in_seconds() {
        let t = Telemetry::new("istio");
        let c = canary(
            "podinfo",
            "podinfo",
            serde_json::json!({"interval": "1m", "threshold": 2, "iterations": 3, "metrics": [
                {"name": "request-success-rate", "thresholdRange": {"min": 99}},
                {"name": "request-duration", "thresholdRange": {"max": 500}},
                {"name": "latency", "templateRef": {"name": "latency"}, "thresholdRange": {"max": 0.5}},
            ]}),
        );
        let check = |name: &str, value: Option<f64>| {
            let mut r = CheckResult::new("metric", name, true, None);
            r.value = value;
            r
        };
        t.observe_checks(
            &c,
            &[
                check("request-success-rate", Some(99.5)),
                check("request-duration", Some(250.0)),
                check("latency", Some(0.25)),
                check("error-rate", None),
                CheckResult::new("pre-rollout", "acceptance", true, None),
            ],
        );
        let text = t.render();
        for line in [
            "flagger_canary_metric_analysis{name=\"podinfo\",namespace=\"test\",metric=\"request-success-rate\"} 99.5",
            "flagger_canary_metric_analysis{name=\"podinfo\",namespace=\"test\",metric=\"request-duration\"} 0.25",
            "flagger_canary_metric_analysis{name=\"podinfo\",namespace=\"test\",metric=\"latency\"} 0.25",
        ] {
            assert!(text.contains(line), "no {line} in\n{text}");
        }
        assert!(!text.contains("error-rate"), "{text}");
        assert!(!text.contains("acceptance"), "{text}");
        t.forget(&c);
        let text = t.render();
        assert!(!text.contains("flagger_canary_metric_analysis{"), "{text}");
    }

    #[test]
    fn durations_use_flaggers_buckets_and_only_analysis_runs() {
        let t = Telemetry::new("istio");
        let c = canary(
            "podinfo",
            "podinfo",
            serde_json::json!({"interval": "1m", "threshold": 2, "maxWeight": 50, "stepWeight": 10}),
        );
        let idle = status(CanaryPhase::Succeeded, 0);
        t.observe_run(&c, &run(Some(CanaryPhase::Succeeded), &idle, None));
        let step = status(CanaryPhase::Progressing, 20);
        t.observe_run(
            &c,
            &run(Some(CanaryPhase::Progressing), &step, Some((80, 20))),
        );
        let text = t.render();
        let bounds: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("flagger_canary_duration_seconds_bucket{"))
            .filter_map(|l| l.split("le=\"").nth(1)?.split('"').next())
            .collect();
        assert_eq!(
            bounds,
            [
                "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10",
                "+Inf"
            ],
            "{text}"
        );
        assert!(
            text.contains(
                "flagger_canary_duration_seconds_count{name=\"podinfo\",namespace=\"test\"} 1"
            ),
            "{text}"
        );
    }
}
