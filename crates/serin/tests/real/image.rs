//! serin's container image (scripts/image.sh): built FROM scratch with Debian's buildah
//! from this test binary's serin, run with Debian's podman. `serin --version` in the
//! container is the binary's; the operator in the container, configured the way a pod
//! is (a ServiceAccount token and the cluster's CA mounted at
//! /var/run/secrets/kubernetes.io/serviceaccount, KUBERNETES_SERVICE_HOST/PORT), acts
//! on a Canary of the real control plane. Each test has its own image storage, removed
//! when it ends, and removes the containers it started by their id.

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::Value;

use crate::support::*;

const MINUTE: Duration = Duration::from_secs(60);

fn serin_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_serin"))
}

/// An image built by scripts/image.sh into a storage of this test only.
struct Image {
    store: tempfile::TempDir,
    name: String,
}

impl Image {
    fn build() -> Image {
        let store = tempfile::tempdir().expect("tempdir");
        let mut image = Image {
            store,
            name: String::new(),
        };
        let out = image.script(&["build", "--binary", serin_bin().to_str().unwrap()]);
        let name = out.expect_ok("scripts/image.sh build");
        image.name = name.trim().lines().last().unwrap_or_default().to_string();
        assert_eq!(
            image.name,
            format!("localhost/serin:{}", env!("CARGO_PKG_VERSION")),
            "the image is tagged with serin's version"
        );
        image
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(repo_root().join("scripts/image.sh"));
        c.args(args)
            .env("SERIN_IMAGE_STORE", self.store.path().join("store"));
        c
    }

    /// scripts/image.sh with these arguments, bounded.
    fn script(&self, args: &[&str]) -> Output {
        run_bounded(&mut self.command(args), 5 * MINUTE)
    }

    fn podman(&self, args: &[&str]) -> Output {
        let mut all = vec!["podman"];
        all.extend_from_slice(args);
        self.script(&all)
    }
}

impl Drop for Image {
    fn drop(&mut self) {
        let out = self.script(&["clean"]);
        if !out.ok() {
            eprintln!("scripts/image.sh clean: {}{}", out.stdout, out.stderr);
        }
    }
}

/// The absolute paths `ldd` resolves for the binary (its libraries and loader).
fn ldd_paths(bin: &Path) -> BTreeSet<String> {
    let out = run_bounded(Command::new("ldd").arg(bin), MINUTE);
    out.stdout
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(|w| w.trim_start_matches('/').to_string())
        .collect()
}

#[test]
#[ignore = "real tier: needs buildah and podman (scripts/test.sh installs them)"]
fn the_image_holds_serin_and_its_libraries_only_and_says_its_version() {
    let image = Image::build();
    let host = run_bounded(Command::new(serin_bin()).arg("--version"), MINUTE)
        .expect_ok("serin --version on the host");
    let out = image.script(&["run", "--", "--version"]);
    let inside = out.expect_ok("serin --version in the container");
    assert_eq!(inside, host, "the container's serin is the binary built");
    assert_eq!(
        inside.trim(),
        format!("serin {}", env!("CARGO_PKG_VERSION"))
    );

    // Configured to run the operator as a non-root numeric user.
    let config: Value = serde_json::from_str(
        &image
            .podman(&["image", "inspect", &image.name])
            .expect_ok("podman image inspect"),
    )
    .expect("json");
    let config = &config[0]["Config"];
    assert_eq!(config["User"], "65532:65532", "{config}");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/serin"]),
        "{config}"
    );
    assert_eq!(config["Cmd"], serde_json::json!(["operator"]), "{config}");

    // Its files: the binary and what ldd lists, nothing else (no shell, no passwd).
    let id = image
        .podman(&["create", &image.name])
        .expect_ok("podman create");
    let id = id.trim();
    let tar = image.store.path().join("rootfs.tar");
    let exported = image.podman(&["export", "-o", tar.to_str().unwrap(), id]);
    image.podman(&["rm", "-f", id]).expect_ok("podman rm -f");
    exported.expect_ok("podman export");
    let listing =
        run_bounded(Command::new("tar").arg("-tvf").arg(&tar), MINUTE).expect_ok("tar -tvf");
    let files: BTreeSet<String> = listing
        .lines()
        .filter(|l| l.starts_with('-'))
        .filter_map(|l| l.split_whitespace().last())
        .map(|p| p.trim_start_matches("./").to_string())
        .collect();
    let mut wanted = ldd_paths(serin_bin());
    wanted.insert("usr/local/bin/serin".to_string());
    assert_eq!(files, wanted, "the image's regular files:\n{listing}");
}

