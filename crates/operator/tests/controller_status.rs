//! Status writes with optimistic concurrency: a write based on a stale read meets a
//! conflict, re-reads the Canary and writes the same status onto it; neither the status
//! nor the concurrent change is lost.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serin_api::canary::{CanaryPhase, CanaryStatus};
use serin_api::{Canary, CanarySpec};
use serin_operator::controller::write_status;
use serin_sandbox::{FaultRule, Sandbox, SandboxOptions, Verb};

#[tokio::test]
async fn a_stale_write_is_retried_on_the_fresh_object() {
    let sandbox = Sandbox::new(SandboxOptions::default());
    let client = sandbox.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in serin_api::crd::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("crd");
    }
    let api: Api<Canary> = Api::namespaced(client.clone(), "default");
    let mut canary = Canary::new("podinfo", CanarySpec::default());
    canary.spec.target_ref.name = "podinfo".into();
    canary.spec.service.port = 9898;
    let stale = api
        .create(&PostParams::default(), &canary)
        .await
        .expect("created");
    // Someone else changes the spec after our read.
    api.patch(
        "podinfo",
        &PatchParams::default(),
        &Patch::Merge(serde_json::json!({"spec": {"suspend": true}})),
    )
    .await
    .expect("concurrent change");
    let status = CanaryStatus {
        phase: CanaryPhase::Progressing,
        canary_weight: 30,
        ..Default::default()
    };
    write_status(&api, &stale, status.clone())
        .await
        .expect("written after a re-read");
    let now = api.get("podinfo").await.expect("canary");
    assert_eq!(now.status.as_ref().map(|s| s.canary_weight), Some(30));
    assert_eq!(now.status.map(|s| s.phase), Some(CanaryPhase::Progressing));
    assert!(now.spec.suspend, "the concurrent change is kept");

    // Server errors are retried too.
    sandbox.faults().set(
        "canaries",
        Verb::Update,
        FaultRule {
            error_rate: 0.5,
            ..Default::default()
        },
    );
    for w in [40, 50, 60] {
        let fresh = api.get("podinfo").await.expect("canary");
        let status = CanaryStatus {
            canary_weight: w,
            ..status.clone()
        };
        write_status(&api, &fresh, status).await.expect("retried");
        assert_eq!(
            api.get("podinfo")
                .await
                .expect("canary")
                .status
                .map(|s| s.canary_weight),
            Some(w)
        );
    }
}
