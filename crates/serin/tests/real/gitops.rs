//! The seeds' GitOps half under real Flux (scripts/gitops-lab.sh runs this test on a
//! control plane of its own and prints every step).
//!
//! Flux's source-, kustomize- and helm-controller (built from their Go modules by
//! scripts/peers.sh) run as processes against the real API server with their own CRDs.
//! A loopback server serves a copy of gitops/ and of serin's deploy/ over Git's smart
//! HTTP protocol (`git http-backend`), and Istio's Helm charts (packaged at test time
//! from the istio.io/istio module) as a Helm repository. The only changes to gitops/
//! are Flux patches in the root Kustomization that the lab creates (as `flux
//! bootstrap` would): loopback addresses for what lives outside the cluster (Git, Helm
//! repository, Prometheus, the load tester's webhooks), Istio's admission webhooks off
//! (no istiod runs without a kubelet), Grafana's chart left out (no chart source here)
//! and a shorter analysis interval. Then a user's `git push` of a new image tag ends in
//! a promoted canary, and a failing release stays rolled back while Flux reconciles.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::live::{Rates, telemetry};
use crate::support::{
    EventLog, ExpectOk, Output, Tied, free_port, kubectl_stdin_with, kubectl_with, repo_root,
    run_bounded, tail, tied_to_this_process, token_kubeconfig,
};

const PROD: &str = "prod";
const FLUX_NS: &str = "flux-system";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run scripts/gitops-lab.sh (scripts/test.sh does)")
    })
}

/// Prints a step of the walkthrough.
fn step(text: &str) {
    println!("\n==> {text}");
}

/// Prints the command a user would type and what it printed.
fn show(command: &str, out: &str) {
    println!("$ {command}");
    for line in out.lines() {
        println!("  {line}");
    }
}

/// What the lab's loopback server saw of the load tester's webhooks: (path, body).
type Calls = Arc<Mutex<Vec<(String, Value)>>>;

/// One loopback server for what a real cluster would reach over the network: Git
/// (smart HTTP through `git http-backend`) under /git/, a Helm repository under
/// /charts/, and the canaries' webhooks under /hooks/ (answered 200, recorded).
struct LabServer {
    port: u16,
    calls: Calls,
}

impl LabServer {
    fn start(git_root: PathBuf, charts: PathBuf) -> LabServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("lab server listens");
        let port = listener.local_addr().unwrap().port();
        let calls: Calls = Arc::default();
        let c = calls.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (g, h, c) = (git_root.clone(), charts.clone(), c.clone());
                std::thread::spawn(move || serve(stream, &g, &h, &c));
            }
        });
        LabServer { port, calls }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn calls_to(&self, hook: &str, canary: &str) -> usize {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, b)| p.ends_with(hook) && b["name"] == canary && b["namespace"] == PROD)
            .count()
    }
}

struct Request {
    method: String,
    path: String,
    query: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

/// Reads one request, bounded: 100 header lines, a 16 MiB body, 30 s per read.
fn read_request(stream: &TcpStream) -> Option<Request> {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut r = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target, String::new()),
    };
    let mut headers = BTreeMap::new();
    for _ in 0..100 {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    const MAX: usize = 16 << 20;
    let mut body = Vec::new();
    if headers
        .get("transfer-encoding")
        .is_some_and(|t| t.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            if n == 0 || body.len() + n > MAX {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            body.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = headers.get("content-length").and_then(|n| n.parse().ok()) {
        let n: usize = n;
        if n > MAX {
            return None;
        }
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    }
    Some(Request {
        method,
        path,
        query,
        headers,
        body,
    })
}

fn respond(mut stream: TcpStream, status: &str, headers: &[(String, String)], body: &[u8]) {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

fn serve(stream: TcpStream, git_root: &Path, charts: &Path, calls: &Calls) {
    let Some(req) = read_request(&stream) else {
        return;
    };
    if let Some(rest) = req.path.strip_prefix("/git/") {
        let (status, headers, body) = git_http_backend(git_root, rest, &req);
        respond(stream, &status, &headers, &body);
    } else if let Some(name) = req.path.strip_prefix("/charts/") {
        // A file of the repository's own directory, nothing outside it.
        let file = (!name.contains("..") && !name.contains('/'))
            .then(|| std::fs::read(charts.join(name)).ok())
            .flatten();
        match file {
            Some(b) => respond(stream, "200 OK", &[], &b),
            None => respond(stream, "404 Not Found", &[], b"not found"),
        }
    } else if req.path.starts_with("/hooks/") && req.method == "POST" {
        let body = serde_json::from_slice(&req.body).unwrap_or(Value::Null);
        calls.lock().unwrap().push((req.path.clone(), body));
        respond(stream, "200 OK", &[], b"ok");
    } else {
        respond(stream, "404 Not Found", &[], b"not found");
    }
}

/// Runs `git http-backend` as a CGI program for one request.
fn git_http_backend(
    root: &Path,
    path: &str,
    req: &Request,
) -> (String, Vec<(String, String)>, Vec<u8>) {
    let header = |k: &str| req.headers.get(k).cloned().unwrap_or_default();
    let mut child = Command::new("git")
        .arg("http-backend")
        .env("GIT_PROJECT_ROOT", root)
        .env("GIT_HTTP_EXPORT_ALL", "1")
        .env("PATH_INFO", format!("/{path}"))
        .env("QUERY_STRING", &req.query)
        .env("REQUEST_METHOD", &req.method)
        .env("CONTENT_TYPE", header("content-type"))
        .env("CONTENT_LENGTH", req.body.len().to_string())
        .env("HTTP_CONTENT_ENCODING", header("content-encoding"))
        .env("GIT_PROTOCOL", header("git-protocol"))
        .env("REMOTE_ADDR", "127.0.0.1")
        .env("GATEWAY_INTERFACE", "CGI/1.1")
        .env("SERVER_PROTOCOL", "HTTP/1.1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("git http-backend");
    let mut stdin = child.stdin.take().unwrap();
    let body = req.body.clone();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&body);
    });
    let out = child.wait_with_output().expect("git http-backend output");
    let _ = writer.join();
    let raw = out.stdout;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)));
    let Some((i, sep)) = split else {
        return ("500 Internal Server Error".into(), vec![], raw);
    };
    let mut status = "200 OK".to_string();
    let mut headers = Vec::new();
    for line in String::from_utf8_lossy(&raw[..i]).lines() {
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("status") {
                status = v.trim().to_string();
            } else {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
    }
    (status, headers, raw[i + sep..].to_vec())
}

