//! Operating rollouts by hand: `serin status|promote|abort|retry|pause|resume` (and the
//! same binary as the kubectl plugin `kubectl serin`) against `serin operator` and
//! `serin loadtester` processes on the sandbox served over loopback HTTP, checked
//! through real kubectl: a canary held at a closed confirm-rollout gate, one
//! mid-analysis, one after a failure; a refused request; an operator restart between a
//! request and its effect.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serin_sandbox::{Sandbox, SandboxOptions};

const KUBECTL: &str = "/usr/bin/kubectl";

fn manifests(loadtester: u16) -> String {
    let mut out = String::new();
    for (name, webhooks) in [
        (
            "gated",
            format!(
                "    webhooks:\n      - name: approval\n        type: confirm-rollout\n        url: http://127.0.0.1:{loadtester}/gate/check\n"
            ),
        ),
        ("mid", String::new()),
        (
            "failing",
            format!(
                "    webhooks:\n      - name: stop\n        type: rollback\n        url: http://127.0.0.1:{loadtester}/gate/approve\n"
            ),
        ),
    ] {
        out.push_str(&format!(
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
  progressDeadlineSeconds: 60
  service:
    port: 9898
  analysis:
    interval: 10s
    threshold: 2
    maxWeight: 50
    stepWeight: 10
{webhooks}---
"
        ));
    }
    out
}

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

struct Env {
    kubeconfig: PathBuf,
    bin: PathBuf,
}

