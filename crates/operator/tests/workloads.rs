//! Workload controllers against the in-process sandbox: the primary, scaling,
//! readiness, revisions, tracked configs and promotion.

mod support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use serin_api::Canary;
use serin_api::clock::Clock;
use serin_operator::error::Error;
use serin_operator::hpa::hpa_resource;
use serin_operator::workload::{Readiness, WorkloadController, WorkloadOptions, workload_with};
use support::*;

fn workload(client: &Client, canary: &Canary, clock: Clock) -> Box<dyn WorkloadController> {
    workload_with(
        client.clone(),
        canary,
        WorkloadOptions {
            clock,
            ..Default::default()
        },
    )
    .unwrap()
}

async fn deployment(client: &Client, name: &str) -> Deployment {
    Api::<Deployment>::namespaced(client.clone(), "test")
        .get(name)
        .await
        .unwrap()
}

async fn set_image(client: &Client, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "podinfod", "image": image}]}}}});
    Api::<Deployment>::namespaced(client.clone(), "test")
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
}

fn image_of(d: &Deployment) -> String {
    d.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .image
        .clone()
        .unwrap()
}

/// Waits (bounded, on tokio's clock) for a readiness answer other than Waiting.
async fn settle(w: &dyn WorkloadController, canary: &Canary, primary: bool) -> Readiness {
    for _ in 0..100 {
        let r = if primary {
            w.primary_readiness(canary).await.unwrap()
        } else {
            w.canary_readiness(canary).await.unwrap()
        };
        if !matches!(r, Readiness::Waiting(_)) {
            return r;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    panic!("readiness never settled");
}

#[tokio::test(start_paused = true)]
async fn primary_is_a_copy_with_its_own_selector_and_owner() {
    let clock = Clock::system();
    let (_sb, client, canary) = podinfo(clock).await;
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();

    let primary = deployment(&client, "podinfo-primary").await;
    let spec = primary.spec.clone().unwrap();
    assert_eq!(
        spec.selector.match_labels.unwrap()["app"],
        "podinfo-primary"
    );
    assert_eq!(primary.labels()["app"], "podinfo-primary");
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone()
        .unwrap();
    assert_eq!(template_labels["app"], "podinfo-primary");
    let annotations = spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .annotations
        .clone()
        .unwrap();
    assert_eq!(annotations["prometheus.io/port"], "9797");
    assert!(annotations.contains_key("flagger-id"));
    // No replicas on the target: the HPA minimum.
    assert_eq!(spec.replicas, Some(2));
    assert_eq!(spec.min_ready_seconds, Some(5));
    assert_eq!(spec.progress_deadline_seconds, Some(60));
    assert_eq!(image_of(&primary), "ghcr.io/stefanprodan/podinfo:6.0.0");
    let owner = &primary.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.name.as_str()),
        ("Canary", "podinfo")
    );
    assert_eq!(owner.controller, Some(true));
    assert_eq!(Some(&owner.uid), canary.metadata.uid.as_ref());

    let hpas: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "test", &hpa_resource("autoscaling/v2"));
    let hpa = hpas.get("podinfo-primary").await.unwrap();
    assert_eq!(
        hpa.data["spec"]["scaleTargetRef"]["name"],
        "podinfo-primary"
    );
    assert_eq!(hpa.data["spec"]["minReplicas"], 2);
    assert_eq!(hpa.data["spec"]["maxReplicas"], 4);
    assert_eq!(
        hpa.data["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
        99
    );
    assert_eq!(hpa.owner_references()[0].name, "podinfo");

    // Again: nothing to write.
    let before = (primary.resource_version(), hpa.resource_version());
    w.initialize_primary(&canary).await.unwrap();
    let primary = deployment(&client, "podinfo-primary").await;
    let hpa = hpas.get("podinfo-primary").await.unwrap();
    assert_eq!(
        before.1,
        hpa.resource_version(),
        "HPA rewritten although nothing changed"
    );
    assert_eq!(
        primary.metadata.generation,
        Some(1),
        "primary spec rewritten although nothing changed"
    );
}

