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
        return (len, 0); // rotated: count nothing rather than guess
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
