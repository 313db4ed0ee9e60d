//! The `newrelic` provider: New Relic's Insights query API
//! (`GET /v1/accounts/ACCOUNT/query?nrql=...`), the NRQL query with
//! `SINCE N seconds ago` (N the metric interval) added, as Flagger sends it. The
//! Secret holds `newrelic_account_id` and `newrelic_query_key` (sent as
//! `X-Query-Key`). The value is the `result` of the only result; a result object
//! with a single number under another name (`average`, `count`) is read too.

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::http::{Endpoint, header_map, join_path, required_secret};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    collapse_whitespace,
};

const PROVIDER: &str = "New Relic";
pub const DEFAULT_ADDRESS: &str = "https://insights-api.newrelic.com";
pub const ACCOUNT_ID: &str = "newrelic_account_id";
pub const QUERY_KEY: &str = "newrelic_query_key";
/// Flagger's availability check.
const ONLINE_QUERY: &str = "SELECT * FROM Metric";

pub struct NewRelicProvider {
    endpoint: Endpoint,
    query_url: Url,
    headers: HeaderMap,
    query_key: String,
    since_seconds: i64,
}

impl NewRelicProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings
            .address
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDRESS.into());
        let account = required_secret(PROVIDER, settings.secret(), ACCOUNT_ID)?;
        let query_key = required_secret(PROVIDER, settings.secret(), QUERY_KEY)?;
        let account = account.trim();
        if account.is_empty() || !account.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(ProviderConfigError::Invalid {
                provider: PROVIDER.into(),
                reason: format!("{ACCOUNT_ID} {account:?} is not an account id"),
            });
        }
        let (endpoint, base) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        Ok(Self {
            query_url: join_path(&base, &format!("/v1/accounts/{account}/query")),
            headers: header_map(PROVIDER, &settings.headers)?,
            endpoint,
            query_key,
            since_seconds: settings.interval_seconds(),
        })
    }

    async fn request(&self, query: &str) -> Result<crate::http::Answer, ProviderError> {
        let nrql = format!("{query} SINCE {} seconds ago", self.since_seconds);
        let mut url = self.query_url.clone();
        url.query_pairs_mut().append_pair("nrql", &nrql);
        let request = self
            .endpoint
            .client
            .get(url)
            .headers(self.headers.clone())
            .header("X-Query-Key", &self.query_key)
            .header("Accept", "application/json");
        self.endpoint.send(request, query).await
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let query = collapse_whitespace(query);
        let answer = self.request(&query).await?;
        if !answer.is_success() {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: String,
            }
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&answer.body) {
                return Err(self.endpoint.query_error(
                    &query,
                    format!("HTTP {}", answer.status),
                    e.error,
                ));
            }
            return Err(self.endpoint.http_error(&query, &answer));
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(default)]
            results: Vec<Map<String, Value>>,
        }
        let response: Response = serde_json::from_slice(&answer.body).map_err(|e| {
            self.endpoint
                .decode(&query, format!("{e} in {}", answer.text()))
        })?;
        let [result] = response.results.as_slice() else {
            return Err(self.endpoint.no_data(&query));
        };
        let value = result.get("result").or_else(|| match result.len() {
            1 => result.values().next(),
            _ => None,
        });
        match value {
            Some(Value::Number(n)) => self.endpoint.finite(&query, n.as_f64().unwrap_or(f64::NAN)),
            Some(Value::Null) | None => Err(self.endpoint.no_data(&query)),
            Some(other) => Err(self
                .endpoint
                .decode(&query, format!("the result {other} is not a number"))),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let answer = self.request(ONLINE_QUERY).await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(self.endpoint.http_error(ONLINE_QUERY, &answer))
        }
    }
}

impl MetricsProvider for NewRelicProvider {
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }

    fn describe(&self) -> String {
        format!("{PROVIDER} {}", self.endpoint.address)
    }
}