#[tokio::test(start_paused = true)]
async fn primary_scaler_replicas_override_the_hpa() {
    let clock = Clock::system();
    let (_sb, client) = sandbox(clock).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let mut canary = seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml");
    canary
        .spec
        .autoscaler_ref
        .as_mut()
        .unwrap()
        .primary_scaler_replicas = Some(serin_api::canary::ScalerReplicas {
        min_replicas: Some(3),
        max_replicas: Some(9),
    });
    let canary = create_canary(&client, canary).await;
    workload(&client, &canary, clock)
        .initialize_primary(&canary)
        .await
        .unwrap();
    let hpas: Api<DynamicObject> =
        Api::namespaced_with(client.clone(), "test", &hpa_resource("autoscaling/v2"));
    let hpa = hpas.get("podinfo-primary").await.unwrap();
    assert_eq!(
        (
            hpa.data["spec"]["minReplicas"].clone(),
            hpa.data["spec"]["maxReplicas"].clone()
        ),
        (json!(3), json!(9))
    );
}

#[tokio::test(start_paused = true)]
async fn scaling_the_target_to_zero_and_back() {
    let clock = Clock::system();
    let (sb, client, canary) = podinfo(clock).await;
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();
    w.scale_to_zero(&canary).await.unwrap();
    assert_eq!(
        deployment(&client, "podinfo").await.spec.unwrap().replicas,
        Some(0)
    );
    // Already at zero: no write (a patch would fail now).
    sb.faults().set(
        "deployments",
        serin_sandbox::Verb::Patch,
        serin_sandbox::FaultRule {
            error_rate: 1.0,
            ..Default::default()
        },
    );
    w.scale_to_zero(&canary).await.unwrap();
    sb.faults().clear_all();
    // A target at zero is not rolling out.
    assert_eq!(w.canary_readiness(&canary).await.unwrap(), Readiness::Ready);
    w.scale_from_zero(&canary).await.unwrap();
    assert_eq!(
        deployment(&client, "podinfo").await.spec.unwrap().replicas,
        Some(2),
        "back to the HPA minimum"
    );
}

#[tokio::test(start_paused = true)]
async fn readiness_waits_for_the_rollout_and_fails_past_the_deadline() {
    let clock = Clock::system();
    let (sb, client, canary) = podinfo(clock).await;
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();
    assert!(matches!(
        w.primary_readiness(&canary).await.unwrap(),
        Readiness::Waiting(m) if m.starts_with("Waiting for podinfo-primary.test rollout to finish")
    ));
    assert_eq!(settle(w.as_ref(), &canary, true).await, Readiness::Ready);

    // A canary that never becomes ready: retried until progressDeadlineSeconds (60),
    // then a rollback.
    sb.set_never_ready("test", "Deployment", "podinfo", true);
    set_image(&client, "ghcr.io/stefanprodan/podinfo:6.0.1").await;
    let first = w.canary_readiness(&canary).await.unwrap();
    assert!(
        matches!(&first, Readiness::Waiting(m) if m.starts_with("Waiting for podinfo.test rollout to finish")),
        "{first:?}"
    );
    let end = settle(w.as_ref(), &canary, false).await;
    assert!(matches!(end, Readiness::DeadlineExceeded(_)), "{end:?}");
}

#[tokio::test(start_paused = true)]
async fn readiness_keeps_the_seeds_wait_and_speaks_flaggers_words_at_the_deadline() {
    let clock = Clock::system();
    let (sb, client, canary) = podinfo(clock).await;
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();
    assert_eq!(settle(w.as_ref(), &canary, true).await, Readiness::Ready);
    sb.set_never_ready("test", "Deployment", "podinfo", true);
    set_image(&client, "ghcr.io/stefanprodan/podinfo:6.0.1").await;
    // The wait the seeds' `kubectl describe` shows, in their words.
    assert_eq!(
        w.canary_readiness(&canary).await.unwrap(),
        Readiness::Waiting(
            "Waiting for podinfo.test rollout to finish: 0 of 1 updated replicas are available"
                .into()
        )
    );
    // Kubernetes gives up on the rollout: Flagger's words too.
    let end = settle(w.as_ref(), &canary, false).await;
    assert_eq!(
        end,
        Readiness::DeadlineExceeded(
            "canary deployment podinfo.test not ready: deployment \"podinfo\" exceeded its progress deadline"
                .into()
        )
    );
}

#[tokio::test(start_paused = true)]
async fn a_new_template_is_a_new_revision() {
    let clock = Clock::system();
    let (_sb, client, canary) = podinfo(clock).await;
    let w = workload(&client, &canary, clock);
    let a = w.target_revision(&canary).await.unwrap();
    assert_eq!(a, w.target_revision(&canary).await.unwrap(), "stable");
    w.scale_to_zero(&canary).await.unwrap();
    assert_eq!(
        a,
        w.target_revision(&canary).await.unwrap(),
        "scaling is not a revision"
    );
    set_image(&client, "ghcr.io/stefanprodan/podinfo:6.0.1").await;
    let b = w.target_revision(&canary).await.unwrap();
    assert_ne!(a.spec_hash, b.spec_hash);
    assert!(b.tracked_configs.is_empty());
}

