//! Controller benchmarks (figures, not assertions):
//!
//! 1. Reaction time: a Deployment's image changes → the "New revision detected" event,
//!    on real time against the in-process sandbox, p50/p99/max over many changes.
//! 2. Footprint: the controller alone in its own process, watching a sandbox (served over
//!    loopback HTTP by another process) that holds 100 and then 1,000 canaries: resident
//!    memory once every canary is initialized, and CPU over a steady minute.
//!
//! Run: `cargo bench -p serin-simulate --bench controller` (add `-- --quick` for a
//! short run: 200 canaries at most and a 20 s window).
//!
//! 3. The same against a real API server (`scripts/bench-real.sh` runs it on the
//!    control plane of scripts/cluster.sh): `-- --real ADMIN_KUBECONFIG
//!    OPERATOR_KUBECONFIG AUDIT_LOG [--quick]`. The operator runs as a ServiceAccount;
//!    its API requests are counted in the API server's audit log (by user), since
//!    `apiserver_request_total` has no user or user-agent label.
//!
//! 4. Flagger against serin (`scripts/compare-flagger.sh --perf` runs it): `--
//!    --compare-flagger ADMIN AUDIT FLAGGER FLAGGER_KUBECONFIG SERIN SERIN_KUBECONFIG
//!    OUT.json [--quick]`. Each operator, one after the other, as its own process on
//!    its own namespace of identical canaries (15 s interval): reaction time to a
//!    Deployment change (20 changes), wall time of one promotion, resident memory and
//!    CPU with 100 and 1,000 canaries, API requests per canary per interval (audit log).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::{Patch, PatchParams};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_operator::controller::{self, Context, ControllerOptions};
use serin_sandbox::{Sandbox, SandboxOptions};
use serin_simulate::ScriptedChecks;

fn manifests(name: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: bench
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
  namespace: bench
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}
  service:
    port: 9898
  analysis:
    interval: 1m
    threshold: 5
    maxWeight: 50
    stepWeight: 10
"
    )
}

