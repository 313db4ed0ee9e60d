//! The built-in checks, which need no MetricTemplate: `request-success-rate` and
//! `request-duration`, from Istio's standard metrics as reported by the destination
//! (the canary's own sidecar), over the metric's interval.

/// A built-in metric check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuiltinMetric {
    /// Percentage (0-100) of requests to the canary workload not answered with a 5xx.
    RequestSuccessRate,
    /// 99th percentile of the canary workload's request duration, in milliseconds.
    RequestDuration,
}

/// Percentage of non-5xx responses among all requests the canary workload served.
const REQUEST_SUCCESS_RATE: &str = r#"
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
const REQUEST_DURATION: &str = r#"
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
    /// provider. Istio's telemetry is the only one today, so every provider gets it.
    pub fn query_template(self, provider: &str) -> &'static str {
        if let Some(q) = self.gateway_api_query_template(provider) {
            return q;
        }
        match self {
            BuiltinMetric::RequestSuccessRate => REQUEST_SUCCESS_RATE,
            BuiltinMetric::RequestDuration => REQUEST_DURATION,
        }
    }
}

/// The Gateway API providers' built-in checks: as Flagger's (its HTTP observer,
/// shared with the `kubernetes` provider), the application's own
/// `http_request_duration_seconds` histogram, with the pod's namespace and name as
/// Prometheus' Kubernetes service discovery labels them, over the canary's pods
/// (`{{ target }}-<replicaset>-<pod>`).
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

/// P99 of the same histogram, in milliseconds (Flagger reads seconds and converts).
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
* 1000
"#;

impl BuiltinMetric {
    /// The query for `gatewayapi:v1` and `gatewayapi:v1beta1` canaries, `None` for
    /// other providers.
    pub fn gateway_api_query_template(self, provider: &str) -> Option<&'static str> {
        if !provider.starts_with("gatewayapi") {
            return None;
        }
        Some(match self {
            BuiltinMetric::RequestSuccessRate => HTTP_REQUEST_SUCCESS_RATE,
            BuiltinMetric::RequestDuration => HTTP_REQUEST_DURATION,
        })
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
    fn gateway_api_canaries_use_the_application_histogram() {
        let model = QueryModel {
            namespace: "test".into(),
            target: "podinfo".into(),
            interval: "1m".into(),
            ..Default::default()
        };
        let rate = render_query(
            BuiltinMetric::RequestSuccessRate.query_template("gatewayapi:v1"),
            &model,
        )
        .unwrap();
        assert!(
            rate.contains(r#"kubernetes_pod_name=~"podinfo-[0-9a-zA-Z]+(-[0-9a-zA-Z]+)""#),
            "{rate}"
        );
        assert!(rate.contains(r#"status!~"5.*""#), "{rate}");
        let p99 = render_query(
            BuiltinMetric::RequestDuration.query_template("gatewayapi:v1beta1"),
            &model,
        )
        .unwrap();
        assert!(
            p99.contains("http_request_duration_seconds_bucket")
                && p99.trim_end().ends_with("* 1000"),
            "{p99}"
        );
        assert!(
            !BuiltinMetric::RequestDuration
                .query_template("istio")
                .contains("kubernetes_pod_name")
        );
    }
}