impl Env {
    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("kubectl runs")
    }

    fn jsonpath(&self, kind: &str, name: &str, path: &str) -> String {
        let out = self.kubectl(&[
            "-n",
            "test",
            "get",
            kind,
            name,
            "-o",
            &format!("jsonpath={path}"),
        ]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn phase(&self, canary: &str) -> String {
        self.jsonpath("canary", canary, "{.status.phase}")
    }

    fn weight(&self, canary: &str) -> String {
        self.jsonpath("canary", canary, "{.status.canaryWeight}")
    }

    fn annotation(&self, canary: &str, key: &str) -> String {
        let key = key.replace('.', "\\.").replace('/', "\\/");
        self.jsonpath(
            "canary",
            canary,
            &format!("{{.metadata.annotations.{key}}}"),
        )
    }

    /// Event messages on a canary, through kubectl.
    fn events(&self, canary: &str) -> Vec<String> {
        let out = self.kubectl(&[
            "-n",
            "test",
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.kind=Canary,involvedObject.name={canary}"),
            "-o",
            "jsonpath={range .items[*]}{.type} {.message}{\"\\n\"}{end}",
        ]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// `serin ARGS -n test`.
    fn serin(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(args)
            .args(["-n", "test"])
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("serin runs")
    }

    /// A request as user `tester`.
    fn ask(&self, args: &[&str]) -> Output {
        let mut all = args.to_vec();
        all.extend(["--by", "tester"]);
        self.serin(&all)
    }

    /// `kubectl serin ARGS`, found by kubectl's plugin lookup on PATH.
    fn plugin(&self, args: &[&str]) -> Output {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        Command::new(KUBECTL)
            .arg("serin")
            .args(args)
            .env("PATH", path)
            .env("KUBECONFIG", &self.kubeconfig)
            .output()
            .expect("kubectl serin runs")
    }

    fn operator(&self) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["operator", "--kubeconfig"])
            .arg(&self.kubeconfig)
            .args([
                "--port",
                &free_port().to_string(),
                "--metrics-server",
                "http://127.0.0.1:9",
            ])
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("serin operator starts");
        Process(child)
    }
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn text(o: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn has_event(env: &Env, canary: &str, line: &str) -> bool {
    env.events(canary).iter().any(|e| e == line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_command_acts_through_the_canarys_annotations_within_a_second() {
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
    // The kubectl plugin: the same binary, linked as kubectl-serin on PATH.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin dir");
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_serin"), bin.join("kubectl-serin"))
        .expect("link");
    let env = Env { kubeconfig, bin };

    let lt_port = free_port();
    let _loadtester = Process(
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["loadtester", "--port", &lt_port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("loadtester starts"),
    );
    let client = sandbox.client();
    serin_simulate::apply::install_crds(&client)
        .await
        .expect("crds");
    let docs = serin_api::load::parse_documents("m.yaml", &manifests(lt_port)).expect("parses");
    for doc in docs {
        serin_simulate::apply::apply_value(&client, doc.value)
            .await
            .expect("applied");
    }
    let mut operator = env.operator();
    let canaries = ["gated", "mid", "failing"];
    wait_for("Initialized", Duration::from_secs(30), || {
        canaries.iter().all(|c| env.phase(c) == "Initialized")
    });
    for c in canaries {
        let out = env.kubectl(&[
            "-n",
            "test",
            "set",
            "image",
            &format!("deployment/{c}"),
            "app=ghcr.io/stefanprodan/podinfo:6.0.1",
        ]);
        assert!(out.status.success(), "{}", text(&out));
    }
    // Held at the closed gate, mid-analysis at weight 10, rolled back by its webhook.
    wait_for("the three states", Duration::from_secs(40), || {
        env.phase("gated") == "Waiting"
            && env.phase("mid") == "Progressing"
            && env.weight("mid") == "10"
            && env.phase("failing") == "Failed"
    });

    // `kubectl serin status -A`: every canary with its bar.
    let out = env.plugin(&["status", "-A"]);
    let status = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("$ kubectl serin status -A\n{status}");
    assert!(
        status.contains("test/mid  Progressing")
            && status.contains("primary  90% [██████████████████░░]  10% canary"),
        "{status}"
    );
    assert!(status.contains("test/gated  Waiting"), "{status}");
    assert!(
        status.contains("webhook approval") && status.contains("HOLDING"),
        "the gate holding it: {status}"
    );
    assert!(status.contains("test/failing  Failed"), "{status}");
    let out = env.plugin(&["--help"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Usage: kubectl serin"),
        "{}",
        text(&out)
    );
    let json = env.serin(&["status", "mid", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(v["phase"], "Progressing");
    assert_eq!(v["canaryWeight"], 10);
    assert_eq!(v["primaryWeight"], 90);

    // `serin status --watch` follows the live rollout.
    let mut watch = Process(
        Command::new(env!("CARGO_BIN_EXE_serin"))
            .args(["status", "mid", "--watch", "-n", "test"])
            .env("KUBECONFIG", &env.kubeconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("status --watch starts"),
    );

    // A request that does not fit the phase is refused and changes nothing.
    let out = env.ask(&["promote", "failing"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("promote refused: no rollout is under way (phase Failed)"),
        "{}",
        text(&out)
    );
    assert!(has_event(
        &env,
        "failing",
        "Warning Refused promote of failing.test requested by tester: no rollout is under way (phase Failed)"
    ));
    assert_eq!(env.phase("failing"), "Failed");
    assert_eq!(env.annotation("failing", "serin.dev/request"), "");

    // pause: acted on at once (the interval is 10s), the weight held.
    let asked = Instant::now();
    let out = env.ask(&["pause", "mid", "--reason", "checking latency"]);
    let took = asked.elapsed();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        took < Duration::from_secs(5),
        "acted on from the watch, not at the next interval: {took:?}"
    );
    eprintln!("pause acted on in {took:?}");
    assert!(!env.annotation("mid", "serin.dev/paused").is_empty());
    assert!(has_event(
        &env,
        "mid",
        "Normal Paused mid.test at canary weight 10, requested by tester: checking latency"
    ));
    let out = env.serin(&["status", "mid"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("PAUSED since"),
        "{}",
        text(&out)
    );
    let out = env.ask(&["pause", "mid"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "pausing twice is refused: {}",
        text(&out)
    );

    // retry the failed revision: a fresh analysis of the same target.
    let out = env.ask(&["retry", "failing"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("Retrying the analysis of failing.test requested by tester"),
        "{}",
        text(&out)
    );
    assert_eq!(env.phase("failing"), "Progressing");

    // promote the canary held at the gate: through the promotion path.
    let asked = Instant::now();
    let out = env.ask(&["promote", "gated", "--reason", "hotfix"]);
    assert!(out.status.success(), "{}", text(&out));
    eprintln!("promote acted on in {:?}", asked.elapsed());
    assert_eq!(env.phase("gated"), "Promoting");
    assert!(has_event(
        &env,
        "gated",
        "Normal Promotion of gated.test requested by tester: hotfix: skipping the remaining analysis"
    ));
    assert_eq!(
        env.jsonpath(
            "deployment",
            "gated-primary",
            "{.spec.template.spec.containers[0].image}"
        ),
        "ghcr.io/stefanprodan/podinfo:6.0.1",
        "the primary is copied from the target"
    );

    // resume: the weight is where the pause left it.
    assert_eq!(env.weight("mid"), "10");
    let out = env.ask(&["resume", "mid"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.annotation("mid", "serin.dev/paused"), "");
    assert!(!env.annotation("mid", "serin.dev/resumed").is_empty());

    // An operator restart between the request and its effect.
    let _ = operator.0.kill();
    let _ = operator.0.wait();
    let out = env.ask(&["abort", "mid", "--reason", "restart test", "--no-wait"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(env.annotation("mid", "serin.dev/request"), "abort");
    assert_eq!(env.phase("mid"), "Progressing");
    let _operator = env.operator();
    wait_for(
        "the abort after the restart",
        Duration::from_secs(20),
        || env.phase("mid") == "Failed",
    );
    assert_eq!(env.weight("mid"), "0");
    assert!(has_event(
        &env,
        "mid",
        "Warning Rolling back mid.test abort requested by tester: restart test"
    ));
    assert_eq!(env.annotation("mid", "serin.dev/request"), "");
    assert!(
        env.annotation("mid", "serin.dev/request-result")
            .contains(" done: Rolling back mid.test abort requested by tester: restart test")
    );

    // The promotion finishes on its own: primary ready, traffic back, Succeeded.
    wait_for("gated Succeeded", Duration::from_secs(40), || {
        env.phase("gated") == "Succeeded"
    });
    assert_eq!(env.weight("gated"), "0");

    // The watch drew the rollout as it moved, ending with the rollback.
    let _ = watch.0.kill();
    let mut drawn = String::new();
    watch
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut drawn)
        .expect("reads");
    let progressing = drawn.find("primary  90% [").expect("drew weight 10");
    let failed = drawn.rfind("test/mid  Failed").expect("drew the rollback");
    assert!(progressing < failed, "{drawn}");
    assert!(drawn.contains("PAUSED since"), "{drawn}");
    server.shutdown().await;
}
