//! Metric checks against a real Prometheus (Debian's `prometheus` package) holding
//! known, backfilled Istio traffic.

mod support;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use serin_api::canary::CanaryMetric;
use serin_api::load::{Object, parse_documents, to_object};
use serin_api::{Canary, MetricTemplate};
use serin_metrics::check::{
    CheckOutcome, ProviderContext, QuerySource, build_provider, check_provider_online,
    find_template, prepare, run_check,
};
use serin_metrics::{
    Credentials, MetricsProvider, PrometheusOptions, PrometheusProvider, ProviderError,
};
use support::prometheus::{
    EVALUATION_TIME, Prometheus, Traffic, interpolated_quantile, quantile_bucket,
};

const CANARIES: &str = include_str!("fixtures/canaries.yaml");
const TEMPLATES: &str = include_str!("fixtures/flagger-metrics.yaml");

struct Manifests {
    canaries: Vec<Canary>,
    templates: Vec<MetricTemplate>,
}

impl Manifests {
    fn load(prometheus_url: &str) -> Self {
        let text =
            format!("{CANARIES}\n---\n{TEMPLATES}").replace("PROMETHEUS_URL", prometheus_url);
        Self::from_text(&text)
    }

    fn from_text(text: &str) -> Self {
        let mut canaries = Vec::new();
        let mut templates = Vec::new();
        for doc in parse_documents("fixtures", text).expect("fixtures parse") {
            match to_object(&doc).expect("fixtures are valid objects") {
                Object::Canary(c) => canaries.push(*c),
                Object::MetricTemplate(t) => templates.push(*t),
                _ => {}
            }
        }
        Self {
            canaries,
            templates,
        }
    }

    fn canary(&self, name: &str) -> &Canary {
        self.canaries
            .iter()
            .find(|c| c.metadata.name.as_deref() == Some(name))
            .expect("canary in fixtures")
    }
}

fn metrics(canary: &Canary) -> Vec<CanaryMetric> {
    canary.analysis().expect("analysis").metrics.clone()
}

fn context() -> ProviderContext {
    ProviderContext {
        evaluation_time: Some(EVALUATION_TIME as f64),
        ..Default::default()
    }
}

fn halt_text(outcome: &CheckOutcome) -> &str {
    match outcome {
        CheckOutcome::Halt(text) => text,
        CheckOutcome::Pass => panic!("expected a halt, got a pass"),
    }
}

/// Floating point noise only: backfilled counters are exactly linear, so rate()
/// gives the exact per-second rates.
fn assert_close(actual: f64, expected: f64, what: &str) {
    let tolerance = 1e-6 * expected.abs().max(1.0);
    assert!(
        (actual - expected).abs() <= tolerance,
        "{what}: got {actual}, expected {expected}"
    );
}

#[tokio::test]
async fn builtin_checks_give_the_known_success_rate_and_p99() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());
    let canary = manifests.canary("podinfo");
    let expected_rate = traffic.success_rate("test", "podinfo");
    let histogram = traffic.histogram("test", "podinfo");
    let expected_p99 = interpolated_quantile(0.99, histogram);
    let (low, high) = quantile_bucket(0.99, histogram);
    assert!(
        expected_rate < 99.0 && expected_p99 > 500.0,
        "the traffic must fail both checks"
    );

    let [rate_metric, duration_metric] = metrics(canary).try_into().expect("two metrics");
    // The address comes from the Canary's spec.metricsServer.
    let rate = run_check(canary, &rate_metric, None, None, &context()).await;
    let value = rate.value.expect("a success rate");
    assert_close(value, expected_rate, "success rate");
    assert_eq!(
        halt_text(&rate.outcome),
        format!("Halt podinfo.test advancement success rate {expected_rate:.2}% < 99%")
    );

    let duration = run_check(canary, &duration_metric, None, None, &context()).await;
    let value = duration.value.expect("a P99");
    assert_close(value, expected_p99, "P99");
    assert!(
        low < value && value <= high,
        "P99 {value} outside its bucket ({low}, {high}]"
    );
    // Flagger prints whole milliseconds as a Go duration.
    let shown = serin_api::duration::format_duration(Duration::from_millis(expected_p99 as u64));
    assert_eq!(
        halt_text(&duration.outcome),
        format!("Halt podinfo.test advancement request duration {shown} > 500ms")
    );
}

