//! The `dynatrace` provider: Dynatrace's metrics API v2
//! (`GET /api/v2/metrics/query?metricSelector=...&resolution=Inf`) over the last ten
//! metric intervals, with `Authorization: Api-Token TOKEN` (Secret key
//! `dynatrace_token`). The value is the first value of the last data series of the
//! first result, as Flagger reads it. The availability check is
//! `GET /api/v2/metrics?pageSize=1`. `provider.address` is required
//! (`https://ENV.live.dynatrace.com`).

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{Endpoint, header_map, join_path, now_seconds, required_secret};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    collapse_whitespace,
};

const PROVIDER: &str = "Dynatrace";
pub const TOKEN: &str = "dynatrace_token";
const FROM_INTERVALS: i64 = 10;

pub struct DynatraceProvider {
    endpoint: Endpoint,
    query_url: Url,
    validate_url: Url,
    headers: HeaderMap,
    token: String,
    from_delta_ms: i64,
    evaluation_time: Option<f64>,
}

impl DynatraceProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings.address.clone().unwrap_or_default();
        let token = required_secret(PROVIDER, settings.secret(), TOKEN)?;
        let (endpoint, base) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        let mut validate_url = join_path(&base, "/api/v2/metrics");
        validate_url.query_pairs_mut().append_pair("pageSize", "1");
        Ok(Self {
            query_url: join_path(&base, "/api/v2/metrics/query"),
            validate_url,
            headers: header_map(PROVIDER, &settings.headers)?,
            endpoint,
            token,
            from_delta_ms: FROM_INTERVALS * settings.interval.as_millis().max(1000) as i64,
            evaluation_time: settings.evaluation_time,
        })
    }

    fn request(&self, url: Url) -> reqwest::RequestBuilder {
        self.endpoint
            .client
            .get(url)
            .headers(self.headers.clone())
            .header("Authorization", format!("Api-Token {}", self.token))
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let query = collapse_whitespace(query);
        let now_ms = (now_seconds(self.evaluation_time) as i64) * 1000;
        let mut url = self.query_url.clone();
        url.query_pairs_mut()
            .append_pair("metricSelector", &query)
            .append_pair("resolution", "Inf")
            .append_pair("from", &(now_ms - self.from_delta_ms).to_string())
            .append_pair("to", &now_ms.to_string());
        let answer = self.endpoint.send(self.request(url), &query).await?;
        if !answer.is_success() {
            #[derive(Deserialize)]
            struct ErrorBody {
                error: ErrorDetail,
            }
            #[derive(Deserialize)]
            struct ErrorDetail {
                #[serde(default)]
                code: Option<i64>,
                #[serde(default)]
                message: String,
            }
            if let Ok(e) = serde_json::from_slice::<ErrorBody>(&answer.body) {
                return Err(self.endpoint.query_error(
                    &query,
                    format!("HTTP {}", e.error.code.unwrap_or(answer.status.into())),
                    e.error.message,
                ));
            }
            return Err(self.endpoint.http_error(&query, &answer));
        }
        #[derive(Deserialize)]
        struct Response {
            #[serde(default)]
            result: Vec<MetricResult>,
        }
        #[derive(Deserialize)]
        struct MetricResult {
            #[serde(default)]
            data: Vec<Series>,
        }
        #[derive(Deserialize)]
        struct Series {
            #[serde(default)]
            values: Vec<Value>,
        }
        let response: Response = serde_json::from_slice(&answer.body).map_err(|e| {
            self.endpoint
                .decode(&query, format!("{e} in {}", answer.text()))
        })?;
        let value = response
            .result
            .first()
            .and_then(|r| r.data.last())
            .and_then(|s| s.values.first());
        match value {
            Some(Value::Number(n)) => self.endpoint.finite(&query, n.as_f64().unwrap_or(f64::NAN)),
            Some(Value::Null) | None => Err(self.endpoint.no_data(&query)),
            Some(other) => Err(self
                .endpoint
                .decode(&query, format!("the value {other} is not a number"))),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let what = "GET /api/v2/metrics?pageSize=1";
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

impl MetricsProvider for DynatraceProvider {
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
