//! `serin operator`'s own health, as a process against the sandbox served on loopback:
//! /readyz follows the API server and the watches, API errors in the logs name the
//! server and the request, SIGTERM hands the leader Lease over at once, and webhooks
//! authenticate to the load tester with a token from a Secret.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Event, Secret};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_sandbox::{FaultRule, Sandbox, SandboxOptions, ServeHandle, Verb};

const APP: &str = "apiVersion: apps/v1
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
";

/// A canary on an hour's interval: it runs only when something it watches changes.
fn canary(webhooks: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  provider: kubernetes
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  analysis:
    interval: 1h
    threshold: 2
    iterations: 2
{webhooks}"
    )
}

/// A running `serin operator`; its stderr is collected as it comes.
struct Operator {
    child: Child,
    logs: Arc<Mutex<String>>,
    port: u16,
}

impl Operator {
    fn start(kubeconfig: &std::path::Path, hostname: &str, extra: &[&str]) -> Operator {
        let port = free_port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["operator", "--kubeconfig"])
            .arg(kubeconfig)
            .args(["--port", &port.to_string()])
            .args(["--metrics-server", "http://127.0.0.1:9"])
            .args(["--mesh-provider", "kubernetes"])
            .args(extra)
            .env("HOSTNAME", hostname)
            .stderr(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .expect("serin operator starts");
        let logs = Arc::new(Mutex::new(String::new()));
        let mut stderr = child.stderr.take().expect("stderr");
        let sink = logs.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 8192];
            while let Ok(n) = stderr.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Operator { child, logs, port }
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().clone()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `/readyz`: its status code and body.
    fn readyz(&self) -> Option<(u16, String)> {
        let text = http_get(self.port, "/readyz")?;
        let code = text.split_whitespace().nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|b| b.1).unwrap_or_default();
        Some((code, body.to_string()))
    }

    fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
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

/// Polls `f` every 100 ms for at most 90 s (a bound for a loaded machine, not a timing).
async fn wait_for<T>(what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

struct Cluster {
    sandbox: Sandbox,
    server: Option<ServeHandle>,
    addr: std::net::SocketAddr,
    kubeconfig: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

async fn cluster(manifests: &[&str]) -> Cluster {
    cluster_at("127.0.0.1:0".parse().unwrap(), manifests).await
}

/// A new sandbox, with the CRDs and `manifests` applied, served on `addr`.
async fn cluster_at(addr: std::net::SocketAddr, manifests: &[&str]) -> Cluster {
    let sandbox = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_millis(200),
        namespaces: ["default", "test"].map(String::from).to_vec(),
        ..Default::default()
    });
    let server = sandbox.serve(addr).await.expect("serves");
    let addr = server.addr();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    sandbox
        .write_kubeconfig(&kubeconfig, addr)
        .expect("kubeconfig");
    let client = sandbox.client();
    serin_simulate::apply::install_crds(&client)
        .await
        .expect("crds");
    for m in manifests {
        for doc in serin_api::load::parse_documents("m.yaml", m).expect("parses") {
            serin_simulate::apply::apply_value(&client, doc.value)
                .await
                .expect("applied");
        }
    }
    Cluster {
        sandbox,
        server: Some(server),
        addr,
        kubeconfig,
        _dir: dir,
    }
}

async fn wait_ready(op: &Operator, what: &str) {
    wait_for(what, async || {
        op.readyz().filter(|(code, _)| *code == 200).map(|_| ())
    })
    .await;
}

