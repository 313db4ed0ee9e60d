//! The real tier's harness: the cluster `scripts/cluster.sh up` started (its admin
//! kubeconfig in `SERIN_REAL_KUBECONFIG`), real kubectl, and `serin operator` as its own
//! process authenticated with a real ServiceAccount token of the account deploy/ creates.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const KUBECTL: &str = "/usr/bin/kubectl";
/// The namespace and account deploy/kustomize/kubernetes creates for the operator.
pub const OPERATOR_NAMESPACE: &str = "serin-system";
pub const OPERATOR_ACCOUNT: &str = "serin";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repository root")
}

pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.status.success()
    }
}

/// Runs a command to completion, or kills it (by its pid) after `timeout` and panics.
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Output {
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let mut out = child.stdout.take().expect("stdout");
    let mut err = child.stderr.take().expect("stderr");
    let o = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{what} did not finish within {timeout:?}");
            }
        }
    };
    Output {
        status,
        stdout: o.join().unwrap_or_default(),
        stderr: e.join().unwrap_or_default(),
    }
}

/// A process that dies with this test binary, however the binary ends: it runs under a
/// small `sh` that holds a pipe from us and kills the process (by the pid it started)
/// when the pipe closes. `pid` is the process itself, for signals a test sends.
pub struct Tied {
    sh: Child,
    stdin: Option<ChildStdin>,
    pub pid: u32,
}

/// A `Command` for `program` under the tie; add its arguments, then [`Tied::spawn`].
/// The program's stdout goes to `TIED_STDOUT` (an environment variable of the command,
/// /dev/null when unset); its stderr is the command's stderr.
pub fn tied_to_this_process(program: &Path) -> Command {
    let mut c = Command::new("/bin/sh");
    c.arg("-c")
        .arg(r#""$@" </dev/null >"${TIED_STDOUT:-/dev/null}" & p=$!; echo "$p"; read -r _; kill "$p" 2>/dev/null; wait "$p""#)
        .arg("sh")
        .arg(program)
        .stdin(Stdio::piped());
    c
}

impl Tied {
    pub fn spawn(mut cmd: Command) -> Tied {
        cmd.stdout(Stdio::piped());
        let mut sh = cmd.spawn().expect("spawn under sh");
        let stdin = sh.stdin.take();
        let mut line = String::new();
        BufReader::new(sh.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("pid line");
        let pid = line.trim().parse().expect("a pid");
        Tied { sh, stdin, pid }
    }

    /// Sends `signal` (e.g. "KILL", "TERM") to the process.
    pub fn signal(&self, signal: &str) {
        let _ = Command::new("kill")
            .args([format!("-{signal}"), self.pid.to_string()])
            .status();
    }

    /// Whether the process still runs (a zombie its sh has not reaped yet does not).
    pub fn alive(&mut self) -> bool {
        if !matches!(self.sh.try_wait(), Ok(None)) {
            return false;
        }
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap_or_default();
        let state = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next());
        matches!(state, Some(s) if s != "Z" && s != "X")
    }

    /// Stops the process (SIGTERM from its sh) and waits for both, at most 20s.
    pub fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.sh.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.signal("KILL");
        let _ = self.sh.kill();
        let _ = self.sh.wait();
    }
}

impl Drop for Tied {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A minimal HTTP/1.0 GET on 127.0.0.1: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Tests share the cluster; a test that changes what all of them depend on (the API
/// server's process, the operator's ClusterRoleBinding) takes it alone.
static CLUSTER_LOCK: RwLock<()> = RwLock::new(());

pub fn shared() -> RwLockReadGuard<'static, ()> {
    CLUSTER_LOCK.read().unwrap_or_else(|e| e.into_inner())
}

pub fn alone() -> RwLockWriteGuard<'static, ()> {
    CLUSTER_LOCK.write().unwrap_or_else(|e| e.into_inner())
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The cluster, set up once per test binary: serin's CRDs, Istio's CRDs (from the
/// istio.io/api module), deploy/kustomize/kubernetes (namespace, ServiceAccount, RBAC),
/// and a kubeconfig carrying a token of that ServiceAccount for `serin operator`.
pub struct Cluster {
    pub kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    pub dir: tempfile::TempDir,
}

pub fn cluster() -> &'static Cluster {
    static C: OnceLock<Cluster> = OnceLock::new();
    C.get_or_init(set_up)
}

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the real tier runs against the control plane of \
             scripts/cluster.sh; run ./scripts/test.sh, or see README.md (Tests)"
        )
    })
}

