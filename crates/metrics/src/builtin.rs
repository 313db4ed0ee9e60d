//! The built-in checks, which need no MetricTemplate: `request-success-rate` and
//! `request-duration`, over the metric's interval, from the telemetry of the
//! canary's traffic provider, as Flagger's observers read it: Istio's standard
//! metrics as reported by the destination (the canary's own sidecar) for `istio`,
//! the application's own `http_request_duration_seconds` histogram for
//! `kubernetes`. A provider is one [`Observer`] row in [`observer_for`].

/// A built-in metric check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinMetric {
    /// Percentage (0-100) of requests to the canary workload not answered with a 5xx.
    RequestSuccessRate,
    /// 99th percentile of the canary workload's request duration, in milliseconds.
    RequestDuration,
}

/// Percentage of non-5xx responses among all requests the canary workload served.
const ISTIO_REQUEST_SUCCESS_RATE: &str = r#"
sum(
  rate(
    istio_requests_total{
      reporter="destination",
      destination_workload_namespace="{{ namespace }}",
      destination_workload=~"{{ target }}",
      response_code!~"5.*"
    }[{{ interval }}]
  )
)
/
sum(
  rate(
    istio_requests_total{
      reporter="destination",
      destination_workload_namespace="{{ namespace }}",
      destination_workload=~"{{ target }}"
    }[{{ interval }}]
  )
)
* 100
"#;

/// P99 of the canary workload's request duration histogram, in milliseconds.
const ISTIO_REQUEST_DURATION: &str = r#"
histogram_quantile(
  0.99,
  sum by (le) (
    rate(
      istio_request_duration_milliseconds_bucket{
        reporter="destination",
        destination_workload_namespace="{{ namespace }}",
        destination_workload=~"{{ target }}"
      }[{{ interval }}]
    )
  )
)
"#;

/// Percentage of non-5xx responses among the requests the canary's pods served,
/// from the `http_request_duration_seconds` histogram the application exports
/// (Prometheus' pod labels `kubernetes_namespace`, `kubernetes_pod_name`).
const HTTP_REQUEST_SUCCESS_RATE: &str = r#"
sum(
  rate(
    http_request_duration_seconds_count{
      kubernetes_namespace="{{ namespace }}",
      kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)",
      status!~"5.*"
    }[{{ interval }}]
  )
)
/
sum(
  rate(
    http_request_duration_seconds_count{
      kubernetes_namespace="{{ namespace }}",
      kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
    }[{{ interval }}]
  )
)
* 100
"#;

/// P99 of the canary's pods' request duration histogram, in seconds.
const HTTP_REQUEST_DURATION: &str = r#"
histogram_quantile(
  0.99,
  sum by (le) (
    rate(
      http_request_duration_seconds_bucket{
        kubernetes_namespace="{{ namespace }}",
        kubernetes_pod_name=~"{{ target }}-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)"
      }[{{ interval }}]
    )
  )
)
"#;

/// The built-in queries of one traffic provider's telemetry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observer {
    /// The name messages use (`istio`, `http`).
    pub name: &'static str,
    pub request_success_rate: &'static str,
    pub request_duration: &'static str,
    /// The duration query answers in seconds (else milliseconds).
    pub duration_in_seconds: bool,
}

/// Istio's telemetry.
pub const ISTIO: Observer = Observer {
    name: "istio",
    request_success_rate: ISTIO_REQUEST_SUCCESS_RATE,
    request_duration: ISTIO_REQUEST_DURATION,
    duration_in_seconds: false,
};

/// The application's own HTTP histogram.
pub const HTTP: Observer = Observer {
    name: "http",
    request_success_rate: HTTP_REQUEST_SUCCESS_RATE,
    request_duration: HTTP_REQUEST_DURATION,
    duration_in_seconds: true,
};

/// The observer of a traffic provider, as Flagger chooses it: `kubernetes` reads
/// the application's HTTP histogram; Istio, and any provider without its own row,
/// reads Istio's metrics.
pub fn observer_for(provider: &str) -> Observer {
    match provider {
        // Flagger's HTTP observer serves the kubernetes and Gateway API providers.
        p if p == "kubernetes" || p.starts_with("gatewayapi") => HTTP,
        _ => ISTIO,
    }
}

