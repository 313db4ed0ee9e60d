//! `serin dashboard` in a real headless Chromium (Debian's `chromium` driven by its
//! `chromium-driver` over the W3C WebDriver protocol, https://www.w3.org/TR/webdriver2/):
//! a `serin simulate`-like scenario (the real controller with scripted metric values
//! and webhooks, on the sandbox served over loopback HTTP) is listed, the chart shows
//! the weight steps as they happen, and a click on "abort" rolls the canary back.
//!
//! With `SERIN_WRITE_SCREENSHOT=1` the page mid-rollout is saved as
//! `docs/dashboard.png` (the README shows it).

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{Value, json};
use serin_api::Canary;
use serin_simulate::{Options, Simulation};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

const MANIFESTS: &str = "apiVersion: v1
kind: Namespace
metadata:
  name: test
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
spec:
  replicas: 2
  selector:
    matchLabels:
      app: podinfo
  template:
    metadata:
      labels:
        app: podinfo
    spec:
      containers:
        - name: podinfod
          image: ghcr.io/stefanprodan/podinfo:6.0.0
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 10s
    threshold: 5
    maxWeight: 60
    stepWeight: 20
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
      - name: request-duration
        thresholdRange:
          max: 500
        interval: 30s
    webhooks:
      - name: acceptance-test
        type: pre-rollout
        url: http://flagger-loadtester.test/
      - name: load-test
        url: http://flagger-loadtester.test/
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
  namespace: test
spec:
  replicas: 1
  selector:
    matchLabels:
      app: backend
  template:
    metadata:
      labels:
        app: backend
    spec:
      containers:
        - name: backend
          image: ghcr.io/stefanprodan/podinfo:6.0.0
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: backend
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: backend
  service:
    port: 9898
  analysis:
    interval: 10s
    threshold: 5
    maxWeight: 50
    stepWeight: 10
";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A WebDriver session on chromedriver.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Browser {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, &url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("webdriver answers");
        let v: Value = resp.json().await.expect("webdriver json");
        assert!(v["value"].get("error").is_none(), "webdriver {path}: {v}");
        v["value"].clone()
    }

    async fn script(&self, js: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    /// Runs `js` until `check` accepts its result, at most `limit`.
    async fn wait(
        &self,
        what: &str,
        limit: Duration,
        js: &str,
        check: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + limit;
        loop {
            let v = self.script(js).await;
            if check(&v) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: last {v}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn click(&self, css: &str) {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                Some(json!({"using": "css selector", "value": css})),
            )
            .await;
        let id = found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(|v| v.as_str())
            .expect("element id")
            .to_string();
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            Some(json!({})),
        )
        .await;
    }

    async fn screenshot(&self) -> Vec<u8> {
        let v = self.call(reqwest::Method::GET, "/screenshot", None).await;
        base64::engine::general_purpose::STANDARD
            .decode(v.as_str().expect("base64 png"))
            .expect("png")
    }
}