const CONFIGS: &str = r#"
apiVersion: v1
kind: ConfigMap
metadata: {name: podinfo-config, namespace: test}
data: {color: blue}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: untracked
  namespace: test
  annotations: {flagger.app/config-tracking: disabled}
data: {k: v}
---
apiVersion: v1
kind: Secret
metadata: {name: podinfo-secret, namespace: test}
type: Opaque
stringData: {token: s3cr3t}
"#;

async fn podinfo_with_configs(clock: Clock) -> (Client, Canary) {
    let (_, client, canary) = podinfo(clock).await;
    apply(&client, CONFIGS).await;
    let patch = json!({"spec": {"template": {"spec": {
        "volumes": [
            {"name": "config", "configMap": {"name": "podinfo-config"}},
            {"name": "other", "configMap": {"name": "untracked"}}
        ],
        "containers": [{
            "name": "podinfod",
            "envFrom": [{"secretRef": {"name": "podinfo-secret"}}],
            "volumeMounts": [{"name": "config", "mountPath": "/etc/podinfo"}]
        }]
    }}}});
    Api::<Deployment>::namespaced(client.clone(), "test")
        .patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
        .unwrap();
    (client, canary)
}

#[tokio::test(start_paused = true)]
async fn tracked_configs_are_copied_and_checksummed() {
    let clock = Clock::system();
    let (client, canary) = podinfo_with_configs(clock).await;
    let w = workload(&client, &canary, clock);
    let rev = w.target_revision(&canary).await.unwrap();
    assert_eq!(
        rev.tracked_configs.keys().cloned().collect::<Vec<_>>(),
        ["configmap/podinfo-config", "secret/podinfo-secret"],
        "the opted-out ConfigMap is not tracked"
    );

    w.initialize_primary(&canary).await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "test");
    let copy = cms.get("podinfo-config-primary").await.unwrap();
    assert_eq!(copy.data.as_ref().unwrap()["color"], "blue");
    assert_eq!(copy.owner_references()[0].name, "podinfo");
    assert!(cms.get_opt("untracked-primary").await.unwrap().is_none());
    let secret = Api::<Secret>::namespaced(client.clone(), "test")
        .get("podinfo-secret-primary")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, b"s3cr3t");

    let primary = deployment(&client, "podinfo-primary").await;
    let pod = primary.spec.unwrap().template.spec.unwrap();
    let volumes: Vec<String> = pod
        .volumes
        .unwrap()
        .iter()
        .map(|v| v.config_map.as_ref().unwrap().name.clone())
        .collect();
    assert_eq!(volumes, ["podinfo-config-primary", "untracked"]);
    let env_from = pod.containers[0].env_from.clone().unwrap();
    assert_eq!(
        env_from[0].secret_ref.as_ref().unwrap().name,
        "podinfo-secret-primary"
    );

    // A changed ConfigMap changes its checksum, and nothing else.
    cms.patch(
        "podinfo-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"color": "red"}})),
    )
    .await
    .unwrap();
    let after = w.target_revision(&canary).await.unwrap();
    assert_ne!(
        after.tracked_configs["configmap/podinfo-config"],
        rev.tracked_configs["configmap/podinfo-config"]
    );
    assert_eq!(
        after.tracked_configs["secret/podinfo-secret"],
        rev.tracked_configs["secret/podinfo-secret"]
    );
    assert_eq!(after.spec_hash, rev.spec_hash);
}

