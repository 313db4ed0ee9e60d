//! The `keptn` provider: Keptn's metrics operator through the Kubernetes API. The
//! query (lower-cased, as Flagger reads it) is
//! `keptnmetric/NAMESPACE/NAME`: the `status.value` of a KeptnMetric, or
//! `analysis/NAMESPACE/DEFINITION/DURATION/ARG=VALUE;...`: an Analysis of that
//! AnalysisDefinition over the last DURATION (default `1m`), created, waited for
//! (at most ten seconds) and deleted; 1 when it passed, 0 when it failed.
//! (`metrics.keptn.sh/v1beta1`.) Keptn needs no availability check.

use std::collections::BTreeMap;
use std::time::Duration;

use kube::Api;
use kube::api::{DeleteParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
};

const PROVIDER: &str = "Keptn";
const GROUP: &str = "metrics.keptn.sh";
const VERSION: &str = "v1beta1";
/// How long an Analysis may take.
const ANALYSIS_TIMEOUT: Duration = Duration::from_secs(10);
const ANALYSIS_POLL: Duration = Duration::from_secs(1);

pub struct KeptnProvider {
    client: kube::Client,
}

/// A parsed Keptn query.
#[derive(Debug, Clone, PartialEq)]
pub enum KeptnQuery {
    Metric {
        namespace: String,
        name: String,
    },
    Analysis {
        namespace: String,
        definition: String,
        duration: String,
        args: BTreeMap<String, String>,
    },
}

impl KeptnQuery {
    pub fn parse(query: &str) -> Result<Self, String> {
        let lower = query.trim().to_lowercase();
        let parts: Vec<&str> = lower.split('/').collect();
        if parts.len() < 3 {
            return Err("the query must be keptnmetric/NAMESPACE/NAME or analysis/NAMESPACE/DEFINITION/DURATION/ARGS".into());
        }
        let (namespace, name) = (parts[1].to_string(), parts[2].to_string());
        if namespace.is_empty() || name.is_empty() {
            return Err("the query names no namespace or no resource".into());
        }
        match parts[0] {
            "keptnmetric" | "keptnmetrics" => Ok(KeptnQuery::Metric { namespace, name }),
            "analysis" | "analyses" => {
                let duration = parts
                    .get(3)
                    .filter(|d| !d.is_empty())
                    .unwrap_or(&"1m")
                    .to_string();
                let args = parts
                    .get(4)
                    .map(|a| {
                        a.split(';')
                            .filter_map(|kv| {
                                let (k, v) = kv.split_once('=')?;
                                (!v.contains('=')).then(|| (k.to_string(), v.to_string()))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                Ok(KeptnQuery::Analysis {
                    namespace,
                    definition: name,
                    duration,
                    args,
                })
            }
            other => Err(format!(
                "the resource kind {other:?} is not one of keptnmetric, analysis"
            )),
        }
    }
}

fn resource(kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, kind), plural)
}

impl KeptnProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let client = settings
            .kube
            .clone()
            .ok_or_else(|| ProviderConfigError::Invalid {
                provider: PROVIDER.into(),
                reason: "the keptn provider reads the Kubernetes API, and no cluster is configured"
                    .into(),
            })?;
        Ok(Self { client })
    }

