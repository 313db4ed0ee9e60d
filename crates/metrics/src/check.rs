//! One metric check of a Canary: which query, against which provider, and what the
//! resulting number means (pass, or halt with Flagger's message).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serin_api::canary::CanaryMetric;
use serin_api::metric_template::MetricTemplateProvider;
use serin_api::{Canary, MetricTemplate};

use crate::builtin::BuiltinMetric;
use crate::format::{go_float, go_millis};
use crate::prometheus::{Credentials, PrometheusOptions, PrometheusProvider};
use crate::provider::{MetricsProvider, ProviderConfigError, ProviderError, ProviderSettings};
use crate::template::{QueryModel, TemplateError, render_query};

/// Where a metric's query comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum QuerySource {
    Builtin(BuiltinMetric),
    /// A MetricTemplate, by name and namespace.
    Template {
        name: String,
        namespace: String,
    },
    /// A PromQL `query` written in the Canary itself (Flagger's older form).
    Inline,
}

/// A metric with its query rendered for one Canary, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct PreparedQuery {
    /// The metric's name (an old built-in name is reported under its new name).
    pub metric: String,
    pub source: QuerySource,
    /// The rendered query.
    pub query: String,
    /// The MetricTemplate's provider, for template metrics.
    pub provider: Option<MetricTemplateProvider>,
    /// The metric's `interval` (`1m` when unset): providers that take a time range
    /// (Datadog, CloudWatch, New Relic...) look back over it.
    pub interval: String,
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrepareError {
    #[error("Metric template {name}.{namespace} error: not found")]
    TemplateNotFound { name: String, namespace: String },
    #[error("Metric template {name}.{namespace} query render error: {error}")]
    TemplateRender {
        name: String,
        namespace: String,
        error: TemplateError,
    },
    #[error("Metric {metric} query render error: {error}")]
    InlineRender {
        metric: String,
        error: TemplateError,
    },
    #[error(
        "Metric query failed for {metric}: no usable metric template or query is configured (built-in checks: request-success-rate, request-duration)"
    )]
    NoQuery { metric: String },
}

/// The MetricTemplate a metric refers to, as (name, namespace): the namespace
/// defaults to the Canary's.
pub fn template_key(canary: &Canary, metric: &CanaryMetric) -> Option<(String, String)> {
    let r = metric
        .template_ref
        .as_ref()
        .filter(|r| !r.name.is_empty())?;
    let namespace = r
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .or_else(|| canary.metadata.namespace.clone())
        .unwrap_or_default();
    Some((r.name.clone(), namespace))
}

/// Finds a metric's MetricTemplate among loaded templates.
pub fn find_template<'a>(
    canary: &Canary,
    metric: &CanaryMetric,
    templates: impl IntoIterator<Item = &'a MetricTemplate>,
) -> Option<&'a MetricTemplate> {
    let (name, namespace) = template_key(canary, metric)?;
    templates.into_iter().find(|t| {
        t.metadata.name.as_deref() == Some(name.as_str())
            && t.metadata.namespace.as_deref().unwrap_or_default() == namespace
    })
}

/// Renders a metric's query for a Canary. `template` is the MetricTemplate its
/// `templateRef` names (see [`find_template`]); it is ignored for other metrics.
pub fn prepare(
    canary: &Canary,
    metric: &CanaryMetric,
    template: Option<&MetricTemplate>,
) -> Result<PreparedQuery, PrepareError> {
    let model = QueryModel::for_metric(canary, metric);
    if let Some((name, namespace)) = template_key(canary, metric) {
        let Some(template) = template else {
            return Err(PrepareError::TemplateNotFound { name, namespace });
        };
        let query = render_query(&template.spec.query, &model).map_err(|error| {
            PrepareError::TemplateRender {
                name: name.clone(),
                namespace: namespace.clone(),
                error,
            }
        })?;
        return Ok(PreparedQuery {
            metric: metric.name.clone(),
            source: QuerySource::Template { name, namespace },
            query,
            provider: Some(template.spec.provider.clone()),
            interval: model.interval.clone(),
        });
    }
    if let Some(builtin) = BuiltinMetric::from_name(&metric.name) {
        let query =
            render_query(builtin.query_template(canary.provider()), &model).map_err(|error| {
                PrepareError::InlineRender {
                    metric: metric.name.clone(),
                    error,
                }
            })?;
        return Ok(PreparedQuery {
            metric: builtin.name().to_string(),
            source: QuerySource::Builtin(builtin),
            query,
            provider: None,
            interval: model.interval.clone(),
        });
    }
    if let Some(q) = metric.query.as_deref().filter(|q| !q.trim().is_empty()) {
        let query = render_query(q, &model).map_err(|error| PrepareError::InlineRender {
            metric: metric.name.clone(),
            error,
        })?;
        return Ok(PreparedQuery {
            metric: metric.name.clone(),
            source: QuerySource::Inline,
            query,
            provider: None,
            interval: model.interval.clone(),
        });
    }
    Err(PrepareError::NoQuery {
        metric: metric.name.clone(),
    })
}