/// A Deployment for a Canary: no HPA, one replica.
const APP: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: podinfo
  labels:
    app: podinfo
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
";

/// A Canary without metrics or webhooks: its analysis passes on each 3s tick.
const CANARY: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: podinfo
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  progressDeadlineSeconds: 60
  service:
    port: 9898
  analysis:
    interval: 3s
    threshold: 2
    maxWeight: 20
    stepWeight: 10
";

/// `podman run` of the operator (attached, so it ends with this test binary too), its
/// output in a log file; removed by its container id.
struct Container<'a> {
    image: &'a Image,
    proc: Tied,
    id: String,
    log: PathBuf,
}

impl Container<'_> {
    /// What the container wrote (serin logs to stderr), and podman's own errors.
    fn logs(&self) -> String {
        let read = |p: &Path| std::fs::read_to_string(p).unwrap_or_default();
        read(&self.log) + &read(&self.log.with_extension("stdout"))
    }
}

impl Drop for Container<'_> {
    fn drop(&mut self) {
        let out = self.image.podman(&["rm", "-f", &self.id]);
        if !out.ok() {
            eprintln!("podman rm -f {}: {}{}", self.id, out.stdout, out.stderr);
        }
        self.proc.stop();
    }
}

/// The files Kubernetes mounts in a pod for its ServiceAccount, for the account
/// deploy/ creates: a real token, the cluster's CA, the namespace.
fn service_account_files(dir: &Path) -> u16 {
    let k = |args: &[&str]| kubectl(args);
    let token = k(&[
        "-n",
        OPERATOR_NAMESPACE,
        "create",
        "token",
        OPERATOR_ACCOUNT,
        "--duration=1h",
    ])
    .expect_ok("a token of the operator's ServiceAccount");
    let raw = |path: &str| {
        k(&["config", "view", "--raw", "-o", &format!("jsonpath={path}")])
            .expect_ok("kubectl config view")
    };
    let ca = base64::engine::general_purpose::STANDARD
        .decode(raw("{.clusters[0].cluster.certificate-authority-data}").trim())
        .expect("the CA is base64");
    let server = raw("{.clusters[0].cluster.server}");
    let port = server
        .trim()
        .strip_prefix("https://127.0.0.1:")
        .and_then(|p| p.trim_end_matches('/').parse().ok())
        .unwrap_or_else(|| panic!("the API server is on loopback: {server}"));
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("token"), token.trim()).expect("token");
    std::fs::write(dir.join("ca.crt"), ca).expect("ca.crt");
    std::fs::write(dir.join("namespace"), OPERATOR_NAMESPACE).expect("namespace");
    // The container's user (65532) reads them, as the kubelet's mount lets it.
    for (p, mode) in [
        (dir.to_path_buf(), 0o755),
        (dir.join("token"), 0o644),
        (dir.join("ca.crt"), 0o644),
        (dir.join("namespace"), 0o644),
    ] {
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
    }
    port
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh, buildah and podman (run by scripts/test.sh)"]
fn the_operator_in_the_container_uses_in_cluster_configuration() {
    let _shared = shared();
    let _ = cluster();
    let start = std::time::Instant::now();
    let image = Image::build();
    let built = start.elapsed();
    let ns = Namespace::new("image");
    let n = ns.name.as_str();
    let sa = image.store.path().join("serviceaccount");
    let api_port = service_account_files(&sa);
    let port = free_port();
    let cidfile = image.store.path().join("cid");
    let log = image.store.path().join("operator.log");

    let mut cmd = tied_to_this_process(&repo_root().join("scripts/image.sh"));
    cmd.args(["run", "--cidfile", cidfile.to_str().unwrap()])
        .arg("-v")
        .arg(format!(
            "{}:/var/run/secrets/kubernetes.io/serviceaccount:ro",
            sa.display()
        ))
        .args(["-e", "KUBERNETES_SERVICE_HOST=127.0.0.1"])
        .args(["-e", &format!("KUBERNETES_SERVICE_PORT={api_port}")])
        // As deploy/'s Deployment runs it: its downward-API variables, a read-only root
        // file system, no capabilities, no privilege escalation.
        .args(["-e", &format!("POD_NAMESPACE={OPERATOR_NAMESPACE}")])
        .args(["-e", "POD_NAME=serin-image-test"])
        .args(["--read-only", "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges"])
        .args(["--", "operator", "--namespace", n])
        .args(["--port", &port.to_string()])
        .env("SERIN_IMAGE_STORE", image.store.path().join("store"))
        .env("TIED_STDOUT", log.with_extension("stdout"))
        .stderr(Stdio::from(std::fs::File::create(&log).expect("log")));
    let proc = Tied::spawn(cmd);
    let id = wait_for("podman's container id file", MINUTE, || {
        std::fs::read_to_string(&cidfile)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    });
    let container = Container {
        image: &image,
        proc,
        id,
        log,
    };

    // Ready once it reached the API server with the mounted credentials (host network:
    // its port is on this host's loopback).
    wait_for_or_logs(&container, "the operator's /readyz to answer 200", || {
        http_get(port, "/readyz").filter(|(code, _)| *code == 200)
    });

    let ready = start.elapsed();
    apply(n, APP);
    apply(n, CANARY);
    wait_for_or_logs(&container, "the Canary to be Initialized", || {
        (phase(n, "podinfo") == "Initialized").then_some(())
    });
    let initialized = start.elapsed();
    let primary = must_get(n, "deployment/podinfo-primary");
    assert!(
        primary["metadata"]["ownerReferences"][0]["kind"] == "Canary",
        "{primary}"
    );
    assert_eq!(
        must_get(n, "deployment/podinfo")["spec"]["replicas"],
        0,
        "the target is scaled to zero"
    );

    // A new version, promoted by the operator in the container.
    kubectl(&[
        "-n",
        n,
        "set",
        "image",
        "deployment/podinfo",
        "podinfod=ghcr.io/stefanprodan/podinfo:6.0.1",
    ])
    .expect_ok("set image");
    wait_for_or_logs(&container, "the Canary to be Succeeded", || {
        (phase(n, "podinfo") == "Succeeded").then_some(())
    });
    eprintln!(
        "image built after {built:?}, operator ready after {ready:?}, canary initialized \
         after {initialized:?}, promoted after {:?}",
        start.elapsed()
    );
    let primary = must_get(n, "deployment/podinfo-primary");
    assert_eq!(
        primary["spec"]["template"]["spec"]["containers"][0]["image"],
        "ghcr.io/stefanprodan/podinfo:6.0.1"
    );

    // The API server saw those writes from the mounted ServiceAccount's token.
    let dir = std::env::var("SERIN_REAL_CLUSTER_DIR")
        .expect("SERIN_REAL_CLUSTER_DIR (scripts/test.sh sets it)");
    let audit = std::fs::read_to_string(Path::new(&dir).join("logs/audit.log"))
        .expect("the API server's audit log");
    let account = format!("system:serviceaccount:{OPERATOR_NAMESPACE}:{OPERATOR_ACCOUNT}");
    let writes: Vec<Value> = audit
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["objectRef"]["namespace"] == n && e["stage"] == "ResponseComplete")
        .filter(|e| e["verb"] == "create" && e["objectRef"]["resource"] == "deployments")
        .collect();
    assert!(
        !writes.is_empty(),
        "no create of deployments in {n} in the audit log"
    );
    for w in &writes {
        assert_eq!(w["user"]["username"], account, "{w}");
        assert!(
            w["userAgent"]
                .as_str()
                .is_some_and(|ua| ua.starts_with("serin/")),
            "{w}"
        );
    }
}

fn wait_for_or_logs<T>(c: &Container, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + 2 * MINUTE;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "timed out after 2 minutes waiting for {what}; the container's output:\n{}",
            tail(&c.logs(), 40)
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}
