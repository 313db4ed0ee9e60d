//! `serin render` as a user runs it: the seed's podinfo Canary with podinfo's
//! Deployment and HPA, a Canary read from standard input, and the errors.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};
use serin_api::load::parse_documents;

fn serin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_serin"))
}

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

const PODINFO: &str = "crates/operator/tests/data/podinfo.yaml";
const CANARY: &str = "tests/fixtures/seeds/istio-guide/podinfo-canary.yaml";

fn render(files: &[PathBuf], stdin: Option<&str>) -> Output {
    let mut cmd = serin();
    cmd.arg("render");
    for f in files {
        cmd.arg("-f").arg(f);
    }
    if stdin.is_some() {
        cmd.arg("-f").arg("-");
    }
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("serin runs");
    if let Some(text) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("serin finishes")
}

fn objects(o: &Output) -> Vec<Value> {
    let text = String::from_utf8_lossy(&o.stdout);
    parse_documents("stdout", &text)
        .expect("a YAML stream")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

fn kinds_and_names(objects: &[Value]) -> Vec<String> {
    objects
        .iter()
        .map(|o| {
            format!(
                "{}/{}",
                o["kind"].as_str().unwrap(),
                o["metadata"]["name"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn podinfo_renders_what_the_guide_lists_as_generated() {
    let out = render(&[repo(PODINFO), repo(CANARY)], None);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = objects(&out);
    assert_eq!(
        kinds_and_names(&objects),
        [
            "Deployment/podinfo-primary",
            "HorizontalPodAutoscaler/podinfo-primary",
            "Service/podinfo",
            "Service/podinfo-canary",
            "Service/podinfo-primary",
            "DestinationRule/podinfo-canary",
            "DestinationRule/podinfo-primary",
            "VirtualService/podinfo",
        ]
    );
    let vs = &objects[7];
    assert_eq!(vs["apiVersion"], "networking.istio.io/v1beta1");
    assert_eq!(
        vs["spec"]["gateways"],
        json!(["istio-system/public-gateway"])
    );
    assert_eq!(
        vs["spec"]["http"][0]["route"][0],
        json!({"destination": {"host": "podinfo-primary"}, "weight": 100})
    );
    assert_eq!(vs["spec"]["http"][0]["retries"]["attempts"], 3);
    assert_eq!(
        objects[0]["spec"]["template"]["metadata"]["labels"]["app"],
        "podinfo-primary"
    );

    // Order of the files does not matter.
    let again = render(&[repo(CANARY), repo(PODINFO)], None);
    assert_eq!(again.stdout, out.stdout);
}

#[test]
fn an_ab_canary_from_standard_input() {
    let input = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: frontend, namespace: prod}
spec:
  selector: {matchLabels: {app: frontend}}
  template:
    metadata: {labels: {app: frontend}}
    spec: {containers: [{name: frontend, image: "ghcr.io/stefanprodan/podinfo:6.0.0"}]}
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: frontend, namespace: prod}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: frontend}
  service: {port: 80, targetPort: 9898, gateways: [istio-system/public-gateway], hosts: ["*"]}
  analysis:
    interval: 10s
    threshold: 10
    iterations: 12
    match:
      - headers: {user-agent: {regex: ".*Firefox.*"}}
      - headers: {cookie: {regex: "^(.*?;)?(type=insider)(;.*)?$"}}
"#;
    let out = render(&[], Some(input));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let objects = objects(&out);
    assert!(
        !kinds_and_names(&objects)
            .iter()
            .any(|n| n.starts_with("HorizontalPodAutoscaler"))
    );
    let vs = objects
        .iter()
        .find(|o| o["kind"] == "VirtualService")
        .unwrap();
    assert_eq!(vs["spec"]["hosts"], json!(["*"]));
    let http = vs["spec"]["http"].as_array().unwrap();
    assert_eq!(http.len(), 2);
    assert_eq!(
        http[0]["match"],
        json!([
            {"headers": {"user-agent": {"regex": ".*Firefox.*"}}},
            {"headers": {"cookie": {"regex": "^(.*?;)?(type=insider)(;.*)?$"}}}
        ])
    );
    assert_eq!(
        http[1]["route"],
        json!([{"destination": {"host": "frontend-primary"}, "weight": 100}])
    );
    assert!(http[1].get("match").is_none());
}

#[test]
fn an_unreadable_file_is_exit_2() {
    let out = render(&[repo("tests/fixtures/seeds/no-such-file.yaml")], None);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-file.yaml"));
}