/// The metrics server to use: the MetricTemplate's `provider.address`, else the
/// Canary's `spec.metricsServer`, else the operator's `--metrics-server`.
pub fn resolve_address(
    template_address: Option<&str>,
    canary_metrics_server: Option<&str>,
    operator_metrics_server: Option<&str>,
) -> Option<String> {
    [
        template_address,
        canary_metrics_server,
        operator_metrics_server,
    ]
    .into_iter()
    .flatten()
    .map(str::trim)
    .find(|a| !a.is_empty())
    .map(str::to_string)
}

/// Settings that come from the operator (or the `serin query` command line) rather
/// than from the Canary.
#[derive(Clone)]
pub struct ProviderContext {
    /// `--metrics-server`.
    pub operator_metrics_server: Option<String>,
    /// Replaces every configured address (`serin query --address`, a port-forward).
    pub address_override: Option<String>,
    pub timeout: Duration,
    /// Evaluate at this Unix time (seconds) instead of now.
    pub evaluation_time: Option<f64>,
    /// The Kubernetes API, for the `keptn` and `externalmetrics` providers.
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for ProviderContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderContext")
            .field("operator_metrics_server", &self.operator_metrics_server)
            .field("address_override", &self.address_override)
            .field("timeout", &self.timeout)
            .field("evaluation_time", &self.evaluation_time)
            .field("kube", &self.kube.is_some())
            .finish()
    }
}

impl Default for ProviderContext {
    fn default() -> Self {
        Self {
            operator_metrics_server: None,
            address_override: None,
            timeout: crate::prometheus::DEFAULT_TIMEOUT,
            evaluation_time: None,
            kube: None,
        }
    }
}

/// Builds the provider a prepared query runs against. `secret_data` is the data of
/// the Secret named by the template's `provider.secretRef`, when it has one.
pub fn build_provider(
    canary: &Canary,
    prepared: &PreparedQuery,
    secret_data: Option<&BTreeMap<String, Vec<u8>>>,
    context: &ProviderContext,
) -> Result<Arc<dyn MetricsProvider>, ProviderConfigError> {
    let template = prepared.provider.as_ref();
    let type_ = template
        .map(|p| p.type_.trim())
        .filter(|t| !t.is_empty())
        .unwrap_or("prometheus");
    if type_ != "prometheus" {
        let secret_name = template
            .and_then(|p| p.secret_ref.as_ref())
            .map(|r| r.name.clone());
        if let (Some(name), None) = (&secret_name, secret_data) {
            return Err(ProviderConfigError::MissingSecret {
                provider: type_.to_string(),
                name: name.clone(),
            });
        }
        let interval = serin_api::duration::parse_duration(&prepared.interval).map_err(|e| {
            ProviderConfigError::Invalid {
                provider: type_.to_string(),
                reason: format!("metric interval {:?}: {e}", prepared.interval),
            }
        })?;
        let settings = ProviderSettings {
            type_: type_.to_string(),
            address: context
                .address_override
                .clone()
                .or_else(|| template.and_then(|p| p.address.clone()))
                .filter(|a| !a.trim().is_empty()),
            secret: secret_data.cloned(),
            secret_name,
            region: template.and_then(|p| p.region.clone()),
            insecure_skip_verify: template.is_some_and(|p| p.insecure_skip_verify),
            headers: template.map(|p| p.headers.clone()).unwrap_or_default(),
            timeout: context.timeout,
            interval,
            evaluation_time: context.evaluation_time,
            kube: context.kube.clone(),
        };
        return crate::factory::build(&settings);
    }
    let address = context
        .address_override
        .clone()
        .filter(|a| !a.trim().is_empty())
        .or_else(|| {
            resolve_address(
                template.and_then(|p| p.address.as_deref()),
                canary.spec.metrics_server.as_deref(),
                context.operator_metrics_server.as_deref(),
            )
        })
        .ok_or_else(|| ProviderConfigError::NoAddress {
            provider: "Prometheus".into(),
        })?;
    let credentials = match (template.and_then(|p| p.secret_ref.as_ref()), secret_data) {
        (Some(_), Some(data)) => Some(Credentials::from_secret_data(data)?),
        (Some(r), None) => {
            return Err(ProviderConfigError::MissingSecret {
                provider: "Prometheus".into(),
                name: r.name.clone(),
            });
        }
        (None, _) => None,
    };
    let options = PrometheusOptions {
        address,
        credentials,
        insecure_skip_verify: template.is_some_and(|p| p.insecure_skip_verify),
        timeout: context.timeout,
        headers: template.map(|p| p.headers.clone()).unwrap_or_default(),
        evaluation_time: context.evaluation_time,
    };
    Ok(Arc::new(PrometheusProvider::new(options)?))
}

