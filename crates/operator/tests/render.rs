//! `render`: the objects the operator's adapters make for the Canaries of a set of
//! manifests, made through an empty in-process sandbox.

mod support;

use serde_json::{Value, json};
use serin_api::load::{Document, parse_documents};
use serin_operator::render::{RenderError, RenderOptions, render};
use serin_sandbox::{Sandbox, SandboxOptions};
use support::*;

fn docs(files: &[std::path::PathBuf]) -> Vec<Document> {
    files
        .iter()
        .flat_map(|p| parse_documents(&p.display().to_string(), &read(p)).unwrap())
        .collect()
}

async fn run(docs: &[Document]) -> Result<Vec<Value>, RenderError> {
    let sandbox = Sandbox::new(SandboxOptions::default());
    render(sandbox.client(), docs, &RenderOptions::default()).await
}

fn names(objects: &[Value]) -> Vec<String> {
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

fn find<'a>(objects: &'a [Value], kind: &str, name: &str) -> &'a Value {
    objects
        .iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind}/{name}"))
}

#[tokio::test(start_paused = true)]
async fn podinfo_renders_the_generated_list_of_the_guide() {
    let input = docs(&[
        data_path("podinfo.yaml"),
        repo_path("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"),
    ]);
    let objects = run(&input).await.unwrap();
    assert_eq!(
        names(&objects),
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
    for o in &objects {
        assert_eq!(o["metadata"]["namespace"], "test");
        assert!(o.get("status").is_none());
        let meta = o["metadata"].as_object().unwrap();
        for field in ["uid", "resourceVersion", "creationTimestamp", "generation"] {
            assert!(
                !meta.contains_key(field),
                "{field} in {}",
                o["metadata"]["name"]
            );
        }
        assert_eq!(
            o["metadata"]["ownerReferences"],
            json!([{"apiVersion": "flagger.app/v1beta1", "kind": "Canary", "name": "podinfo",
                    "controller": true, "blockOwnerDeletion": true}])
        );
    }
    let primary = find(&objects, "Deployment", "podinfo-primary");
    assert_eq!(primary["apiVersion"], "apps/v1");
    assert_eq!(
        primary["spec"]["selector"],
        json!({"matchLabels": {"app": "podinfo-primary"}})
    );
    assert_eq!(primary["spec"]["replicas"], 2);
    let hpa = find(&objects, "HorizontalPodAutoscaler", "podinfo-primary");
    assert_eq!(hpa["apiVersion"], "autoscaling/v2");
    assert_eq!(hpa["spec"]["scaleTargetRef"]["name"], "podinfo-primary");
    let apex = find(&objects, "Service", "podinfo");
    assert_eq!(
        apex["spec"],
        json!({"type": "ClusterIP", "selector": {"app": "podinfo-primary"},
               "ports": [{"name": "http", "protocol": "TCP", "port": 9898, "targetPort": 9898}]})
    );
    let vs = find(&objects, "VirtualService", "podinfo");
    assert_eq!(vs["spec"]["hosts"], json!(["app.example.com", "podinfo"]));
    assert_eq!(
        vs["spec"]["gateways"],
        json!(["istio-system/public-gateway"])
    );
    let dr = find(&objects, "DestinationRule", "podinfo-primary");
    assert_eq!(
        dr["spec"],
        json!({"host": "podinfo-primary", "trafficPolicy": {"tls": {"mode": "DISABLE"}}})
    );

    // The same input renders the same output.
    assert_eq!(objects, run(&input).await.unwrap());
}

#[tokio::test(start_paused = true)]
async fn tracked_configs_are_rendered_as_primary_copies() {
    let mut input = docs(&[
        data_path("podinfo.yaml"),
        repo_path("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"),
    ]);
    input.extend(
        parse_documents(
            "configs.yaml",
            r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: podinfo-config, namespace: test}
data: {color: blue}
"#,
        )
        .unwrap(),
    );
    let deployment = input.iter_mut().find(|d| d.kind() == "Deployment").unwrap();
    deployment.value["spec"]["template"]["spec"]["volumes"] =
        json!([{"name": "config", "configMap": {"name": "podinfo-config"}}]);
    let objects = run(&input).await.unwrap();
    let copy = find(&objects, "ConfigMap", "podinfo-config-primary");
    assert_eq!(copy["data"], json!({"color": "blue"}));
    let primary = find(&objects, "Deployment", "podinfo-primary");
    assert_eq!(
        primary["spec"]["template"]["spec"]["volumes"][0]["configMap"]["name"],
        "podinfo-config-primary"
    );
    assert!(
        !names(&objects).contains(&"ConfigMap/podinfo-config".to_string()),
        "inputs serin leaves alone are not printed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_canary_without_its_target_is_an_error_naming_it() {
    let input = docs(&[repo_path(
        "tests/fixtures/seeds/istio-guide/podinfo-canary.yaml",
    )]);
    let err = run(&input).await.unwrap_err();
    assert!(matches!(err, RenderError::MissingTarget { .. }), "{err}");
    let message = err.to_string();
    assert!(
        message
            .ends_with("canary test/podinfo: target Deployment test/podinfo is not in the input"),
        "{message}"
    );
    assert!(
        message.contains("podinfo-canary.yaml:"),
        "names the file: {message}"
    );
}
