//! `serin loadtester` as its own process, started with the arguments its Helm chart
//! renders (Flagger's spellings among them), running Flagger's `helmv3`, `helm` and
//! `kubectl` task types with the real helm and kubectl against the real API server, as
//! a ServiceAccount whose Role the API server enforces.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

fn helm_bin() -> String {
    std::env::var("SERIN_HELM").expect("SERIN_HELM (scripts/test.sh builds helm)")
}

/// `helm template` of the load tester's chart with `values`, one template shown.
fn render(dir: &Path, values: &Path, ns: &str, template: &str) -> String {
    let chart = repo_root().join("deploy/charts/loadtester");
    run_bounded(
        Command::new(helm_bin())
            .env("HELM_CACHE_HOME", dir.join("helm/cache"))
            .env("HELM_CONFIG_HOME", dir.join("helm/config"))
            .env("HELM_DATA_HOME", dir.join("helm/data"))
            .args([
                "template",
                "lt",
                chart.to_str().unwrap(),
                "-n",
                ns,
                "-f",
                values.to_str().unwrap(),
                "--show-only",
                template,
                // The real API server's version (helm template's own default is
                // older than the chart's kubeVersion).
                "--kube-version",
                "v1.37.2",
            ]),
        Duration::from_secs(60),
    )
    .expect_ok(&format!(
        "helm template the load tester's chart: {template}"
    ))
}

/// One webhook call: an HTTP/1.0 POST on 127.0.0.1, bounded in time.
fn post(port: u16, path: &str, body: &Value) -> (u16, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("the load tester listens");
    s.set_read_timeout(Some(Duration::from_secs(200))).unwrap();
    let body = body.to_string();
    write!(
        s,
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("an answer");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("an HTTP answer: {out}"));
    let text = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string());
    (code, text.unwrap_or_default())
}

fn hook(ns: &str, metadata: Value) -> Value {
    json!({"name": "podinfo", "namespace": ns, "phase": "Progressing", "checksum": "abc",
           "metadata": metadata})
}