async fn populate(client: &kube::Client, count: usize) {
    serin_simulate::apply::install_crds(client)
        .await
        .expect("crds");
    for i in 0..count {
        let name = format!("app{i:04}");
        for doc in serin_api::load::parse_documents("bench.yaml", &manifests(&name)).expect("yaml")
        {
            serin_simulate::apply::apply_value(client, doc.value)
                .await
                .expect("apply");
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn reaction_time(samples: usize) {
    let sandbox = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_millis(50),
        ..Default::default()
    });
    let client = sandbox.client();
    populate(&client, 1).await;
    let checks = Arc::new(ScriptedChecks::new(BTreeMap::new(), BTreeMap::new()));
    let ctx = Context::new(
        client.clone(),
        serin_api::clock::Clock::system(),
        ControllerOptions::default(),
        checks,
    );
    let mut events = ctx.recorder.subscribe();
    let ctx = Arc::new(ctx);
    let controller = tokio::spawn(controller::run(ctx));
    let canaries: Api<Canary> = Api::namespaced(client.clone(), "bench");
    let started = Instant::now();
    while canaries
        .get("app0000")
        .await
        .map(|c| c.status_or_default().phase != CanaryPhase::Initialized)
        .unwrap_or(true)
    {
        assert!(started.elapsed() < Duration::from_secs(120), "initialized");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "bench");
    let mut latencies = Vec::new();
    for i in 0..samples {
        while events.try_recv().is_ok() {}
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("ghcr.io/stefanprodan/podinfo:7.0.{i}")}]}}}});
        let changed = Instant::now();
        deployments
            .patch(
                "app0000",
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .expect("patch");
        loop {
            let e = tokio::time::timeout(Duration::from_secs(120), events.recv())
                .await
                .expect("an event within 120 s")
                .expect("event channel");
            if e.message.starts_with("New revision detected") {
                latencies.push(changed.elapsed());
                break;
            }
        }
        // Spread the changes out a little, as real changes are.
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    controller.abort();
    latencies.sort();
    println!(
        "reaction time, Deployment change → \"New revision detected\" ({} changes): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        percentile(&latencies, 0.5).as_secs_f64() * 1e3,
        percentile(&latencies, 0.99).as_secs_f64() * 1e3,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
}

/// `/proc/<pid>` figures: resident and peak resident KiB, CPU ticks.
fn proc_stats(pid: u32) -> (u64, u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    (field("VmRSS:"), field("VmHWM:"), ticks)
}

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn footprint(count: usize, window: Duration, dir: &Path) {
    let kubeconfig = dir.join(format!("kubeconfig-{count}"));
    let me = std::env::current_exe().expect("current exe");
    let _sandbox = Kill(
        Command::new(&me)
            .args(["--serve-sandbox", &count.to_string()])
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .expect("sandbox process"),
    );
    let started = Instant::now();
    while !kubeconfig.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(600),
            "sandbox ready"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let operator = Kill(
        Command::new(&me)
            .arg("--operator")
            .arg(&kubeconfig)
            .stdout(Stdio::null())
            .spawn()
            .expect("operator process"),
    );
    let pid = operator.0.id();
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let canaries: Api<Canary> = Api::namespaced(client, "bench");
    let init_started = Instant::now();
    loop {
        let list = canaries.list(&Default::default()).await.expect("list");
        let done = list
            .items
            .iter()
            .filter(|c| c.status_or_default().phase == CanaryPhase::Initialized)
            .count();
        if done == count {
            break;
        }
        assert!(
            init_started.elapsed() < Duration::from_secs(900),
            "{done}/{count} initialized"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let init = init_started.elapsed();
    let (_, _, t0) = proc_stats(pid);
    let w0 = Instant::now();
    tokio::time::sleep(window).await;
    let (rss, hwm, t1) = proc_stats(pid);
    let ticks_per_sec = 100.0;
    let cpu = (t1 - t0) as f64 / ticks_per_sec / w0.elapsed().as_secs_f64() * 100.0;
    let latency = http_reaction_time(&kubeconfig, 20).await;
    println!(
        "{count} canaries: initialized in {:.1} s; resident {:.1} MiB (peak {:.1} MiB); CPU {:.2}% of one core over {} s of steady state (interval 1m)",
        init.as_secs_f64(),
        rss as f64 / 1024.0,
        hwm as f64 / 1024.0,
        cpu,
        window.as_secs()
    );
    println!(
        "{count} canaries, operator process over loopback HTTP: Deployment change → \"New revision detected\" Event: p50 {:.1} ms, p99 {:.1} ms ({} changes)",
        percentile(&latency, 0.5).as_secs_f64() * 1e3,
        percentile(&latency, 0.99).as_secs_f64() * 1e3,
        latency.len()
    );
}

/// Time from a Deployment change to the Event the operator process records, seen
/// through a watch on Events.
async fn http_reaction_time(kubeconfig: &Path, samples: usize) -> Vec<Duration> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), "bench");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(async move {
        let mut s = watcher(events, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(e)) = s.next().await {
            if e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("New revision detected"))
                && e.involved_object.name.as_deref() == Some("app0000")
            {
                let _ = tx.send(Instant::now());
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    while rx.try_recv().is_ok() {}
    let deployments: Api<Deployment> = Api::namespaced(client, "bench");
    let mut out = Vec::new();
    for i in 0..samples {
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": format!("ghcr.io/stefanprodan/podinfo:8.0.{i}")}]}}}});
        let changed = Instant::now();
        deployments
            .patch(
                "app0000",
                &PatchParams::default(),
                &Patch::Strategic(&patch),
            )
            .await
            .expect("patch");
        match tokio::time::timeout(Duration::from_secs(30), rx.recv()).await {
            Ok(Some(at)) => out.push(at.saturating_duration_since(changed)),
            _ => panic!("no New revision event within 30 s"),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        while rx.try_recv().is_ok() {}
    }
    watch.abort();
    out.sort();
    out
}

async fn serve_sandbox(count: usize, kubeconfig: PathBuf) {
    let sandbox = Sandbox::new(SandboxOptions {
        rollout_delay: Duration::from_millis(200),
        ..Default::default()
    });
    populate(&sandbox.client(), count).await;
    let server = sandbox
        .serve("127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("serve");
    let tmp = kubeconfig.with_extension("tmp");
    sandbox
        .write_kubeconfig(&tmp, server.addr())
        .expect("kubeconfig");
    std::fs::rename(&tmp, &kubeconfig).expect("kubeconfig");
    std::future::pending::<()>().await;
}

async fn run_operator(kubeconfig: PathBuf) {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(&kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let checks = Arc::new(ScriptedChecks::new(BTreeMap::new(), BTreeMap::new()));
    let ctx = Context::new(
        client,
        serin_api::clock::Clock::system(),
        ControllerOptions::default(),
        checks,
    );
    controller::run(Arc::new(ctx)).await;
}

async fn kube_client(kubeconfig: &Path) -> kube::Client {
    let config = kube::Config::from_custom_kubeconfig(
        kube::config::Kubeconfig::read_from(kubeconfig).expect("kubeconfig"),
        &Default::default(),
    )
    .await
    .expect("config");
    kube::Client::try_from(config).expect("client")
}

/// Audit log entries of the operator's user from byte `from` on: distinct requests.
fn audited_requests(audit: &Path, from: u64, user: &str) -> (u64, usize) {
    use std::io::{Read, Seek};
    let mut f = std::fs::File::open(audit).expect("audit log");
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len < from {
        // Rotated (kube-apiserver's --audit-log-maxsize): the rest of the old file,
        // kept beside it as audit-TIMESTAMP.log, then the new one from its start.
        let dir = audit.parent().expect("audit dir");
        let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".log"))
            })
            .collect();
        rotated.sort();
        let (_, before) = match rotated.last() {
            Some(old) => audited_requests(old, from, user),
            None => (0, 0),
        };
        let (len, after) = audited_requests(audit, 0, user);
        return (len, before + after);
    }
    f.seek(std::io::SeekFrom::Start(from)).expect("seek");
    let mut text = String::new();
    f.read_to_string(&mut text).expect("read");
    let needle = format!("\"username\":\"{user}\"");
    let ids: std::collections::BTreeSet<&str> = text
        .lines()
        .filter(|l| l.contains(&needle))
        .filter_map(|l| {
            let at = l.find("\"auditID\":\"")? + 11;
            l.get(at..at + 36)
        })
        .collect();
    (len, ids.len())
}

/// Footprint and reaction time of an operator process on a real API server.
async fn real(admin: &Path, operator_kubeconfig: &Path, audit: &Path, quick: bool) {
    let client = kube_client(admin).await;
    let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let ns = serde_json::from_value(serde_json::json!({"metadata": {"name": "bench"}}))
        .expect("namespace");
    let _ = namespaces.create(&Default::default(), &ns).await;
    let me = std::env::current_exe().expect("current exe");
    let user = "system:serviceaccount:serin-system:serin";
    let sizes: &[usize] = if quick { &[20, 100] } else { &[100, 1000] };
    let window = Duration::from_secs(if quick { 30 } else { 60 });
    let mut populated = 0;
    let mut json = Vec::new();
    for &count in sizes {
        for i in populated..count {
            let name = format!("app{i:04}");
            for doc in
                serin_api::load::parse_documents("bench.yaml", &manifests(&name)).expect("yaml")
            {
                serin_simulate::apply::apply_value(&client, doc.value)
                    .await
                    .expect("apply");
            }
        }
        populated = count;
        let operator = Kill(
            Command::new(&me)
                .arg("--operator")
                .arg(operator_kubeconfig)
                .stdout(Stdio::null())
                .spawn()
                .expect("operator process"),
        );
        let pid = operator.0.id();
        let canaries: Api<Canary> = Api::namespaced(client.clone(), "bench");
        let started = Instant::now();
        loop {
            let list = canaries.list(&Default::default()).await.expect("list");
            let done = list
                .items
                .iter()
                .filter(|c| c.status_or_default().phase == CanaryPhase::Initialized)
                .count();
            if done == count {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(1800),
                "{done}/{count} initialized"
            );
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let init = started.elapsed();
        // Let the first runs settle, then measure one steady analysis interval.
        tokio::time::sleep(Duration::from_secs(5)).await;
        let (from, _) = audited_requests(audit, 0, user);
        let (_, _, t0) = proc_stats(pid);
        let w0 = Instant::now();
        tokio::time::sleep(window).await;
        let (rss, hwm, t1) = proc_stats(pid);
        let (_, requests) = audited_requests(audit, from, user);
        let elapsed = w0.elapsed().as_secs_f64();
        let cpu = (t1 - t0) as f64 / 100.0 / elapsed * 100.0;
        // The bench canaries' interval is one minute.
        let per_canary_interval = requests as f64 / count as f64 / (elapsed / 60.0);
        let latency = http_reaction_time(admin, 20).await;
        let p50 = percentile(&latency, 0.5).as_secs_f64() * 1e3;
        let p99 = percentile(&latency, 0.99).as_secs_f64() * 1e3;
        println!(
            "real API server, {count} canaries: initialized in {:.1} s; resident {:.1} MiB (peak {:.1} MiB); CPU {cpu:.2}% of one core; {requests} API requests in {elapsed:.0} s = {per_canary_interval:.3} per canary per interval; Deployment change -> \"New revision detected\": p50 {p50:.1} ms, p99 {p99:.1} ms ({} changes)",
            init.as_secs_f64(),
            rss as f64 / 1024.0,
            hwm as f64 / 1024.0,
            latency.len()
        );
        json.push(serde_json::json!({
            "canaries": count,
            "initialized_s": init.as_secs_f64(),
            "rss_mib": rss as f64 / 1024.0,
            "cpu_pct": cpu,
            "api_requests_per_canary_interval": per_canary_interval,
            "reaction_p50_ms": p50,
            "reaction_p99_ms": p99,
        }));
        drop(operator);
    }
    println!("{}", serde_json::Value::Array(json));
}

/// The comparison's canaries: the bench's, in namespace `ns`, on a 15 s interval.
const COMPARE_INTERVAL_S: f64 = 15.0;

fn compare_manifests(ns: &str, name: &str) -> String {
    manifests(name)
        .replace("namespace: bench", &format!("namespace: {ns}"))
        .replace("interval: 1m", "interval: 15s")
}

struct Contender<'a> {
    name: &'static str,
    user: &'static str,
    program: &'a Path,
    kubeconfig: &'a Path,
}

impl Contender<'_> {
    fn start(&self, ns: &str, log: &Path) -> Kill {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut cmd = Command::new(self.program);
        if self.name == "flagger" {
            cmd.arg(format!("-kubeconfig={}", self.kubeconfig.display()))
                .arg(format!("-namespace={ns}"))
                .arg("-mesh-provider=istio")
                .arg("-metrics-server=http://127.0.0.1:9")
                .arg(format!("-port={port}"))
                .arg("-log-level=info");
        } else {
            cmd.arg("operator")
                .arg("--kubeconfig")
                .arg(self.kubeconfig)
                .args(["--namespace", ns, "--mesh-provider", "istio"])
                .args(["--metrics-server", "http://127.0.0.1:9"])
                .args(["--port", &port.to_string()])
                .env("RUST_LOG", "info");
        }
        Kill(
            cmd.env_remove("KUBECONFIG")
                .stdout(Stdio::null())
                .stderr(Stdio::from(std::fs::File::create(log).expect("log")))
                .spawn()
                .expect("operator process"),
        )
    }
}

/// Waits until every canary of `ns` is past initialization (30 min at most).
async fn wait_initialized(client: &kube::Client, ns: &str, count: usize) -> Duration {
    let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
    let started = Instant::now();
    loop {
        let list = canaries.list(&Default::default()).await.expect("list");
        let done = list
            .items
            .iter()
            .filter(|c| {
                !matches!(
                    c.status_or_default().phase,
                    CanaryPhase::Initializing | CanaryPhase::Waiting
                ) && c.status.is_some()
            })
            .count();
        if done >= count {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(1800),
            "{done}/{count} initialized in {ns}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// Changes the image of `first..first+samples` (one change each) and times each to
/// its "New revision detected" event.
async fn reaction_times(
    client: &kube::Client,
    ns: &str,
    first: usize,
    samples: usize,
) -> Vec<Duration> {
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client.clone(), ns);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let watch = tokio::spawn(async move {
        let mut s = watcher(events, watcher::Config::default())
            .applied_objects()
            .boxed();
        while let Some(Ok(e)) = s.next().await {
            if e.message
                .as_deref()
                .is_some_and(|m| m.starts_with("New revision detected"))
            {
                let _ = tx.send((
                    e.involved_object.name.clone().unwrap_or_default(),
                    Instant::now(),
                ));
            }
        }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    while rx.try_recv().is_ok() {}
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let mut out = Vec::new();
    for i in first..first + samples {
        let name = format!("app{i:04}");
        let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
            {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.0.1"}]}}}});
        let changed = Instant::now();
        deployments
            .patch(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
            .expect("patch");
        let deadline = changed + Duration::from_secs(120);
        loop {
            match tokio::time::timeout_at(deadline.into(), rx.recv()).await {
                Ok(Some((who, at))) if who == name => {
                    out.push(at.saturating_duration_since(changed));
                    break;
                }
                Ok(Some(_)) => continue,
                _ => panic!("no New revision event for {name} within 120 s"),
            }
        }
    }
    watch.abort();
    out.sort();
    out
}

/// Wall time from a Deployment change to its canary's Succeeded phase.
async fn promotion_wall(client: &kube::Client, ns: &str, name: &str) -> Duration {
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    let canaries: Api<Canary> = Api::namespaced(client.clone(), ns);
    let patch = serde_json::json!({"spec": {"template": {"spec": {"containers": [
        {"name": "app", "image": "ghcr.io/stefanprodan/podinfo:6.0.2"}]}}}});
    let changed = Instant::now();
    deployments
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .expect("patch");
    let mut left_start = false;
    loop {
        let c = canaries.get(name).await.expect("canary");
        let p = c.status_or_default().phase;
        if p != CanaryPhase::Initialized && p != CanaryPhase::Succeeded {
            left_start = true;
        }
        if left_start && p == CanaryPhase::Succeeded {
            return changed.elapsed();
        }
        assert!(p != CanaryPhase::Failed, "{ns}/{name} failed");
        assert!(
            changed.elapsed() < Duration::from_secs(900),
            "{ns}/{name} not promoted in 15 min"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn compare_flagger(
    admin: &Path,
    audit: &Path,
    flagger: Contender<'_>,
    serin: Contender<'_>,
    out: &Path,
    quick: bool,
) {
    let client = kube_client(admin).await;
    let sizes: &[usize] = if quick { &[20, 100] } else { &[100, 1000] };
    let window = Duration::from_secs(if quick { 30 } else { 60 });
    let samples = 20;
    let logs = out.parent().expect("out dir").to_path_buf();
    // SERIN_COMPARE_ONLY=flagger|serin measures one side again, keeping the other's
    // figures from an earlier run in OUT.
    let only = std::env::var("SERIN_COMPARE_ONLY").ok();
    let mut figures: BTreeMap<String, BTreeMap<String, f64>> = if only.is_some() {
        std::fs::read_to_string(out)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default()
    } else {
        BTreeMap::new()
    };
    let mut put = |key: &str, who: &str, v: f64| {
        figures
            .entry(key.to_string())
            .or_default()
            .insert(who.to_string(), v);
    };
    for c in [&flagger, &serin] {
        if only.as_deref().is_some_and(|o| o != c.name) {
            continue;
        }
        let ns = format!("bench-{}", c.name);
        let namespaces: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let n = serde_json::from_value(serde_json::json!({"metadata": {"name": ns}})).expect("ns");
        let _ = namespaces.create(&Default::default(), &n).await;
        let mut populated = 0;
        for (k, &count) in sizes.iter().enumerate() {
            for i in populated..count {
                let name = format!("app{i:04}");
                for doc in
                    serin_api::load::parse_documents("bench.yaml", &compare_manifests(&ns, &name))
                        .expect("yaml")
                {
                    serin_simulate::apply::apply_value(&client, doc.value)
                        .await
                        .expect("apply");
                }
            }
            populated = count;
            let op = c.start(&ns, &logs.join(format!("{}-{count}.log", c.name)));
            let pid = op.0.id();
            let init = wait_initialized(&client, &ns, count).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            let (from, _) = audited_requests(audit, 0, c.user);
            let (_, _, t0) = proc_stats(pid);
            let w0 = Instant::now();
            tokio::time::sleep(window).await;
            let (rss, _, t1) = proc_stats(pid);
            let (_, requests) = audited_requests(audit, from, c.user);
            let elapsed = w0.elapsed().as_secs_f64();
            let cpu = (t1 - t0) as f64 / 100.0 / elapsed * 100.0;
            let per = requests as f64 / count as f64 / (elapsed / COMPARE_INTERVAL_S);
            let rss_mib = rss as f64 / 1024.0;
            println!(
                "{} with {count} canaries: initialized in {:.1} s, resident {rss_mib:.1} MiB, CPU {cpu:.1}% of a core, {per:.3} API requests per canary per interval",
                c.name,
                init.as_secs_f64()
            );
            if k == 0 {
                put("rss_mib_100", c.name, rss_mib);
                put("cpu_pct_100", c.name, cpu);
                put("api_requests_per_canary_interval", c.name, per);
                put("initialized_s_100", c.name, init.as_secs_f64());
                let lat = reaction_times(&client, &ns, 0, samples.min(count / 2)).await;
                let p50 = percentile(&lat, 0.5).as_secs_f64() * 1e3;
                let p99 = percentile(&lat, 0.99).as_secs_f64() * 1e3;
                println!(
                    "{}: set image -> New revision detected: p50 {p50:.0} ms, p99 {p99:.0} ms ({} changes)",
                    c.name,
                    lat.len()
                );
                put("reaction_p50_ms", c.name, p50);
                put("reaction_p99_ms", c.name, p99);
                let wall = promotion_wall(&client, &ns, &format!("app{:04}", count - 1)).await;
                println!(
                    "{}: one promotion (5 steps of 15 s) took {:.1} s",
                    c.name,
                    wall.as_secs_f64()
                );
                put("promotion_wall_s", c.name, wall.as_secs_f64());
            } else {
                put("rss_mib_1000", c.name, rss_mib);
                put("cpu_pct_1000", c.name, cpu);
                put("api_requests_per_canary_interval_1000", c.name, per);
                put("initialized_s_1000", c.name, init.as_secs_f64());
            }
            drop(op);
        }
    }
    println!("\n| metric | Flagger | serin | serin / Flagger |\n|---|---|---|---|");
    for (key, v) in &figures {
        let (f, s) = (
            v.get("flagger").copied().unwrap_or(f64::NAN),
            v.get("serin").copied().unwrap_or(f64::NAN),
        );
        println!("| {key} | {f:.2} | {s:.2} | {:.3} |", s / f);
    }
    let json = serde_json::to_string_pretty(&figures).expect("json");
    std::fs::write(out, json + "\n").expect("write the figures");
    println!("written to {}", out.display());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    if args.get(1).map(String::as_str) == Some("--serve-sandbox") {
        let count = args[2].parse().expect("count");
        rt.block_on(serve_sandbox(count, PathBuf::from(&args[3])));
        return;
    }
    if args.get(1).map(String::as_str) == Some("--operator") {
        rt.block_on(run_operator(PathBuf::from(&args[2])));
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    if let Some(i) = args.iter().position(|a| a == "--compare-flagger") {
        let arg = |k: usize| {
            PathBuf::from(args.get(i + k).expect(
                "--compare-flagger ADMIN AUDIT FLAGGER FLAGGER_KUBECONFIG SERIN SERIN_KUBECONFIG OUT",
            ))
        };
        let (admin, audit, fbin, fkc, sbin, skc, out) =
            (arg(1), arg(2), arg(3), arg(4), arg(5), arg(6), arg(7));
        let flagger = Contender {
            name: "flagger",
            user: "system:serviceaccount:default:flagger",
            program: &fbin,
            kubeconfig: &fkc,
        };
        let serin = Contender {
            name: "serin",
            user: "system:serviceaccount:serin-system:serin",
            program: &sbin,
            kubeconfig: &skc,
        };
        rt.block_on(compare_flagger(&admin, &audit, flagger, serin, &out, quick));
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--real") {
        let path = |k: usize| PathBuf::from(args.get(i + k).expect("--real ADMIN OPERATOR AUDIT"));
        rt.block_on(real(&path(1), &path(2), &path(3), quick));
        return;
    }
    rt.block_on(async {
        reaction_time(if quick { 30 } else { 200 }).await;
        let dir = std::env::temp_dir().join(format!("serin-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let sizes: &[usize] = if quick { &[100, 200] } else { &[100, 1000] };
        let window = Duration::from_secs(if quick { 20 } else { 60 });
        for &n in sizes {
            footprint(n, window, &dir).await;
        }
        let _ = std::fs::remove_dir_all(&dir);
    });
}