async fn wait_not_ready(op: &Operator, what: &str) -> String {
    wait_for(what, async || {
        op.readyz()
            .filter(|(code, _)| *code == 503)
            .map(|(_, body)| body)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_the_api_server_and_errors_name_it() {
    let mut c = cluster(&[APP, &canary("")]).await;
    let op = Operator::start(&c.kubeconfig, "serin-a", &[]);
    wait_ready(&op, "ready once the watches have listed").await;

    // The API server goes away: not ready, saying which server.
    c.server.take().expect("serving").shutdown().await;
    let server = format!("http://{}", c.addr);
    let unreachable = format!("API server {server} unreachable");
    let body = wait_for("not ready, naming the unreachable server", async || {
        op.readyz()
            .filter(|(code, body)| *code == 503 && body.contains(&unreachable))
            .map(|(_, body)| body)
    })
    .await;
    // The watches fail too, each naming its request to that server.
    assert!(
        body.lines().any(|l| l.starts_with(&format!(
            "Canary watch ({server}/apis/flagger.app/v1beta1/canaries) failing: "
        )) && l.contains(&format!(
            "GET {server}/apis/flagger.app/v1beta1/canaries?watch"
        ))),
        "{body}"
    );
    // The log lines of the failed requests name the server and the request.
    wait_for("a log line naming the server and the request", async || {
        let logs = op.logs();
        logs.lines()
            .any(|l| {
                l.contains(&format!("GET {server}/apis/flagger.app/v1beta1/canaries"))
                    || l.contains(&format!("GET {server}/version"))
            })
            .then_some(())
    })
    .await;

    // Back on the same address: ready again, once the watches watch again.
    c.server = Some(c.sandbox.serve(c.addr).await.expect("serves again"));
    wait_ready(&op, "ready again after the API server came back").await;
    let logs = op.logs();
    assert!(logs.contains("not ready: "), "{logs}");
    c.server.take().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_is_503_while_the_canary_watch_fails() {
    let mut c = cluster(&[APP, &canary("")]).await;
    let op = Operator::start(&c.kubeconfig, "serin-a", &[]);
    wait_ready(&op, "ready once the watches have listed").await;

    // The API server answers, but refuses every watch and list of Canaries.
    let failing = FaultRule {
        error_rate: 1.0,
        ..Default::default()
    };
    c.sandbox
        .faults()
        .set("canaries", Verb::Watch, failing.clone());
    c.sandbox.faults().set("canaries", Verb::List, failing);
    c.sandbox.drop_watches();
    let body = wait_not_ready(&op, "not ready while the canary watch fails").await;
    assert!(
        body.contains(&format!(
            "Canary watch (http://{}/apis/flagger.app/v1beta1/canaries) failing",
            c.addr
        )),
        "{body}"
    );
    assert!(!body.contains("unreachable"), "the server answers: {body}");
    wait_for("the watch error logged with the request", async || {
        op.logs()
            .lines()
            .any(|l| {
                l.contains(&format!(
                    "API server http://{} answered GET /apis/flagger.app/v1beta1/canaries",
                    c.addr
                )) && l.contains("500")
            })
            .then_some(())
    })
    .await;

    c.sandbox.faults().clear_all();
    wait_ready(&op, "ready again once the watch works").await;
    c.server.take().unwrap().shutdown().await;
}

/// The holder and acquireTime (milliseconds since the epoch) of a Lease.
/// The resourceVersion a list of the sandbox's ConfigMaps is at: its current version.
async fn current_version(sandbox: &Sandbox) -> u64 {
    let api: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::all(sandbox.client());
    let list = api.list(&ListParams::default()).await.expect("list");
    list.metadata.resource_version.unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_the_api_server_comes_back_empty_the_operator_lists_again_and_sees_new_canaries() {
    let mut old = cluster(&[APP, &canary("")]).await;
    let op = Operator::start(&old.kubeconfig, "serin-a", &[]);
    wait_ready(&op, "ready once the watches have listed").await;
    wait_for("the first Canary initialized", async || {
        (phase(&old).await == Some(CanaryPhase::Initialized)).then_some(())
    })
    .await;
    let old_version = current_version(&old.sandbox).await;

    // The API server comes back on the same address with other data and lower
    // resourceVersions than the operator's watches resume from.
    old.server.take().expect("serving").shutdown().await;
    let (app, other) = (
        APP.replace("podinfo", "other"),
        canary("").replace("podinfo", "other"),
    );
    let new = cluster_at(old.addr, &[&app, &other]).await;
    assert!(
        current_version(&new.sandbox).await < old_version,
        "the new server must be behind the old one for this test"
    );
    // Its Canary is seen and acted on: the watches listed again.
    let canaries: Api<Canary> = Api::namespaced(new.sandbox.client(), "test");
    wait_for("the Canary of the new server initialized", async || {
        let c = canaries.get("other").await.ok()?;
        (c.status?.phase == CanaryPhase::Initialized).then_some(())
    })
    .await;
    let logs = op.logs();
    assert!(
        logs.contains("resumed from a resourceVersion the API server does not have"),
        "{logs}"
    );
}

fn lease_times(lease: &Lease) -> (Option<String>, Option<i64>) {
    let spec = lease.spec.clone().unwrap_or_default();
    (
        spec.holder_identity,
        spec.acquire_time.map(|t| t.0.as_millisecond()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_hands_the_lease_to_the_other_replica_at_once() {
    let mut c = cluster(&[APP, &canary("")]).await;
    let elect = ["--leader-elect", "--leader-election-namespace", "default"];
    let a = Operator::start(&c.kubeconfig, "serin-a", &elect);
    let b = Operator::start(&c.kubeconfig, "serin-b", &elect);
    let leases: Api<Lease> = Api::namespaced(c.sandbox.client(), "default");
    let ids = [
        format!("serin-a_{}", a.pid()),
        format!("serin-b_{}", b.pid()),
    ];
    let lease = wait_for("a leader", async || {
        let l = leases.get_opt("serin-leader").await.ok()??;
        let holder = l.spec.as_ref()?.holder_identity.clone()?;
        ids.contains(&holder).then_some(l)
    })
    .await;
    let spec = lease.spec.clone().unwrap();
    let holder = spec.holder_identity.clone().unwrap();
    let (leader, follower, follower_id) = if holder == ids[0] {
        (&a, &b, ids[1].clone())
    } else {
        (&b, &a, ids[0].clone())
    };
    // The old lease runs until at least this renewal plus its duration.
    let renewed = spec.renew_time.expect("renewTime").0.as_millisecond();
    let duration = i64::from(spec.lease_duration_seconds.expect("leaseDurationSeconds")) * 1000;
    wait_for("the follower to say it waits", async || {
        follower
            .logs()
            .contains("waiting for leadership")
            .then_some(())
    })
    .await;

    leader.terminate();
    let (_, acquired) = wait_for("the follower to hold the lease", async || {
        let l = leases.get_opt("serin-leader").await.ok()??;
        let (holder, acquired) = lease_times(&l);
        (holder.as_deref() == Some(follower_id.as_str())).then_some((holder, acquired))
    })
    .await;
    let acquired = acquired.expect("acquireTime");
    assert!(
        acquired < renewed + duration,
        "taken over at {acquired} ms, not before the old lease expired at {} ms",
        renewed + duration
    );
    // The follower says so itself, and the old leader said it let go.
    wait_for("the follower's report", async || {
        follower
            .logs()
            .contains(&format!("became the leader as {follower_id}"))
            .then_some(())
    })
    .await;
    wait_for("the leader's report", async || {
        leader
            .logs()
            .contains("released the leader lease as ")
            .then_some(())
    })
    .await;
    c.server.take().unwrap().shutdown().await;
}

/// The load tester (the real server code, with `--token`) on loopback.
async fn load_tester(token: &str) -> String {
    let lt = serin_loadtester::LoadTester::new(serin_loadtester::Config {
        token: Some(token.to_string()),
        ..Default::default()
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { lt.serve(listener, std::future::pending()).await });
    format!("http://{addr}")
}

fn gate(url: &str) -> String {
    format!(
        "    webhooks:
      - name: gate
        type: confirm-rollout
        url: {url}/gate/approve
"
    )
}

async fn new_revision(c: &Cluster) {
    let deployments: Api<Deployment> = Api::namespaced(c.sandbox.client(), "test");
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
}

async fn phase(c: &Cluster) -> Option<CanaryPhase> {
    let canaries: Api<Canary> = Api::namespaced(c.sandbox.client(), "test");
    Some(canaries.get("podinfo").await.ok()?.status?.phase)
}

async fn warnings(c: &Cluster) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(c.sandbox.client(), "test");
    events
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e.type_.as_deref() == Some("Warning"))
        .filter_map(|e| e.message)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_passes_with_the_token_from_the_secret() {
    let lt = load_tester("s3cret-token").await;
    let mut c = cluster(&[APP, &canary(&gate(&lt))]).await;
    let secrets: Api<Secret> = Api::namespaced(c.sandbox.client(), "default");
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "loadtester-token"},
        "stringData": {"token": "s3cret-token"},
    }))
    .unwrap();
    secrets
        .create(&PostParams::default(), &secret)
        .await
        .expect("secret");
    let op = Operator::start(
        &c.kubeconfig,
        "serin-a",
        &[
            "--webhook-token-secret",
            "default/loadtester-token",
            "--webhook-token-url",
            &format!("{lt}/"),
        ],
    );
    wait_for("Initialized", async || {
        (phase(&c).await? == CanaryPhase::Initialized).then_some(())
    })
    .await;
    new_revision(&c).await;
    wait_for("Progressing past the gate", async || {
        (phase(&c).await? == CanaryPhase::Progressing).then_some(())
    })
    .await;
    // Events are recorded after the status: wait for the gate's.
    let events: Api<Event> = Api::namespaced(c.sandbox.client(), "test");
    wait_for("the gate's event", async || {
        let list = events.list(&ListParams::default()).await.ok()?;
        list.items
            .into_iter()
            .filter_map(|e| e.message)
            .any(|m| m == "Confirm-rollout check gate passed")
            .then_some(())
    })
    .await;
    assert!(
        !op.logs().contains("s3cret-token"),
        "the token is never logged"
    );
    c.server.take().unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_answering_401_is_a_failed_check_not_a_closed_gate() {
    let lt = load_tester("s3cret-token").await;
    let mut c = cluster(&[APP, &canary(&gate(&lt))]).await;
    let op = Operator::start(&c.kubeconfig, "serin-a", &[]);
    wait_for("Initialized", async || {
        (phase(&c).await? == CanaryPhase::Initialized).then_some(())
    })
    .await;
    new_revision(&c).await;
    let message = wait_for("the failed check", async || {
        warnings(&c)
            .await
            .into_iter()
            .find(|m| m.contains("confirm-rollout check gate failed"))
    })
    .await;
    assert!(
        message.contains(&format!(
            "webhook gate at {lt}/gate/approve answered 401 Unauthorized: unauthorized"
        )),
        "{message}"
    );
    let all = warnings(&c).await;
    assert!(
        !all.iter().any(|m| m.contains("waiting for approval")),
        "{all:?}"
    );
    assert_eq!(
        phase(&c).await,
        Some(CanaryPhase::Initialized),
        "not Waiting"
    );
    // `serin status` shows the same message for the check.
    let canaries: Api<Canary> = Api::namespaced(c.sandbox.client(), "test");
    wait_for(
        "the check's result in the canary's last checks",
        async || {
            let c = canaries.get("podinfo").await.ok()?;
            let checks = c
                .metadata
                .annotations?
                .get(serin_api::manual::LAST_CHECKS)?
                .clone();
            checks.contains("answered 401 Unauthorized").then_some(())
        },
    )
    .await;
    drop(op);
    c.server.take().unwrap().shutdown().await;
}