    fn error(query: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::Query {
            provider: PROVIDER.into(),
            query: query.into(),
            error_type: "error".into(),
            message: message.into(),
        }
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let shown = query.trim().to_string();
        match KeptnQuery::parse(query).map_err(|e| Self::error(&shown, e))? {
            KeptnQuery::Metric { namespace, name } => {
                let api: Api<DynamicObject> = Api::namespaced_with(
                    self.client.clone(),
                    &namespace,
                    &resource("KeptnMetric", "keptnmetrics"),
                );
                let metric = api.get(&name).await.map_err(|e| {
                    Self::error(
                        &shown,
                        format!("could not read KeptnMetric {namespace}/{name}: {e}"),
                    )
                })?;
                let value = metric.data.pointer("/status/value").and_then(Value::as_str);
                let Some(value) = value else {
                    return Err(ProviderError::NoData {
                        provider: PROVIDER.into(),
                        query: shown,
                    });
                };
                let v = value.trim().parse::<f64>().map_err(|_| {
                    Self::error(
                        &shown,
                        format!(
                            "the value {value:?} of KeptnMetric {namespace}/{name} is not a number"
                        ),
                    )
                })?;
                crate::http::finite(PROVIDER, &shown, v)
            }
            KeptnQuery::Analysis {
                namespace,
                definition,
                duration,
                args,
            } => {
                self.analysis(&shown, &namespace, &definition, &duration, &args)
                    .await
            }
        }
    }

    async fn analysis(
        &self,
        shown: &str,
        namespace: &str,
        definition: &str,
        duration: &str,
        args: &BTreeMap<String, String>,
    ) -> Result<f64, ProviderError> {
        let ar = resource("Analysis", "analyses");
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let mut object = DynamicObject::new("", &ar);
        object.metadata.name = None;
        object.metadata.generate_name = Some(format!("{definition}-"));
        object.metadata.namespace = Some(namespace.to_string());
        object.data = json!({"spec": {
            "analysisDefinition": {"name": definition},
            "timeframe": {"recent": duration},
            "args": args,
        }});
        let created = api
            .create(&PostParams::default(), &object)
            .await
            .map_err(|e| {
                Self::error(
                    shown,
                    format!("could not create Keptn Analysis {namespace}/{definition}: {e}"),
                )
            })?;
        let name = created.metadata.name.clone().unwrap_or_default();
        let result = tokio::time::timeout(ANALYSIS_TIMEOUT, async {
            loop {
                tokio::time::sleep(ANALYSIS_POLL).await;
                let current = api.get(&name).await.map_err(|e| {
                    Self::error(
                        shown,
                        format!("could not read Keptn Analysis {namespace}/{name}: {e}"),
                    )
                })?;
                let state = current
                    .data
                    .pointer("/status/state")
                    .and_then(Value::as_str);
                if state == Some("Completed")
                    && let Some(pass) = current
                        .data
                        .pointer("/status/pass")
                        .and_then(Value::as_bool)
                {
                    return Ok(if pass { 1.0 } else { 0.0 });
                }
            }
        })
        .await
        .unwrap_or_else(|_| {
            Err(Self::error(
                shown,
                format!(
                    "Keptn Analysis {namespace}/{name} did not finish within {}s",
                    ANALYSIS_TIMEOUT.as_secs()
                ),
            ))
        });
        if let Err(e) = api.delete(&name, &DeleteParams::default()).await {
            tracing::warn!("could not delete Keptn Analysis {namespace}/{name}: {e}");
        }
        result
    }
}

impl MetricsProvider for KeptnProvider {
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>> {
        Box::pin(async { Ok(()) })
    }

    fn describe(&self) -> String {
        format!("{PROVIDER} (Kubernetes API)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flagger_query_forms() {
        assert_eq!(
            KeptnQuery::parse("keptnmetric/Test/Response-Time\n"),
            Ok(KeptnQuery::Metric {
                namespace: "test".into(),
                name: "response-time".into()
            })
        );
        assert_eq!(
            KeptnQuery::parse("analysis/test/slo/5m/workload=podinfo;bad;x=1=2"),
            Ok(KeptnQuery::Analysis {
                namespace: "test".into(),
                definition: "slo".into(),
                duration: "5m".into(),
                args: [("workload".to_string(), "podinfo".to_string())].into()
            })
        );
        let KeptnQuery::Analysis { duration, .. } = KeptnQuery::parse("analyses/a/b").unwrap()
        else {
            panic!()
        };
        assert_eq!(duration, "1m");
        assert!(KeptnQuery::parse("keptnmetric/test").is_err());
        assert!(KeptnQuery::parse("pods/test/x").is_err());
    }
}
