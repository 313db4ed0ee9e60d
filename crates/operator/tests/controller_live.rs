//! The operator's controller with its live checks (`LiveChecks`, as `serin operator`
//! builds them) against real parts: a real Prometheus (Debian's package, holding known
//! backfilled Istio traffic), webhook and Slack receivers served on loopback, and the
//! in-process sandbox as the Kubernetes API. MetricTemplates, their Secrets and
//! AlertProviders are read through the API, as in a cluster. Real time, with a 1s
//! analysis interval; every wait is bounded.

#[path = "../../metrics/tests/support/prometheus.rs"]
mod prometheus;
mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Secret;
use kube::Client;
use kube::api::{Api, Patch, PatchParams};
use prometheus::{EVALUATION_TIME, Prometheus, Traffic};
use serde_json::{Value, json};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_api::clock::Clock;
use serin_metrics::check::ProviderContext;
use serin_notify::{AlertMetrics, Dispatcher, KubeLookup};
use serin_operator::controller::{self, Context, ControllerOptions};
use serin_operator::events::CanaryEvent;
use serin_operator::observer::LiveChecks;
use serin_operator::webhook::WebhookCaller;
use serin_sandbox::{Sandbox, SandboxOptions};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

const WAIT: Duration = Duration::from_secs(90);

/// A sandbox with the controller running on it with live checks.
struct Live {
    _sandbox: Sandbox,
    client: Client,
    events: broadcast::Receiver<CanaryEvent>,
    log: Vec<CanaryEvent>,
    controller: JoinHandle<()>,
    revision: u32,
}

impl Drop for Live {
    fn drop(&mut self) {
        self.controller.abort();
    }
}

impl Live {
    /// Applies `yaml` and starts the controller; built-in metrics query
    /// `metrics_server`, evaluated at the end of the backfilled traffic.
    async fn start(yaml: &str, metrics_server: &str, alerts: bool) -> Self {
        let (sandbox, client) = support::sandbox_with(SandboxOptions {
            rollout_delay: Duration::from_millis(100),
            clock: Clock::system(),
            namespaces: vec!["default".into(), "istio-system".into()],
            ..SandboxOptions::default()
        })
        .await;
        support::apply(&client, yaml).await;
        let checks = Arc::new(LiveChecks {
            client: client.clone(),
            webhooks: WebhookCaller::default(),
            metrics: ProviderContext {
                operator_metrics_server: Some(metrics_server.to_string()),
                evaluation_time: Some(EVALUATION_TIME as f64),
                ..Default::default()
            },
        });
        let mut ctx = Context::new(
            client.clone(),
            Clock::system(),
            ControllerOptions::default(),
            checks,
        );
        if alerts {
            ctx = ctx.with_alerts(Dispatcher::new(
                vec![],
                Arc::new(KubeLookup::new(client.clone())),
                AlertMetrics::new(),
                Duration::from_secs(10),
            ));
        }
        let events = ctx.recorder.subscribe();
        let controller = tokio::spawn(controller::run(Arc::new(ctx)));
        Live {
            _sandbox: sandbox,
            client,
            events,
            log: Vec::new(),
            controller,
            revision: 0,
        }
    }