/// The container args deploy/charts/loadtester renders with `values`.
fn chart_args(dir: &Path, values: &Path, ns: &str) -> Vec<String> {
    let rendered = render(dir, values, ns, "templates/deployment.yaml");
    let json = kubectl_stdin(
        &["create", "--dry-run=client", "-o", "json", "-f", "-"],
        &rendered,
    )
    .expect_ok("the rendered Deployment as JSON");
    let d: Value = serde_json::from_str(&json).unwrap();
    d["spec"]["template"]["spec"]["containers"][0]["args"]
        .as_array()
        .expect("args")
        .iter()
        .map(|a| a.as_str().unwrap().to_string())
        .collect()
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn flagger_task_types_against_the_api_server() {
    let _shared = shared();
    let ns = Namespace::new("loadtester");
    let n = ns.name.as_str();
    let other = Namespace::new("loadtester-other");
    let dir = tempfile::tempdir().unwrap();

    // The account the chart's rbac.create makes, with the Role its rules give: what
    // the release below needs (helm keeps releases in Secrets).
    let values = dir.path().join("values.yaml");
    std::fs::write(
        &values,
        format!(
            "enableBash: true\nallowCmd: [\"helm \", \"kubectl \"]\nnamespaceRegexp: \"^{n}$\"\n\
             backgroundCmd: true\nhelm: {}\ntimeout: 2m\nrbac:\n  create: true\n  rules:\n\
             \x20 - apiGroups: [\"\"]\n    resources: [configmaps, secrets]\n\
             \x20   verbs: [get, list, watch, create, update, patch, delete]\n",
            helm_bin()
        ),
    )
    .unwrap();
    let rbac = render(dir.path(), &values, n, "templates/rbac.yaml");
    kubectl_stdin(&["-n", n, "apply", "-f", "-"], &rbac).expect_ok("the chart's RBAC applies");
    let account_kubeconfig = dir.path().join("loadtester.kubeconfig");
    token_kubeconfig(
        &cluster().kubeconfig,
        n,
        "flagger-loadtester",
        &account_kubeconfig,
    );

    let mut args = chart_args(dir.path(), &values, n);
    assert_eq!(args[0], "loadtester", "{args:?}");
    assert!(
        args.contains(&format!("--namespace-regexp=^{n}$")),
        "{args:?}"
    );
    assert!(args.contains(&"--allow-cmd=helm ".to_string()), "{args:?}");
    // On loopback, on a free port, with Flagger's own spelling of the flags its chart
    // passes (`-port=N`, `-timeout=D`).
    let port = free_port();
    args.retain(|a| !a.starts_with("--port") && !a.starts_with("--timeout"));
    args.extend([
        format!("-port={port}"),
        "-timeout=2m".into(),
        "--listen=127.0.0.1".into(),
    ]);
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let log = dir.path().join("loadtester.log");
    let mut cmd = tied_to_this_process(Path::new(env!("CARGO_BIN_EXE_serin")));
    cmd.args(&args)
        .env("KUBECONFIG", &account_kubeconfig)
        .env("HOME", &home)
        .env("HELM_CACHE_HOME", home.join("helm/cache"))
        .env("HELM_CONFIG_HOME", home.join("helm/config"))
        .env("HELM_DATA_HOME", home.join("helm/data"))
        .env("RUST_LOG", "info")
        .stderr(Stdio::from(std::fs::File::create(&log).unwrap()));
    let _lt = Tied::spawn(cmd);
    let logs = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_for(
        "the load tester's /healthz",
        Duration::from_secs(30),
        || http_get(port, "/healthz").filter(|(c, _)| *c == 200),
    );

    let chart_dir = dir.path().join("probe");
    std::fs::create_dir_all(chart_dir.join("templates")).unwrap();
    std::fs::write(
        chart_dir.join("Chart.yaml"),
        "apiVersion: v2\nname: probe\nversion: 0.1.0\n",
    )
    .unwrap();
    std::fs::write(
        chart_dir.join("templates/configmap.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-probe\ndata:\n  answer: {{ .Values.answer | quote }}\n",
    )
    .unwrap();
    let (code, text) = post(
        port,
        "/",
        &hook(
            n,
            json!({"type": "helmv3", "returnCmdOutput": "true",
                   "cmd": format!("install lt {} -n {n} --set answer=42", chart_dir.display())}),
        ),
    );
    assert_eq!(code, 200, "{text}\n{}", tail(&logs(), 20));
    assert!(text.contains("STATUS: deployed"), "{text}");
    let cm = must_get(n, "configmap/lt-probe");
    assert_eq!(cm["data"]["answer"], "42");

    let (code, text) = post(
        port,
        "/",
        &hook(
            n,
            json!({"type": "helm", "returnCmdOutput": "true", "cmd": format!("list -n {n} -o json")}),
        ),
    );
    assert_eq!(code, 200, "{text}");
    let releases: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(releases[0]["status"], "deployed", "{releases}");

    let (code, text) = post(
        port,
        "/",
        &hook(
            n,
            json!({"type": "kubectl", "returnCmdOutput": "true",
                   "cmd": format!("get configmap lt-probe -n {n} -o jsonpath={{.data.answer}}")}),
        ),
    );
    assert_eq!((code, text.as_str()), (200, "42"));
    // kubectl acts as the pod's account: the API server refuses what its Role does
    // not give, and the webhook fails with kubectl's own words.
    let (code, text) = post(
        port,
        "/",
        &hook(
            n,
            json!({"type": "kubectl", "cmd": "get secrets -n kube-system"}),
        ),
    );
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("forbidden"), "{text}");
    // The chart's allow-list holds for the task types too.
    let (code, text) = post(
        port,
        "/",
        &hook(n, json!({"cmd": format!("ls {}", dir.path().display())})),
    );
    assert_eq!(code, 403, "{text}");

    // Another namespace's canary is refused before anything runs.
    let (code, text) = post(
        port,
        "/",
        &hook(
            &other.name,
            json!({"type": "kubectl", "cmd": format!("create configmap refused -n {n}")}),
        ),
    );
    assert_eq!(code, 403, "{text}");
    assert!(text.starts_with("Forbidden"), "{text}");
    let (code, _) = post(
        port,
        "/gate/open",
        &json!({"name": "podinfo", "namespace": other.name}),
    );
    assert_eq!(code, 403);

    // backgroundCmd: a `type: cmd` command is answered 202 at once, as by Flagger,
    // and still runs.
    let (code, text) = post(
        port,
        "/",
        &hook(
            n,
            json!({"cmd": format!("kubectl create configmap in-background -n {n} --from-literal=a=b")}),
        ),
    );
    assert_eq!(code, 202, "{text}");
    wait_for(
        "the background command's ConfigMap",
        Duration::from_secs(60),
        || get(n, "configmap/in-background"),
    );

    let (code, text) = post(
        port,
        "/",
        &hook(
            n,
            json!({"type": "helmv3", "cmd": format!("uninstall lt -n {n}")}),
        ),
    );
    assert_eq!(code, 200, "{text}");
    assert!(get(n, "configmap/lt-probe").is_none());
    assert!(get(n, "configmap/refused").is_none());
}