#[tokio::test]
async fn kubernetes_provider_builtins_read_the_http_histogram() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());
    let mut canary = manifests.canary("podinfo").clone();
    canary.spec.provider = Some("kubernetes".into());
    let (histogram, expected_rate) = traffic.http_canary();
    let expected_p99 = interpolated_quantile(0.99, &histogram);
    let [rate_metric, duration_metric] = metrics(&canary).try_into().expect("two metrics");

    let rate = run_check(&canary, &rate_metric, None, None, &context()).await;
    let query = rate.query.clone().unwrap_or_default();
    assert!(
        query.contains("http_request_duration_seconds_count"),
        "{query}"
    );
    assert_close(
        rate.value.expect("a success rate"),
        expected_rate,
        "success rate",
    );
    assert_eq!(
        halt_text(&rate.outcome),
        format!("Halt podinfo.test advancement success rate {expected_rate:.2}% < 99%")
    );

    let duration = run_check(&canary, &duration_metric, None, None, &context()).await;
    let value = duration.value.expect("a P99");
    assert_close(value, expected_p99, "P99 in milliseconds");
    assert!(expected_p99 < 500.0, "{expected_p99}");
    assert_eq!(duration.outcome, CheckOutcome::Pass);
}

/// A query that gives several series: Flagger takes one value; serin does too and
/// says how many series came back. Its Go template uses a conditional and printf.
#[tokio::test]
async fn several_series_give_a_value_and_a_warning() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());
    let canary = manifests.canary("podinfo");
    let metric = CanaryMetric {
        name: "per-code".into(),
        query: Some(
            r#"sort(sum by (response_code) (rate(istio_requests_total{ {{- if eq namespace "test" }}reporter="destination",{{ end -}}
               destination_workload_namespace="{{ namespace }}",{{ printf "destination_workload=%q" target }}}[{{ interval }}])))"#
                .into(),
        ),
        interval: Some("1m".into()),
        threshold_range: Some(serin_api::canary::ThresholdRange {
            min: None,
            max: Some(10.0),
        }),
        ..Default::default()
    };
    let check = run_check(canary, &metric, None, None, &context()).await;
    assert_close(
        check.value.expect("a value"),
        37.0,
        "the last of the sorted series",
    );
    assert_eq!(
        halt_text(&check.outcome),
        "Halt podinfo.test advancement per-code 37.00 > 10"
    );
    assert_eq!(
        check.warning.as_deref(),
        Some(
            "Metric per-code of podinfo.test: the query returned 4 series instead of one, the last one's value 37 is used"
        )
    );
}

#[tokio::test]
async fn old_metric_names_run_the_builtin_checks() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());
    let canary = manifests.canary("podinfo-old");
    let [rate_metric, duration_metric] = metrics(canary).try_into().expect("two metrics");

    let rate = run_check(canary, &rate_metric, None, None, &context()).await;
    assert_eq!(rate.metric, "request-success-rate");
    assert_close(
        rate.value.expect("a value"),
        traffic.success_rate("test", "podinfo"),
        "success rate",
    );
    assert!(
        halt_text(&rate.outcome).ends_with("< 99%"),
        "{:?}",
        rate.outcome
    );

    let duration = run_check(canary, &duration_metric, None, None, &context()).await;
    assert_eq!(duration.metric, "request-duration");
    assert_close(
        duration.value.expect("a value"),
        interpolated_quantile(0.99, traffic.histogram("test", "podinfo")),
        "P99",
    );
    assert!(
        halt_text(&duration.outcome).ends_with("> 500ms"),
        "{:?}",
        duration.outcome
    );
}