/// The lab's world: its directory, the admin kubeconfig, the Flux CLI.
struct Lab {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    flux: PathBuf,
    /// The user's clone of the gitops repository.
    work: PathBuf,
}

impl Lab {
    fn k(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig, args)
    }

    fn k_stdin(&self, args: &[&str], input: &str) -> Output {
        kubectl_stdin_with(&self.kubeconfig, args, input)
    }

    /// `kubectl get -o json`, with the managed fields (who wrote what).
    fn get(&self, ns: &str, what: &str) -> Option<Value> {
        let out = self.k(&["-n", ns, "get", what, "-o", "json", "--show-managed-fields"]);
        out.ok()
            .then(|| serde_json::from_str(&out.stdout).expect("json"))
    }

    fn must_get(&self, ns: &str, what: &str) -> Value {
        self.get(ns, what)
            .unwrap_or_else(|| panic!("{what} exists in {ns}"))
    }

    /// kubectl as a user types it (`kubectl -n prod get canaries`), printed.
    fn kubectl_shown(&self, args: &[&str]) -> String {
        let out = self
            .k(args)
            .expect_ok(&format!("kubectl {}", args.join(" ")));
        show(&format!("kubectl {}", args.join(" ")), &out);
        out
    }

    /// The flux CLI as a user types it, printed; its output whatever it exits with.
    fn flux(&self, args: &[&str]) -> Output {
        let out = run_bounded(
            Command::new(&self.flux)
                .arg("--kubeconfig")
                .arg(&self.kubeconfig)
                .args(args),
            Duration::from_secs(360),
        );
        show(
            &format!("flux {}", args.join(" ")),
            &format!("{}{}", out.stdout, out.stderr),
        );
        out
    }

    /// Asks Flux to reconcile `what` (kind/name in flux-system) now, with the
    /// annotation `flux reconcile` sets, and waits until its controller handled it.
    fn request_reconcile(&self, what: &str, token: &str) {
        let args = [
            "-n",
            FLUX_NS,
            "annotate",
            "--overwrite",
            what,
            &format!("reconcile.fluxcd.io/requestedAt={token}"),
        ];
        self.k(&args).expect_ok("annotate");
        show(&format!("kubectl {}", args.join(" ")), "");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let handled = self
                .get(FLUX_NS, what)
                .is_some_and(|o| o["status"]["lastHandledReconcileAt"] == token);
            if handled {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "Flux handled the reconcile request of {what} within 2 minutes"
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// How many times serin said `prefix...` of `canary` (the Events' counts).
    fn event_count(&self, canary: &str, prefix: &str) -> i64 {
        let out = self
            .k(&[
                "-n",
                PROD,
                "get",
                "events",
                "--field-selector",
                &format!("involvedObject.kind=Canary,involvedObject.name={canary}"),
                "-o",
                "json",
            ])
            .expect_ok("events");
        let v: Value = serde_json::from_str(&out).expect("json");
        v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["message"].as_str().is_some_and(|m| m.starts_with(prefix)))
            .map(|e| e["count"].as_i64().unwrap_or(1))
            .sum()
    }

    fn git(&self, args: &[&str]) -> String {
        git_in(&self.work, args)
    }

    fn phase(&self, canary: &str) -> String {
        self.get(PROD, &format!("canary/{canary}"))
            .and_then(|c| c["status"]["phase"].as_str().map(String::from))
            .unwrap_or_default()
    }

    /// A Flux Kustomization's Ready condition: (status, reason, message).
    fn ready(&self, name: &str) -> Option<(String, String, String)> {
        let k = self.get(
            FLUX_NS,
            &format!("kustomizations.kustomize.toolkit.fluxcd.io/{name}"),
        )?;
        let c = k["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Ready")?
            .clone();
        let s = |f: &str| c[f].as_str().unwrap_or("").to_string();
        Some((s("status"), s("reason"), s("message")))
    }

    /// A user's release: edits a file of the clone, commits, pushes, and tells Flux
    /// (`flux reconcile source git flux-system`). Returns the commit.
    fn release(&self, app: &str, tag: &str) -> String {
        let file = format!("apps/{app}/kustomization.yaml");
        show(
            &format!("yq e '.images[0].newTag=\"{tag}\"' -i ./{file}"),
            "(the same edit, made by the test without yq)",
        );
        let path = self.work.join(&file);
        let text = std::fs::read_to_string(&path).expect("kustomization.yaml");
        let mut edited = String::new();
        let mut done = false;
        for line in text.lines() {
            if !done && line.trim_start().starts_with("newTag:") {
                let indent = &line[..line.len() - line.trim_start().len()];
                edited.push_str(&format!("{indent}newTag: {tag}\n"));
                done = true;
            } else {
                edited.push_str(line);
                edited.push('\n');
            }
        }
        assert!(done, "{file} has an image newTag");
        std::fs::write(&path, edited).expect("write kustomization.yaml");
        self.git(&["add", "-A"]);
        self.git(&["commit", "-q", "-m", &format!("{app} {tag}")]);
        self.git(&["push", "-q", "origin", "main"]);
        let sha = self.git(&["rev-parse", "HEAD"]).trim().to_string();
        show(
            &format!("git add -A && git commit -m \"{app} {tag}\" && git push origin main"),
            &format!("main -> {}", &sha[..12]),
        );
        self.flux(&["reconcile", "source", "git", "flux-system"])
            .expect_ok("flux reconcile source git flux-system");
        sha
    }
}