fn set_up() -> Cluster {
    let kubeconfig = PathBuf::from(required_env("SERIN_REAL_KUBECONFIG"));
    let istio_crds = required_env("SERIN_ISTIO_CRDS");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = repo_root();
    let k = |args: &[&str]| kubectl_with(&kubeconfig, args);
    // The Flagger comparison installs Flagger's own CRDs instead (a user's cluster
    // moving over from Flagger already has them).
    let canary_crds = std::env::var("SERIN_CANARY_CRDS").unwrap_or_else(|_| {
        root.join("deploy/crds/crds.yaml")
            .to_string_lossy()
            .into_owned()
    });
    k(&["apply", "--server-side", "-f", &canary_crds]).expect_ok("the Canary CRDs apply");
    k(&["apply", "--server-side", "-f", &istio_crds]).expect_ok("Istio's CRDs apply");
    k(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/canaries.flagger.app",
        "crd/virtualservices.networking.istio.io",
        "crd/destinationrules.networking.istio.io",
    ])
    .expect_ok("CRDs established");
    k(&[
        "apply",
        "--server-side",
        "-k",
        root.join("deploy/kustomize/kubernetes").to_str().unwrap(),
    ])
    .expect_ok("deploy/kustomize/kubernetes applies");
    let operator_kubeconfig = dir.path().join("operator.kubeconfig");
    token_kubeconfig(
        &kubeconfig,
        OPERATOR_NAMESPACE,
        OPERATOR_ACCOUNT,
        &operator_kubeconfig,
    );
    Cluster {
        kubeconfig,
        operator_kubeconfig,
        dir,
    }
}

/// Writes a kubeconfig at `path` that authenticates with a real token of the
/// ServiceAccount `namespace/account`, made with the admin's `kubeconfig`.
pub fn token_kubeconfig(kubeconfig: &Path, namespace: &str, account: &str, path: &Path) {
    let k = |args: &[&str]| kubectl_with(kubeconfig, args);
    let token = k(&["-n", namespace, "create", "token", account, "--duration=4h"])
        .expect_ok("a token for a ServiceAccount");
    let server = k(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.server}",
    ])
    .expect_ok("server");
    let ca = k(&[
        "config",
        "view",
        "--raw",
        "-o",
        "jsonpath={.clusters[0].cluster.certificate-authority-data}",
    ])
    .expect_ok("ca");
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: {server}\n    certificate-authority-data: {ca}\nusers:\n- name: serin\n  user:\n    token: {}\ncontexts:\n- name: serin\n  context:\n    cluster: real\n    user: serin\ncurrent-context: serin\n",
            token.trim()
        ),
    )
    .expect("a token kubeconfig");
}

pub trait ExpectOk {
    fn expect_ok(self, what: &str) -> String;
}

impl ExpectOk for Output {
    fn expect_ok(self, what: &str) -> String {
        assert!(
            self.ok(),
            "{what}: failed ({}):\n{}\n{}",
            self.status,
            self.stdout,
            self.stderr
        );
        self.stdout
    }
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str]) -> Output {
    run_bounded(
        Command::new(KUBECTL)
            .env("KUBECONFIG", kubeconfig)
            .args(args),
        Duration::from_secs(90),
    )
}

/// kubectl as the cluster's admin.
pub fn kubectl(args: &[&str]) -> Output {
    kubectl_with(&cluster().kubeconfig, args)
}