#[tokio::test]
async fn gitops_seed_templates_give_error_rate_and_latency() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());
    let canary = manifests.canary("podinfo-templates");
    // This Canary has no metricsServer: the templates' provider.address is used.
    assert!(canary.spec.metrics_server.is_none());
    let [error_rate, latency] = metrics(canary).try_into().expect("two metrics");

    let template = find_template(canary, &error_rate, &manifests.templates);
    let prepared = prepare(canary, &error_rate, template).expect("renders");
    assert_eq!(
        prepared.source,
        QuerySource::Template {
            name: "error-rate".into(),
            namespace: "istio-system".into()
        }
    );
    assert!(
        prepared
            .query
            .contains(r#"destination_workload_namespace="test""#)
    );
    assert!(prepared.query.contains("[30s]"));

    let check = run_check(canary, &error_rate, template, None, &context()).await;
    let expected = 100.0 - traffic.success_rate("test", "podinfo");
    assert_close(check.value.expect("an error rate"), expected, "error rate");
    assert_eq!(
        halt_text(&check.outcome),
        format!("Halt podinfo-templates.test advancement error-rate {expected:.2} > 1")
    );

    let template = find_template(canary, &latency, &manifests.templates);
    let check = run_check(canary, &latency, template, None, &context()).await;
    let expected = interpolated_quantile(0.99, traffic.histogram("test", "podinfo"));
    assert_close(check.value.expect("a latency"), expected, "latency");
    assert_eq!(
        halt_text(&check.outcome),
        format!("Halt podinfo-templates.test advancement latency {expected:.2} > 500")
    );
}

#[tokio::test]
async fn a_canary_without_traffic_fails_with_no_data() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());

    let absent = manifests.canary("absent");
    for metric in metrics(absent) {
        let check = run_check(absent, &metric, None, None, &context()).await;
        assert_eq!(check.value, None);
        let text = halt_text(&check.outcome);
        assert!(
            text.starts_with(&format!(
                "Halt advancement no values found for istio metric {} probably absent.test is not receiving traffic",
                metric.name
            )),
            "{text}"
        );
        assert!(text.contains("no data"), "{text}");
    }

    // Series exist but never grow: 0/0 is NaN, which is no data too, never a pass.
    let idle = manifests.canary("idle");
    let check = run_check(idle, &metrics(idle)[0], None, None, &context()).await;
    let text = halt_text(&check.outcome);
    assert!(text.contains("no values found"), "{text}");
    assert!(text.contains("NaN"), "{text}");
}

#[tokio::test]
async fn a_stopped_prometheus_fails_the_check_and_says_so() {
    let traffic = Traffic::istio();
    let mut prometheus = Prometheus::start(&traffic);
    let manifests = Manifests::load(&prometheus.url());
    let canary = manifests.canary("podinfo");
    let metric = &metrics(canary)[0];
    let prepared = prepare(canary, metric, None).expect("renders");
    let provider = build_provider(canary, &prepared, None, &context()).expect("provider");
    provider.is_online().await.expect("online while running");

    check_provider_online(canary, metric, None, None, &context())
        .await
        .expect("the Canary's Prometheus is available");

    prometheus.stop();
    let err = provider.run_query(&prepared.query).await.unwrap_err();
    assert!(err.is_unreachable(), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with(&format!("Prometheus {} unreachable", prometheus.url())),
        "{text}"
    );
    assert!(
        text.contains("istio_requests_total"),
        "the error names the query: {text}"
    );
    assert!(provider.is_online().await.is_err());

    let check = run_check(canary, metric, None, None, &context()).await;
    let text = halt_text(&check.outcome);
    assert!(
        text.starts_with("Prometheus query failed: Prometheus"),
        "{text}"
    );
    assert!(text.contains("unreachable"), "{text}");

    let text = check_provider_online(canary, metric, None, None, &context())
        .await
        .unwrap_err();
    assert!(
        text.starts_with(&format!("Prometheus {} not available", prometheus.url())),
        "{text}"
    );
}

#[tokio::test]
async fn template_variables_reach_prometheus() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let yaml = format!(
        r#"
apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: requests-by-code
  namespace: test
spec:
  provider:
    type: prometheus
  query: |
    sum(rate(istio_requests_total{{
      reporter="{{{{variables.reporter}}}}",
      destination_workload_namespace="{{{{ namespace }}}}",
      destination_workload="{{{{ target }}}}",
      response_code="{{{{ variables.code }}}}"
    }}[{{{{ interval }}}}]))
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  metricsServer: {url}
  targetRef:
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    metrics:
    - name: source-errors
      templateRef:
        name: requests-by-code
      templateVariables:
        reporter: source
        code: "500"
      thresholdRange:
        max: 10
"#,
        url = prometheus.url()
    );
    let loaded = Manifests::from_text(&yaml);
    let canary = &loaded.canaries[0];
    let metric = &metrics(canary)[0];
    // templateRef without namespace: the Canary's namespace; no provider.address:
    // the Canary's metricsServer.
    let template = find_template(canary, metric, &loaded.templates);
    assert!(template.is_some());
    let check = run_check(canary, metric, template, None, &context()).await;
    let expected: f64 = traffic
        .requests
        .iter()
        .filter(|s| s.reporter == "source" && s.workload == "podinfo" && s.response_code == "500")
        .map(|s| s.per_second)
        .sum();
    assert_close(check.value.expect("a rate"), expected, "rate");
    assert_eq!(
        halt_text(&check.outcome),
        format!("Halt podinfo.test advancement source-errors {expected:.2} > 10")
    );
}

