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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canary::HookType;
    use serde_json::{Value, json};

    /// The `analysis` schema of one served version of the Canary CRD.
    fn analysis(version: &str, block: &str) -> Value {
        let canary = crds().remove(0);
        let v = canary
            .spec
            .versions
            .into_iter()
            .find(|v| v.name == version)
            .unwrap();
        let schema = serde_json::to_value(v.schema.unwrap().open_api_v3_schema.unwrap()).unwrap();
        schema["properties"]["spec"]["properties"][block].clone()
    }

    #[test]
    fn the_canary_crd_bounds_weights_counts_durations_and_hook_types_in_both_versions() {
        for (version, block) in [
            ("v1beta1", "analysis"),
            ("v1beta1", "canaryAnalysis"),
            ("v1alpha3", "canaryAnalysis"),
        ] {
            let a = analysis(version, block);
            let p = &a["properties"];
            for w in [
                "maxWeight",
                "stepWeight",
                "stepWeightPromotion",
                "mirrorWeight",
                "primaryReadyThreshold",
                "canaryReadyThreshold",
            ] {
                assert_eq!(
                    (&p[w]["minimum"], &p[w]["maximum"]),
                    (&json!(0.0), &json!(100.0)),
                    "{version} {block}.{w}"
                );
            }
            let items = &p["stepWeights"]["items"];
            assert_eq!(
                (&items["minimum"], &items["maximum"]),
                (&json!(0.0), &json!(100.0))
            );
            assert_eq!(
                p["stepWeights"]["maxItems"],
                json!(crate::schema::MAX_STEP_WEIGHTS)
            );
            for n in ["threshold", "iterations"] {
                assert_eq!(p[n]["minimum"], json!(0.0), "{version} {block}.{n}");
            }
            let hook = &p["webhooks"]["items"]["properties"];
            let mut types = vec![json!("")];
            types.extend(HookType::ALL.iter().map(|t| json!(t.as_str())));
            assert_eq!(hook["type"]["enum"], Value::Array(types));
            assert_eq!(hook["retries"]["minimum"], json!(0.0));
            for d in [
                &p["interval"],
                &hook["timeout"],
                &p["metrics"]["items"]["properties"]["interval"],
            ] {
                assert_eq!(d["pattern"], json!(crate::schema::DURATION_PATTERN));
            }
            let rules = |s: &Value| -> Vec<String> {
                s["x-kubernetes-validations"]
                    .as_array()
                    .map(|r| {
                        r.iter()
                            .map(|r| r["rule"].as_str().unwrap().to_string())
                            .collect()
                    })
                    .unwrap_or_default()
            };
            assert_eq!(rules(&a), [crate::schema::STEP_WEIGHT_RULE]);
            assert_eq!(a["x-kubernetes-validations"][0]["fieldPath"], ".stepWeight");
            assert_eq!(rules(&p["stepWeights"]), [crate::schema::STEP_WEIGHTS_RULE]);
            assert_eq!(
                rules(&p["metrics"]["items"]["properties"]["thresholdRange"]),
                [crate::schema::THRESHOLD_RANGE_RULE]
            );
        }
    }

    #[test]
    fn the_duration_pattern_takes_what_go_parses_and_refuses_the_rest() {
        let re = regex::Regex::new(crate::schema::DURATION_PATTERN).unwrap();
        for ok in [
            "30s", "1m", "1h30m", "500ms", "1.5s", "0", "2h", "10us", "1m30s", "+5s",
        ] {
            assert!(re.is_match(ok), "{ok} is refused");
            assert!(crate::duration::parse_duration(ok).is_ok(), "{ok}");
        }
        for bad in [
            "abc", "", "30", "1 minute", "30sec", "-1m", "1d", "m", "1.2.3s", " 30s",
        ] {
            assert!(!re.is_match(bad), "{bad:?} is accepted");
        }
    }
}