#[tokio::test(start_paused = true)]
async fn promotion_copies_template_and_configs() {
    let clock = Clock::system();
    let (client, canary) = podinfo_with_configs(clock).await;
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();
    let id_of = |d: &Deployment| {
        d.spec
            .as_ref()
            .unwrap()
            .template
            .metadata
            .as_ref()
            .unwrap()
            .annotations
            .as_ref()
            .unwrap()["flagger-id"]
            .clone()
    };
    let before = deployment(&client, "podinfo-primary").await;

    set_image(&client, "ghcr.io/stefanprodan/podinfo:6.0.1").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), "test");
    cms.patch(
        "podinfo-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"color": "red"}})),
    )
    .await
    .unwrap();
    // Not yet promoted: the primary still runs the old version and config.
    assert_eq!(
        image_of(&deployment(&client, "podinfo-primary").await),
        "ghcr.io/stefanprodan/podinfo:6.0.0"
    );
    assert_eq!(
        cms.get("podinfo-config-primary")
            .await
            .unwrap()
            .data
            .unwrap()["color"],
        "blue"
    );

    w.promote(&canary).await.unwrap();
    let after = deployment(&client, "podinfo-primary").await;
    assert_eq!(image_of(&after), "ghcr.io/stefanprodan/podinfo:6.0.1");
    assert_eq!(
        cms.get("podinfo-config-primary")
            .await
            .unwrap()
            .data
            .unwrap()["color"],
        "red"
    );
    assert_ne!(id_of(&before), id_of(&after), "the primary's pods roll");
    assert_eq!(
        after
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["app"],
        "podinfo-primary"
    );

    // A config change alone also rolls the primary's pods at promotion.
    cms.patch(
        "podinfo-config",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"color": "green"}})),
    )
    .await
    .unwrap();
    w.promote(&canary).await.unwrap();
    let again = deployment(&client, "podinfo-primary").await;
    assert_ne!(id_of(&after), id_of(&again));
    // Promoting what is already promoted writes nothing.
    w.promote(&canary).await.unwrap();
    assert_eq!(
        deployment(&client, "podinfo-primary")
            .await
            .resource_version(),
        again.resource_version()
    );
}

#[tokio::test(start_paused = true)]
async fn a_missing_target_is_named() {
    let clock = Clock::system();
    let (_sb, client) = sandbox(clock).await;
    let canary = create_canary(
        &client,
        seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"),
    )
    .await;
    let err = workload(&client, &canary, clock)
        .initialize_primary(&canary)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::NotFound { kind, name, .. } if kind == "Deployment" && name == "podinfo")
    );
    assert_eq!(err.to_string(), "Deployment test/podinfo not found");
}

#[tokio::test(start_paused = true)]
async fn finalize_restores_the_target_and_removes_the_primary() {
    let clock = Clock::system();
    let (_sb, client, canary) = podinfo(clock).await;
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();
    w.scale_to_zero(&canary).await.unwrap();
    w.finalize(&canary).await.unwrap();
    assert_eq!(
        deployment(&client, "podinfo").await.spec.unwrap().replicas,
        Some(2)
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "test");
    assert!(
        deployments
            .get_opt("podinfo-primary")
            .await
            .unwrap()
            .is_none()
    );
}

const DAEMONSET: &str = r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: test}
spec:
  selector: {matchLabels: {name: agent}}
  template:
    metadata: {labels: {name: agent}}
    spec:
      containers: [{name: agent, image: "agent:1", ports: [{containerPort: 8080}]}]
---
apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: agent, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: DaemonSet, name: agent}
  service: {port: 8080}
  analysis: {interval: 1m, threshold: 2, iterations: 2}
"#;

#[tokio::test(start_paused = true)]
async fn daemonsets_scale_down_with_a_node_selector() {
    let clock = Clock::system();
    let (_sb, client) = sandbox(clock).await;
    apply(&client, DAEMONSET).await;
    let canary = Api::<Canary>::namespaced(client.clone(), "test")
        .get("agent")
        .await
        .unwrap();
    let w = workload(&client, &canary, clock);
    w.initialize_primary(&canary).await.unwrap();
    let daemonsets: Api<DaemonSet> = Api::namespaced(client.clone(), "test");
    let primary = daemonsets.get("agent-primary").await.unwrap();
    assert_eq!(
        primary
            .spec
            .as_ref()
            .unwrap()
            .selector
            .match_labels
            .as_ref()
            .unwrap()["name"],
        "agent-primary",
        "the `name` label selects these pods"
    );
    let rev = w.target_revision(&canary).await.unwrap();
    w.scale_to_zero(&canary).await.unwrap();
    let target = daemonsets.get("agent").await.unwrap();
    let node_selector = target
        .spec
        .unwrap()
        .template
        .spec
        .unwrap()
        .node_selector
        .unwrap();
    assert_eq!(node_selector["flagger.app/scale-to-zero"], "true");
    assert_eq!(
        rev,
        w.target_revision(&canary).await.unwrap(),
        "scaling is not a revision"
    );
    w.promote(&canary).await.unwrap();
    let primary = daemonsets.get("agent-primary").await.unwrap();
    assert!(
        primary
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .node_selector
            .is_none(),
        "the primary never gets the scale-down selector"
    );
    w.scale_from_zero(&canary).await.unwrap();
    let target = daemonsets.get("agent").await.unwrap();
    assert!(
        target
            .spec
            .unwrap()
            .template
            .spec
            .unwrap()
            .node_selector
            .unwrap_or_default()
            .is_empty()
    );
}

