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
    pub fn query_template(self, _provider: &str) -> &'static str {
        match self {
            BuiltinMetric::RequestSuccessRate => REQUEST_SUCCESS_RATE,
            BuiltinMetric::RequestDuration => REQUEST_DURATION,
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
}
