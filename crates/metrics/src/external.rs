//! The `externalmetrics` provider: the Kubernetes external metrics API
//! (`external.metrics.k8s.io/v1beta1`, served by an adapter such as KEDA's or
//! Datadog's). The query is `NAMESPACE/METRIC?labelSelector=SELECTOR` (namespace
//! `default` when left out); the value is the first item's `value`. Requests go
//! through the operator's Kubernetes client, or to `provider.address` with the
//! Secret's `token` as a bearer token, as in Flagger. The availability check lists a
//! metric in `kube-system` and needs an answer, not an error.

use reqwest::Url;
use serde::Deserialize;

use crate::http::{Endpoint, join_path, secret_value};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
};

const PROVIDER: &str = "external metrics API";
const API_PATH: &str = "/apis/external.metrics.k8s.io/v1beta1";

enum Transport {
    Kube(kube::Client),
    Http {
        endpoint: Endpoint,
        base: Url,
        token: Option<String>,
    },
}

pub struct ExternalMetricsProvider {
    transport: Transport,
}

/// A parsed query: where and what to list.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalQuery {
    pub namespace: String,
    pub metric: String,
    pub label_selector: Option<String>,
}

impl ExternalQuery {
    pub fn parse(query: &str) -> Result<Self, String> {
        let query = query.trim();
        let (path, params) = query.split_once('?').unwrap_or((query, ""));
        let path = path.trim_start_matches('/');
        let parts: Vec<&str> = path.split('/').collect();
        let (namespace, metric) = match parts.as_slice() {
            [metric] => ("default", *metric),
            [ns, metric] => (if ns.is_empty() { "default" } else { ns }, *metric),
            _ => {
                return Err(format!(
                    "malformed query {query:?}: too many slashes, expected NAMESPACE/METRIC?labelSelector=SELECTOR"
                ));
            }
        };
        if metric.is_empty() {
            return Err("the metric name is empty".into());
        }
        let label_selector = url::form_urlencoded::parse(params.as_bytes())
            .find(|(k, _)| k == "labelSelector")
            .map(|(_, v)| v.into_owned())
            .filter(|v| !v.is_empty());
        Ok(Self {
            namespace: namespace.to_string(),
            metric: metric.to_string(),
            label_selector,
        })
    }

    fn path(&self) -> String {
        let mut path = format!("{API_PATH}/namespaces/{}/{}", self.namespace, self.metric);
        if let Some(s) = &self.label_selector {
            path.push_str("?labelSelector=");
            path.push_str(&url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>());
        }
        path
    }
}

#[derive(Deserialize)]
struct ValueList {
    #[serde(default)]
    items: Vec<ExternalValue>,
}

#[derive(Deserialize)]
struct ExternalValue {
    value: String,
}

impl ExternalMetricsProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let transport = match settings.address.as_deref().filter(|a| !a.trim().is_empty()) {
            Some(address) => {
                let (endpoint, base) = Endpoint::new(
                    PROVIDER,
                    address,
                    settings.timeout,
                    settings.insecure_skip_verify,
                )?;
                Transport::Http {
                    endpoint,
                    base,
                    token: secret_value(PROVIDER, settings.secret(), "token")?,
                }
            }
            None => Transport::Kube(settings.kube.clone().ok_or_else(|| {
                ProviderConfigError::Invalid {
                    provider: PROVIDER.into(),
                    reason: "no provider.address and no Kubernetes cluster is configured".into(),
                }
            })?),
        };
        Ok(Self { transport })
    }

    fn error(query: &str, message: impl Into<String>) -> ProviderError {
        ProviderError::Query {
            provider: PROVIDER.into(),
            query: query.into(),
            error_type: "error".into(),
            message: message.into(),
        }
    }

    async fn list(&self, q: &ExternalQuery, shown: &str) -> Result<ValueList, ProviderError> {
        let path = q.path();
        match &self.transport {
            Transport::Kube(client) => {
                let request = http::Request::get(&path)
                    .body(Vec::new())
                    .map_err(|e| Self::error(shown, e.to_string()))?;
                client.request::<ValueList>(request).await.map_err(|e| {
                    Self::error(shown, format!("error querying external metrics API: {e}"))
                })
            }
            Transport::Http {
                endpoint,
                base,
                token,
            } => {
                let (p, params) = path.split_once('?').unwrap_or((&path, ""));
                let mut url = join_path(base, p);
                if !params.is_empty() {
                    url.set_query(Some(params));
                }
                let mut request = endpoint.client.get(url);
                if let Some(t) = token {
                    request = request.bearer_auth(t);
                }
                let answer = endpoint.send(request, shown).await?;
                if !answer.is_success() {
                    return Err(endpoint.http_error(shown, &answer));
                }
                serde_json::from_slice(&answer.body)
                    .map_err(|e| endpoint.decode(shown, format!("{e} in {}", answer.text())))
            }
        }
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let shown = query.trim().to_string();
        let q = ExternalQuery::parse(query).map_err(|e| Self::error(&shown, e))?;
        let list = self.list(&q, &shown).await?;
        let Some(item) = list.items.first() else {
            return Err(ProviderError::NoData {
                provider: PROVIDER.into(),
                query: shown,
            });
        };
        let v = parse_quantity(&item.value).ok_or_else(|| {
            Self::error(
                &shown,
                format!("the value {:?} is not a quantity", item.value),
            )
        })?;
        crate::http::finite(PROVIDER, &shown, v)
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let q = ExternalQuery {
            namespace: "kube-system".into(),
            metric: "dummy-metric".into(),
            label_selector: None,
        };
        self.list(&q, "kube-system/dummy-metric").await.map(|_| ())
    }
}

/// A Kubernetes quantity (`250m`, `1.5k`, `2Ki`, `1e3`) as a number.
pub fn parse_quantity(text: &str) -> Option<f64> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (number, suffix) = t.split_at(split);
    let base: f64 = number.parse().ok()?;
    let factor = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    Some(base * factor)
}

impl MetricsProvider for ExternalMetricsProvider {
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }

    fn describe(&self) -> String {
        match &self.transport {
            Transport::Kube(_) => format!("{PROVIDER} (Kubernetes API)"),
            Transport::Http { endpoint, .. } => format!("{PROVIDER} {}", endpoint.address),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_queries() {
        assert_eq!(
            ExternalQuery::parse("test/queue-length?labelSelector=app%3Dpodinfo%2Ctier%3Dweb")
                .unwrap(),
            ExternalQuery {
                namespace: "test".into(),
                metric: "queue-length".into(),
                label_selector: Some("app=podinfo,tier=web".into())
            }
        );
        let q = ExternalQuery::parse("requests").unwrap();
        assert_eq!(q.namespace, "default");
        assert_eq!(
            q.path(),
            "/apis/external.metrics.k8s.io/v1beta1/namespaces/default/requests"
        );
        assert!(ExternalQuery::parse("a/b/c").is_err());
        assert!(ExternalQuery::parse("a/").is_err());
    }

    #[test]
    fn quantities() {
        assert_eq!(parse_quantity("250m"), Some(0.25));
        assert_eq!(parse_quantity("2Ki"), Some(2048.0));
        assert_eq!(parse_quantity("1.5k"), Some(1500.0));
        assert_eq!(parse_quantity("1e3"), Some(1000.0));
        assert_eq!(parse_quantity("12"), Some(12.0));
        assert_eq!(parse_quantity("x"), None);
    }
}
