//! serin's own metrics as a Flagger user's Prometheus sees them: the controller with
//! live checks runs rollouts on the sandbox (built-in metrics from a real Prometheus
//! holding backfilled Istio traffic), the same Prometheus scrapes serin's /metrics,
//! and the queries of the Grafana dashboard in deploy/grafana, of the seed's alert
//! rule (`flagger_canary_status > 1`) and of Flagger's documented series
//! (docs/gitbook/usage/monitoring.md) run through Prometheus' HTTP API.
//!
//! The Canary is named `podinfo-release` and targets `podinfo`: Flagger's series are
//! labelled with the target's name, which the dashboard's `$canary` holds.

#[path = "../../metrics/tests/support/prometheus.rs"]
mod prometheus;
mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use prometheus::{EVALUATION_TIME, Prometheus, Traffic, interpolated_quantile};
use serde_json::{Value, json};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_api::clock::Clock;
use serin_metrics::check::ProviderContext;
use serin_operator::controller::{self, Context, ControllerOptions};
use serin_operator::observer::LiveChecks;
use serin_operator::telemetry::Telemetry;
use serin_operator::webhook::WebhookCaller;
use serin_sandbox::{Sandbox, SandboxOptions};
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(90);
/// A Deployment `target` and its Canary `<target>-release` in namespace `test`.
fn app(target: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {target}
  namespace: test
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {target}
  template:
    metadata:
      labels:
        app: {target}
    spec:
      containers:
        - name: app
          image: ghcr.io/stefanprodan/podinfo:6.0.0
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {target}-release
  namespace: test
spec:
  provider: istio
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {target}
  service:
    port: 9898
  analysis:
    interval: 10s
    threshold: 1
    maxWeight: 10
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 80
        interval: 1m
      - name: request-duration
        thresholdRange:
          max: 2000
        interval: 1m
---
"
    )
}

/// The backfilled traffic: `podinfo` is healthy enough for the thresholds above,
/// `idle` gets no requests at all ("no values found": rolled back).
const TARGETS: [&str; 2] = ["podinfo", "idle"];

struct Live {
    _sandbox: Sandbox,
    client: Client,
    controller: JoinHandle<()>,
    server: JoinHandle<std::io::Result<()>>,
    revision: u32,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.controller.abort();
        self.server.abort();
    }
}

impl Live {
    async fn phase(&self, target: &str) -> CanaryStatusSummary {
        let s = Api::<Canary>::namespaced(self.client.clone(), "test")
            .get(&format!("{target}-release"))
            .await
            .expect("canary")
            .status_or_default();
        (s.phase, s.last_applied_spec)
    }

