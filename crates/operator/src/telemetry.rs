//! The operator's own metrics, under Flagger's names so existing dashboards and the
//! alert rule `flagger_canary_status > 1` keep working, and the /metrics, /healthz and
//! /readyz endpoints.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryStatus};

type Labels = Vec<(String, String)>;

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Flagger's metrics of the canaries this operator runs.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Mutex<Registry>>,
    status: Family<Labels, Gauge>,
    weight: Family<Labels, Gauge>,
    total: Family<Labels, Gauge>,
    duration: Family<Labels, Histogram, fn() -> Histogram>,
    successes: Family<Labels, Counter>,
    failures: Family<Labels, Counter>,
    /// Last phase seen per canary (`namespace/name`), for totals and transitions.
    phases: Arc<Mutex<HashMap<(String, String), CanaryPhase>>>,
    /// What /readyz answers (see [`crate::health`]).
    health: crate::health::Health,
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
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
        let successes = Family::<Labels, Counter>::default();
        let failures = Family::<Labels, Counter>::default();
        let info = Family::<Labels, Gauge>::default();
        registry.register(
            "flagger_canary_status",
            "Last canary analysis result: 0 running, 1 successful, 2 failed",
            status.clone(),
        );
        registry.register(
            "flagger_canary_weight",
            "The virtual service destination weight current value",
            weight.clone(),
        );
        registry.register(
            "flagger_canary_total",
            "Total number of canary object",
            total.clone(),
        );
        registry.register(
            "flagger_canary_duration_seconds",
            "Seconds spent performing canary analysis",
            duration.clone(),
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
        registry.register(
            "flagger_info",
            "Flagger version and mesh provider information",
            info.clone(),
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
            successes,
            failures,
            phases: Arc::new(Mutex::new(HashMap::new())),
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
        out
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

    pub fn observe_run(&self, namespace: &str, name: &str, took: Duration) {
        self.duration
            .get_or_create(&labels(&[("name", name), ("namespace", namespace)]))
            .observe(took.as_secs_f64());
    }

    /// Records a canary's status after a run.
    pub fn observe_status(&self, canary: &Canary, status: &CanaryStatus) {
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let name = canary.metadata.name.clone().unwrap_or_default();
        let target = canary.spec.target_ref.name.clone();
        self.status
            .get_or_create(&labels(&[("name", &name), ("namespace", &namespace)]))
            .set(status.phase.status_gauge());
        self.weight
            .get_or_create(&labels(&[
                ("workload", &format!("{target}-primary")),
                ("namespace", &namespace),
            ]))
            .set(i64::from(100 - status.canary_weight));
        self.weight
            .get_or_create(&labels(&[("workload", &target), ("namespace", &namespace)]))
            .set(i64::from(status.canary_weight));
        let previous = {
            let mut phases = self.phases.lock().unwrap_or_else(|p| p.into_inner());
            phases.insert((namespace.clone(), name.clone()), status.phase)
        };
        if previous.is_some_and(|p| p != status.phase) {
            let set = labels(&[
                ("name", &name),
                ("namespace", &namespace),
                ("deployment_strategy", canary.strategy().as_str()),
            ]);
            match status.phase {
                CanaryPhase::Succeeded => {
                    self.successes.get_or_create(&set).inc();
                }
                CanaryPhase::Failed => {
                    self.failures.get_or_create(&set).inc();
                }
                _ => {}
            }
        }
        self.update_total(&namespace);
    }

    /// Forgets a deleted canary.
    pub fn forget(&self, canary: &Canary) {
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let name = canary.metadata.name.clone().unwrap_or_default();
        self.phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(namespace.clone(), name.clone()));
        self.status
            .remove(&labels(&[("name", &name), ("namespace", &namespace)]));
        self.update_total(&namespace);
    }

    fn update_total(&self, namespace: &str) {
        let count = self
            .phases
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .filter(|(ns, _)| ns == namespace)
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

    #[test]
    fn renders_flagger_names() {
        let t = Telemetry::new("istio");
        let mut canary = Canary::new("podinfo", Default::default());
        canary.metadata.namespace = Some("test".into());
        canary.spec.target_ref.name = "podinfo".into();
        let mut status = CanaryStatus {
            phase: CanaryPhase::Progressing,
            canary_weight: 20,
            ..Default::default()
        };
        t.observe_status(&canary, &status);
        status.phase = CanaryPhase::Failed;
        status.canary_weight = 0;
        t.observe_status(&canary, &status);
        let text = t.render();
        assert!(
            text.contains("flagger_canary_status{name=\"podinfo\",namespace=\"test\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "flagger_canary_weight{workload=\"podinfo-primary\",namespace=\"test\"} 100"
            ),
            "{text}"
        );
        assert!(text.contains("flagger_canary_failures_total{name=\"podinfo\",namespace=\"test\",deployment_strategy=\"canary\"} 1"), "{text}");
        assert!(
            text.contains("flagger_canary_total{namespace=\"test\"} 1"),
            "{text}"
        );
        assert!(text.contains("flagger_info{version="), "{text}");
    }
}