fn git_in(dir: &Path, args: &[&str]) -> String {
    run_bounded(
        Command::new("git")
            .current_dir(dir)
            .args([
                "-c",
                "user.name=serin lab",
                "-c",
                "user.email=lab@serin.invalid",
            ])
            .args([
                "-c",
                "init.defaultBranch=main",
                "-c",
                "commit.gpgsign=false",
            ])
            .args(args),
        Duration::from_secs(60),
    )
    .expect_ok(&format!("git {}", args.join(" ")))
}

/// Copies `src` to `work` (the user's clone), commits it and makes `bare`, its
/// origin, the repository Flux reads.
fn repository(src: &Path, work: &Path, bare: &Path, message: &str) {
    std::fs::create_dir_all(work.parent().unwrap()).unwrap();
    run_bounded(
        Command::new("cp").arg("-a").arg(src).arg(work),
        Duration::from_secs(60),
    )
    .expect_ok("copy into the clone");
    git_in(work, &["init", "-q"]);
    git_in(work, &["add", "-A"]);
    git_in(work, &["commit", "-q", "-m", message]);
    run_bounded(
        Command::new("git")
            .args(["clone", "-q", "--bare"])
            .arg(work)
            .arg(bare),
        Duration::from_secs(60),
    )
    .expect_ok("bare repository");
    git_in(work, &["remote", "add", "origin", bare.to_str().unwrap()]);
    git_in(work, &["fetch", "-q", "origin"]);
    git_in(
        work,
        &["branch", "-q", "--set-upstream-to=origin/main", "main"],
    );
}

/// One Flux controller as its own process, watching every namespace, its metrics and
/// health endpoints on free loopback ports, logging into `logs`.
fn controller(bin: &Path, args: &[String], kubeconfig: &Path, logs: &Path) -> Tied {
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    let mut cmd = tied_to_this_process(bin);
    cmd.args(args)
        .arg(format!("--metrics-addr=127.0.0.1:{}", free_port()))
        .arg(format!("--health-addr=127.0.0.1:{}", free_port()))
        .arg("--watch-all-namespaces")
        .env("KUBECONFIG", kubeconfig)
        .env("RUNTIME_NAMESPACE", FLUX_NS)
        .env("TIED_STDOUT", logs.join(format!("{name}.out")))
        .stderr(Stdio::from(
            std::fs::File::create(logs.join(format!("{name}.log"))).expect("log"),
        ));
    Tied::spawn(cmd)
}

/// A JSON 6902 patch of the objects of `kind` (named `name`, or all), as Flux's
/// Kustomization `spec.patches` takes it.
fn patch(kind: &str, name: Option<&str>, ops: Value) -> Value {
    let mut target = json!({ "kind": kind });
    if let Some(n) = name {
        target["name"] = json!(n);
    }
    json!({ "target": target, "patch": yaml(&ops) })
}

/// A strategic-merge patch that leaves an object out.
fn delete(api_version: &str, kind: &str, name: &str, ns: &str) -> Value {
    json!({ "patch": yaml(&json!({
        "apiVersion": api_version, "kind": kind,
        "metadata": { "name": name, "namespace": ns },
        "$patch": "delete"
    })) })
}