#[tokio::test]
async fn unusable_answers_are_errors_that_name_the_query() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let options = PrometheusOptions {
        evaluation_time: Some(EVALUATION_TIME as f64),
        ..PrometheusOptions::new(prometheus.url())
    };
    let provider = PrometheusProvider::new(options.clone()).expect("provider");

    let err = provider.query("sum(rate(x[1m])").await.unwrap_err();
    assert!(matches!(err, ProviderError::Query { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("parse error"),
        "Prometheus' own message: {text}"
    );
    assert!(text.contains("sum(rate(x[1m])"), "{text}");

    // Several series: the last one's value, as Flagger takes it, and their count.
    let several = r#"sort(rate(istio_requests_total{reporter="destination",destination_workload_namespace="test",destination_workload="podinfo"}[1m]))"#;
    let answer = provider.query_value(several).await.expect("a value");
    assert_eq!(answer.series, 4);
    assert_close(answer.value, 37.0, "the last series");

    let err = provider.query("0/0").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::NaN { .. }) && err.is_no_data(),
        "{err:?}"
    );
    let err = provider.query("1/0").await.unwrap_err();
    assert!(err.to_string().contains("+Inf"), "{err}");
    let err = provider.query("-1/0").await.unwrap_err();
    assert!(err.to_string().contains("-Inf"), "{err}");
    let err = provider.query("rate(x[1m])").await.unwrap_err();
    assert!(matches!(err, ProviderError::NoData { .. }), "{err:?}");

    let wrong_path = PrometheusProvider::new(PrometheusOptions {
        address: format!("{}/not-prometheus", prometheus.url()),
        ..options
    })
    .expect("provider");
    let err = wrong_path.query("vector(1)").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Http { status: 404, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("vector(1)"), "{err}");

    assert_eq!(provider.query("vector(2.5)").await.unwrap(), 2.5);
    provider.is_online().await.expect("online");
}

/// bcrypt hash of "serin-test-password" (cost 4), made with
/// `python3 -c "import crypt; print(crypt.crypt('serin-test-password', crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16)))"`.
const PASSWORD_HASH: &str = "$2b$04$2MsVeUXnQh8/D2GjHT4vc.1lFFBu76blqVGIBl/wyJ6xT.WJA6jmm";

#[tokio::test]
async fn basic_auth_comes_from_the_template_secret() {
    let traffic = Traffic::istio();
    let web = format!("basic_auth_users:\n  flagger: '{PASSWORD_HASH}'\n");
    let prometheus = Prometheus::start_with(
        &traffic,
        Some(&web),
        Some(("flagger", "serin-test-password")),
    );
    let manifests = Manifests::load(&prometheus.url());
    let canary = manifests.canary("podinfo-templates");
    let metric = &metrics(canary)[0];
    let mut template = find_template(canary, metric, &manifests.templates)
        .expect("template")
        .clone();
    template.spec.provider.secret_ref = Some(serin_api::metric_template::SecretReference {
        name: "prom-auth".into(),
    });
    let secret = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
            .collect()
    };

    let good = secret(&[("username", "flagger"), ("password", "serin-test-password")]);
    let check = run_check(canary, metric, Some(&template), Some(&good), &context()).await;
    assert_close(
        check.value.expect("a value with the right password"),
        100.0 - traffic.success_rate("test", "podinfo"),
        "error rate",
    );

    let bad = secret(&[("username", "flagger"), ("password", "wrong")]);
    let check = run_check(canary, metric, Some(&template), Some(&bad), &context()).await;
    let text = halt_text(&check.outcome);
    assert!(text.contains("HTTP 401"), "{text}");

    let check = run_check(canary, metric, Some(&template), None, &context()).await;
    let text = halt_text(&check.outcome);
    assert!(
        text.contains("prom-auth"),
        "a missing Secret is named: {text}"
    );
}