/// The verdict on a metric's value.
#[derive(Debug, Clone, PartialEq)]
pub enum CheckOutcome {
    Pass,
    /// The analysis halts; the text is the event the user sees.
    Halt(String),
}

impl CheckOutcome {
    pub fn passed(&self) -> bool {
        matches!(self, CheckOutcome::Pass)
    }
}

/// Compares a metric's value with its threshold range. Built-in checks speak of
/// "success rate" (a percentage) and "request duration" (`value` in milliseconds,
/// printed as a Go duration); other metrics print the value with two decimals:
///
/// - `Halt podinfo.test advancement success rate 69.17% < 99%`
/// - `Halt podinfo.test advancement request duration 1.515s > 500ms`
/// - `Halt frontend.prod advancement error-rate 31.00 > 1`
///
/// A metric without `thresholdRange` uses its old scalar `threshold` (a minimum for
/// the success rate, a maximum otherwise), which is 0 when unset, as in Flagger: a
/// success rate then always passes, any other metric halts above 0. A value that is
/// not a finite number never passes.
pub fn evaluate(
    canary_name: &str,
    namespace: &str,
    metric: &CanaryMetric,
    value: f64,
) -> CheckOutcome {
    let id = format!("{canary_name}.{namespace}");
    let builtin = if metric.template_ref.is_some() {
        None
    } else {
        BuiltinMetric::from_name(&metric.name)
    };
    if !value.is_finite() {
        return CheckOutcome::Halt(format!(
            "Halt {id} advancement {} is {}: no usable value",
            metric.name,
            go_float(value)
        ));
    }
    let (min, max) = match &metric.threshold_range {
        Some(r) => (r.min, r.max),
        None => match (metric.threshold.unwrap_or(0.0), builtin) {
            (t, Some(BuiltinMetric::RequestSuccessRate)) => (Some(t), None),
            (t, _) => (None, Some(t)),
        },
    };
    match builtin {
        Some(BuiltinMetric::RequestSuccessRate) => {
            if let Some(min) = min.filter(|m| value < *m) {
                return CheckOutcome::Halt(format!(
                    "Halt {id} advancement success rate {value:.2}% < {}%",
                    go_float(min)
                ));
            }
            if let Some(max) = max.filter(|m| value > *m) {
                return CheckOutcome::Halt(format!(
                    "Halt {id} advancement success rate {value:.2}% > {}%",
                    go_float(max)
                ));
            }
        }
        Some(BuiltinMetric::RequestDuration) => {
            // Flagger compares whole milliseconds.
            let ms = value.trunc();
            if let Some(min) = min.filter(|m| ms < m.trunc()) {
                return CheckOutcome::Halt(format!(
                    "Halt {id} advancement request duration {} < {}",
                    go_millis(value),
                    go_millis(min)
                ));
            }
            if let Some(max) = max.filter(|m| ms > m.trunc()) {
                return CheckOutcome::Halt(format!(
                    "Halt {id} advancement request duration {} > {}",
                    go_millis(value),
                    go_millis(max)
                ));
            }
        }
        None => {
            if let Some(min) = min.filter(|m| value < *m) {
                return CheckOutcome::Halt(format!(
                    "Halt {id} advancement {} {value:.2} < {}",
                    metric.name,
                    go_float(min)
                ));
            }
            if let Some(max) = max.filter(|m| value > *m) {
                return CheckOutcome::Halt(format!(
                    "Halt {id} advancement {} {value:.2} > {}",
                    metric.name,
                    go_float(max)
                ));
            }
        }
    }
    CheckOutcome::Pass
}

