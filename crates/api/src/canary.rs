//! `flagger.app/v1beta1` Canary: the spec users write and the status serin keeps.
//!
//! Field names follow Flagger's API exactly, so existing manifests load unchanged.
//! Every struct keeps the fields it does not know in `extra`.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::duration::parse_duration;
use crate::istio::{CorsPolicy, HTTPMatchRequest, HTTPRetry, Headers};
use crate::schema::{Extra, free_form_object, lenient_string_map, string_map_schema};

#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "Canary",
    plural = "canaries",
    namespaced,
    status = "CanaryStatus",
    category = "all",
    printcolumn = r#"{"name":"Status","type":"string","jsonPath":".status.phase"}"#,
    printcolumn = r#"{"name":"Weight","type":"string","jsonPath":".status.canaryWeight"}"#,
    printcolumn = r#"{"name":"FailedChecks","type":"string","priority":1,"jsonPath":".status.failedChecks"}"#,
    printcolumn = r#"{"name":"Interval","type":"string","priority":1,"jsonPath":".spec.analysis.interval"}"#,
    printcolumn = r#"{"name":"Mirror","type":"boolean","priority":1,"jsonPath":".spec.analysis.mirror"}"#,
    printcolumn = r#"{"name":"StepWeight","type":"string","priority":1,"jsonPath":".spec.analysis.stepWeight"}"#,
    printcolumn = r#"{"name":"StepWeights","type":"string","priority":1,"jsonPath":".spec.analysis.stepWeights"}"#,
    printcolumn = r#"{"name":"MaxWeight","type":"string","priority":1,"jsonPath":".spec.analysis.maxWeight"}"#,
    printcolumn = r#"{"name":"LastTransitionTime","type":"string","jsonPath":".status.lastTransitionTime"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct CanarySpec {
    /// Traffic provider: `istio` (default) or `kubernetes` (blue/green with services).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Prometheus address for the built-in metrics of this canary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_server: Option<String>,
    pub target_ref: LocalObjectReference,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaler_ref: Option<AutoscalerReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress_ref: Option<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route_ref: Option<LocalObjectReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_ref: Option<CrossNamespaceObjectReference>,
    pub service: CanaryService,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysis: Option<CanaryAnalysis>,
    /// The pre-v1beta1 name of `analysis`; normalised into `analysis` on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary_analysis: Option<CanaryAnalysis>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub progress_deadline_seconds: Option<i32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub skip_analysis: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub revert_on_deletion: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub suspend: bool,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CrossNamespaceObjectReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerReference {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_queries: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_scaler_replicas: Option<ScalerReplicas>,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScalerReplicas {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_replicas: Option<i32>,
}

/// The `service` block: how the apex, primary and canary services and the Istio
/// routes are made.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryService {
    /// Apex service name; the target's name when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    // Not `min = 1`: the schema's default for an omitted port is 0 (serin validate says
    // it is required), and kube-apiserver refuses a CRD whose default breaks its bounds.
    #[serde(default)]
    #[schemars(range(min = 0, max = 65535))]
    pub port: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<IntOrString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_distribution: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub port_discovery: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub headless: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::schema::DURATION_PATTERN))]
    pub timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_timeout: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::free_form_list")]
    pub gateway_refs: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub delegation: bool,
    /// Istio DestinationRule traffic policy, kept as written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "free_form_object")]
    pub traffic_policy: Option<serde_json::Value>,
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<HTTPMatchRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HTTPRewrite>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HTTPRetry>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "crate::schema::free_form_list")]
    pub mirror: Vec<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mesh_name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backends: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub apex: Option<CustomMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary: Option<CustomMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<CustomMetadata>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unmanaged_metadata: Option<UnmanagedMetadata>,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRewrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<String>,
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CustomMetadata {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnmanagedMetadata {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<String>,
}

/// The `analysis` block: schedule, strategy, checks and hooks.
// The CRD refuses at apply time what can be refused there: weights outside 0-100,
// negative counts, intervals that are not Go durations, a stepWeight above maxWeight,
// stepWeights that do not increase (crate::schema has the rules' text).
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": crate::schema::STEP_WEIGHT_RULE,
    "message": crate::schema::STEP_WEIGHT_MESSAGE,
    "fieldPath": ".stepWeight",
}]))]
pub struct CanaryAnalysis {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::schema::DURATION_PATTERN))]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub iterations: Option<i32>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mirror: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub mirror_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub max_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub step_weight: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(inner(range(min = 0, max = 100)), length(max = crate::schema::MAX_STEP_WEIGHTS))]
    #[schemars(extend("x-kubernetes-validations" = [{
        "rule": crate::schema::STEP_WEIGHTS_RULE,
        "message": crate::schema::STEP_WEIGHTS_MESSAGE,
    }]))]
    pub step_weights: Vec<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub step_weight_promotion: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub primary_ready_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100))]
    pub canary_ready_threshold: Option<i32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<CanaryAlert>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metrics: Vec<CanaryMetric>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webhooks: Vec<CanaryWebhook>,
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<HTTPMatchRequest>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionAffinity {
    #[serde(default)]
    pub cookie_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_cookie_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub http_only: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub partitioned: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub same_site: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub secure: bool,
}

