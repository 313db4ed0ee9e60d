//! Chooses the provider a MetricTemplate's `provider.type` names, with Flagger's
//! type names.

use std::sync::Arc;

use crate::cloudwatch::CloudWatchProvider;
use crate::datadog::DatadogProvider;
use crate::dynatrace::DynatraceProvider;
use crate::external::ExternalMetricsProvider;
use crate::graphite::GraphiteProvider;
use crate::influxdb::InfluxdbProvider;
use crate::keptn::KeptnProvider;
use crate::newrelic::NewRelicProvider;
use crate::prometheus::{Credentials, PrometheusOptions, PrometheusProvider};
use crate::provider::{MetricsProvider, ProviderConfigError, ProviderSettings};
use crate::splunk::SplunkProvider;
use crate::stackdriver::StackdriverProvider;

/// Builds the provider for `settings.type_`.
pub fn build(settings: &ProviderSettings) -> Result<Arc<dyn MetricsProvider>, ProviderConfigError> {
    let type_ = settings.type_.trim();
    Ok(match type_ {
        "" | "prometheus" => {
            let address =
                settings
                    .address
                    .clone()
                    .ok_or_else(|| ProviderConfigError::NoAddress {
                        provider: "Prometheus".into(),
                    })?;
            let credentials = match (&settings.secret_name, settings.secret()) {
                (Some(_), Some(data)) => Some(Credentials::from_secret_data(data)?),
                _ => None,
            };
            Arc::new(PrometheusProvider::new(PrometheusOptions {
                address,
                credentials,
                insecure_skip_verify: settings.insecure_skip_verify,
                timeout: settings.timeout,
                headers: settings.headers.clone(),
                evaluation_time: settings.evaluation_time,
            })?)
        }
        "datadog" => Arc::new(DatadogProvider::new(settings)?),
        "cloudwatch" => Arc::new(CloudWatchProvider::new(settings)?),
        "graphite" => Arc::new(GraphiteProvider::new(settings)?),
        "influxdb" => Arc::new(InfluxdbProvider::new(settings)?),
        "newrelic" => Arc::new(NewRelicProvider::new(settings)?),
        "dynatrace" => Arc::new(DynatraceProvider::new(settings)?),
        "stackdriver" => Arc::new(StackdriverProvider::new(settings)?),
        "splunk" => Arc::new(SplunkProvider::new(settings)?),
        "keptn" => Arc::new(KeptnProvider::new(settings)?),
        "externalmetrics" => Arc::new(ExternalMetricsProvider::new(settings)?),
        other => {
            return Err(ProviderConfigError::UnsupportedType {
                type_: other.to_string(),
                supported: serin_api::metric_template::METRIC_PROVIDER_TYPES.join(", "),
            });
        }
    })
}
