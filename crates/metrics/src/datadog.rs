//! The `datadog` provider: Datadog's metrics query API (`GET /api/v1/query`) over
//! the last ten metric intervals, the first point of the first series, as Flagger
//! reads it. The Secret holds `datadog_api_key` and `datadog_application_key`; the
//! availability check is `GET /api/v1/validate`.

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{Endpoint, header_map, join_path, now_seconds, required_secret};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    collapse_whitespace,
};

const PROVIDER: &str = "Datadog";
pub const DEFAULT_ADDRESS: &str = "https://api.datadoghq.com";
pub const API_KEY: &str = "datadog_api_key";
pub const APPLICATION_KEY: &str = "datadog_application_key";
/// How many metric intervals a query looks back over.
const FROM_INTERVALS: i64 = 10;

pub struct DatadogProvider {
    endpoint: Endpoint,
    query_url: Url,
    validate_url: Url,
    headers: HeaderMap,
    api_key: String,
    application_key: String,
    from_delta: i64,
    evaluation_time: Option<f64>,
}

impl DatadogProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings
            .address
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| DEFAULT_ADDRESS.into());
        let api_key = required_secret(PROVIDER, settings.secret(), API_KEY)?;
        let application_key = required_secret(PROVIDER, settings.secret(), APPLICATION_KEY)?;
        let (endpoint, base) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        Ok(Self {
            query_url: join_path(&base, "/api/v1/query"),
            validate_url: join_path(&base, "/api/v1/validate"),
            headers: header_map(PROVIDER, &settings.headers)?,
            endpoint,
            api_key,
            application_key,
            from_delta: FROM_INTERVALS * settings.interval_seconds(),
            evaluation_time: settings.evaluation_time,
        })
    }

    fn request(&self, url: Url) -> reqwest::RequestBuilder {
        self.endpoint
            .client
            .get(url)
            .headers(self.headers.clone())
            .header("DD-API-KEY", &self.api_key)
            .header("DD-APPLICATION-KEY", &self.application_key)
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let query = collapse_whitespace(query);
        let now = now_seconds(self.evaluation_time) as i64;
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("query", &query)
            .append_pair("from", &(now - self.from_delta).to_string())
            .append_pair("to", &now.to_string());
        let answer = self.endpoint.send(self.request(url), &query).await?;
        let parsed: Result<QueryResponse, _> = serde_json::from_slice(&answer.body);
        if !answer.is_success() {
            if let Ok(r) = &parsed
                && let Some(message) = r.error_text()
            {
                return Err(ProviderError::Http {
                    provider: PROVIDER.into(),
                    address: self.endpoint.address.clone(),
                    query,
                    status: answer.status,
                    body: message,
                });
            }
            return Err(self.endpoint.http_error(&query, &answer));
        }
        let response = parsed.map_err(|e| {
            self.endpoint
                .decode(&query, format!("{e} in {}", answer.text()))
        })?;
        if response.status.as_deref() == Some("error")
            && let Some(message) = response.error_text()
        {
            return Err(self.endpoint.query_error(&query, "error", message));
        }
        let Some(point) = response.series.first().and_then(|s| s.pointlist.first()) else {
            return Err(self.endpoint.no_data(&query));
        };
        match point.get(1) {
            Some(Value::Number(n)) => {
                let value = n.as_f64().unwrap_or(f64::NAN);
                self.endpoint.finite(&query, value)
            }
            Some(Value::Null) | None => Err(self.endpoint.no_data(&query)),
            Some(other) => Err(self.endpoint.decode(
                &query,
                format!("a point value that is not a number: {other}"),
            )),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let what = "GET /api/v1/validate";
        let answer = self
            .endpoint
            .send(self.request(self.validate_url.clone()), what)
            .await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(self.endpoint.http_error(what, &answer))
        }
    }
}

#[derive(Deserialize)]
struct QueryResponse {
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    error: Option<String>,
    #[serde(default)]
    errors: Vec<String>,
    #[serde(default)]
    series: Vec<Series>,
}

impl QueryResponse {
    fn error_text(&self) -> Option<String> {
        self.error
            .clone()
            .filter(|e| !e.is_empty())
            .or_else(|| (!self.errors.is_empty()).then(|| self.errors.join("; ")))
    }
}

#[derive(Deserialize)]
struct Series {
    #[serde(default)]
    pointlist: Vec<Vec<Value>>,
}

impl MetricsProvider for DatadogProvider {
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