impl SessionAffinity {
    pub fn max_age(&self) -> i32 {
        self.max_age
            .filter(|a| *a > 0)
            .unwrap_or(defaults::SESSION_AFFINITY_MAX_AGE)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryMetric {
    #[serde(default)]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::schema::DURATION_PATTERN))]
    pub interval: Option<String>,
    /// Pre-v1beta1 scalar threshold; normalised into `thresholdRange` on load.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold_range: Option<ThresholdRange>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_ref: Option<CrossNamespaceObjectReference>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub template_variables: BTreeMap<String, String>,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CanaryMetric {
    /// The metric's query window, `1m` when unset.
    pub fn interval_or_default(&self) -> &str {
        self.interval
            .as_deref()
            .filter(|s| !s.is_empty())
            .unwrap_or(defaults::METRIC_INTERVAL)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[schemars(extend("x-kubernetes-validations" = [{
    "rule": crate::schema::THRESHOLD_RANGE_RULE,
    "message": crate::schema::THRESHOLD_RANGE_MESSAGE,
}]))]
pub struct ThresholdRange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
}

#[derive(
    Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum AlertSeverity {
    #[default]
    Info,
    Warn,
    Error,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryAlert {
    #[serde(default)]
    pub name: String,
    /// `info` (default), `warn` or `error`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub severity: Option<String>,
    #[serde(default)]
    pub provider_ref: CrossNamespaceObjectReference,
}

impl CanaryAlert {
    /// The severity, `None` when it is not one of info, warn, error.
    pub fn severity(&self) -> Option<AlertSeverity> {
        match self.severity.as_deref().unwrap_or("info") {
            "" | "info" => Some(AlertSeverity::Info),
            "warn" => Some(AlertSeverity::Warn),
            "error" => Some(AlertSeverity::Error),
            _ => None,
        }
    }
}

/// When a webhook is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum HookType {
    ConfirmRollout,
    PreRollout,
    Rollout,
    ConfirmTrafficIncrease,
    ConfirmPromotion,
    PostRollout,
    Rollback,
    Event,
}

impl HookType {
    pub const ALL: [HookType; 8] = [
        HookType::ConfirmRollout,
        HookType::PreRollout,
        HookType::Rollout,
        HookType::ConfirmTrafficIncrease,
        HookType::ConfirmPromotion,
        HookType::PostRollout,
        HookType::Rollback,
        HookType::Event,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            HookType::ConfirmRollout => "confirm-rollout",
            HookType::PreRollout => "pre-rollout",
            HookType::Rollout => "rollout",
            HookType::ConfirmTrafficIncrease => "confirm-traffic-increase",
            HookType::ConfirmPromotion => "confirm-promotion",
            HookType::PostRollout => "post-rollout",
            HookType::Rollback => "rollback",
            HookType::Event => "event",
        }
    }

    /// Parses a webhook `type`; empty means `rollout`, as in Flagger.
    pub fn parse(s: &str) -> Option<HookType> {
        if s.is_empty() {
            return Some(HookType::Rollout);
        }
        HookType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryWebhook {
    /// One of the hook types; `rollout` when empty.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    #[schemars(extend("enum" = [
        "",
        "confirm-rollout",
        "pre-rollout",
        "rollout",
        "confirm-traffic-increase",
        "confirm-promotion",
        "post-rollout",
        "rollback",
        "event",
    ]))]
    pub type_: Option<String>,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(default, skip_serializing_if = "is_false")]
    pub mute_alert: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(crate::schema::DURATION_PATTERN))]
    pub timeout: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient_string_map",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(schema_with = "string_map_schema")]
    pub metadata: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub retries: Option<i32>,
    #[serde(default, rename = "disableTLS", skip_serializing_if = "is_false")]
    pub disable_tls: bool,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