/// The event text when a query gave no number, in Flagger's words: "no values
/// found" (the canary likely gets no traffic) or the provider's error.
pub fn failure_message(canary: &Canary, prepared: &PreparedQuery, error: &ProviderError) -> String {
    let target = format!(
        "{}.{}",
        canary.spec.target_ref.name,
        canary.metadata.namespace.as_deref().unwrap_or_default()
    );
    let metric = &prepared.metric;
    match (&prepared.source, error.is_no_data()) {
        (QuerySource::Builtin(_), true) => format!(
            "Halt advancement no values found for {} metric {metric} probably {target} is not receiving traffic: {error}",
            canary.provider()
        ),
        (QuerySource::Builtin(_), false) => format!("Prometheus query failed: {error}"),
        (QuerySource::Template { .. }, true) => {
            format!("Halt advancement no values found for custom metric: {metric}: {error}")
        }
        (QuerySource::Template { .. }, false) => {
            format!("Metric query failed for {metric}: {error}")
        }
        (QuerySource::Inline, true) => {
            format!("Halt advancement no values found for metric: {metric}: {error}")
        }
        (QuerySource::Inline, false) => format!("Prometheus query failed for {metric}: {error}"),
    }
}

/// The event text when the provider cannot even be built.
pub fn config_failure_message(prepared: &PreparedQuery, error: &ProviderConfigError) -> String {
    match &prepared.source {
        QuerySource::Template { name, namespace } => format!(
            "Metric template {name}.{namespace} provider {} error: {error}",
            prepared
                .provider
                .as_ref()
                .map(|p| p.type_.as_str())
                .filter(|t| !t.is_empty())
                .unwrap_or("prometheus")
        ),
        _ => format!("Error building Prometheus client: {error}"),
    }
}

/// The result of one metric check, for events, logs and `serin query`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricCheck {
    pub metric: String,
    /// The rendered query, when it could be rendered.
    pub query: Option<String>,
    /// The value, when the provider gave one.
    pub value: Option<f64>,
    pub outcome: CheckOutcome,
    /// Something the user should know although the check ran: the query gave
    /// several series and one value was taken from them.
    pub warning: Option<String>,
}

/// Runs one metric check end to end: render, query, evaluate. Every failure is a
/// halt with its message, never a pass.
pub async fn run_check(
    canary: &Canary,
    metric: &CanaryMetric,
    template: Option<&MetricTemplate>,
    secret_data: Option<&BTreeMap<String, Vec<u8>>>,
    context: &ProviderContext,
) -> MetricCheck {
    let prepared = match prepare(canary, metric, template) {
        Ok(p) => p,
        Err(e) => {
            return MetricCheck {
                metric: metric.name.clone(),
                query: None,
                value: None,
                outcome: CheckOutcome::Halt(e.to_string()),
                warning: None,
            };
        }
    };
    let provider = match build_provider(canary, &prepared, secret_data, context) {
        Ok(p) => p,
        Err(e) => {
            return MetricCheck {
                metric: prepared.metric.clone(),
                outcome: CheckOutcome::Halt(config_failure_message(&prepared, &e)),
                query: Some(prepared.query),
                value: None,
                warning: None,
            };
        }
    };
    run_prepared(canary, metric, &prepared, provider.as_ref()).await
}

/// Whether the provider of one metric answers, as Flagger checks while a canary
/// initializes: only the built-in metrics (the Prometheus of the Canary's
/// `metricsServer` or the operator's) and MetricTemplate metrics are asked; a Canary's
/// own inline query is not. `Err` is Flagger's text (its spelling included).
pub async fn provider_available(
    canary: &Canary,
    metric: &CanaryMetric,
    template: Option<&MetricTemplate>,
    secret_data: Option<&BTreeMap<String, Vec<u8>>>,
    context: &ProviderContext,
) -> Result<(), String> {
    let prepared = match prepare(canary, metric, template) {
        Ok(p) => p,
        Err(PrepareError::TemplateNotFound { name, namespace }) => {
            return Err(format!(
                "metric template {name}.{namespace} error: not found"
            ));
        }
        // A query that does not render is the analysis' error to report, not the
        // provider's.
        Err(_) => return Ok(()),
    };
    let type_ = || {
        prepared
            .provider
            .as_ref()
            .map(|p| p.type_.trim().to_string())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "prometheus".into())
    };
    let where_ = match &prepared.source {
        QuerySource::Inline => return Ok(()),
        QuerySource::Builtin(_) => None,
        QuerySource::Template { name, namespace } => Some((name.clone(), namespace.clone())),
    };
    let provider = match build_provider(canary, &prepared, secret_data, context) {
        Ok(p) => p,
        Err(e) => {
            return Err(match &where_ {
                None => format!("error building Prometheus client: {e}"),
                Some((name, namespace)) => format!(
                    "metric template {name}.{namespace} provider {} error: {e}",
                    type_()
                ),
            });
        }
    };
    provider.is_online().await.map_err(|e| match &where_ {
        None => format!("prometheus not avaiable: {e}"),
        Some((name, namespace)) => format!(
            "{} in metric template {name}.{namespace} not avaiable: {e}",
            type_()
        ),
    })
}

