//! What the operator refuses to act on, on a cluster that lets it through: a Canary
//! that `serin validate` rejects, a second Canary on a target another one drives. And
//! what it does when the target is deleted in the middle of an analysis.
//!
//! The invalid Canaries are stored through a lax Canary CRD (the spec kept as sent, as
//! a cluster still carrying older CRDs would), so what is tested is the operator's own
//! guard, not the API server's schema.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use serde_json::json;
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_engine::{EventType, Routes};
use serin_operator::controller::{INVALID_SPEC, READY, TARGET_IN_USE};
use serin_simulate::{Options, Simulation, TimedEvent};

fn canary(name: &str, target: &str, analysis: &str) -> String {
    format!(
        "apiVersion: flagger.app/v1beta1
kind: Canary
metadata:
  name: {name}
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {target}
  service:
    port: 9898
  analysis:
    threshold: 2
{analysis}
    metrics:
      - name: request-success-rate
        thresholdRange:
          min: 99
        interval: 1m
"
    )
}

const GOOD: &str = "    interval: 1m\n    maxWeight: 20\n    stepWeight: 10";

/// Serin's Canary CRD with the spec's schema replaced by "anything goes".
fn lax_canary_crd() -> String {
    let crd = serin_api::crd::crds()
        .into_iter()
        .find(|c| c.spec.names.kind == "Canary")
        .expect("Canary CRD");
    let mut v = serde_json::to_value(crd).expect("json");
    for version in v["spec"]["versions"].as_array_mut().expect("versions") {
        version["schema"]["openAPIV3Schema"]["properties"]["spec"] =
            json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        if let Some(rules) = version["schema"]["openAPIV3Schema"].as_object_mut() {
            rules.remove("x-kubernetes-validations");
        }
    }
    v.to_string()
}

fn healthy() -> Options {
    Options {
        metrics: BTreeMap::from([("request-success-rate".to_string(), 99.9)]),
        ..Default::default()
    }
}

async fn start(yaml: &str) -> Simulation {
    let docs = serin_api::load::parse_documents("guard.yaml", yaml).expect("parses");
    Simulation::start(docs, healthy()).await.expect("starts")
}

fn ready_condition(c: &Canary) -> Option<(String, String, String)> {
    c.status.as_ref()?.conditions.iter().find_map(|k| {
        (k.type_ == READY).then(|| {
            (
                k.status.clone(),
                k.reason.clone().unwrap_or_default(),
                k.message.clone().unwrap_or_default(),
            )
        })
    })
}