impl CanaryWebhook {
    /// The hook type, `None` when the type is not one serin knows.
    pub fn hook_type(&self) -> Option<HookType> {
        HookType::parse(self.type_.as_deref().unwrap_or(""))
    }

    /// The call timeout: the webhook's `timeout`, else 10s.
    pub fn timeout(&self) -> Duration {
        self.timeout
            .as_deref()
            .and_then(|t| parse_duration(t).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(defaults::WEBHOOK_TIMEOUT)
    }
}

/// The phase of a canary, as `status.phase` shows it.
#[derive(Serialize, Deserialize, Debug, Clone, Copy, Default, PartialEq, Eq, Hash, JsonSchema)]
pub enum CanaryPhase {
    #[default]
    Initializing,
    Initialized,
    Waiting,
    Progressing,
    WaitingPromotion,
    Promoting,
    Finalising,
    Succeeded,
    Failed,
    Terminating,
    Terminated,
}

impl CanaryPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            CanaryPhase::Initializing => "Initializing",
            CanaryPhase::Initialized => "Initialized",
            CanaryPhase::Waiting => "Waiting",
            CanaryPhase::Progressing => "Progressing",
            CanaryPhase::WaitingPromotion => "WaitingPromotion",
            CanaryPhase::Promoting => "Promoting",
            CanaryPhase::Finalising => "Finalising",
            CanaryPhase::Succeeded => "Succeeded",
            CanaryPhase::Failed => "Failed",
            CanaryPhase::Terminating => "Terminating",
            CanaryPhase::Terminated => "Terminated",
        }
    }

    /// The value of Flagger's `flagger_canary_status` gauge, as its recorder sets it:
    /// 0 while Progressing, 2 when Failed, 1 in every other phase (so the alert rule
    /// `flagger_canary_status > 1` fires on failures).
    pub fn status_gauge(self) -> i64 {
        match self {
            CanaryPhase::Progressing => 0,
            CanaryPhase::Failed => 2,
            _ => 1,
        }
    }

    /// Phases in which an analysis is under way.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            CanaryPhase::Waiting
                | CanaryPhase::Progressing
                | CanaryPhase::WaitingPromotion
                | CanaryPhase::Promoting
                | CanaryPhase::Finalising
        )
    }
}

impl std::fmt::Display for CanaryPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryStatus {
    #[serde(default)]
    pub phase: CanaryPhase,
    #[serde(default)]
    pub failed_checks: i32,
    #[serde(default)]
    pub canary_weight: i32,
    #[serde(default)]
    pub iterations: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_session_affinity_cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity_cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub primary_session_affinity_cookie: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracked_configs: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_applied_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_promoted_spec: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<CanaryCondition>,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CanaryCondition {
    /// `Promoted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_update_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<Time>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The body serin POSTs to every webhook.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq)]
pub struct WebhookPayload {
    pub name: String,
    pub namespace: String,
    pub phase: CanaryPhase,
    pub checksum: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// How the canary shifts traffic, derived from the analysis block as Flagger does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    Canary,
    ABTesting,
    BlueGreen,
}

impl Strategy {
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Canary => "canary",
            Strategy::ABTesting => "ab-testing",
            Strategy::BlueGreen => "blue-green",
        }
    }
}