#[tokio::test]
async fn bearer_token_from_the_secret_is_sent() {
    use axum::http::{HeaderMap, StatusCode};
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(|headers: HeaderMap| async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            if auth == "Bearer t0ken" {
                (
                    StatusCode::OK,
                    r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"42.5"]}]}}"#,
                )
            } else {
                (StatusCode::UNAUTHORIZED, "missing bearer token")
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    let data: BTreeMap<String, Vec<u8>> = [("token".to_string(), b"t0ken".to_vec())].into();
    let provider = PrometheusProvider::new(PrometheusOptions {
        credentials: Some(Credentials::from_secret_data(&data).unwrap()),
        ..PrometheusOptions::new(&address)
    })
    .unwrap();
    assert_eq!(provider.query("up").await.unwrap(), 42.5);

    let anonymous = PrometheusProvider::new(PrometheusOptions::new(&address)).unwrap();
    let err = anonymous.query("up").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Http { status: 401, .. }),
        "{err:?}"
    );
    server.abort();
}

#[tokio::test]
async fn a_silent_server_times_out_with_the_query_named() {
    // Accepts connections and never answers.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            open.push(socket);
        }
    });
    let provider = PrometheusProvider::new(PrometheusOptions {
        timeout: Duration::from_millis(300),
        ..PrometheusOptions::new(&address)
    })
    .unwrap();
    let err = provider.query("up == 1").await.unwrap_err();
    assert!(matches!(err, ProviderError::Timeout { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("did not answer within 300ms"), "{text}");
    assert!(text.contains("up == 1"), "{text}");
    server.abort();
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl (Debian package openssl) makes a test certificate");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\n",
        cert.display(),
        key.display()
    );
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start_with(&traffic, Some(&web), None);
    let address = format!("https://127.0.0.1:{}", prometheus.port());

    let trusting = PrometheusProvider::new(PrometheusOptions {
        insecure_skip_verify: true,
        ..PrometheusOptions::new(&address)
    })
    .unwrap();
    // The port is open; wait (bounded) until the TSDB is loaded and queries work.
    let deadline = Instant::now() + Duration::from_secs(30);
    let value = loop {
        match trusting.query("vector(1)").await {
            Ok(v) => break v,
            Err(e) if Instant::now() > deadline => panic!("not ready: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    assert_eq!(value, 1.0);

    let verifying = PrometheusProvider::new(PrometheusOptions::new(&address)).unwrap();
    let err = verifying.query("vector(1)").await.unwrap_err();
    let text = err.to_string().to_lowercase();
    assert!(text.contains("certificate"), "{text}");
}

/// A server on loopback that answers every query with a vector that never ends (no real
/// Prometheus answers so; a broken proxy or a hostile endpoint can).
#[tokio::test]
async fn an_endless_answer_is_cut_at_4_mib() {
    let app = axum::Router::new().route(
        "/api/v1/query",
        axum::routing::get(|| async {
            let start = futures::stream::once(async {
                Ok::<_, std::io::Error>(axum::body::Bytes::from_static(
                    br#"{"status":"success","data":{"resultType":"vector","result":["#,
                ))
            });
            let series = axum::body::Bytes::from(
                r#"{"metric":{},"value":[0,"1"]},"#.repeat(2048).into_bytes(),
            );
            let rest = futures::stream::repeat_with(move || Ok(series.clone()));
            axum::body::Body::from_stream(futures::StreamExt::chain(start, rest))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let provider = PrometheusProvider::new(PrometheusOptions {
        timeout: std::time::Duration::from_secs(5),
        ..PrometheusOptions::new(format!("http://{addr}"))
    })
    .expect("provider");
    let err = provider.query("vector(1)").await.unwrap_err();
    assert!(
        matches!(err, ProviderError::Decode { .. })
            && err.to_string().contains("larger than 4194304 bytes"),
        "{err}"
    );
}