/// Runs an already prepared query on a given provider and evaluates the value.
pub async fn run_prepared(
    canary: &Canary,
    metric: &CanaryMetric,
    prepared: &PreparedQuery,
    provider: &dyn MetricsProvider,
) -> MetricCheck {
    let mut warning = None;
    let (outcome, value) = match provider.run_query_value(&prepared.query).await {
        Ok(answer) => {
            let value = match prepared.source {
                QuerySource::Builtin(b) => b.value_from_query(canary.provider(), answer.value),
                _ => answer.value,
            };
            if answer.series > 1 {
                warning = Some(format!(
                    "Metric {} of {}.{}: the query returned {} series instead of one, the last one's value {} is used",
                    prepared.metric,
                    canary.metadata.name.as_deref().unwrap_or_default(),
                    canary.metadata.namespace.as_deref().unwrap_or_default(),
                    answer.series,
                    go_float(value)
                ));
            }
            let outcome = evaluate(
                canary.metadata.name.as_deref().unwrap_or_default(),
                canary.metadata.namespace.as_deref().unwrap_or_default(),
                metric,
                value,
            );
            (outcome, Some(value))
        }
        Err(e) => (
            CheckOutcome::Halt(failure_message(canary, prepared, &e)),
            None,
        ),
    };
    MetricCheck {
        metric: prepared.metric.clone(),
        query: Some(prepared.query.clone()),
        value,
        outcome,
        warning,
    }
}

