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
    // deploy/kustomize/istio binds the operator's ClusterRole to istio-system's
    // account: no operator of another test may run meanwhile.
    let _alone = alone();
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
    // Back to the binding the other tests' operators use.
    kubectl(&[
        "apply",
        "--server-side",
        "-k",
        repo_root()
            .join("deploy/kustomize/kubernetes")
            .to_str()
            .unwrap(),
    ])
    .expect_ok("deploy/kustomize/kubernetes again");
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
    let _shared = shared();
    let ns = Namespace::new("helm");
    let n = ns.name.as_str();
    for chart in ["serin", "loadtester"] {
        let path = repo_root().join("deploy/charts").join(chart);
        let path = path.to_str().unwrap();
        helm(&["lint", "--strict", path]).expect_ok(&format!("helm lint {chart}"));
        // The version of the real API server (helm template's own default is older
        // than the charts' kubeVersion).
        let rendered = helm(&[
            "template",
            &format!("{chart}-helm"),
            path,
            "-n",
            n,
            "--kube-version",
            "v1.37.2",
        ])
        .expect_ok(&format!("helm template {chart}"));
        // The real API server validates what the chart renders.
        kubectl_stdin(
            &["-n", n, "apply", "--dry-run=server", "-f", "-"],
            &rendered,
        )
        .expect_ok(&format!(
            "{chart}'s templates pass the API server's validation"
        ));
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
        repo_root()
            .join("deploy/charts/loadtester")
            .to_str()
            .unwrap(),
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
    assert!(
        args.contains("kubernetes"),
        "the value reached the operator: {args}"
    );
    helm(&["uninstall", "serin-helm", "-n", n, "--wait"]).expect_ok("helm uninstall");
    assert!(get(n, "deployment/serin-helm").is_none());
}

/// The newcomer's path off the sandbox: `serin demo --print-manifests | kubectl apply
/// -f -` on a real cluster, then the operator acts on what was applied.
#[test]
#[ignore = "real tier: needs scripts/cluster.sh (run by scripts/test.sh)"]
fn the_demo_manifests_apply_with_kubectl_and_the_operator_initializes_them() {
    let _shared = shared();
    let _ = cluster();
    let printed = run_bounded(
        Command::new(env!("CARGO_BIN_EXE_serin")).args(["demo", "--print-manifests"]),
        Duration::from_secs(60),
    );
    let manifests = printed.expect_ok("serin demo --print-manifests");
    // The demo's own namespace, as printed (no other test uses it); removed at the end.
    let ns = "test";
    struct Remove;
    impl Drop for Remove {
        fn drop(&mut self) {
            let _ = kubectl(&["delete", "namespace", "test", "--wait=false"]);
        }
    }
    let _remove = Remove;
    let applied = kubectl_stdin(&["apply", "-f", "-"], &manifests)
        .expect_ok("kubectl apply -f - of serin demo --print-manifests");
    for object in [
        "namespace/test",
        "deployment.apps/podinfo",
        "horizontalpodautoscaler.autoscaling/podinfo",
        "canary.flagger.app/podinfo",
    ] {
        assert!(
            applied.contains(&format!("{object} created")),
            "{object} not created:\n{applied}"
        );
    }
    let op = Operator::start(ns, &[]);
    wait_phase(ns, "podinfo", "Initialized", Duration::from_secs(120), &op);
    let primary = must_get(ns, "deployment/podinfo-primary");
    assert_eq!(primary["metadata"]["ownerReferences"][0]["kind"], "Canary");
    assert_eq!(must_get(ns, "deployment/podinfo")["spec"]["replicas"], 0);
    let vs = must_get(ns, "virtualservice/podinfo");
    assert_eq!(vs["spec"]["hosts"][0], "app.example.com", "{vs}");
}