/// As in Flagger, HPAs are used through autoscaling/v2 whatever version
/// `autoscalerRef.apiVersion` names: v2beta1 (the 2019 seeds'), which no current
/// Kubernetes serves (nor does the sandbox), and v2beta2 (which the sandbox still
/// serves). The primary's HPA follows the target's at promotion and goes with the
/// canary.
#[tokio::test(start_paused = true)]
async fn hpas_are_used_through_autoscaling_v2_whatever_version_the_canary_names() {
    for named in ["autoscaling/v2beta1", "autoscaling/v2beta2"] {
        let clock = Clock::system();
        let (_sb, client) = sandbox(clock).await;
        apply(&client, &read(&data_path("podinfo.yaml"))).await;
        let mut canary = seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml");
        canary.spec.autoscaler_ref.as_mut().unwrap().api_version = Some(named.into());
        let canary = create_canary(&client, canary).await;
        let w = workload(&client, &canary, clock);
        w.initialize_primary(&canary).await.unwrap();
        let hpas: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), "test", &hpa_resource("autoscaling/v2"));
        let hpa = hpas.get("podinfo-primary").await.unwrap();
        assert_eq!(
            hpa.data["spec"]["scaleTargetRef"]["name"], "podinfo-primary",
            "{named}"
        );
        assert_eq!(
            hpa.data["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            99
        );
        assert_eq!(
            deployment(&client, "podinfo-primary")
                .await
                .spec
                .unwrap()
                .replicas,
            Some(2),
            "the primary starts at the HPA's minimum ({named})"
        );
        hpas.patch(
            "podinfo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"maxReplicas": 6}})),
        )
        .await
        .unwrap();
        w.promote(&canary).await.unwrap();
        let hpa = hpas.get("podinfo-primary").await.unwrap();
        assert_eq!(hpa.data["spec"]["maxReplicas"], 6, "{named}");
        w.finalize(&canary).await.unwrap();
        assert!(
            hpas.get_opt("podinfo-primary").await.unwrap().is_none(),
            "{named}"
        );
    }
}

/// A canary whose target Flagger v1.44.0 had analysed keeps its revision: serin's
/// target_revision, reading the target from the API, gives the hash and tracked
/// configs Flagger's SyncStatus recorded for the same objects (golden.json, made
/// by tests/flaggerhash/golden from Flagger's own code), for every fixture. Fixture
/// 08 has pod spec fields newer than serin's Kubernetes types: only the API
/// server's JSON has them.
#[tokio::test(start_paused = true)]
async fn revisions_are_those_flagger_recorded() {
    let golden: serde_json::Value =
        serde_json::from_str(&read(&data_path("flagger_hash/golden.json"))).unwrap();
    let results = golden["results"].as_array().unwrap();
    assert!(results.len() >= 13);
    for expected in results {
        let fixture = expected["fixture"].as_str().unwrap();
        let list: serde_json::Value = serde_json::from_str(&read(&data_path(&format!(
            "flagger_hash/fixtures/{fixture}"
        ))))
        .unwrap();
        let clock = Clock::system();
        let (_sb, client) = sandbox(clock).await;
        let mut target = None;
        for item in list["items"].as_array().unwrap() {
            if matches!(item["kind"].as_str(), Some("Deployment" | "DaemonSet")) {
                target = Some((item["kind"].clone(), item["metadata"]["name"].clone()));
            }
            create_value(&client, item.clone()).await;
        }
        let (kind, name) = target.unwrap();
        let canary: Canary = serde_json::from_value(json!({
            "apiVersion": "flagger.app/v1beta1",
            "kind": "Canary",
            "metadata": {"name": name, "namespace": "test"},
            "spec": {
                "targetRef": {"apiVersion": "apps/v1", "kind": kind, "name": name},
                "service": {"port": 9898},
                "analysis": {"interval": "1m", "threshold": 2, "iterations": 2}
            }
        }))
        .unwrap();
        let canary = create_canary(&client, canary).await;
        let rev = workload(&client, &canary, clock)
            .target_revision(&canary)
            .await
            .unwrap();
        let status = &expected["syncStatus"];
        assert_eq!(
            rev.spec_hash,
            expected["hash"].as_str().unwrap(),
            "{fixture}"
        );
        assert_eq!(
            rev.spec_hash,
            status["lastAppliedSpec"].as_str().unwrap(),
            "{fixture}"
        );
        let tracked: std::collections::BTreeMap<String, String> =
            serde_json::from_value(status["trackedConfigs"].clone()).unwrap();
        assert_eq!(rev.tracked_configs, tracked, "{fixture}");
    }
}