/// Checks that the provider a metric runs against answers, as Flagger does while a
/// Canary initialises ("all the metrics providers are available!"). The error is
/// the event text.
pub async fn check_provider_online(
    canary: &Canary,
    metric: &CanaryMetric,
    template: Option<&MetricTemplate>,
    secret_data: Option<&BTreeMap<String, Vec<u8>>>,
    context: &ProviderContext,
) -> Result<(), String> {
    let prepared = prepare(canary, metric, template).map_err(|e| e.to_string())?;
    let provider = build_provider(canary, &prepared, secret_data, context)
        .map_err(|e| config_failure_message(&prepared, &e))?;
    provider
        .is_online()
        .await
        .map_err(|e| match &prepared.source {
            QuerySource::Template { name, namespace } => format!(
                "{} in metric template {name}.{namespace} not available: {e}",
                prepared
                    .provider
                    .as_ref()
                    .map(|p| p.type_.as_str())
                    .filter(|t| !t.is_empty())
                    .unwrap_or("prometheus")
            ),
            _ => format!("{} not available: {e}", provider.describe()),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serin_api::canary::{CrossNamespaceObjectReference, ThresholdRange};

    fn metric(name: &str, min: Option<f64>, max: Option<f64>) -> CanaryMetric {
        CanaryMetric {
            name: name.into(),
            threshold_range: Some(ThresholdRange { min, max }),
            ..Default::default()
        }
    }

    fn halt(text: &str) -> CheckOutcome {
        CheckOutcome::Halt(text.into())
    }

    #[test]
    fn success_rate_texts() {
        let m = metric("request-success-rate", Some(99.0), None);
        assert_eq!(
            evaluate("podinfo", "test", &m, 69.1666),
            halt("Halt podinfo.test advancement success rate 69.17% < 99%")
        );
        assert_eq!(evaluate("podinfo", "test", &m, 99.0), CheckOutcome::Pass);
        let m = metric("request-success-rate", None, Some(99.5));
        assert_eq!(
            evaluate("podinfo", "test", &m, 100.0),
            halt("Halt podinfo.test advancement success rate 100.00% > 99.5%")
        );
    }

    #[test]
    fn request_duration_texts() {
        let m = metric("request-duration", None, Some(500.0));
        assert_eq!(
            evaluate("podinfo", "test", &m, 1515.2),
            halt("Halt podinfo.test advancement request duration 1.515s > 500ms")
        );
        // Whole milliseconds are compared, as in Flagger.
        assert_eq!(evaluate("podinfo", "test", &m, 500.9), CheckOutcome::Pass);
        let m = metric("request-duration", Some(10.0), None);
        assert_eq!(
            evaluate("podinfo", "test", &m, 2.0),
            halt("Halt podinfo.test advancement request duration 2ms < 10ms")
        );
    }

    #[test]
    fn template_metric_texts() {
        let mut m = metric("error-rate", None, Some(1.0));
        m.template_ref = Some(CrossNamespaceObjectReference {
            name: "error-rate".into(),
            namespace: Some("istio-system".into()),
            ..Default::default()
        });
        assert_eq!(
            evaluate("frontend", "prod", &m, 31.0),
            halt("Halt frontend.prod advancement error-rate 31.00 > 1")
        );
        assert_eq!(evaluate("frontend", "prod", &m, 0.5), CheckOutcome::Pass);
        let m = metric("apdex", Some(0.95), None);
        assert_eq!(
            evaluate("frontend", "prod", &m, 0.9),
            halt("Halt frontend.prod advancement apdex 0.90 < 0.95")
        );
    }

    #[test]
    fn old_scalar_threshold_and_names() {
        let m = CanaryMetric {
            name: "istio_requests_total".into(),
            threshold: Some(99.0),
            ..Default::default()
        };
        assert_eq!(
            evaluate("podinfo", "test", &m, 90.0),
            halt("Halt podinfo.test advancement success rate 90.00% < 99%")
        );
        let m = CanaryMetric {
            name: "istio_request_duration_seconds_bucket".into(),
            threshold: Some(500.0),
            ..Default::default()
        };
        assert_eq!(
            evaluate("podinfo", "test", &m, 600.0),
            halt("Halt podinfo.test advancement request duration 600ms > 500ms")
        );
    }

    #[test]
    fn non_finite_values_never_pass() {
        let m = metric("request-success-rate", Some(99.0), None);
        for v in [f64::NAN, f64::INFINITY] {
            assert!(!evaluate("podinfo", "test", &m, v).passed());
        }
        let no_range = CanaryMetric {
            name: "x".into(),
            ..Default::default()
        };
        assert!(!evaluate("podinfo", "test", &no_range, f64::NAN).passed());
    }

    #[test]
    fn no_threshold_at_all_is_flaggers_threshold_0() {
        let bare = |name: &str| CanaryMetric {
            name: name.into(),
            ..Default::default()
        };
        // A custom metric halts on any value above 0...
        assert_eq!(
            evaluate("podinfo", "test", &bare("error-rate"), 2.0),
            halt("Halt podinfo.test advancement error-rate 2.00 > 0")
        );
        assert_eq!(
            evaluate("podinfo", "test", &bare("error-rate"), 0.0),
            CheckOutcome::Pass
        );
        // ...a request duration on any whole millisecond...
        assert_eq!(
            evaluate("podinfo", "test", &bare("request-duration"), 250.0),
            halt("Halt podinfo.test advancement request duration 250ms > 0s")
        );
        // ...and a success rate never (it is a minimum).
        assert_eq!(
            evaluate("podinfo", "test", &bare("request-success-rate"), 12.0),
            CheckOutcome::Pass
        );
        // A built-in name with a templateRef is judged as the template metric it is.
        let mut templated = bare("request-success-rate");
        templated.template_ref = Some(CrossNamespaceObjectReference {
            name: "success-rate".into(),
            ..Default::default()
        });
        templated.threshold = Some(99.0);
        assert_eq!(
            evaluate("podinfo", "test", &templated, 99.5),
            halt("Halt podinfo.test advancement request-success-rate 99.50 > 99")
        );
    }

    #[test]
    fn address_resolution_order() {
        assert_eq!(
            resolve_address(Some("http://t"), Some("http://c"), Some("http://o")).as_deref(),
            Some("http://t")
        );
        assert_eq!(
            resolve_address(Some(""), Some("http://c"), Some("http://o")).as_deref(),
            Some("http://c")
        );
        assert_eq!(
            resolve_address(None, None, Some("http://o")).as_deref(),
            Some("http://o")
        );
        assert_eq!(resolve_address(None, Some(" "), None), None);
    }
}
