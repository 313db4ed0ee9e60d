//! Defaults, normalisation of old documents, and round trips of unknown fields.

use std::time::Duration;

use serin_api::canary::{Strategy, WebhookPayload};
use serin_api::load::{Object, normalise, parse_documents, to_object};
use serin_api::{Canary, crd};

fn canary(yaml: &str) -> Canary {
    let docs = parse_documents("test.yaml", yaml).expect("parses");
    match to_object(&docs[0]).expect("typed") {
        Object::Canary(c) => *c,
        other => panic!("not a canary: {other:?}"),
    }
}

const MINIMAL: &str = "apiVersion: flagger.app/v1beta1
kind: Canary
metadata: {name: podinfo, namespace: test}
spec:
  targetRef: {apiVersion: apps/v1, kind: Deployment, name: podinfo}
  service: {port: 9898}
";

#[test]
fn defaults_apply_when_fields_are_unset() {
    let c = canary(MINIMAL);
    assert_eq!(c.analysis_interval(), Duration::from_secs(60));
    assert_eq!(c.progress_deadline(), Duration::from_secs(600));
    assert_eq!(c.analysis_threshold(), 1);
    assert_eq!(c.max_weight(), 100);
    assert_eq!(c.primary_ready_threshold(), 100);
    assert_eq!(c.canary_ready_threshold(), 100);
    assert_eq!(c.provider(), "istio");
    assert!(c.skips_analysis(), "no analysis block means no analysis");
    assert_eq!(
        c.service_names(),
        (
            "podinfo".into(),
            "podinfo-primary".into(),
            "podinfo-canary".into()
        )
    );
    assert_eq!(c.id(), "podinfo.test");
}

#[test]
fn set_fields_override_defaults() {
    let c = canary(&format!(
        "{MINIMAL}  progressDeadlineSeconds: 60\n  provider: kubernetes\n  analysis:\n    interval: 5s\n    threshold: 5\n    stepWeights: [5, 10, 40]\n    iterations: 3\n"
    ));
    assert_eq!(
        c.analysis_interval(),
        Duration::from_secs(10),
        "intervals below 10s run every 10s"
    );
    assert_eq!(c.progress_deadline(), Duration::from_secs(60));
    assert_eq!(c.analysis_threshold(), 5);
    assert_eq!(c.max_weight(), 40, "the last step weight is the max weight");
    assert_eq!(c.strategy(), Strategy::BlueGreen);
    assert_eq!(c.provider(), "kubernetes");
}

#[test]
fn strategies_follow_the_analysis_block() {
    let ab = canary(&format!(
        "{MINIMAL}  analysis:\n    iterations: 10\n    match:\n    - headers:\n        x-canary: {{exact: insider}}\n"
    ));
    assert_eq!(ab.strategy(), Strategy::ABTesting);
    let weighted = canary(&format!("{MINIMAL}  analysis:\n    stepWeight: 10\n"));
    assert_eq!(weighted.strategy(), Strategy::Canary);
}

/// The Canary of the 2019 blog post, as written for flagger.app/v1alpha3.
const V1ALPHA3: &str = "apiVersion: flagger.app/v1alpha3
kind: Canary
metadata:
  name: podinfo
  namespace: test
spec:
  targetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: podinfo
  service:
    port: 9898
  canaryAnalysis:
    interval: 30s
    threshold: 10
    maxWeight: 50
    stepWeight: 5
    metrics:
    - name: istio_requests_total
      threshold: 99
      interval: 30s
    - name: istio_request_duration_seconds_bucket
      threshold: 500
      interval: 30s
";

#[test]
fn old_documents_are_normalised() {
    let c = canary(V1ALPHA3);
    assert_eq!(c.spec.canary_analysis, None);
    let a = c
        .spec
        .analysis
        .as_ref()
        .expect("canaryAnalysis becomes analysis");
    assert_eq!(a.step_weight, Some(5));
    assert_eq!(a.metrics[0].name, "request-success-rate");
    assert_eq!(a.metrics[0].threshold, None);
    let r0 = a.metrics[0].threshold_range.as_ref().unwrap();
    assert_eq!((r0.min, r0.max), (Some(99.0), None));
    assert_eq!(a.metrics[1].name, "request-duration");
    let r1 = a.metrics[1].threshold_range.as_ref().unwrap();
    assert_eq!((r1.min, r1.max), (None, Some(500.0)));
    assert_eq!(c.analysis_interval(), Duration::from_secs(30));
}