/// `v` as block YAML (multi-line strings as `|` blocks), so that the bootstrap the
/// lab prints is legible and is exactly what it applies.
fn yaml(v: &Value) -> String {
    fn scalar(v: &Value) -> String {
        match v {
            Value::String(s) => serde_json::to_string(s).unwrap(),
            other => other.to_string(),
        }
    }
    fn block(s: &str, pad: &str) -> String {
        let mut out = String::from("|\n");
        for line in s.lines() {
            out.push_str(&format!("{pad}  {line}\n"));
        }
        out
    }
    fn emit(v: &Value, pad: &str, out: &mut String) {
        match v {
            Value::Object(m) => {
                for (k, val) in m {
                    out.push_str(&format!("{pad}{k}:"));
                    value(val, pad, out);
                }
            }
            Value::Array(a) => {
                for item in a {
                    out.push_str(&format!("{pad}-"));
                    match item {
                        Value::Object(_) | Value::Array(_) => {
                            let mut inner = String::new();
                            emit(item, &format!("{pad}  "), &mut inner);
                            out.push(' ');
                            out.push_str(inner.trim_start());
                        }
                        _ => value(item, pad, out),
                    }
                }
            }
            _ => out.push_str(&format!("{pad}{}\n", scalar(v))),
        }
    }
    fn value(val: &Value, pad: &str, out: &mut String) {
        match val {
            Value::Object(m) if !m.is_empty() => {
                out.push('\n');
                emit(val, &format!("{pad}  "), out);
            }
            Value::Array(a) if !a.is_empty() => {
                out.push('\n');
                emit(val, &format!("{pad}  "), out);
            }
            Value::String(s) if s.contains('\n') => {
                out.push(' ');
                out.push_str(&block(s, pad));
            }
            _ => out.push_str(&format!(" {}\n", scalar(val))),
        }
    }
    let mut out = String::new();
    emit(v, "", &mut out);
    out
}