    fn drain(&mut self) {
        loop {
            match self.events.try_recv() {
                Ok(e) => self.log.push(e),
                Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
    }

    /// The messages recorded on canary `name` so far, in order.
    fn messages(&mut self, name: &str) -> Vec<String> {
        self.drain();
        self.log
            .iter()
            .filter(|e| e.name == name)
            .map(|e| e.message.clone())
            .collect()
    }

    fn lines(&mut self) -> String {
        self.drain();
        self.log
            .iter()
            .map(|e| format!("{}.{} {:?} {}", e.name, e.namespace, e.type_, e.message))
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn canary(&self, name: &str) -> Canary {
        Api::<Canary>::namespaced(self.client.clone(), "test")
            .get(name)
            .await
            .expect("canary")
    }

    /// Waits (bounded) until every named canary is in `phase`.
    async fn wait_phase(&mut self, names: &[&str], phase: CanaryPhase) {
        let deadline = Instant::now() + WAIT;
        loop {
            let mut all = true;
            for name in names {
                all &= self.canary(name).await.status_or_default().phase == phase;
            }
            if all {
                return;
            }
            if Instant::now() > deadline {
                panic!("{names:?} not {phase:?} within {WAIT:?}:\n{}", self.lines());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A new image on each named Deployment, then waits until each canary has
    /// finished analysing it: its phase.
    async fn rollout(&mut self, names: &[&str]) -> BTreeMap<String, CanaryPhase> {
        self.revision += 1;
        let mut before = BTreeMap::new();
        for name in names {
            let c = self.canary(name).await;
            before.insert(name.to_string(), c.status_or_default().last_applied_spec);
            let patch = json!({"spec": {"template": {"spec": {"containers": [
                {"name": "app", "image": format!("ghcr.io/stefanprodan/podinfo:6.1.{}", self.revision)}
            ]}}}});
            Api::<Deployment>::namespaced(self.client.clone(), "test")
                .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
                .await
                .expect("new image");
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let mut done = BTreeMap::new();
            for name in names {
                let s = self.canary(name).await.status_or_default();
                if matches!(s.phase, CanaryPhase::Succeeded | CanaryPhase::Failed)
                    && s.last_applied_spec != before[*name]
                {
                    done.insert(name.to_string(), s.phase);
                }
            }
            if done.len() == names.len() {
                return done;
            }
            if Instant::now() > deadline {
                panic!(
                    "{names:?} did not finish within {WAIT:?}:\n{}",
                    self.lines()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A Deployment and its Canary in namespace `test` (container `app`), with these
/// metrics and webhooks (YAML lists, indented by four spaces).
fn app(name: &str, metrics: &str, extra_analysis: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: test
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:
      containers:
        - name: app
          image: ghcr.io/stefanprodan/podinfo:6.0.0
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {name}
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  service:
    port: 9898
  analysis:
    interval: 1s
    threshold: 2
    maxWeight: 20
    stepWeight: 10
    metrics:
{metrics}
{extra_analysis}
---
"
    )
}

const SUCCESS_RATE_80: &str = "      - name: request-success-rate
        thresholdRange:
          min: 80
        interval: 1m";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn built_in_metrics_missing_templates_and_no_data_through_the_controller() {
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start(&traffic);
    let yaml = [
        // 87.23% of podinfo.test's requests succeed.
        app("podinfo", SUCCESS_RATE_80, ""),
        // No traffic at all reaches absent.test.
        app("absent", SUCCESS_RATE_80, ""),
        // A template nobody created.
        app(
            "backend",
            "      - name: error-rate
        templateRef:
          name: missing
          namespace: istio-system
        thresholdRange:
          max: 1
        interval: 1m",
            "",
        ),
    ]
    .concat();
    let mut live = Live::start(&yaml, &prometheus.url(), false).await;
    let names = ["podinfo", "absent", "backend"];
    live.wait_phase(&names, CanaryPhase::Initialized).await;
    let phases = live.rollout(&names).await;
    let lines = live.lines();
    assert_eq!(phases["podinfo"], CanaryPhase::Succeeded, "{lines}");
    assert_eq!(phases["absent"], CanaryPhase::Failed, "{lines}");
    assert_eq!(phases["backend"], CanaryPhase::Failed, "{lines}");

    let absent = live.messages("absent");
    let halts: Vec<&String> = absent
        .iter()
        .filter(|m| {
            m.starts_with(
                "Halt advancement no values found for istio metric request-success-rate \
                 probably absent.test is not receiving traffic",
            )
        })
        .collect();
    assert_eq!(halts.len(), 2, "one halt per failed check:\n{lines}");
    assert!(
        absent.contains(&"Rolling back absent.test failed checks threshold reached 2".into()),
        "{lines}"
    );
    assert!(
        !absent.iter().any(|m| m.contains("canary weight 20")),
        "{lines}"
    );

    let backend = live.messages("backend");
    assert_eq!(
        backend
            .iter()
            .filter(|m| *m == "Metric template missing.istio-system not found")
            .count(),
        2,
        "{lines}"
    );
    assert!(
        backend.contains(&"Rolling back backend.test failed checks threshold reached 2".into()),
        "{lines}"
    );

    // The same canary with a threshold the real success rate misses: the halt names
    // the value Prometheus computed from the known traffic.
    let rate = traffic.success_rate("test", "podinfo");
    assert!(rate > 80.0 && rate < 99.0, "{rate}");
    Api::<Canary>::namespaced(live.client.clone(), "test")
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"analysis": {"metrics": [
                {"name": "request-success-rate", "interval": "1m", "thresholdRange": {"min": 99}}
            ]}}})),
        )
        .await
        .expect("stricter threshold");
    let phases = live.rollout(&["podinfo"]).await;
    let lines = live.lines();
    assert_eq!(phases["podinfo"], CanaryPhase::Failed, "{lines}");
    let halt = format!("Halt podinfo.test advancement success rate {rate:.2}% < 99%");
    assert_eq!(
        live.messages("podinfo")
            .iter()
            .filter(|m| **m == halt)
            .count(),
        2,
        "{halt:?} twice in:\n{lines}"
    );
}

/// bcrypt hash of "serin-test-password" (cost 4), the metrics tests' own.
const PASSWORD_HASH: &str = "$2b$04$2MsVeUXnQh8/D2GjHT4vc.1lFFBu76blqVGIBl/wyJ6xT.WJA6jmm";

fn template(name: &str, address: &str, secret: &str, insecure: bool, query: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: MetricTemplate
metadata:
  name: {name}
  namespace: istio-system
spec:
  provider:
    type: prometheus
    address: {address}
    insecureSkipVerify: {insecure}
    secretRef:
      name: {secret}
  query: |
    {query}
---
"
    )
}

fn basic_auth_secret(name: &str, password: &str) -> String {
    format!(
        "apiVersion: v1
kind: Secret
metadata:
  name: {name}
  namespace: istio-system
stringData:
  username: flagger
  password: {password}
---
"
    )
}

fn template_metric(template: &str, max: f64) -> String {
    format!(
        "      - name: {template}
        templateRef:
          name: {template}
          namespace: istio-system
        thresholdRange:
          max: {max}
        interval: 1m"
    )
}

/// A self-signed certificate for 127.0.0.1 made with openssl: (cert, key) paths.
fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = std::process::Command::new("openssl")
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
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_in_another_namespace_with_basic_auth_and_insecure_skip_verify() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (cert, key) = self_signed(dir.path());
    let web = format!(
        "tls_server_config:\n  cert_file: {}\n  key_file: {}\nbasic_auth_users:\n  flagger: '{PASSWORD_HASH}'\n",
        cert.display(),
        key.display()
    );
    let traffic = Traffic::istio();
    let prometheus = Prometheus::start_with(&traffic, Some(&web), None);
    let address = format!("https://127.0.0.1:{}", prometheus.port());
    // The port is open; wait (bounded) until the TSDB is loaded and queries work.
    let ready = serin_metrics::PrometheusProvider::new(serin_metrics::PrometheusOptions {
        insecure_skip_verify: true,
        credentials: Some(
            serin_metrics::Credentials::from_secret_data(&BTreeMap::from([
                ("username".to_string(), b"flagger".to_vec()),
                ("password".to_string(), b"serin-test-password".to_vec()),
            ]))
            .expect("credentials"),
        ),
        ..serin_metrics::PrometheusOptions::new(&address)
    })
    .expect("provider");
    let deadline = Instant::now() + Duration::from_secs(30);
    while let Err(e) = ready.query("vector(1)").await {
        assert!(Instant::now() < deadline, "Prometheus not ready: {e}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let error_rate = "100 - sum(rate(istio_requests_total{reporter=\"destination\",destination_workload_namespace=\"{{ namespace }}\",destination_workload=\"{{ target }}\",response_code!~\"5.*\"}[{{ interval }}])) / sum(rate(istio_requests_total{reporter=\"destination\",destination_workload_namespace=\"{{ namespace }}\",destination_workload=\"{{ target }}\"}[{{ interval }}])) * 100";
    let yaml = [
        basic_auth_secret("prom-auth", "serin-test-password"),
        basic_auth_secret("prom-wrong", "not-the-password"),
        template("error-rate", &address, "prom-auth", true, error_rate),
        template("wrong-password", &address, "prom-wrong", true, "vector(1)"),
        template("verified-tls", &address, "prom-auth", false, "vector(1)"),
        app("podinfo", &template_metric("error-rate", 20.0), ""),
        app("backend", &template_metric("wrong-password", 5.0), ""),
        app("frontend", &template_metric("verified-tls", 5.0), ""),
    ]
    .concat();
    let mut live = Live::start(&yaml, "http://127.0.0.1:9", false).await;
    let names = ["podinfo", "backend", "frontend"];
    live.wait_phase(&names, CanaryPhase::Initialized).await;
    let phases = live.rollout(&names).await;
    let lines = live.lines();
    // 12.77% of podinfo.test's requests fail: under 20, through TLS without
    // verification and basic auth from the Secret next to the template.
    assert_eq!(phases["podinfo"], CanaryPhase::Succeeded, "{lines}");
    assert!(
        live.messages("podinfo")
            .contains(&"Promotion completed! Scaling down podinfo.test".into()),
        "{lines}"
    );
    // The same server refuses the wrong password in the other Secret...
    assert_eq!(phases["backend"], CanaryPhase::Failed, "{lines}");
    let backend = live.messages("backend");
    assert!(
        backend.iter().any(|m| m
            .starts_with("Metric query failed for wrong-password: Prometheus https://127.0.0.1:")
            && m.contains("answered HTTP 401")),
        "{lines}"
    );
    // ...and without insecureSkipVerify its self-signed certificate.
    assert_eq!(phases["frontend"], CanaryPhase::Failed, "{lines}");
    let frontend = live.messages("frontend");
    assert!(
        frontend.iter().any(|m| m
            .starts_with("Metric query failed for verified-tls: Prometheus https://127.0.0.1:")
            && m.contains("invalid peer certificate")),
        "{lines}"
    );

    // A rotated Secret is read at the next check: the good canary now fails too.
    Api::<Secret>::namespaced(live.client.clone(), "istio-system")
        .patch(
            "prom-auth",
            &PatchParams::default(),
            &Patch::Merge(json!({"stringData": {"password": "rotated-away"}})),
        )
        .await
        .expect("secret changed");
    let phases = live.rollout(&["podinfo"]).await;
    let lines = live.lines();
    assert_eq!(phases["podinfo"], CanaryPhase::Failed, "{lines}");
    assert!(
        live.messages("podinfo")
            .iter()
            .any(|m| m.starts_with("Metric query failed for error-rate:")
                && m.contains("answered HTTP 401")),
        "{lines}"
    );
}

/// A loopback receiver for webhooks (`POST /hook/NAME`) and Slack (`POST /slack`):
/// records every body; answers each hook with its configured status (200 unless set).
#[derive(Clone, Default)]
struct Receiver {
    calls: Arc<Mutex<Vec<(String, Value)>>>,
    answers: Arc<Mutex<BTreeMap<String, u16>>>,
}

impl Receiver {
    async fn serve(&self) -> String {
        async fn hook(
            State(r): State<Receiver>,
            Path(name): Path<String>,
            body: String,
        ) -> StatusCode {
            let body = serde_json::from_str(&body).unwrap_or(Value::Null);
            r.calls.lock().unwrap().push((name.clone(), body));
            let code = r.answers.lock().unwrap().get(&name).copied().unwrap_or(200);
            StatusCode::from_u16(code).unwrap_or(StatusCode::OK)
        }
        let app = axum::Router::new()
            .route("/hook/{name}", axum::routing::post(hook))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }

    fn answer(&self, name: &str, code: u16) {
        self.answers.lock().unwrap().insert(name.into(), code);
    }

    fn calls(&self) -> Vec<(String, Value)> {
        self.calls.lock().unwrap().clone()
    }

    /// The calls from `before` on, once the post-rollout hook has been called: serin,
    /// like Flagger, runs it after it writes the final phase (10 s at most).
    async fn after_post(&self, before: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let calls = self.phases()[before..].to_vec();
            if calls.iter().any(|(n, _)| n == "post") || Instant::now() > deadline {
                return calls;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// (hook, phase) of every call but the event hook's, in order.
    fn phases(&self) -> Vec<(String, String)> {
        self.calls()
            .into_iter()
            .filter(|(n, _)| n != "events" && n != "slack")
            .map(|(n, b)| (n, b["phase"].as_str().unwrap_or("?").to_string()))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_webhook_type_is_called_with_its_phase_and_alerts_reach_slack() {
    let receiver = Receiver::default();
    let base = receiver.serve().await;
    // The rollback gate is closed (non-2xx) unless a test opens it.
    receiver.answer("abort", 403);
    let hooks = [
        ("gate", "confirm-rollout"),
        ("pre", "pre-rollout"),
        ("load", "rollout"),
        ("more", "confirm-traffic-increase"),
        ("approve", "confirm-promotion"),
        ("abort", "rollback"),
        ("post", "post-rollout"),
        ("events", "event"),
    ];
    let mut webhooks = String::from("    webhooks:\n");
    for (name, type_) in hooks {
        webhooks.push_str(&format!(
            "      - name: {name}\n        type: {type_}\n        url: {base}/hook/{name}\n        timeout: 5s\n"
        ));
    }
    let alerts = "    alerts:
      - name: on-call
        severity: info
        providerRef:
          name: on-call
          namespace: istio-system
";
    let yaml = format!(
        "{}{}apiVersion: v1
kind: Secret
metadata:
  name: on-call-url
  namespace: istio-system
stringData:
  address: {base}/hook/slack
---
apiVersion: flagger.app/v1beta1
kind: AlertProvider
metadata:
  name: on-call
  namespace: istio-system
spec:
  type: slack
  channel: rollouts
  secretRef:
    name: on-call-url
",
        app("podinfo", "      []", &format!("{webhooks}{alerts}")),
        ""
    );
    let mut live = Live::start(&yaml, "http://127.0.0.1:9", true).await;
    live.wait_phase(&["podinfo"], CanaryPhase::Initialized)
        .await;
    let before = receiver.phases().len();
    let phases = live.rollout(&["podinfo"]).await;
    let lines = live.lines();
    assert_eq!(phases["podinfo"], CanaryPhase::Succeeded, "{lines}");

    let calls = receiver.after_post(before).await;
    let of = |name: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, p)| p.clone())
            .collect()
    };
    // Flagger's phases: confirm-rollout gets the canary's phase at the time (just
    // initialized), post-rollout the outcome, every other hook Progressing.
    assert_eq!(of("gate"), ["Initialized"], "{calls:?}");
    assert_eq!(of("pre"), ["Progressing"], "{calls:?}");
    assert_eq!(of("post"), ["Succeeded"], "{calls:?}");
    for name in ["load", "more", "approve", "abort"] {
        let p = of(name);
        assert!(
            !p.is_empty() && p.iter().all(|p| p == "Progressing"),
            "{name}: {p:?} in {calls:?}"
        );
    }
    // One traffic increase approved per step (10, 20), and one for the promotion at
    // max weight, as in Flagger.
    assert_eq!(of("more").len(), 3, "{calls:?}");
    let order: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    let first = |n: &str| order.iter().position(|o| *o == n).unwrap();
    assert!(first("gate") < first("pre"), "{order:?}");
    assert!(first("pre") < first("load"), "{order:?}");
    assert!(first("load") < first("approve"), "{order:?}");
    assert_eq!(order.last(), Some(&"post"), "{order:?}");
    let msgs = live.messages("podinfo");
    for m in [
        "Confirm-rollout check gate passed",
        "Pre-rollout check pre passed",
        "Confirm-traffic-increase check more passed",
        "Confirm-promotion check approve passed",
        "Post-rollout check post passed",
    ] {
        assert!(msgs.contains(&m.to_string()), "{m:?} not in:\n{lines}");
    }

    // The event hook receives each event with its text and type.
    let deadline = Instant::now() + WAIT;
    loop {
        let events: Vec<Value> = receiver
            .calls()
            .into_iter()
            .filter(|(n, _)| n == "events")
            .map(|(_, b)| b)
            .collect();
        let seen = events.iter().any(|b| {
            b["metadata"]["eventMessage"] == "New revision detected! Scaling up podinfo.test"
                && b["metadata"]["eventType"] == "Normal"
                && b["phase"] == "Progressing"
        });
        if seen {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no event webhook call: {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The AlertProvider and its Secret (another namespace) were read through the
    // API: Slack got the alert at the address the Secret holds.
    loop {
        let slack: Vec<Value> = receiver
            .calls()
            .into_iter()
            .filter(|(n, _)| n == "slack")
            .map(|(_, b)| b)
            .collect();
        let seen = slack.iter().any(|b| {
            b["channel"] == "rollouts"
                && b.to_string()
                    .contains("New revision detected, progressing canary analysis.")
        });
        if seen {
            break;
        }
        assert!(Instant::now() < deadline, "no Slack alert: {slack:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A failing pre-rollout check halts the analysis before any traffic moves and,
    // at the threshold, rolls back; post-rollout hooks hear of the failure.
    receiver.answer("pre", 500);
    let before = receiver.phases().len();
    let phases = live.rollout(&["podinfo"]).await;
    let lines = live.lines();
    assert_eq!(phases["podinfo"], CanaryPhase::Failed, "{lines}");
    let calls = receiver.after_post(before).await;
    let names: Vec<&str> = calls.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| **n == "pre").count(),
        2,
        "{calls:?}"
    );
    assert!(
        !names.contains(&"load") && !names.contains(&"more") && !names.contains(&"approve"),
        "nothing after a failed pre-rollout check: {calls:?}"
    );
    assert_eq!(
        calls.last(),
        Some(&("post".to_string(), "Failed".to_string())),
        "{calls:?}"
    );
    let msgs = live.messages("podinfo");
    assert_eq!(
        msgs.iter()
            .filter(
                |m| m.starts_with("Halt podinfo.test advancement pre-rollout check pre failed 500")
            )
            .count(),
        2,
        "{lines}"
    );
    assert!(
        msgs.contains(&"Rolling back podinfo.test failed checks threshold reached 2".into()),
        "{lines}"
    );
    let canary = live.canary("podinfo").await;
    assert_eq!(canary.status_or_default().canary_weight, 0);

    // An open rollback gate aborts at once.
    receiver.answer("pre", 200);
    receiver.answer("abort", 200);
    let phases = live.rollout(&["podinfo"]).await;
    let lines = live.lines();
    assert_eq!(phases["podinfo"], CanaryPhase::Failed, "{lines}");
    assert!(
        live.messages("podinfo")
            .contains(&"Rolling back podinfo.test manual webhook invoked".into()),
        "{lines}"
    );
}