    async fn wait_initialized(&self) {
        let deadline = Instant::now() + WAIT;
        for t in TARGETS {
            while self.phase(t).await.0 != CanaryPhase::Initialized {
                assert!(
                    Instant::now() < deadline,
                    "{t} not initialized within {WAIT:?}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    /// A new image on every target, then waits until each analysis has ended:
    /// each canary's phase.
    async fn rollout(&mut self) -> BTreeMap<String, CanaryPhase> {
        self.revision += 1;
        let mut before = BTreeMap::new();
        for t in TARGETS {
            before.insert(t, self.phase(t).await.1);
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": format!("ghcr.io/stefanprodan/podinfo:6.1.{}", self.revision)}
            ]}}}});
            Api::<Deployment>::namespaced(self.client.clone(), "test")
                .patch(t, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .expect("new image");
        }
        let deadline = Instant::now() + WAIT;
        let mut done = BTreeMap::new();
        while done.len() < TARGETS.len() {
            for t in TARGETS {
                let (phase, applied) = self.phase(t).await;
                if matches!(phase, CanaryPhase::Succeeded | CanaryPhase::Failed)
                    && applied != before[t]
                {
                    done.insert(t.to_string(), phase);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no verdicts within {WAIT:?}: {done:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        done
    }
}

type CanaryStatusSummary = (CanaryPhase, Option<String>);

/// Binds serin's metrics port, starts Prometheus (backfilled traffic, scraping that
/// port), then the controller with live checks against that Prometheus.
async fn start(traffic: &Traffic) -> (Live, Prometheus) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let port = listener.local_addr().expect("address").port();
    let prometheus = Prometheus::start_scraping(traffic, &[format!("127.0.0.1:{port}")]);
    let telemetry = Telemetry::new("istio");
    let server = tokio::spawn(telemetry.clone().serve(listener));
    let (sandbox, client) = support::sandbox_with(SandboxOptions {
        rollout_delay: Duration::from_millis(100),
        clock: Clock::system(),
        namespaces: vec!["default".into(), "istio-system".into()],
        ..SandboxOptions::default()
    })
    .await;
    support::apply(&client, &TARGETS.map(app).concat()).await;
    let checks = Arc::new(LiveChecks {
        client: client.clone(),
        webhooks: WebhookCaller::default(),
        metrics: ProviderContext {
            operator_metrics_server: Some(prometheus.url()),
            evaluation_time: Some(EVALUATION_TIME as f64),
            ..Default::default()
        },
    });
    let ctx = Context::new(
        client.clone(),
        Clock::system(),
        ControllerOptions::default(),
        checks,
    )
    .with_telemetry(telemetry);
    let controller = tokio::spawn(controller::run(Arc::new(ctx)));
    (
        Live {
            _sandbox: sandbox,
            client,
            controller,
            server,
            revision: 0,
        },
        prometheus,
    )
}

/// One instant query through Prometheus' HTTP API: each series' labels and value.
async fn query(prometheus: &Prometheus, promql: &str) -> Vec<(BTreeMap<String, String>, f64)> {
    let http = serin_http_client::client_without_env_proxy(&serin_http_client::ClientOptions {
        timeout: Duration::from_secs(5),
        ..Default::default()
    })
    .expect("client");
    let mut url = url::Url::parse(&format!("{}/api/v1/query", prometheus.url())).expect("URL");
    url.query_pairs_mut().append_pair("query", promql);
    let body: Value = http
        .get(url)
        .send()
        .await
        .expect("Prometheus answers")
        .json()
        .await
        .expect("JSON");
    assert_eq!(body["status"], "success", "{promql}: {body}");
    body["data"]["result"]
        .as_array()
        .expect("a vector")
        .iter()
        .map(|r| {
            let labels = r["metric"]
                .as_object()
                .expect("labels")
                .iter()
                .filter(|(k, _)| !["instance", "job"].contains(&k.as_str()))
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                .collect();
            let value = r["value"][1]
                .as_str()
                .and_then(|v| v.parse().ok())
                .expect("a number");
            (labels, value)
        })
        .collect()
}

/// Polls (bounded) until `promql` gives exactly one series with value `want`:
/// Prometheus scrapes once a second. Returns what the last query gave.
async fn wait_value(prometheus: &Prometheus, promql: &str, want: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = query(prometheus, promql).await;
        if let [(_, v)] = got.as_slice()
            && (v - want).abs() <= 1e-9 * want.abs().max(1.0)
        {
            return *v;
        }
        if Instant::now() > deadline {
            let scraped = query(prometheus, r#"{job="serin",__name__=~"flagger_canary_.+"}"#).await;
            panic!("{promql} gave {got:?}, not {want} within 30s; serin's series: {scraped:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The dashboard's queries of serin's own metrics (`flagger_*`), with its variables
/// set as a user viewing podinfo in test sets them.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = support::repo_path("deploy/grafana/istio-canary.json");
    let dashboard: Value = serde_json::from_str(&support::read(&path)).expect("dashboard JSON");
    let mut out = Vec::new();
    fn walk(v: &Value, out: &mut Vec<(String, String)>) {
        if let Some(panels) = v["panels"].as_array() {
            for p in panels {
                for t in p["targets"].as_array().into_iter().flatten() {
                    if let Some(expr) = t["expr"].as_str() {
                        let title = p["title"].as_str().unwrap_or_default().to_string();
                        out.push((title, expr.to_string()));
                    }
                }
                walk(p, out);
            }
        }
    }
    walk(&dashboard, &mut out);
    out.into_iter()
        .filter(|(_, e)| e.contains("flagger_"))
        .map(|(t, e)| {
            let e = e
                .replace("$namespace", "test")
                .replace("$primary", "podinfo-primary")
                .replace("$canary", "podinfo");
            (t, e)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flagger_dashboard_and_alert_rule_find_serins_series_after_rollouts() {
    let traffic = Traffic::istio();
    let (mut live, prometheus) = start(&traffic).await;
    live.wait_initialized().await;
    let phases = live.rollout().await;
    assert_eq!(phases["podinfo"], CanaryPhase::Succeeded);
    assert_eq!(phases["idle"], CanaryPhase::Failed);

    let labels = |target: &str| {
        format!(
            r#"name="{target}",namespace="test",deployment_strategy="canary",analysis_status="completed""#
        )
    };
    wait_value(
        &prometheus,
        &format!("flagger_canary_successes_total{{{}}}", labels("podinfo")),
        1.0,
    )
    .await;
    wait_value(
        &prometheus,
        &format!("flagger_canary_failures_total{{{}}}", labels("idle")),
        1.0,
    )
    .await;
    // Every dashboard panel on serin's metrics finds them, with the values a
    // promoted canary has: status 1, all traffic on the primary.
    let panels = dashboard_queries();
    assert!(panels.len() >= 3, "{panels:?}");
    for (title, expr) in &panels {
        let got = query(&prometheus, expr).await;
        assert!(!got.is_empty(), "panel {title:?}: {expr} finds nothing");
    }
    let weights: BTreeMap<String, f64> = query(
        &prometheus,
        r#"max by (workload) (flagger_canary_weight{namespace=~"test",workload=~"podinfo-primary|podinfo"})"#,
    )
    .await
    .into_iter()
    .map(|(l, v)| (l["workload"].clone(), v))
    .collect();
    assert_eq!(
        weights,
        BTreeMap::from([("podinfo".into(), 0.0), ("podinfo-primary".into(), 100.0)])
    );
    wait_value(
        &prometheus,
        r#"max(flagger_canary_status{namespace=~"test",name=~"podinfo"})"#,
        1.0,
    )
    .await;
    wait_value(
        &prometheus,
        r#"flagger_canary_total{namespace="test"}"#,
        2.0,
    )
    .await;
    // The seed's alert rule fires for the rolled-back canary only, naming its target.
    let firing = query(&prometheus, "flagger_canary_status > 1").await;
    assert_eq!(firing.len(), 1, "{firing:?}");
    assert_eq!(firing[0].0["name"], "idle", "{firing:?}");
    assert_eq!(firing[0].0["namespace"], "test", "{firing:?}");
    assert_eq!(firing[0].1, 2.0, "{firing:?}");
    assert!(
        query(
            &prometheus,
            r#"{__name__=~"flagger_.+",name=~".*-release"}"#
        )
        .await
        .is_empty(),
        "Flagger labels its series with the target's name, not the Canary's"
    );
    // The last value of each analysis metric, the request duration in seconds, as
    // Prometheus computed them from the known traffic; none for a query without
    // values.
    let rate = traffic.success_rate("test", "podinfo");
    let p99 = interpolated_quantile(0.99, traffic.histogram("test", "podinfo")) / 1000.0;
    let got = query(
        &prometheus,
        r#"flagger_canary_metric_analysis{namespace="test"}"#,
    )
    .await;
    let values: BTreeMap<(String, String), f64> = got
        .iter()
        .map(|(l, v)| ((l["name"].clone(), l["metric"].clone()), *v))
        .collect();
    assert_eq!(values.len(), 2, "{got:?}");
    let value = |metric: &str| values[&("podinfo".to_string(), metric.to_string())];
    assert!(
        (value("request-success-rate") - rate).abs() < 1e-6,
        "{values:?} vs {rate}"
    );
    assert!(
        (value("request-duration") - p99).abs() < 1e-6,
        "{values:?} vs {p99}"
    );
    // Flagger's buckets, written as Go writes them, so `le="10"` selects one.
    let mut bounds: Vec<String> = query(
        &prometheus,
        r#"flagger_canary_duration_seconds_bucket{name="podinfo",namespace="test"}"#,
    )
    .await
    .into_iter()
    .map(|(l, _)| l["le"].clone())
    .collect();
    bounds.sort_by(|a, b| {
        let f = |s: &str| s.parse::<f64>().unwrap_or(f64::INFINITY);
        f(a).total_cmp(&f(b))
    });
    assert_eq!(
        bounds,
        [
            "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"
        ]
    );
    // The step to 10% and the one to promotion were analysis runs: timed.
    let timed = query(
        &prometheus,
        r#"flagger_canary_duration_seconds_bucket{name="podinfo",namespace="test",le="10"}"#,
    )
    .await;
    assert!(
        matches!(timed.as_slice(), [(_, n)] if *n >= 2.0),
        "{timed:?}"
    );
}