fn image(deploy: &Value) -> String {
    deploy["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn managers(obj: &Value) -> BTreeSet<String> {
    obj["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["manager"].as_str().map(String::from))
        .collect()
}

/// Whether the field manager `manager` owns `spec.replicas` of `deploy`.
fn owns_replicas(deploy: &Value, manager: &str) -> bool {
    deploy["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|m| m["manager"] == manager && m["fieldsV1"]["f:spec"].get("f:replicas").is_some())
}

/// The (primary, canary) weights of the VirtualService's first route.
fn weights(vs: &Value) -> (i64, i64) {
    let mut p = -1;
    let mut c = -1;
    for r in vs["spec"]["http"][0]["route"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let host = r["destination"]["host"].as_str().unwrap_or("");
        let w = r["weight"].as_i64().unwrap_or(0);
        if host.ends_with("-primary") {
            p = w;
        } else if host.ends_with("-canary") {
            c = w;
        }
    }
    (p, c)
}

/// `expected` appear in `seen` in this order (other events may come between).
fn in_order(seen: &[String], expected: &[String]) -> Result<(), String> {
    let mut it = seen.iter();
    for e in expected {
        if !it.any(|s| s == e) {
            return Err(format!(
                "{e:?} missing or out of order in:\n{}",
                seen.join("\n")
            ));
        }
    }
    Ok(())
}

#[test]
#[ignore = "real tier: needs Flux's controllers; run scripts/gitops-lab.sh"]
fn a_git_push_of_a_new_tag_ends_in_a_promoted_canary_and_a_failing_one_stays_rolled_back() {
    let started = Instant::now();
    let kubeconfig = PathBuf::from(env("SERIN_REAL_KUBECONFIG"));
    let bin = |name: &str| PathBuf::from(env(name));
    let istio_charts = PathBuf::from(env("SERIN_ISTIO_CHARTS"));
    let helm = PathBuf::from(env("SERIN_HELM"));
    let interval = std::env::var("SERIN_LAB_INTERVAL").unwrap_or_else(|_| "10s".into());
    let root = repo_root();
    let dir = tempfile::tempdir().expect("tempdir");
    let logs = dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let lab = Lab {
        kubeconfig: kubeconfig.clone(),
        flux: bin("SERIN_FLUX_CLI"),
        work: dir.path().join("work/gitops"),
        dir,
    };
    let d = lab.dir.path();

    step(
        "Git: a copy of gitops/ (the user's repository) and of serin's deploy/ (the chart's source)",
    );
    let git_root = d.join("git");
    repository(
        &root.join("gitops"),
        &lab.work,
        &git_root.join("gitops.git"),
        "gitops: the seeds' repository",
    );
    // serin's repository as Flux needs it: deploy/ at its root.
    let serin_src = d.join("serin-src");
    std::fs::create_dir_all(&serin_src).unwrap();
    run_bounded(
        Command::new("cp")
            .arg("-a")
            .arg(root.join("deploy"))
            .arg(&serin_src),
        Duration::from_secs(60),
    )
    .expect_ok("copy deploy/");
    repository(
        &serin_src,
        &d.join("work/serin"),
        &git_root.join("serin.git"),
        "serin: deploy/",
    );

    step(
        "Helm: Istio's charts from the istio.io/istio module, packaged into a loopback repository",
    );
    let charts = d.join("charts");
    std::fs::create_dir_all(&charts).unwrap();
    let version = std::fs::read_to_string(lab.work.join("clusters/my-cluster/istio-version.yaml"))
        .expect("istio-version.yaml")
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("version:")
                .map(|v| v.trim().to_string())
        })
        .expect("the Istio version");
    for chart in ["base", "istio-control/istio-discovery", "gateway"] {
        run_bounded(
            Command::new(&helm)
                .args([
                    "package",
                    "--version",
                    &version,
                    "--app-version",
                    &version,
                    "-d",
                ])
                .arg(&charts)
                .arg(istio_charts.join(chart)),
            Duration::from_secs(60),
        )
        .expect_ok("helm package");
    }
    let server = LabServer::start(git_root, charts.clone());
    run_bounded(
        Command::new(&helm)
            .args(["repo", "index", "--url", &server.url("/charts")])
            .arg(&charts),
        Duration::from_secs(60),
    )
    .expect_ok("helm repo index");
    println!(
        "charts {version}: base, istiod, gateway at {}",
        server.url("/charts")
    );

    // Istio-style telemetry: both apps healthy for now.
    let t = telemetry();
    t.set(PROD, "backend", Rates::healthy());
    t.set(PROD, "frontend", Rates::healthy());

    step(
        "Flux: its CRDs from the controllers' modules, then source-, kustomize- and helm-controller",
    );
    for crds in env("SERIN_FLUX_CRDS").split(':') {
        lab.k(&["apply", "--server-side", "-f", crds])
            .expect_ok("Flux's CRDs apply");
    }
    lab.k(&["create", "namespace", FLUX_NS])
        .expect_ok("flux-system");
    lab.k(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
        "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        "crd/helmreleases.helm.toolkit.fluxcd.io",
    ])
    .expect_ok("Flux CRDs established");
    let storage = format!("127.0.0.1:{}", free_port());
    std::fs::create_dir_all(d.join("storage")).unwrap();
    let mut controllers = vec![
        controller(
            &bin("SERIN_FLUX_SOURCE_CONTROLLER"),
            &[
                format!("--storage-path={}", d.join("storage").display()),
                format!("--storage-addr={storage}"),
                format!("--storage-adv-addr={storage}"),
            ],
            &kubeconfig,
            &logs,
        ),
        controller(
            &bin("SERIN_FLUX_KUSTOMIZE_CONTROLLER"),
            &[],
            &kubeconfig,
            &logs,
        ),
        controller(&bin("SERIN_FLUX_HELM_CONTROLLER"), &[], &kubeconfig, &logs),
    ];
    let flux_logs = |n: usize| {
        [
            "source-controller",
            "kustomize-controller",
            "helm-controller",
        ]
        .iter()
        .map(|c| {
            let text = std::fs::read_to_string(logs.join(format!("{c}.log"))).unwrap_or_default();
            format!("--- {c}\n{}", tail(&text, n))
        })
        .collect::<Vec<_>>()
        .join("\n")
    };

    step(
        "Bootstrap: the GitRepository and Kustomization `flux bootstrap` would commit, with the lab's patches",
    );
    let prometheus = t.prometheus_url();
    let hook = |name: &str| server.url(&format!("/hooks/{name}"));
    let istio_system = vec![
        patch(
            "HelmRepository",
            Some("istio"),
            json!([{ "op": "replace", "path": "/spec/url", "value": server.url("/charts") }]),
        ),
        patch(
            "HelmRelease",
            Some("istio-base"),
            json!([{ "op": "add", "path": "/spec/values", "value": { "defaultRevision": "" } }]),
        ),
        patch(
            "HelmRelease",
            Some("istiod"),
            json!([
                { "op": "add", "path": "/spec/values/global/operatorManageWebhooks", "value": true },
                { "op": "add", "path": "/spec/values/global/configValidation", "value": false }
            ]),
        ),
        delete(
            "helm.toolkit.fluxcd.io/v2",
            "HelmRelease",
            "serin-grafana",
            "istio-system",
        ),
        delete(
            "source.toolkit.fluxcd.io/v1",
            "HelmRepository",
            "grafana",
            "istio-system",
        ),
    ];
    let istio_gateway = vec![patch(
        "MetricTemplate",
        None,
        json!([{ "op": "replace", "path": "/spec/provider/address", "value": prometheus }]),
    )];
    let apps = vec![patch(
        "Canary",
        None,
        json!([
            { "op": "replace", "path": "/spec/analysis/interval", "value": interval },
            { "op": "replace", "path": "/spec/analysis/webhooks/0/url", "value": hook("conformance-test") },
            { "op": "replace", "path": "/spec/analysis/webhooks/1/url", "value": hook("load-test") }
        ]),
    )];
    let spec_patches =
        |v: Vec<Value>| json!([{ "op": "add", "path": "/spec/patches", "value": v }]);
    let bootstrap = json!([
            {
                "apiVersion": "source.toolkit.fluxcd.io/v1", "kind": "GitRepository",
                "metadata": { "name": "flux-system", "namespace": FLUX_NS },
                "spec": {
                    "interval": "1m0s",
                    "url": server.url("/git/gitops.git"),
                    "ref": { "branch": "main" }
                }
            },
            {
                "apiVersion": "kustomize.toolkit.fluxcd.io/v1", "kind": "Kustomization",
                "metadata": { "name": "flux-system", "namespace": FLUX_NS },
                "spec": {
                    "interval": "10m0s",
                    "path": "./clusters/my-cluster",
                    "prune": true,
                    "sourceRef": { "kind": "GitRepository", "name": "flux-system" },
                    "patches": [
                        patch("ConfigMap", Some("istio-version"),
                            json!([{ "op": "add", "path": "/data/service", "value": "ClusterIP" }])),
                        patch("ConfigMap", Some("serin-version"), json!([
                            { "op": "replace", "path": "/data/serin_git_url", "value": server.url("/git/serin.git") },
                            { "op": "replace", "path": "/data/serin_git_ref", "value": "refs/heads/main" }
                        ])),
                        patch("Kustomization", Some("istio-system"), spec_patches(istio_system)),
                        patch("Kustomization", Some("istio-gateway"), spec_patches(istio_gateway)),
                        patch("Kustomization", Some("apps"), spec_patches(apps)),
                    ]
                }
            }
    ]);
    let bootstrap = bootstrap
        .as_array()
        .unwrap()
        .iter()
        .map(yaml)
        .collect::<Vec<_>>()
        .join("---\n");
    show(
        "kubectl apply --server-side -f flux-system.yaml",
        &bootstrap,
    );
    lab.k_stdin(&["apply", "--server-side", "-f", "-"], &bootstrap)
        .expect_ok("the bootstrap objects apply");

    step(
        "Flux reconciles istio-system, then istio-gateway, then apps (dependsOn); serin runs as the chart's ServiceAccount",
    );
    let order = ["istio-system", "istio-gateway", "apps"];
    let mut ready_at: BTreeMap<&str, Instant> = BTreeMap::new();
    let mut waited: BTreeSet<&str> = BTreeSet::new();
    let mut operator: Option<(Tied, PathBuf)> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while ready_at.len() < order.len() {
        for name in order {
            if let Some((status, reason, _)) = lab.ready(name) {
                if reason == "DependencyNotReady" {
                    waited.insert(name);
                }
                if status == "True" {
                    ready_at.entry(name).or_insert_with(Instant::now);
                }
            }
        }
        // serin's Deployment exists once Flux installed the chart: run serin as it
        // would, with the chart's arguments and the ServiceAccount the chart made.
        if operator.is_none()
            && let Some(dep) = lab.get("istio-system", "deployment/serin")
        {
            operator = Some(start_serin(&lab, &dep, &prometheus));
        }
        for (i, c) in controllers.iter_mut().enumerate() {
            assert!(c.alive(), "Flux controller {i} exited:\n{}", flux_logs(20));
        }
        if Instant::now() >= deadline {
            lab.flux(&["get", "all", "-A"]);
            panic!(
                "Flux did not reconcile the cluster in 10 minutes; ready: {:?}\n{}",
                ready_at.keys().collect::<Vec<_>>(),
                flux_logs(30)
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let (mut serin, serin_log) = operator.expect("serin's Deployment was installed");
    let serin_logs = |n: usize| tail(&std::fs::read_to_string(&serin_log).unwrap_or_default(), n);
    assert!(
        ready_at["istio-system"] <= ready_at["istio-gateway"]
            && ready_at["istio-gateway"] <= ready_at["apps"],
        "Kustomizations became Ready out of dependsOn order"
    );
    assert!(
        waited.contains("istio-gateway") && waited.contains("apps"),
        "istio-gateway and apps waited for their dependencies (seen waiting: {waited:?})"
    );
    println!(
        "Ready after {:?}: istio-system {:.0?}, istio-gateway {:.0?}, apps {:.0?} (istio-gateway and apps were seen waiting on dependsOn)",
        started.elapsed(),
        ready_at["istio-system"] - started,
        ready_at["istio-gateway"] - started,
        ready_at["apps"] - started,
    );
    lab.flux(&["get", "kustomizations"]);
    lab.flux(&["get", "helmreleases", "-n", "istio-system"]);
    let tree = lab.flux(&["tree", "kustomization", "flux-system"]);
    assert!(
        tree.stdout.contains("Canary/prod/backend") && !tree.stdout.contains("backend-primary"),
        "flux tree lists the Canary Flux applied, not the objects serin generated:\n{}",
        tree.stdout
    );
    let out = lab.kubectl_shown(&["-n", PROD, "get", "canaries"]);
    for c in ["backend", "frontend"] {
        assert_eq!(
            lab.phase(c),
            "Initialized",
            "{c} initialized:\n{out}\n{}",
            serin_logs(40)
        );
    }

    // A Flux-managed target keeps its fields; serin's objects carry the annotations
    // that keep Flux's hands off them, and no Flux field manager.
    let vs = lab.must_get(PROD, "virtualservice/backend");
    let primary = lab.must_get(PROD, "deployment/backend-primary");
    for (what, obj) in [
        ("VirtualService backend", &vs),
        ("Deployment backend-primary", &primary),
    ] {
        assert!(
            !managers(obj).contains("kustomize-controller"),
            "{what} is not managed by Flux: {:?}",
            managers(obj)
        );
    }
    println!(
        "serin's objects: managers {:?} (VirtualService), {:?} (backend-primary); annotations {}",
        managers(&vs),
        managers(&primary),
        vs["metadata"]["annotations"]
    );

    step(
        "Releases: backend 6.1.1 (canary, weight 5 to 50) and, while it runs, frontend 6.1.1 (A/B: Firefox users and the insider cookie, 10 iterations)",
    );
    let mut backend_events = canary_events(&lab, "backend");
    let mut frontend_events = canary_events(&lab, "frontend");
    lab.release("backend", "6.1.1");
    let deadline = Instant::now() + Duration::from_secs(120);
    while lab.phase("backend") != "Progressing" {
        assert!(
            Instant::now() < deadline,
            "backend's canary started: {}",
            serin_logs(30)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let sha = lab.release("frontend", "6.1.1");
    let flux_said = watch_releases(
        &lab,
        &["backend", "frontend"],
        &sha,
        Duration::from_secs(600),
        &serin_logs,
    );
    flux_health_note(&flux_said);
    backend_events.stop();
    frontend_events.stop();
    lab.kubectl_shown(&["-n", PROD, "describe", "canary", "backend"]);
    let mut expected = vec![
        "New revision detected! Scaling up backend.prod".to_string(),
        "Starting canary analysis for backend.prod".to_string(),
        "Pre-rollout check conformance-test passed".to_string(),
    ];
    expected.extend((1..=10).map(|i| format!("Advance backend.prod canary weight {}", i * 5)));
    expected.push("Copying backend.prod template spec to backend-primary.prod".into());
    expected.push("Promotion completed! Scaling down backend.prod".into());
    if let Err(e) = in_order(&backend_events.messages(), &expected) {
        panic!("backend's events follow the seed's sequence: {e}");
    }
    let mut expected = vec!["New revision detected! Scaling up frontend.prod".to_string()];
    expected.push("Pre-rollout check conformance-test passed".into());
    expected.extend((1..=10).map(|i| format!("Advance frontend.prod canary iteration {i}/10")));
    expected.push("Copying frontend.prod template spec to frontend-primary.prod".into());
    expected.push("Promotion completed! Scaling down frontend.prod".into());
    if let Err(e) = in_order(&frontend_events.messages(), &expected) {
        panic!("frontend's events follow the seed's sequence: {e}");
    }
    for app in ["backend", "frontend"] {
        assert_eq!(
            image(&lab.must_get(PROD, &format!("deployment/{app}-primary"))),
            "ghcr.io/stefanprodan/podinfo:6.1.1",
            "{app}-primary runs the release"
        );
        for hook in ["conformance-test", "load-test"] {
            assert!(
                server.calls_to(&format!("/hooks/{hook}"), app) >= 1,
                "{app}'s {hook} webhook was called"
            );
        }
    }
    lab.flux(&["get", "kustomizations"]);
    lab.kubectl_shown(&["get", "canaries", "--all-namespaces"]);

    step(
        "A failing release: frontend 6.1.2 answers half its requests with 500; serin rolls it back",
    );
    t.set(PROD, "frontend", Rates::failing());
    let mut failing_events = canary_events(&lab, "frontend");
    let sha = lab.release("frontend", "6.1.2");
    let deadline = Instant::now() + Duration::from_secs(600);
    while lab.phase("frontend") != "Failed" {
        assert!(
            Instant::now() < deadline,
            "frontend was not rolled back in 10 minutes: {}\n{}",
            lab.phase("frontend"),
            serin_logs(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    lab.flux(&["get", "kustomizations"]);
    lab.kubectl_shown(&["-n", PROD, "describe", "canary", "frontend"]);
    failing_events.stop();
    let failed = failing_events.messages();
    if let Err(e) = in_order(
        &failed,
        &[
            "New revision detected! Scaling up frontend.prod".to_string(),
            "Halt frontend.prod advancement error-rate 50.00 > 1".to_string(),
            "Rolling back frontend.prod failed checks threshold reached 10".to_string(),
            "Canary failed! Scaling down frontend.prod".to_string(),
        ],
    ) {
        panic!("frontend's rollback events: {e}");
    }
    let failed_at = failed.len();

    step("Flux keeps reconciling: the rollback stands");
    let snapshot = || {
        let target = lab.must_get(PROD, "deployment/frontend");
        let primary = lab.must_get(PROD, "deployment/frontend-primary");
        let vs = lab.must_get(PROD, "virtualservice/frontend");
        (target, primary, vs)
    };
    let (target0, primary0, vs0) = snapshot();
    let rollouts_before = lab.event_count("frontend", "New revision detected");
    // `flux reconcile kustomization apps --with-source` asks the same, then waits for
    // a Ready that a failed health check does not give (Flux keeps the Kustomization
    // Reconciling, with retries): the lab asks with the annotation the CLI sets and
    // waits for the controllers to have handled it.
    for round in 0..2 {
        for what in ["gitrepository/flux-system", "kustomization/apps"] {
            lab.request_reconcile(what, &format!("lab-{round}"));
        }
    }
    lab.flux(&["get", "kustomizations"]);
    // On its next reconcile Flux's health check reads the rolled-back Canary and
    // fails the apps Kustomization, naming it.
    let (status, reason, message) = lab.ready("apps").expect("apps has a Ready condition");
    assert!(
        status == "False" && message.contains("Canary/prod/frontend"),
        "apps Kustomization reports the failed Canary: {status} {reason}: {message}"
    );
    let k = lab.must_get(FLUX_NS, "kustomizations.kustomize.toolkit.fluxcd.io/apps");
    assert!(
        k["status"]["lastAttemptedRevision"]
            .as_str()
            .is_some_and(|r| r.contains(&sha)),
        "Flux reconciled {sha} again: {}",
        k["status"]
    );
    println!("apps after two reconciles: Ready={status} {reason}: {message}");
    let (target1, primary1, vs1) = snapshot();
    assert_eq!(lab.phase("frontend"), "Failed", "the rollback stands");
    assert_eq!(
        image(&primary1),
        "ghcr.io/stefanprodan/podinfo:6.1.1",
        "primary keeps the good release"
    );
    assert_eq!(
        image(&target1),
        "ghcr.io/stefanprodan/podinfo:6.1.2",
        "Git's tag stays on the target"
    );
    assert_eq!(
        target1["spec"]["replicas"], 0,
        "the rolled-back target stays scaled to zero"
    );
    assert_eq!(weights(&vs1), (100, 0), "all traffic on the primary");
    assert_eq!(
        target0["metadata"]["generation"], target1["metadata"]["generation"],
        "Flux's applies left the target's spec alone"
    );
    assert_eq!(
        primary0["metadata"]["generation"],
        primary1["metadata"]["generation"]
    );
    assert_eq!(vs0["spec"], vs1["spec"]);
    assert!(
        !owns_replicas(&target1, "kustomize-controller"),
        "Flux does not own the target's replicas (serin scales it)"
    );
    let rollouts_after = lab.event_count("frontend", "New revision detected");
    assert_eq!(
        rollouts_before, rollouts_after,
        "no new rollout while Flux reconciles (the count of serin's \"New revision detected\" events)"
    );
    println!(
        "frontend: Failed; primary {}; target {} at 0 replicas; weights {:?}; {} events before, none of a new rollout after",
        image(&primary1),
        image(&target1),
        weights(&vs1),
        failed_at
    );
    lab.kubectl_shown(&["get", "canaries", "--all-namespaces"]);
    println!("\nthe lab took {:?}", started.elapsed());

    serin.stop();
    for c in &mut controllers {
        c.stop();
    }
}

/// What Flux said of a release's revision: it health-checks right after applying,
/// and when serin has not yet seen the new revision (it reacts in a fraction of a
/// second, Flux's first check comes sooner), the Canary still reads Promoted from the
/// release before. The README's GitOps section says so.
fn flux_health_note(phases: &[(String, String)]) {
    let all = phases.iter().all(|(_, p)| p == "Succeeded");
    println!(
        "Flux's apps Kustomization first said Ready on this revision with {}{}",
        phases
            .iter()
            .map(|(c, p)| format!("{c} {p}"))
            .collect::<Vec<_>>()
            .join(", "),
        if all {
            " (its health check waited for the promotions)"
        } else {
            " (its first health check came before serin saw the new revision)"
        }
    );
}

/// The Canary events of one canary, from a watch started now.
fn canary_events(lab: &Lab, canary: &str) -> EventLog {
    EventLog::start_with(
        &lab.kubeconfig,
        lab.dir.path(),
        PROD,
        &format!("involvedObject.kind=Canary,involvedObject.name={canary}"),
    )
}

/// Follows releases until the canaries are promoted and Flux's apps Kustomization
/// is Ready on `sha`; returns the canaries' phases when Flux first said Ready on
/// `sha`.
fn watch_releases(
    lab: &Lab,
    canaries: &[&str],
    sha: &str,
    timeout: Duration,
    serin_logs: &dyn Fn(usize) -> String,
) -> Vec<(String, String)> {
    let deadline = Instant::now() + timeout;
    let mut last = Vec::<String>::new();
    let mut at_ready = None;
    loop {
        let ready = lab
            .ready("apps")
            .is_some_and(|(s, _, m)| s == "True" && m.contains(sha));
        let phases: Vec<String> = canaries.iter().map(|c| lab.phase(c)).collect();
        if phases != last {
            println!(
                "{} (Flux's apps Kustomization Ready on {}: {ready})",
                canaries
                    .iter()
                    .zip(&phases)
                    .map(|(c, p)| format!("{c}: {p}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                &sha[..12]
            );
            last = phases.clone();
        }
        if ready && at_ready.is_none() {
            at_ready = Some(
                canaries
                    .iter()
                    .map(|c| c.to_string())
                    .zip(phases.iter().cloned())
                    .collect(),
            );
        }
        if let Some(i) = phases.iter().position(|p| p == "Failed") {
            panic!("{} failed:\n{}", canaries[i], serin_logs(40));
        }
        if ready && phases.iter().all(|p| p == "Succeeded") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not promoted in {timeout:?}: {phases:?}\n{}",
            serin_logs(40)
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    at_ready.expect("apps was seen Ready")
}

/// Runs `serin operator` as the chart's Deployment would: its arguments, a token of
/// its ServiceAccount, loopback Prometheus for the built-in checks.
fn start_serin(lab: &Lab, dep: &Value, prometheus: &str) -> (Tied, PathBuf) {
    let pod = &dep["spec"]["template"]["spec"];
    let account = pod["serviceAccountName"].as_str().unwrap_or("default");
    let kubeconfig = lab.dir.path().join("serin.kubeconfig");
    token_kubeconfig(&lab.kubeconfig, "istio-system", account, &kubeconfig);
    let mut args: Vec<String> = pod["containers"][0]["args"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a.as_str().map(String::from))
        .filter(|a| !a.starts_with("--metrics-server") && !a.starts_with("--port"))
        .collect();
    args.push(format!("--metrics-server={prometheus}"));
    args.push(format!("--port={}", free_port()));
    println!("serin {} (as istio-system/{account})", args.join(" "));
    let log = lab.dir.path().join("serin.log");
    let mut cmd = tied_to_this_process(Path::new(env!("CARGO_BIN_EXE_serin")));
    cmd.args(&args)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .env_remove("KUBECONFIG")
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
    (Tied::spawn(cmd), log)
}
