//! The Gateway API router against the in-process sandbox: the seed podinfo canary
//! with `provider: gatewayapi:v1` (and v1beta1) gets its services and an HTTPRoute
//! whose weighted backendRefs follow the rollout, as the Gateway API reference
//! (gateway.networking.k8s.io HTTPRoute) defines them.

mod support;

use kube::api::{Api, DynamicObject, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use serin_api::Canary;
use serin_api::clock::Clock;
use serin_operator::labels::ORIGINAL_CONFIGURATION;
use serin_operator::router::{GatewayApiVersion, Routes, router_for};
use support::*;

fn gateway_canary(provider: &str) -> Canary {
    let mut canary = seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml");
    canary.spec.provider = Some(provider.into());
    canary.spec.service.gateway_refs =
        vec![json!({"name": "public-gateway", "namespace": "istio-ingress"})];
    canary.spec.service.gateways.clear();
    canary
}

async fn route(client: &Client, version: GatewayApiVersion) -> DynamicObject {
    Api::<DynamicObject>::namespaced_with(client.clone(), "test", &version.api_resource())
        .get("podinfo")
        .await
        .expect("the HTTPRoute")
}

/// (backend, weight) of the rule that sends traffic to the canary.
fn weights(route: &DynamicObject) -> Vec<(String, i64)> {
    let rules = route.data["spec"]["rules"].as_array().unwrap();
    let rule = rules
        .iter()
        .rev()
        .find(|r| {
            r["backendRefs"]
                .as_array()
                .unwrap()
                .iter()
                .any(|b| b["name"] == "podinfo-canary")
        })
        .unwrap();
    rule["backendRefs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            (
                b["name"].as_str().unwrap().to_string(),
                b["weight"].as_i64().unwrap(),
            )
        })
        .collect()
}

fn split(primary: i64, canary: i64) -> Vec<(String, i64)> {
    vec![
        ("podinfo-primary".into(), primary),
        ("podinfo-canary".into(), canary),
    ]
}

#[tokio::test(start_paused = true)]
async fn the_seed_canary_gets_a_weighted_http_route() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let mut canary = gateway_canary("gatewayapi:v1");
    canary.spec.service.timeout = Some("30s".into());
    let canary = create_canary(&client, canary).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();

    let r = route(&client, GatewayApiVersion::V1).await;
    assert_eq!(
        r.types.as_ref().unwrap().api_version,
        "gateway.networking.k8s.io/v1"
    );
    assert_eq!(
        r.data["spec"]["parentRefs"],
        json!([{"name": "public-gateway", "namespace": "istio-ingress"}])
    );
    assert_eq!(r.data["spec"]["hostnames"], json!(["app.example.com"]));
    assert_eq!(weights(&r), split(100, 0));
    assert_eq!(r.owner_references()[0].kind, "Canary");
    // `service.timeout` becomes the rule's request timeout.
    assert_eq!(r.data["spec"]["rules"][0]["timeouts"]["request"], "30s");

    router
        .set_routes(&canary, Routes::to_canary(30))
        .await
        .unwrap();
    assert_eq!(
        weights(&route(&client, GatewayApiVersion::V1).await),
        split(70, 30)
    );
    assert_eq!(
        router.get_routes(&canary).await.unwrap(),
        Routes::to_canary(30)
    );

    // A reconcile keeps the weights and writes nothing when nothing changed.
    let before = route(&client, GatewayApiVersion::V1).await;
    router.reconcile(&canary).await.unwrap();
    let after = route(&client, GatewayApiVersion::V1).await;
    assert_eq!(after.resource_version(), before.resource_version());

    // Rollback: everything back to the primary.
    router.set_routes(&canary, Routes::PRIMARY).await.unwrap();
    assert_eq!(
        weights(&route(&client, GatewayApiVersion::V1).await),
        split(100, 0)
    );

    // revertOnDeletion: the HTTPRoute serin made goes.
    router.finalize(&canary).await.unwrap();
    assert!(
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "test",
            &GatewayApiVersion::V1.api_resource()
        )
        .get_opt("podinfo")
        .await
        .unwrap()
        .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn v1beta1_writes_the_same_route_in_that_version() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let canary = create_canary(&client, gateway_canary("gatewayapi:v1beta1")).await;
    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    router
        .set_routes(&canary, Routes::to_canary(50))
        .await
        .unwrap();
    let r = route(&client, GatewayApiVersion::V1beta1).await;
    assert_eq!(
        r.types.as_ref().unwrap().api_version,
        "gateway.networking.k8s.io/v1beta1"
    );
    assert_eq!(weights(&r), split(50, 50));
}

#[tokio::test(start_paused = true)]
async fn a_canary_without_gateway_refs_is_refused_before_any_write() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let mut canary = gateway_canary("gatewayapi:v1");
    canary.spec.service.gateway_refs.clear();
    let canary = create_canary(&client, canary).await;
    let router = router_for(client.clone(), &canary).unwrap();
    let err = router.reconcile(&canary).await.unwrap_err().to_string();
    assert!(err.contains("GatewayRefs must be specified"), "{err}");
    assert!(
        Api::<DynamicObject>::namespaced_with(
            client.clone(),
            "test",
            &GatewayApiVersion::V1.api_resource()
        )
        .get_opt("podinfo")
        .await
        .unwrap()
        .is_none()
    );
}

#[tokio::test(start_paused = true)]
async fn an_existing_http_route_is_taken_over_and_restored() {
    let (_sb, client) = sandbox(Clock::system()).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let canary = create_canary(&client, gateway_canary("gatewayapi:v1")).await;
    let original = json!({
        "parentRefs": [{"name": "public-gateway", "namespace": "istio-ingress"}],
        "rules": [{"backendRefs": [{"name": "podinfo", "port": 9898}]}]
    });
    let api = Api::<DynamicObject>::namespaced_with(
        client.clone(),
        "test",
        &GatewayApiVersion::V1.api_resource(),
    );
    let mut existing = DynamicObject::new("podinfo", &GatewayApiVersion::V1.api_resource());
    existing.metadata.namespace = Some("test".into());
    existing.data = json!({ "spec": original });
    api.create(&PostParams::default(), &existing).await.unwrap();

    let router = router_for(client.clone(), &canary).unwrap();
    router.reconcile(&canary).await.unwrap();
    let r = route(&client, GatewayApiVersion::V1).await;
    assert_eq!(weights(&r), split(100, 0));
    let saved: Value = serde_json::from_str(&r.annotations()[ORIGINAL_CONFIGURATION]).unwrap();
    assert_eq!(saved, original);
    assert!(
        r.owner_references().is_empty(),
        "a taken-over HTTPRoute stays the user's"
    );

    router.finalize(&canary).await.unwrap();
    let r = route(&client, GatewayApiVersion::V1).await;
    assert_eq!(r.data["spec"], original);
    assert!(!r.annotations().contains_key(ORIGINAL_CONFIGURATION));
}
