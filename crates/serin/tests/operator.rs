//! `serin operator` as a process against the sandbox served over HTTP on loopback: it
//! initializes a canary, reacts to a new revision, records Kubernetes Events, writes
//! JSON logs with `msg` and `canary`, and serves Flagger's metrics.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_sandbox::{Sandbox, SandboxOptions};

const MANIFESTS: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  namespace: test
spec:
  replicas: 1
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
          ports:
            - containerPort: 9898
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
    interval: 1h
    threshold: 2
    maxWeight: 50
    stepWeight: 10
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
";

struct Operator(Child);

impl Drop for Operator {
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

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_process_runs_a_canary_on_a_cluster() {
    let sandbox = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_millis(200),
        ..Default::default()
    });
    let server = sandbox
        .serve("127.0.0.1:0".parse().unwrap())
        .await
        .expect("serves");
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox
        .write_kubeconfig(&kubeconfig, server.addr())
        .expect("kubeconfig");
    let client = sandbox.client();
    serin_simulate::apply::install_crds(&client)
        .await
        .expect("crds");
    for doc in serin_api::load::parse_documents("m.yaml", MANIFESTS).expect("parses") {
        serin_simulate::apply::apply_value(&client, doc.value)
            .await
            .expect("applied");
    }

    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(["operator", "--kubeconfig"])
        .arg(&kubeconfig)
        .args([
            "--port",
            &port.to_string(),
            "--metrics-server",
            "http://127.0.0.1:9",
        ])
        .args(["--leader-elect", "--leader-election-namespace", "default"])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("serin operator starts");
    let mut operator = Operator(child);

    let canaries: Api<Canary> = Api::namespaced(client.clone(), "test");
    wait_for("Initialized", async || {
        let c = canaries.get("podinfo").await.ok()?;
        (c.status_or_default().phase == CanaryPhase::Initialized).then_some(())
    })
    .await;

    // A new revision is picked up at once: the analysis interval is an hour, so
    // reaching Progressing within the (load-proof) 60 s wait can only come from the
    // watch on the target, never from the schedule.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "test");
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "podinfod", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}});
    deployments
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .expect("new image");
    wait_for("Progressing", async || {
        let c = canaries.get("podinfo").await.ok()?;
        (c.status_or_default().phase == CanaryPhase::Progressing).then_some(())
    })
    .await;

    let events: Api<Event> = Api::namespaced(client.clone(), "test");
    let messages = wait_for("events", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        let msgs: Vec<(String, String, String)> = list
            .items
            .into_iter()
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.message.unwrap_or_default(),
                )
            })
            .collect();
        msgs.iter()
            .any(|m| m.2 == "New revision detected! Scaling up podinfo.test")
            .then_some(msgs)
    })
    .await;
    assert!(messages.contains(&(
        "Normal".into(),
        "Synced".into(),
        "Initialization done! podinfo.test".into()
    )));

    let metrics = http_get(port, "/metrics").expect("/metrics answers");
    assert!(metrics.contains("flagger_info{"), "{metrics}");
    assert!(
        metrics.contains("flagger_canary_status{name=\"podinfo\",namespace=\"test\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flagger_canary_total{namespace=\"test\"} 1"),
        "{metrics}"
    );
    let health = http_get(port, "/healthz").expect("/healthz answers");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");

    // The printer columns, as kubectl shows them (Debian's kubectl is required).
    let out = Command::new("/usr/bin/kubectl")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["-n", "test", "get", "canaries"])
        .output()
        .expect("kubectl (/usr/bin/kubectl, Debian package kubernetes-client) runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let header: Vec<&str> = text
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "STATUS", "WEIGHT", "LASTTRANSITIONTIME"],
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let row: Vec<&str> = text
        .lines()
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        row.get(..2),
        Some(&["podinfo", "Progressing"][..]),
        "{text}"
    );

    let _ = operator.0.kill();
    let mut stderr = String::new();
    if let Some(mut e) = operator.0.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let logs: Vec<serde_json::Value> = stderr
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert!(
        logs.iter()
            .any(|l| l["msg"] == "Initialization done! podinfo.test"
                && l["canary"] == "podinfo.test"),
        "JSON logs with msg and canary:\n{stderr}"
    );
    server.shutdown().await;
}
