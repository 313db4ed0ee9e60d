//! `serin render` and `serin simulate` with `provider: gatewayapi:v1`: the seed
//! podinfo canary routed by a Gateway API HTTPRoute.

use std::path::PathBuf;
use std::process::Command;

fn fixture() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/gateway-api/podinfo-canary.yaml")
}

fn podinfo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../operator/tests/data/podinfo.yaml")
}

/// Success and standard output (standard error is added when the command fails).
fn serin(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_serin"))
        .args(args)
        .output()
        .expect("serin runs");
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        text.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    (out.status.success(), text)
}

#[test]
fn render_prints_the_http_route() {
    let (path, deployment) = (fixture(), podinfo());
    let (ok, out) = serin(&[
        "render",
        "-f",
        deployment.to_str().unwrap(),
        "-f",
        path.to_str().unwrap(),
    ]);
    assert!(ok, "{out}");
    let doc = out
        .split("\n---")
        .find(|d| d.contains("kind: HTTPRoute"))
        .unwrap_or_else(|| panic!("no HTTPRoute in\n{out}"));
    for line in [
        "apiVersion: gateway.networking.k8s.io/v1",
        "name: public-gateway",
        "namespace: istio-ingress",
        "- app.example.com",
        "name: podinfo-primary",
        "weight: 100",
        "name: podinfo-canary",
        "weight: 0",
        "type: PathPrefix",
    ] {
        assert!(doc.contains(line), "{line:?} missing in\n{doc}");
    }
    assert!(!out.contains("kind: VirtualService"), "{out}");
}

#[test]
fn simulate_promotes_and_rolls_back() {
    let path = fixture();
    let file = path.to_str().unwrap();
    let (ok, out) = serin(&[
        "simulate",
        "-f",
        file,
        "--metric",
        "request-success-rate=99.5",
        "--metric",
        "request-duration=250",
    ]);
    assert!(ok, "{out}");
    assert!(
        out.contains("Normal Advance podinfo.test canary weight 50"),
        "{out}"
    );
    assert!(
        out.contains("Promotion completed! Scaling down podinfo.test"),
        "{out}"
    );
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("result: Succeeded"),
        "{out}"
    );

    let (ok, out) = serin(&[
        "simulate",
        "-f",
        file,
        "--metric",
        "request-success-rate=69.17",
        "--metric",
        "request-duration=250",
    ]);
    assert!(!ok, "a failed canary exits non-zero\n{out}");
    assert!(
        out.contains("Rolling back podinfo.test failed checks threshold reached 5"),
        "{out}"
    );
    assert!(
        out.lines().any(|l| l.starts_with("result: Failed after")),
        "{out}"
    );
}
