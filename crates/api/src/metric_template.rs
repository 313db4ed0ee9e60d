//! `flagger.app/v1beta1` MetricTemplate: a metric provider and a query.

use std::collections::BTreeMap;

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::schema::Extra;

#[derive(CustomResource, Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[kube(
    group = "flagger.app",
    version = "v1beta1",
    kind = "MetricTemplate",
    namespaced,
    status = "ObjectStatus",
    printcolumn = r#"{"name":"Provider","type":"string","jsonPath":".spec.provider.type"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateSpec {
    #[serde(default)]
    pub provider: MetricTemplateProvider,
    #[serde(default)]
    pub query: String,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MetricTemplateProvider {
    /// The provider, as Flagger names it: prometheus (when empty), datadog, cloudwatch,
    /// newrelic, graphite, influxdb, dynatrace, stackdriver, splunk, keptn or
    /// externalmetrics.
    #[serde(default, rename = "type")]
    pub type_: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_skip_verify: bool,
    #[serde(flatten, default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(skip)]
    pub extra: Extra,
}

/// A Secret in the same namespace as the object that names it.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
pub struct SecretReference {
    #[serde(default)]
    pub name: String,
}

/// Status of MetricTemplate and AlertProvider: conditions only.
#[derive(Serialize, Deserialize, Debug, Clone, Default, PartialEq, JsonSchema)]
pub struct ObjectStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<crate::canary::CanaryCondition>,
}

/// Metric provider types serin can query.
pub const METRIC_PROVIDER_TYPES: [&str; 11] = [
    "prometheus",
    "datadog",
    "cloudwatch",
    "newrelic",
    "graphite",
    "influxdb",
    "dynatrace",
    "stackdriver",
    "splunk",
    "keptn",
    "externalmetrics",
];