fn lines(events: &[TimedEvent]) -> String {
    events
        .iter()
        .map(|e| e.line())
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(start_paused = true)]
async fn an_invalid_canary_is_refused_with_the_field_and_nothing_is_created() {
    let long = "a-deployment-name-that-is-long-enough-to-overflow-a-label-x";
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "podinfo",
            "    maxWeight: 1000\n    stepWeight: 300".into(),
            "spec.analysis.maxWeight",
        ),
        (
            "podinfo",
            "    maxWeight: 50\n    stepWeight: 0".into(),
            "spec.analysis.stepWeight",
        ),
        (
            "podinfo",
            "    maxWeight: 50\n    stepWeight: -10".into(),
            "spec.analysis.stepWeight",
        ),
        (
            "podinfo",
            "    maxWeight: 0\n    stepWeight: 10".into(),
            "spec.analysis.maxWeight",
        ),
        (
            "podinfo",
            "    stepWeights: [10, 200]".into(),
            "spec.analysis.stepWeights[1]",
        ),
        (
            "podinfo",
            "    stepWeights: [20, 10]".into(),
            "spec.analysis.stepWeights[1]",
        ),
        (
            "podinfo",
            "    interval: abc\n    stepWeight: 10".into(),
            "spec.analysis.interval",
        ),
        (
            "podinfo",
            "    stepWeight: 10\n    webhooks:\n      - name: smoke\n        type: pre-rolout\n        url: http://loadtester.test/".into(),
            "spec.analysis.webhooks[0].type",
        ),
        (
            "podinfo",
            "    iterations: 10\n    match:\n      - headers:\n          user-agent:\n            regex: \"(.*Firefox\"".into(),
            "spec.analysis.match[0].headers.user-agent.regex",
        ),
        (long, GOOD.into(), "spec.targetRef.name"),
    ];
    let mut yaml = lax_canary_crd();
    let mut expected = Vec::new();
    for (i, (target, analysis, path)) in cases.iter().enumerate() {
        let name = format!("bad-{i}");
        let target = if *target == "podinfo" {
            name.clone()
        } else {
            target.to_string()
        };
        yaml.push_str("\n---\n");
        yaml.push_str(&canary(&name, &target, analysis));
        expected.push((name, target, *path));
    }
    // thresholdRange with min above max, in the metric itself.
    yaml.push_str("\n---\n");
    yaml.push_str(
        &canary("bad-range", "bad-range", GOOD).replace("min: 99", "min: 99\n          max: 1"),
    );
    expected.push((
        "bad-range".into(),
        "bad-range".into(),
        "spec.analysis.metrics[0].thresholdRange",
    ));

    let mut sim = start(&yaml).await;
    sim.wait_until("every canary refused", &mut |_| {}, |c| {
        ready_condition(c).is_some()
    })
    .await
    .expect("every invalid canary gets a Ready condition");
    // Several analysis intervals more: still nothing may happen.
    sim.tick(Duration::from_secs(300)).await;
    let events = sim.events();
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    for (name, _, path) in &expected {
        let c = api.get(name).await.expect("canary");
        let (status, reason, message) = ready_condition(&c).expect("Ready condition");
        assert_eq!(status, "False", "{name}");
        assert_eq!(reason, INVALID_SPEC, "{name}");
        assert!(message.contains(path), "{name}: {message:?} names {path}");
        assert!(
            events.iter().any(|e| e.type_ == EventType::Warning
                && e.canary == format!("{name}.test")
                && e.message.contains(path)),
            "{name}: a Warning event naming {path}\n{}",
            lines(&events)
        );
        assert!(
            !events
                .iter()
                .any(|e| e.canary == format!("{name}.test") && e.type_ == EventType::Normal),
            "{name}: no progress at all\n{}",
            lines(&events)
        );
    }
    // No workload and no route was made: only the targets exist, untouched.
    let deployments: Api<Deployment> = Api::namespaced(sim.client.clone(), "test");
    let names: Vec<String> = deployments
        .list(&ListParams::default())
        .await
        .expect("deployments")
        .items
        .into_iter()
        .filter_map(|d| d.metadata.name)
        .collect();
    assert!(
        names.iter().all(|n| !n.ends_with("-primary")),
        "no primary: {names:?}"
    );
    let services: Api<Service> = Api::namespaced(sim.client.clone(), "test");
    let services = services
        .list(&ListParams::default())
        .await
        .expect("services");
    assert!(services.items.is_empty(), "no Service made");
    for (name, target, _) in &expected {
        let c = api.get(name).await.expect("canary");
        let router = serin_operator::router::router_for(sim.client.clone(), &c).expect("router");
        assert!(
            router.get_routes(&c).await.is_err(),
            "{name}: no VirtualService for {target}"
        );
    }

    // Fixing the spec lets the operator act and takes the condition away.
    let mut c = api.get("bad-0").await.expect("canary");
    let a = c.spec.analysis.as_mut().expect("analysis");
    a.max_weight = Some(20);
    a.step_weight = Some(10);
    api.replace("bad-0", &PostParams::default(), &c)
        .await
        .expect("fixed");
    sim.tick(Duration::from_secs(120)).await;
    let c = api.get("bad-0").await.expect("canary");
    assert_eq!(ready_condition(&c), None, "{:?}", c.status);
    assert_eq!(c.status_or_default().phase, CanaryPhase::Initialized);
}

