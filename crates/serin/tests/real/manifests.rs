//! deploy/ and gitops/apps against the real API server: server-side apply twice with
//! no drift left, and both Helm charts linted, rendered and installed with real helm.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn idempotent_apply(dir: &str, namespace: Option<&str>) {
    let path = repo_root().join(dir);
    let path = path.to_str().unwrap();
    let mut args = vec![];
    if let Some(ns) = namespace {
        args.extend(["-n", ns]);
    }
    for round in 1..=2 {
        let mut a = args.clone();
        a.extend(["apply", "--server-side", "-k", path]);
        kubectl(&a).expect_ok(&format!("{dir}: server-side apply, round {round}"));
    }
    let mut a = args.clone();
    a.extend(["diff", "--server-side", "-k", path]);
    let out = kubectl(&a);
    assert!(
        out.status.code() == Some(0),
        "{dir}: the cluster differs from the manifests after applying them:\n{}\n{}",
        out.stdout,
        out.stderr
    );
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn every_kustomization_applies_server_side_twice_with_no_drift() {
    let _ = cluster();
    let ns = Namespace::new("manifests");
    for needed in ["istio-system", "prod"] {
        let _ = kubectl(&["create", "namespace", needed]);
    }
    idempotent_apply("deploy/crds", None);
    idempotent_apply("deploy/kustomize/base", None);
    idempotent_apply("deploy/kustomize/prometheus", None);
    idempotent_apply("deploy/kustomize/istio", None);
    idempotent_apply("deploy/kustomize/kubernetes", None);
    idempotent_apply("deploy/kustomize/loadtester", Some(&ns.name));
    idempotent_apply("deploy/grafana", Some(&ns.name));
    idempotent_apply("gitops/apps", None);
    // The operator Deployments' pods are Running and Ready through the node stand-in,
    // so the real Deployment controller reports them Available.
    kubectl(&[
        "-n",
        "serin-system",
        "rollout",
        "status",
        "deployment/serin",
        "--timeout=60s",
    ])
    .expect_ok("rollout status");
    // The apps' Canaries are stored as the CRD's structural schema keeps them.
    for canary in ["backend", "frontend"] {
        let c = must_get("prod", &format!("canary/{canary}"));
        assert_eq!(c["spec"]["targetRef"]["name"], canary);
        assert!(c["spec"]["analysis"]["interval"].is_string(), "{c}");
    }
}

fn helm(args: &[&str]) -> Output {
    let bin = std::env::var("SERIN_HELM").expect("SERIN_HELM (scripts/test.sh builds helm)");
    run_bounded(
        Command::new(bin)
            .env("KUBECONFIG", &cluster().kubeconfig)
            .env("HELM_CACHE_HOME", cluster().dir.path().join("helm/cache"))
            .env("HELM_CONFIG_HOME", cluster().dir.path().join("helm/config"))
            .env("HELM_DATA_HOME", cluster().dir.path().join("helm/data"))
            .args(args),
        Duration::from_secs(180),
    )
}

#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn helm_charts_lint_render_and_install() {
    let ns = Namespace::new("helm");
    let n = ns.name.as_str();
    for chart in ["serin", "loadtester"] {
        let path = repo_root().join("deploy/charts").join(chart);
        let path = path.to_str().unwrap();
        helm(&["lint", "--strict", path]).expect_ok(&format!("helm lint {chart}"));
        let rendered = helm(&["template", &format!("{chart}-helm"), path, "-n", n])
            .expect_ok(&format!("helm template {chart}"));
        // The real API server validates what the chart renders.
        kubectl_stdin(
            &["-n", n, "apply", "--dry-run=server", "-f", "-"],
            &rendered,
        )
        .expect_ok(&format!("{chart}'s templates pass the API server's validation"));
    }
    helm(&[
        "install",
        "serin-helm",
        repo_root().join("deploy/charts/serin").to_str().unwrap(),
        "-n",
        n,
        "--set",
        "meshProvider=kubernetes",
        "--wait",
        "--timeout",
        "2m",
    ])
    .expect_ok("helm install serin");
    helm(&[
        "install",
        "loadtester",
        repo_root().join("deploy/charts/loadtester").to_str().unwrap(),
        "-n",
        n,
        "--wait",
        "--timeout",
        "2m",
    ])
    .expect_ok("helm install loadtester");
    let list = helm(&["list", "-n", n, "-o", "json"]).expect_ok("helm list");
    let releases: serde_json::Value = serde_json::from_str(&list).unwrap();
    let mut deployed: Vec<(String, String)> = releases
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["name"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    deployed.sort();
    assert_eq!(
        deployed,
        vec![
            ("loadtester".to_string(), "deployed".to_string()),
            ("serin-helm".to_string(), "deployed".to_string())
        ]
    );
    let d = must_get(n, "deployment/serin-helm");
    let args = d["spec"]["template"]["spec"]["containers"][0]["args"].to_string();
    assert!(args.contains("kubernetes"), "the value reached the operator: {args}");
    helm(&["uninstall", "serin-helm", "-n", n, "--wait"]).expect_ok("helm uninstall");
    assert!(get(n, "deployment/serin-helm").is_none());
}
