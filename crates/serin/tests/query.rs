//! `serin query` against a real Prometheus (Debian's `prometheus` package) holding
//! known, backfilled Istio traffic.

#[path = "../../metrics/tests/support/prometheus.rs"]
mod prometheus;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use prometheus::{EVALUATION_TIME, Prometheus, Traffic, interpolated_quantile};

const TEMPLATES: &str = include_str!("../../metrics/tests/fixtures/flagger-metrics.yaml");

const CANARY: &str = r#"
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  metricsServer: http://prometheus.istio-system:9090
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    metrics:
    - name: request-success-rate
      thresholdRange:
        min: 99
      interval: 1m
    - name: request-duration
      thresholdRange:
        max: 500
      interval: 30s
    - name: error-rate
      templateRef:
        name: error-rate
        namespace: istio-system
      thresholdRange:
        max: 1
      interval: 30s
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write manifest");
    path
}

fn serin_query(files: &[&Path], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_serin"));
    cmd.arg("query");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    cmd.args(args)
        .args(["--time", &EVALUATION_TIME.to_string()])
        .output()
        .expect("run serin")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The number after `NAME = ` on the last line.
fn printed_value(out: &Output, name: &str) -> f64 {
    let text = stdout(out);
    let line = text.lines().last().unwrap_or_default();
    let value = line
        .strip_prefix(&format!("{name} = "))
        .unwrap_or_else(|| panic!("expected `{name} = VALUE`, got {text:?}"));
    value
        .parse()
        .unwrap_or_else(|_| panic!("not a number: {value:?}"))
}

fn assert_close(actual: f64, expected: f64, what: &str) {
    assert!(
        (actual - expected).abs() <= 1e-6 * expected.abs().max(1.0),
        "{what}: got {actual}, expected {expected}"
    );
}

#[test]
fn prints_the_value_of_builtin_and_template_metrics() {
    let traffic = Traffic::istio();
    let prom = Prometheus::start(&traffic);
    let dir = tempfile::tempdir().unwrap();
    let canary = write(dir.path(), "canary.yaml", CANARY);
    let templates = write(dir.path(), "flagger-metrics.yaml", TEMPLATES);
    let url = prom.url();

    // --prometheus overrides the Canary's (unreachable here) metricsServer.
    let out = serin_query(
        &[&canary],
        &[
            "--canary",
            "podinfo",
            "--metric",
            "request-success-rate",
            "--prometheus",
            &url,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_close(
        printed_value(&out, "request-success-rate"),
        traffic.success_rate("test", "podinfo"),
        "success rate",
    );
    assert_eq!(
        stdout(&out).lines().count(),
        1,
        "only the value without --show-query"
    );

    let out = serin_query(
        &[&canary],
        &[
            "--canary",
            "podinfo",
            "--namespace",
            "test",
            "--metric",
            "request-duration",
            "--prometheus",
            &url,
            "--show-query",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("histogram_quantile("), "{text}");
    assert!(
        text.contains(r#"destination_workload_namespace="test""#),
        "{text}"
    );
    assert!(text.contains("[30s]"), "the metric's interval: {text}");
    assert_close(
        printed_value(&out, "request-duration"),
        interpolated_quantile(0.99, traffic.histogram("test", "podinfo")),
        "P99",
    );

    // The template comes from a second file.
    let out = serin_query(
        &[&canary, &templates],
        &[
            "--canary",
            "podinfo",
            "--metric",
            "error-rate",
            "--prometheus",
            &url,
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_close(
        printed_value(&out, "error-rate"),
        100.0 - traffic.success_rate("test", "podinfo"),
        "error rate",
    );
}

#[test]
fn the_template_address_is_used_without_prometheus_flag() {
    let traffic = Traffic::istio();
    let prom = Prometheus::start(&traffic);
    let dir = tempfile::tempdir().unwrap();
    let canary = write(dir.path(), "canary.yaml", CANARY);
    let templates = write(
        dir.path(),
        "flagger-metrics.yaml",
        &TEMPLATES.replace("PROMETHEUS_URL", &prom.url()),
    );
    let out = serin_query(
        &[&canary, &templates],
        &["--canary", "podinfo", "--metric", "error-rate"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_close(
        printed_value(&out, "error-rate"),
        100.0 - traffic.success_rate("test", "podinfo"),
        "error rate",
    );
}

#[test]
fn objects_without_namespace_take_the_namespace_flag() {
    let traffic = Traffic::istio();
    let prom = Prometheus::start(&traffic);
    let dir = tempfile::tempdir().unwrap();
    let canary = write(
        dir.path(),
        "canary.yaml",
        &CANARY.replace("  namespace: test\n", ""),
    );
    assert!(
        !std::fs::read_to_string(&canary)
            .unwrap()
            .contains("namespace: test")
    );
    let out = serin_query(
        &[&canary],
        &[
            "--canary",
            "podinfo",
            "-n",
            "test",
            "--metric",
            "request-success-rate",
            "--prometheus",
            &prom.url(),
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_close(
        printed_value(&out, "request-success-rate"),
        traffic.success_rate("test", "podinfo"),
        "success rate",
    );
}

#[test]
fn fails_with_the_provider_error() {
    let traffic = Traffic::istio();
    let mut prom = Prometheus::start(&traffic);
    let dir = tempfile::tempdir().unwrap();
    let canary = write(dir.path(), "canary.yaml", CANARY);
    let url = prom.url();

    // No traffic for this canary: no data.
    let absent = write(
        dir.path(),
        "absent.yaml",
        &CANARY.replace("name: podinfo", "name: absent"),
    );
    let out = serin_query(
        &[&absent],
        &[
            "--canary",
            "absent",
            "--metric",
            "request-success-rate",
            "--prometheus",
            &url,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("no values found"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty());

    // The template is not in the given files.
    let out = serin_query(
        &[&canary],
        &[
            "--canary",
            "podinfo",
            "--metric",
            "error-rate",
            "--prometheus",
            &url,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("MetricTemplate error-rate"),
        "{}",
        stderr(&out)
    );

    // An unknown metric names the ones there are.
    let out = serin_query(
        &[&canary],
        &[
            "--canary",
            "podinfo",
            "--metric",
            "latency",
            "--prometheus",
            &url,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("request-success-rate, request-duration, error-rate"),
        "{}",
        stderr(&out)
    );

    prom.stop();
    let out = serin_query(
        &[&canary],
        &[
            "--canary",
            "podinfo",
            "--metric",
            "request-success-rate",
            "--prometheus",
            &url,
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("Prometheus {url} unreachable")),
        "{err}"
    );
}