impl BuiltinMetric {
    /// The built-in check a metric name stands for, old v1alpha3 names included
    /// (`istio_requests_total`, `istio_request_duration_seconds_bucket`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "request-success-rate" | "istio_requests_total" => {
                Some(BuiltinMetric::RequestSuccessRate)
            }
            "request-duration" | "istio_request_duration_seconds_bucket" => {
                Some(BuiltinMetric::RequestDuration)
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            BuiltinMetric::RequestSuccessRate => "request-success-rate",
            BuiltinMetric::RequestDuration => "request-duration",
        }
    }

    /// The query template (rendered with [`crate::render_query`]) for a traffic
    /// provider.
    pub fn query_template(self, provider: &str) -> &'static str {
        let observer = observer_for(provider);
        match self {
            BuiltinMetric::RequestSuccessRate => observer.request_success_rate,
            BuiltinMetric::RequestDuration => observer.request_duration,
        }
    }

    /// The query's answer in the check's unit: a percentage for the success rate,
    /// milliseconds for the duration.
    pub fn value_from_query(self, provider: &str, value: f64) -> f64 {
        match self {
            BuiltinMetric::RequestDuration if observer_for(provider).duration_in_seconds => {
                value * 1000.0
            }
            _ => value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{QueryModel, render_query};

    #[test]
    fn old_names_are_aliases() {
        assert_eq!(
            BuiltinMetric::from_name("istio_requests_total"),
            Some(BuiltinMetric::RequestSuccessRate)
        );
        assert_eq!(
            BuiltinMetric::from_name("istio_request_duration_seconds_bucket"),
            Some(BuiltinMetric::RequestDuration)
        );
        assert_eq!(BuiltinMetric::from_name("error-rate"), None);
    }

    #[test]
    fn queries_render_for_the_canary() {
        let model = QueryModel {
            namespace: "test".into(),
            target: "podinfo".into(),
            interval: "30s".into(),
            ..Default::default()
        };
        for m in [
            BuiltinMetric::RequestSuccessRate,
            BuiltinMetric::RequestDuration,
        ] {
            let q = render_query(m.query_template("istio"), &model).unwrap();
            assert!(
                q.contains(r#"destination_workload_namespace="test""#),
                "{q}"
            );
            assert!(q.contains(r#"destination_workload=~"podinfo""#), "{q}");
            assert!(q.contains(r#"reporter="destination""#), "{q}");
            assert!(q.contains("[30s]"), "{q}");
        }
    }

    #[test]
    fn queries_follow_the_provider() {
        let model = QueryModel {
            namespace: "test".into(),
            target: "podinfo".into(),
            interval: "1m".into(),
            ..Default::default()
        };
        for (m, provider) in [
            (BuiltinMetric::RequestSuccessRate, "kubernetes"),
            (BuiltinMetric::RequestDuration, "kubernetes"),
            (BuiltinMetric::RequestSuccessRate, "gatewayapi:v1"),
            (BuiltinMetric::RequestDuration, "gatewayapi:v1beta1"),
        ] {
            let q = render_query(m.query_template(provider), &model).unwrap();
            assert!(q.contains("http_request_duration_seconds_"), "{q}");
            assert!(!q.contains("istio_"), "{q}");
            assert!(q.contains(r#"kubernetes_namespace="test""#), "{q}");
            assert!(
                q.contains(r#"kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#),
                "{q}"
            );
        }
        assert_eq!(
            BuiltinMetric::RequestDuration.value_from_query("kubernetes", 0.25),
            250.0,
            "the HTTP histogram is in seconds"
        );
        assert_eq!(
            BuiltinMetric::RequestDuration.value_from_query("gatewayapi:v1", 0.25),
            250.0
        );
        assert_eq!(
            BuiltinMetric::RequestDuration.value_from_query("istio", 250.0),
            250.0
        );
    }
}