/// kubectl as the cluster's admin, with a manifest on stdin (`kubectl apply -f -`).
pub fn kubectl_stdin(args: &[&str], input: &str) -> Output {
    kubectl_stdin_with(&cluster().kubeconfig, args, input)
}

/// The same with any kubeconfig.
pub fn kubectl_stdin_with(kubeconfig: &Path, args: &[&str], input: &str) -> Output {
    let mut child = Command::new(KUBECTL)
        .env("KUBECONFIG", kubeconfig)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .expect("stdin");
    let out = child.wait_with_output().expect("kubectl output");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into(),
        stderr: String::from_utf8_lossy(&out.stderr).into(),
    }
}

pub fn apply(ns: &str, manifests: &str) {
    kubectl_stdin(&["-n", ns, "apply", "--server-side", "-f", "-"], manifests)
        .expect_ok("kubectl apply");
}

/// `kubectl get -o json` of one object, or None when it does not exist.
pub fn get(ns: &str, what: &str) -> Option<Value> {
    let out = kubectl(&["-n", ns, "get", what, "-o", "json"]);
    if !out.ok() {
        assert!(
            out.stderr.contains("NotFound") || out.stderr.contains("not found"),
            "kubectl get {what}: {}",
            out.stderr
        );
        return None;
    }
    Some(serde_json::from_str(&out.stdout).expect("json"))
}

pub fn must_get(ns: &str, what: &str) -> Value {
    get(ns, what).unwrap_or_else(|| panic!("{what} exists in {ns}"))
}

/// Polls `f` every 250ms until it gives a value, at most `timeout`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A namespace of one test, deleted when the test ends.
pub struct Namespace {
    pub name: String,
}

impl Namespace {
    pub fn new(prefix: &str) -> Namespace {
        static N: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "{prefix}-{}-{}",
            std::process::id() % 100_000,
            N.fetch_add(1, Ordering::SeqCst)
        );
        kubectl(&["create", "namespace", &name]).expect_ok("namespace");
        Namespace { name }
    }
}

impl Drop for Namespace {
    fn drop(&mut self) {
        let _ = kubectl(&["delete", "namespace", &self.name, "--wait=false"]);
    }
}

/// `serin operator` as its own process, as the ServiceAccount deploy/ creates.
pub struct Operator {
    pub proc: Tied,
    pub port: u16,
    pub log: PathBuf,
}