#[test]
fn normalising_twice_changes_nothing_more() {
    let mut v = parse_documents("t", V1ALPHA3).unwrap()[0].value.clone();
    assert!(!normalise(&mut v).is_empty());
    let once = v.clone();
    assert!(normalise(&mut v).is_empty());
    assert_eq!(v, once);
    assert_eq!(v["apiVersion"], "flagger.app/v1beta1");
}

#[test]
fn unknown_fields_survive_a_round_trip() {
    let yaml = format!(
        "{MINIMAL}  futureField: {{a: 1}}\n  analysis:\n    stepWeight: 10\n    experimentalKnob: true\n    webhooks:\n    - name: w\n      url: http://x/\n      newOption: 3\n"
    )
    .replace("service: {port: 9898}", "service: {port: 9898, meshExtension: ambient}");
    let c = canary(&yaml);
    let back = serde_json::to_value(&c).unwrap();
    assert_eq!(back["spec"]["futureField"]["a"], 1);
    assert_eq!(back["spec"]["analysis"]["experimentalKnob"], true);
    assert_eq!(back["spec"]["analysis"]["webhooks"][0]["newOption"], 3);
    assert_eq!(back["spec"]["service"]["meshExtension"], "ambient");
    let again: Canary = serde_json::from_value(back.clone()).unwrap();
    assert_eq!(again.spec, c.spec);
}

#[test]
fn webhook_metadata_accepts_unquoted_scalars() {
    let c = canary(&format!(
        "{MINIMAL}  analysis:\n    stepWeight: 10\n    webhooks:\n    - name: w\n      url: http://x/\n      metadata: {{logCmdOutput: true, retries: 3, cmd: hey}}\n"
    ));
    let md = c.analysis().unwrap().webhooks[0].metadata.clone().unwrap();
    assert_eq!(md["logCmdOutput"], "true");
    assert_eq!(md["retries"], "3");
    let payload = WebhookPayload {
        name: "podinfo".into(),
        namespace: "test".into(),
        metadata: md,
        ..Default::default()
    };
    let json = serde_json::to_value(&payload).unwrap();
    assert_eq!(json["phase"], "Initializing");
    assert_eq!(json["metadata"]["cmd"], "hey");
}

#[test]
fn the_checked_in_crds_are_current() {
    let generated = crd::crds_yaml().unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../deploy/crds/crds.yaml");
    let checked_in = std::fs::read_to_string(path).expect("deploy/crds/crds.yaml exists");
    assert!(
        generated == checked_in,
        "deploy/crds/crds.yaml is stale: run `cargo run -p serin -- crds > deploy/crds/crds.yaml`"
    );
}

#[test]
fn the_canary_crd_has_the_columns_kubectl_shows() {
    let crds = crd::crds();
    let names: Vec<_> = crds
        .iter()
        .map(|c| c.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "canaries.flagger.app",
            "metrictemplates.flagger.app",
            "alertproviders.flagger.app"
        ]
    );
    let v1beta1 = &crds[0].spec.versions[0];
    assert!(v1beta1.storage && v1beta1.served);
    assert!(v1beta1.subresources.as_ref().unwrap().status.is_some());
    let shown: Vec<_> = v1beta1
        .additional_printer_columns
        .as_ref()
        .unwrap()
        .iter()
        .filter(|c| c.priority.unwrap_or(0) == 0)
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(shown, ["Status", "Weight", "LastTransitionTime"]);
    assert!(
        crds[0]
            .spec
            .versions
            .iter()
            .any(|v| v.name == "v1alpha3" && v.served && !v.storage)
    );
}