async fn wait_http(http: &reqwest::Client, url: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return;
        }
        assert!(Instant::now() < deadline, "{url} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_follows_a_rollout_and_its_abort_button_rolls_it_back() {
    for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
        assert!(
            std::path::Path::new(path).exists(),
            "{path} is missing: install Debian's {package} (apt-get install -y chromium chromium-driver)"
        );
    }
    let docs = serin_api::load::parse_documents("dashboard.yaml", MANIFESTS).expect("parses");
    let mut sim = Simulation::start(
        docs,
        Options {
            metrics: BTreeMap::from([
                ("request-success-rate".to_string(), 99.6),
                ("request-duration".to_string(), 240.0),
            ]),
            rollout_delay: Duration::from_millis(200),
            ..Default::default()
        },
    )
    .await
    .expect("simulation starts");
    let server = sim
        .sandbox
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("serves");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sim.sandbox
        .write_kubeconfig(&kubeconfig, server.addr())
        .expect("kubeconfig");
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");

    let port = free_port();
    let _dashboard = Process(
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args([
                "dashboard",
                "--port",
                &port.to_string(),
                "--by",
                "browser-test",
                "--kubeconfig",
            ])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serin dashboard starts"),
    );
    let http = serin_http_client::client(&Default::default()).expect("http client");
    let page = format!("http://127.0.0.1:{port}/");
    wait_http(&http, &page).await;
    // Writes need the dashboard's header: a page on another site cannot send it.
    let forged = http
        .post(format!("{page}api/canaries/test/podinfo/abort"))
        .send()
        .await
        .expect("answers");
    assert_eq!(forged.status(), reqwest::StatusCode::FORBIDDEN);

    let driver_port = free_port();
    let _driver = Process(
        Command::new(CHROMEDRIVER)
            .arg(format!("--port={driver_port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts"),
    );
    let base = format!("http://127.0.0.1:{driver_port}");
    wait_http(&http, &format!("{base}/status")).await;
    let profile = dir.path().join("chromium-profile");
    let session: Value = http
        .post(format!("{base}/session"))
        .json(&json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                    "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync",
                    "--window-size=1280,1100",
                    format!("--user-data-dir={}", profile.display()),
                ]
            }
        }}}))
        .send()
        .await
        .expect("session")
        .json()
        .await
        .expect("session json");
    let session_id = session["value"]["sessionId"]
        .as_str()
        .unwrap_or_else(|| panic!("no session: {session}"))
        .to_string();
    let browser = Browser {
        http: http.clone(),
        base: base.clone(),
        session: session_id,
    };
    browser
        .call(reqwest::Method::POST, "/url", Some(json!({"url": page})))
        .await;

    // The page lists both canaries.
    let names = browser
        .wait(
            "the canary list",
            Duration::from_secs(15),
            "return [...document.querySelectorAll('tr.canary-row')].map(r => r.dataset.name)",
            |v| v.as_array().is_some_and(|a| a.len() == 2),
        )
        .await;
    assert_eq!(names, json!(["backend", "podinfo"]));
    browser.click("tr.canary-row[data-name=\"podinfo\"]").await;

    // A new revision of podinfo: the chart follows the weight steps live.
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "-n",
            "test",
            "set",
            "image",
            "deployment/podinfo",
            "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1",
        ])
        .output()
        .expect("kubectl");
    assert!(out.status.success(), "{out:?}");
    let weights = browser
        .wait(
            "weight steps 20 and 40 in the chart",
            Duration::from_secs(60),
            "return [...document.querySelectorAll('#weight-chart .weight-point')].map(c => +c.dataset.weight)",
            |v| {
                v.as_array()
                    .is_some_and(|a| a.contains(&json!(20)) && a.contains(&json!(40)))
            },
        )
        .await;
    let steps: Vec<i64> = weights
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_i64)
        .collect();
    assert!(
        steps.windows(2).all(|w| w[0] <= w[1]),
        "weights rise step by step: {steps:?}"
    );
    let metric = browser
        .wait(
            "the metric value",
            Duration::from_secs(15),
            "return document.querySelector('.metric[data-metric=\"request-success-rate\"]').textContent",
            |v| v.as_str().is_some_and(|s| s.contains("99.60")),
        )
        .await;
    assert!(metric.as_str().unwrap().contains("[99 .. –]"), "{metric}");
    let hook = browser
        .script(
            "return document.querySelector('tr.webhook[data-webhook=\"load-test\"]').textContent",
        )
        .await;
    assert!(hook.as_str().unwrap().contains("passed"), "{hook}");
    let shot = browser.screenshot().await;
    assert!(shot.starts_with(b"\x89PNG"), "a PNG");
    if std::env::var_os("SERIN_WRITE_SCREENSHOT").is_some() {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).expect("docs dir");
        std::fs::write(docs.join("dashboard.png"), &shot).expect("screenshot written");
    }

    // A click on "abort" rolls the canary back, and the page shows it.
    browser.click("#btn-abort").await;
    browser
        .wait(
            "Failed on the page",
            Duration::from_secs(10),
            "return document.getElementById('phase').textContent",
            |v| v == "Failed",
        )
        .await;
    let verdict = browser
        .wait(
            "the verdict",
            Duration::from_secs(10),
            "return document.getElementById('verdict').textContent",
            |v| {
                v.as_str()
                    .is_some_and(|s| s.contains(" done: ") || s.contains("refused"))
            },
        )
        .await;
    assert!(
        verdict
            .as_str()
            .unwrap()
            .contains("abort done: Rolling back podinfo.test abort requested by browser-test"),
        "{verdict}"
    );
    let api: kube::Api<Canary> = kube::Api::namespaced(sim.client.clone(), "test");
    let podinfo = api.get("podinfo").await.expect("podinfo");
    let status = podinfo.status_or_default();
    assert_eq!(status.phase.as_str(), "Failed");
    assert_eq!(status.canary_weight, 0);
    let timeline = browser
        .script("return document.getElementById('events').textContent")
        .await;
    assert!(
        timeline
            .as_str()
            .unwrap()
            .contains("Canary failed! Scaling down podinfo.test"),
        "{timeline}"
    );
    let _ = http
        .delete(format!("{base}/session/{}", browser.session))
        .send()
        .await;
    sim.stop_controller();
    server.shutdown().await;
}