#[tokio::test(start_paused = true)]
async fn a_second_canary_on_the_same_target_is_refused_naming_the_owner() {
    // The owner is the older Canary, whatever the names' order.
    let mut sim = start(&canary("zz-owner", "podinfo", GOOD)).await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    let docs = serin_api::load::parse_documents(
        "second.yaml",
        &canary(
            "aa-second",
            "podinfo",
            "    interval: 1m\n    maxWeight: 50\n    stepWeight: 5",
        ),
    )
    .expect("parses");
    for d in docs {
        serin_simulate::apply::apply_value(&sim.client, d.value)
            .await
            .expect("second canary");
    }
    let outcome = sim.rollout(&mut |_| {}).await.expect("rollout");
    let events = sim.events();
    assert_eq!(
        outcome.phase(),
        CanaryPhase::Succeeded,
        "{}",
        lines(&events)
    );
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    let second = api.get("aa-second").await.expect("canary");
    let (status, reason, message) = ready_condition(&second).expect("refused");
    assert_eq!((status.as_str(), reason.as_str()), ("False", TARGET_IN_USE));
    assert!(message.contains("zz-owner.test"), "{message}");
    assert!(
        events.iter().any(|e| e.canary == "aa-second.test"
            && e.type_ == EventType::Warning
            && e.message.contains("zz-owner.test")),
        "{}",
        lines(&events)
    );
    assert!(
        events
            .iter()
            .all(|e| e.canary != "aa-second.test" || e.type_ == EventType::Warning),
        "the second canary never acts\n{}",
        lines(&events)
    );
    // The owner ran its own analysis (maxWeight 20, steps of 10), untouched.
    let weights: Vec<i32> = events
        .iter()
        .filter(|e| e.canary == "zz-owner.test" && e.message.starts_with("Advance"))
        .map(|e| e.canary_weight)
        .collect();
    assert_eq!(weights, vec![10, 20], "{}", lines(&events));
    let owner = api.get("zz-owner").await.expect("canary");
    assert_eq!(ready_condition(&owner), None);
}

#[tokio::test(start_paused = true)]
async fn a_target_deleted_mid_rollout_sends_all_traffic_to_the_primary() {
    let mut sim = start(&canary(
        "podinfo",
        "podinfo",
        "    interval: 1m\n    maxWeight: 50\n    stepWeight: 10",
    ))
    .await;
    sim.wait_initialized(&mut |_| {})
        .await
        .expect("initialized");
    sim.new_revision().await.expect("new revision");
    sim.wait_until("traffic on the canary", &mut |_| {}, |c| {
        c.status_or_default().canary_weight >= 10
    })
    .await
    .expect("progressing");
    let deployments: Api<Deployment> = Api::namespaced(sim.client.clone(), "test");
    deployments
        .delete("podinfo", &DeleteParams::default())
        .await
        .expect("target deleted");
    sim.wait_until("the rollout stopped", &mut |_| {}, |c| {
        c.status_or_default().phase == CanaryPhase::Failed
    })
    .await
    .expect("failed");
    let api: Api<Canary> = Api::namespaced(sim.client.clone(), "test");
    let c = api.get("podinfo").await.expect("canary");
    let status = c.status_or_default();
    assert_eq!(status.canary_weight, 0);
    let promoted = status
        .conditions
        .iter()
        .find(|k| k.type_ == "Promoted")
        .expect("Promoted condition");
    assert_eq!(promoted.status, "False");
    assert!(
        promoted
            .message
            .as_deref()
            .is_some_and(|m| m.contains("Deployment test/podinfo was deleted")),
        "{promoted:?}"
    );
    let router = serin_operator::router::router_for(sim.client.clone(), &c).expect("router");
    assert_eq!(
        router.get_routes(&c).await.expect("routes"),
        Routes::PRIMARY
    );
    let events = sim.events();
    assert!(
        events.iter().any(|e| e.type_ == EventType::Warning
            && e.message
                .contains("all traffic routed to the primary podinfo-primary")),
        "{}",
        lines(&events)
    );
}
