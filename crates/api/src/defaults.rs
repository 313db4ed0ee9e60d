//! Every default value of the API, in one place.

use std::time::Duration;

/// `analysis.interval` when unset.
pub const ANALYSIS_INTERVAL: Duration = Duration::from_secs(60);
/// The shortest analysis interval serin schedules.
pub const MIN_ANALYSIS_INTERVAL: Duration = Duration::from_secs(10);
/// `progressDeadlineSeconds` when unset.
pub const PROGRESS_DEADLINE_SECONDS: u64 = 600;
/// `primaryReadyThreshold` and `canaryReadyThreshold` (percent of ready pods).
pub const READY_THRESHOLD: i32 = 100;
/// A metric's `interval` when unset.
pub const METRIC_INTERVAL: &str = "1m";
/// `analysis.maxWeight` when unset.
pub const MAX_WEIGHT: i32 = 100;
/// A webhook's `timeout` when unset.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// The traffic provider when `spec.provider` is unset.
pub const PROVIDER: &str = "istio";
/// `sessionAffinity.maxAge` when unset (one day).
pub const SESSION_AFFINITY_MAX_AGE: i32 = 86400;
/// The gateway of a VirtualService when `service.gateways` is empty.
pub const MESH_GATEWAY: &str = "mesh";
/// Labels that select a workload's pods, in the order they are looked for.
pub const SELECTOR_LABELS: [&str; 3] = ["app", "name", "app.kubernetes.io/name"];

/// Traffic providers serin knows.
pub const PROVIDERS: [&str; 4] = ["istio", "kubernetes", "gatewayapi:v1", "gatewayapi:v1beta1"];
/// Target kinds serin can run a canary for.
pub const TARGET_KINDS: [&str; 2] = ["Deployment", "DaemonSet"];
/// Built-in metric names, with the old names kept for v1alpha3 documents.
pub const BUILTIN_METRICS: [&str; 2] = ["request-success-rate", "request-duration"];
/// Old built-in metric names and the names they stand for.
pub const LEGACY_METRIC_NAMES: [(&str, &str); 2] = [
    ("istio_requests_total", "request-success-rate"),
    ("istio_request_duration_seconds_bucket", "request-duration"),
];
/// Alert provider types serin can send to.
pub const ALERT_PROVIDER_TYPES: [&str; 5] = ["slack", "msteams", "discord", "rocket", "gchat"];