impl Canary {
    /// The analysis block, whichever of its two names was used.
    pub fn analysis(&self) -> Option<&CanaryAnalysis> {
        self.spec
            .analysis
            .as_ref()
            .or(self.spec.canary_analysis.as_ref())
    }

    /// Apex, primary and canary service names.
    pub fn service_names(&self) -> (String, String, String) {
        let apex = self
            .spec
            .service
            .name
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| self.spec.target_ref.name.clone());
        let primary = format!("{apex}-primary");
        let canary = format!("{apex}-canary");
        (apex, primary, canary)
    }

    /// The traffic provider; `istio` when unset.
    pub fn provider(&self) -> &str {
        self.spec
            .provider
            .as_deref()
            .filter(|p| !p.is_empty())
            .unwrap_or(defaults::PROVIDER)
    }

    /// Time between two runs of the analysis: `analysis.interval`, 60s by default,
    /// never below 10s (a shorter or unparseable interval is a validation error).
    pub fn analysis_interval(&self) -> Duration {
        self.analysis()
            .and_then(|a| a.interval.as_deref())
            .and_then(|i| parse_duration(i).ok())
            .filter(|d| !d.is_zero())
            .map(|d| d.max(defaults::MIN_ANALYSIS_INTERVAL))
            .unwrap_or(defaults::ANALYSIS_INTERVAL)
    }

    pub fn progress_deadline(&self) -> Duration {
        let secs = self
            .spec
            .progress_deadline_seconds
            .filter(|s| *s > 0)
            .map(|s| s as u64)
            .unwrap_or(defaults::PROGRESS_DEADLINE_SECONDS);
        Duration::from_secs(secs)
    }

    /// Failed checks before a rollback; at least 1.
    pub fn analysis_threshold(&self) -> i32 {
        self.analysis()
            .and_then(|a| a.threshold)
            .filter(|t| *t > 0)
            .unwrap_or(1)
    }

    pub fn max_weight(&self) -> i32 {
        let analysis = self.analysis();
        // Never above 100, whatever the spec says (validation refuses such a spec).
        if let Some(last) = analysis.and_then(|a| a.step_weights.last()) {
            return (*last).clamp(0, 100);
        }
        analysis
            .and_then(|a| a.max_weight)
            .filter(|w| *w > 0)
            .unwrap_or(defaults::MAX_WEIGHT)
            .min(100)
    }

    pub fn primary_ready_threshold(&self) -> i32 {
        self.analysis()
            .and_then(|a| a.primary_ready_threshold)
            .unwrap_or(defaults::READY_THRESHOLD)
    }

    pub fn canary_ready_threshold(&self) -> i32 {
        self.analysis()
            .and_then(|a| a.canary_ready_threshold)
            .unwrap_or(defaults::READY_THRESHOLD)
    }

    /// True when promotion happens without analysis (no analysis block, or
    /// `skipAnalysis: true`).
    pub fn skips_analysis(&self) -> bool {
        self.analysis().is_none() || self.spec.skip_analysis
    }

    pub fn strategy(&self) -> Strategy {
        let Some(a) = self.analysis() else {
            return Strategy::Canary;
        };
        let iterations = a.iterations.unwrap_or(0);
        if !a.match_.is_empty() && iterations > 0 {
            Strategy::ABTesting
        } else if iterations > 0 {
            Strategy::BlueGreen
        } else {
            Strategy::Canary
        }
    }

    /// `name.namespace`, the way serin's messages name a canary.
    pub fn id(&self) -> String {
        format!(
            "{}.{}",
            self.metadata.name.as_deref().unwrap_or_default(),
            self.metadata.namespace.as_deref().unwrap_or_default()
        )
    }

    /// The status, or the initial one.
    pub fn status_or_default(&self) -> CanaryStatus {
        self.status.clone().unwrap_or_default()
    }
}
