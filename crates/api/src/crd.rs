//! The CustomResourceDefinitions, generated from the Rust types.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

use crate::{AlertProvider, Canary, MetricTemplate};

/// The three CRDs serin serves, in a fixed order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut canary = Canary::crd();
    // v1alpha3 manifests still apply: the same schema is served under the old version
    // (no conversion needed: serin normalises the old fields itself).
    if let Some(v1beta1) = canary.spec.versions.first().cloned() {
        let mut old = v1beta1;
        old.name = "v1alpha3".into();
        old.storage = false;
        old.deprecated = Some(true);
        old.deprecation_warning =
            Some("flagger.app/v1alpha3 Canary is deprecated; use flagger.app/v1beta1".into());
        canary.spec.versions.push(old);
    }
    canary.spec.names.short_names = Some(vec!["canary".into()]);
    vec![canary, MetricTemplate::crd(), AlertProvider::crd()]
}

/// The CRDs as one YAML stream, as `serin crds` prints them and deploy/crds holds them.
pub fn crds_yaml() -> Result<String, serde_saphyr::ser::Error> {
    let mut out = String::new();
    for crd in crds() {
        out.push_str("---\n");
        out.push_str(&serde_saphyr::to_string(&crd)?);
    }
    Ok(out)
}

/// The OpenAPI schema of a kind's v1beta1 version, for validation of unknown fields.
/// The schemas are built once per process (building them takes milliseconds, and
/// `serin validate` asks for one per document).
pub fn schema_of(kind: &str) -> Option<&'static serde_json::Value> {
    static SCHEMAS: std::sync::OnceLock<Vec<(String, serde_json::Value)>> =
        std::sync::OnceLock::new();
    SCHEMAS
        .get_or_init(|| {
            crds()
                .into_iter()
                .filter_map(|c| {
                    let kind = c.spec.names.kind.clone();
                    build_schema(c).map(|s| (kind, s))
                })
                .collect()
        })
        .iter()
        .find(|(k, _)| k == kind)
        .map(|(_, s)| s)
}

fn build_schema(crd: CustomResourceDefinition) -> Option<serde_json::Value> {
    let version = crd
        .spec
        .versions
        .into_iter()
        .find(|v| v.name == "v1beta1")?;
    let schema = version.schema?.open_api_v3_schema?;
    serde_json::to_value(schema).ok()
}