impl Operator {
    pub fn start(namespace: &str, extra: &[&str]) -> Operator {
        let c = cluster();
        let port = free_port();
        static N: AtomicU32 = AtomicU32::new(0);
        let log = c.dir.path().join(format!(
            "operator-{namespace}-{}.log",
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let mut cmd = tied_to_this_process(Path::new(env!("CARGO_BIN_EXE_serin")));
        cmd.arg("operator")
            .arg("--kubeconfig")
            .arg(&c.operator_kubeconfig)
            .args(["--namespace", namespace, "--port", &port.to_string()])
            .args([
                "--metrics-server",
                &crate::live::telemetry().prometheus_url(),
            ])
            .args(extra)
            .env_remove("KUBECONFIG")
            .env("RUST_LOG", "info")
            .stderr(Stdio::from(std::fs::File::create(&log).expect("log file")));
        let proc = Tied::spawn(cmd);
        Operator { proc, port, log }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// The Canary's status phase, or "" before it has one.
pub fn phase(ns: &str, canary: &str) -> String {
    get(ns, &format!("canary/{canary}"))
        .and_then(|c| c["status"]["phase"].as_str().map(String::from))
        .unwrap_or_default()
}

/// Waits for `phase`, failing at once on Failed when that is not the wanted phase.
pub fn wait_phase(ns: &str, canary: &str, wanted: &str, timeout: Duration, op: &Operator) {
    let deadline = Instant::now() + timeout;
    loop {
        let p = phase(ns, canary);
        if p == wanted {
            return;
        }
        if Instant::now() >= deadline || (p == "Failed" && wanted != "Failed") {
            panic!(
                "canary {ns}/{canary} is {p:?}, not {wanted:?} (after {timeout:?} at most)\nevents:\n{}\noperator log (tail):\n{}",
                events(ns).join("\n"),
                tail(&op.logs(), 40)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The namespace's event messages, oldest first (by first timestamp, then creation).
pub fn events(ns: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(
        &kubectl(&["-n", ns, "get", "events", "-o", "json"]).expect_ok("events"),
    )
    .expect("json");
    let mut items: Vec<(String, String, String)> = v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            let t = e["firstTimestamp"]
                .as_str()
                .or(e["eventTime"].as_str())
                .unwrap_or("")
                .to_string();
            let created = e["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string();
            (t, created, e["message"].as_str().unwrap_or("").to_string())
        })
        .collect();
    items.sort();
    items.into_iter().map(|(_, _, m)| m).collect()
}

/// Event messages of `involved` (kind/name) only, of the operator ("serin" source).
pub fn canary_events(ns: &str, canary: &str) -> Vec<String> {
    let v: Value = serde_json::from_str(
        &kubectl(&[
            "-n",
            ns,
            "get",
            "events",
            "--field-selector",
            &format!("involvedObject.kind=Canary,involvedObject.name={canary}"),
            "-o",
            "json",
        ])
        .expect_ok("events"),
    )
    .expect("json");
    let mut items: Vec<(String, String)> = v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|e| {
            (
                e["firstTimestamp"]
                    .as_str()
                    .or(e["eventTime"].as_str())
                    .unwrap_or("")
                    .to_string(),
                e["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    items.sort();
    items.into_iter().map(|(_, m)| m).collect()
}

/// The Canary events of a namespace in the order the API server stored them, from a
/// `kubectl get events --watch` started before the test acts (Event timestamps have
/// one-second precision, too coarse to order a rollout's events).
pub struct EventLog {
    proc: Tied,
    file: PathBuf,
}

impl EventLog {
    pub fn start(ns: &str) -> EventLog {
        let c = cluster();
        EventLog::start_with(
            &c.kubeconfig,
            c.dir.path(),
            ns,
            "involvedObject.kind=Canary",
        )
    }

    /// The same on any cluster (`kubeconfig`'s) for the events `selector` selects,
    /// its output file in `dir`.
    pub fn start_with(kubeconfig: &Path, dir: &Path, ns: &str, selector: &str) -> EventLog {
        static N: AtomicU32 = AtomicU32::new(0);
        let file = dir.join(format!(
            "events-{ns}-{}.txt",
            N.fetch_add(1, Ordering::SeqCst)
        ));
        let mut cmd = tied_to_this_process(Path::new(KUBECTL));
        cmd.env("KUBECONFIG", kubeconfig)
            .args(["-n", ns, "get", "events", "--watch"])
            .args(["--field-selector", selector])
            .args(["-o", "jsonpath={.count} {.type} {.message}{\"\\n\"}"])
            .env("TIED_STDOUT", &file)
            .stderr(Stdio::null());
        let proc = Tied::spawn(cmd);
        EventLog { proc, file }
    }

    /// "Type message" lines, one per occurrence, in order. The watch prints an Event
    /// again when serin raises its count for a repeat, and when its object is updated
    /// for another reason: each (count, message) is one occurrence.
    pub fn lines(&self) -> Vec<String> {
        let text = std::fs::read_to_string(&self.file).unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        text.lines()
            .filter(|l| !l.is_empty() && seen.insert(l.to_string()))
            .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
            .collect()
    }

    /// Messages only.
    pub fn messages(&self) -> Vec<String> {
        self.lines()
            .into_iter()
            .map(|l| l.split_once(' ').map(|(_, m)| m.to_string()).unwrap_or(l))
            .collect()
    }

    pub fn stop(&mut self) {
        self.proc.stop();
    }
}
