//! The `keptn` provider against the in-process sandbox API server holding Keptn's
//! `metrics.keptn.sh/v1beta1` resources: a KeptnMetric's `status.value`, and an
//! Analysis created, completed (here by the test, as Keptn's metrics operator
//! would) and deleted.

use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use serde_json::json;
use serin_metrics::ProviderSettings;
use serin_metrics::factory::build;
use serin_sandbox::{Sandbox, SandboxOptions};

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("metrics.keptn.sh", "v1beta1", kind),
        plural,
    )
}

async fn crd(client: &kube::Client, kind: &str, plural: &str) {
    let crd: CustomResourceDefinition = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.metrics.keptn.sh")},
        "spec": {
            "group": "metrics.keptn.sh",
            "scope": "Namespaced",
            "names": {"kind": kind, "plural": plural, "singular": kind.to_lowercase()},
            "versions": [{"name": "v1beta1", "served": true, "storage": true,
                "schema": {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}]
        }
    }))
    .unwrap();
    Api::<CustomResourceDefinition>::all(client.clone())
        .create(&PostParams::default(), &crd)
        .await
        .unwrap();
}

#[tokio::test]
async fn keptn_metric_and_analysis() {
    let mut options = SandboxOptions::default();
    options.namespaces.push("test".into());
    let sandbox = Sandbox::new(options);
    let client = sandbox.client();
    crd(&client, "KeptnMetric", "keptnmetrics").await;
    crd(&client, "Analysis", "analyses").await;
    let metrics = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "test",
        &resource("KeptnMetric", "keptnmetrics"),
    );
    let mut metric = DynamicObject::new("response-time", &resource("KeptnMetric", "keptnmetrics"));
    metric.data = json!({"spec": {"provider": {"name": "prometheus"}, "query": "x"},
        "status": {"value": "12.5", "rawValue": "MTIuNQ=="}});
    metrics
        .create(&PostParams::default(), &metric)
        .await
        .unwrap();

    let keptn = build(&ProviderSettings {
        type_: "keptn".into(),
        timeout: Duration::from_secs(5),
        interval: Duration::from_secs(60),
        kube: Some(client.clone()),
        ..Default::default()
    })
    .unwrap();
    keptn.is_online().await.unwrap();
    // Flagger lower-cases the query.
    assert_eq!(
        keptn
            .run_query("KeptnMetric/test/Response-Time")
            .await
            .unwrap(),
        12.5
    );
    let missing = keptn
        .run_query("keptnmetric/test/absent")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("Keptn") && missing.contains("absent"),
        "{missing}"
    );

    // Keptn's operator: completes every Analysis it sees, failing it when the
    // argument says so.
    let analyses = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "test",
        &resource("Analysis", "analyses"),
    );
    let operator = {
        let analyses = analyses.clone();
        tokio::spawn(async move {
            for _ in 0..200 {
                for a in analyses.list(&ListParams::default()).await.unwrap().items {
                    if a.data.pointer("/status/state").is_some() {
                        continue;
                    }
                    let pass = a
                        .data
                        .pointer("/spec/args/verdict")
                        .and_then(|v| v.as_str())
                        != Some("fail");
                    let name = a.metadata.name.clone().unwrap();
                    analyses
                        .patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": {"state": "Completed", "pass": pass}})),
                        )
                        .await
                        .unwrap();
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let passed = keptn
        .run_query("analysis/test/slo-podinfo/5m/workload=podinfo;verdict=pass")
        .await
        .unwrap();
    assert_eq!(passed, 1.0);
    let failed = keptn
        .run_query("analysis/test/slo-podinfo/5m/verdict=fail")
        .await
        .unwrap();
    assert_eq!(failed, 0.0);
    operator.abort();
    assert!(
        analyses
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "the Analyses serin created are deleted"
    );
}
