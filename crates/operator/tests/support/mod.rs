//! Shared by the sandbox tests: a sandbox with serin's CRDs, and the seed manifests
//! loaded into it.
#![allow(dead_code)]

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, GroupVersionKind, PostParams};
use kube::discovery::Scope;
use kube::{Client, ResourceExt};
use serde_json::Value;
use serin_api::Canary;
use serin_api::clock::Clock;
use serin_api::load::{Object, parse_documents, to_object};
use serin_sandbox::{Sandbox, SandboxOptions};

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel)
}

pub fn data_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(rel)
}

pub fn read(path: &PathBuf) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A sandbox with the `test` and `prod` namespaces and serin's CRDs, on `clock`.
pub async fn sandbox(clock: Clock) -> (Sandbox, Client) {
    sandbox_with(SandboxOptions {
        clock,
        ..SandboxOptions::default()
    })
    .await
}

/// Like [`sandbox`], with other options (the namespaces are added to theirs).
pub async fn sandbox_with(mut options: SandboxOptions) -> (Sandbox, Client) {
    options
        .namespaces
        .extend(["test".to_string(), "prod".to_string()]);
    let sandbox = Sandbox::new(options);
    let client = sandbox.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in serin_api::crd::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD");
    }
    (sandbox, client)
}

/// Creates every object of a YAML stream (namespace `test` when it names none).
pub async fn apply(client: &Client, yaml: &str) {
    for doc in parse_documents("test", yaml).expect("YAML") {
        if let Object::Canary(c) = to_object(&doc).expect("object") {
            create_canary(client, *c).await;
            continue;
        }
        create_value(client, doc.value.clone()).await;
    }
}

pub async fn create_value(client: &Client, value: Value) -> DynamicObject {
    let mut obj: DynamicObject = serde_json::from_value(value).expect("object");
    let types = obj.types.clone().expect("apiVersion and kind");
    let (group, version) = types
        .api_version
        .split_once('/')
        .unwrap_or(("", &types.api_version));
    let gvk = GroupVersionKind::gvk(group, version, &types.kind);
    let (ar, caps) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .expect("served kind");
    let api: Api<DynamicObject> = if caps.scope == Scope::Cluster {
        Api::all_with(client.clone(), &ar)
    } else {
        let ns = obj
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "test".into());
        obj.metadata.namespace = Some(ns.clone());
        Api::namespaced_with(client.clone(), &ns, &ar)
    };
    api.create(&PostParams::default(), &obj)
        .await
        .unwrap_or_else(|e| panic!("create {} {}: {e}", types.kind, obj.name_any()))
}

/// Creates the Canary and returns it as stored (with its uid).
pub async fn create_canary(client: &Client, mut canary: Canary) -> Canary {
    let ns = canary
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "test".into());
    canary.metadata.namespace = Some(ns.clone());
    let api: Api<Canary> = Api::namespaced(client.clone(), &ns);
    api.create(&PostParams::default(), &canary)
        .await
        .expect("canary")
}

/// The Canary of a seed file.
pub fn seed_canary(rel: &str) -> Canary {
    let path = repo_path(rel);
    let docs = parse_documents(&path.display().to_string(), &read(&path)).expect("YAML");
    for doc in &docs {
        if let Ok(Object::Canary(c)) = to_object(doc) {
            return *c;
        }
    }
    panic!("no Canary in {rel}");
}

/// podinfo's Deployment and HPA, the Istio guide's podinfo Canary, in a sandbox.
pub async fn podinfo(clock: Clock) -> (Sandbox, Client, Canary) {
    let (sandbox, client) = sandbox(clock).await;
    apply(&client, &read(&data_path("podinfo.yaml"))).await;
    let canary = create_canary(
        &client,
        seed_canary("tests/fixtures/seeds/istio-guide/podinfo-canary.yaml"),
    )
    .await;
    (sandbox, client, canary)
}
