//! The Prometheus provider: the instant-query HTTP API (`GET /api/v1/query`).

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::Value;

use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, QueryValue,
    collapse_whitespace,
};

const PROVIDER: &str = "Prometheus";
/// A query every working Prometheus answers with 1.
pub const ONLINE_QUERY: &str = "vector(1)";
/// How long a query may take, as in Flagger.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest part of an error body kept in a message.
const MAX_BODY_IN_MESSAGE: usize = 512;
/// How many times a request that died on a reused connection is sent again.
const STALE_CONNECTION_RETRIES: u32 = 2;

/// How to authenticate to Prometheus.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    Basic { username: String, password: String },
    Bearer { token: String },
}

impl std::fmt::Debug for Credentials {
    // Secrets never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => {
                write!(f, "Basic {{ username: {username:?}, password: *** }}")
            }
            Credentials::Bearer { .. } => write!(f, "Bearer {{ token: *** }}"),
        }
    }
}

impl Credentials {
    /// Reads the data of the Secret a MetricTemplate's `provider.secretRef` names:
    /// `token` gives a bearer token; otherwise `username` and `password` are both
    /// required, as in Flagger.
    pub fn from_secret_data(data: &BTreeMap<String, Vec<u8>>) -> Result<Self, ProviderConfigError> {
        let get = |key: &str| -> Result<Option<String>, ProviderConfigError> {
            match data.get(key) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
                    ProviderConfigError::InvalidCredential {
                        provider: PROVIDER.into(),
                        key: key.into(),
                    }
                }),
            }
        };
        if let Some(token) = get("token")? {
            return Ok(Credentials::Bearer { token });
        }
        let missing = |key: &str| ProviderConfigError::MissingCredential {
            provider: PROVIDER.into(),
            key: key.into(),
        };
        let username = get("username")?.ok_or_else(|| missing("username"))?;
        let password = get("password")?.ok_or_else(|| missing("password"))?;
        Ok(Credentials::Basic { username, password })
    }
}

/// Everything a [`PrometheusProvider`] needs.
#[derive(Debug, Clone)]
pub struct PrometheusOptions {
    /// Base URL, e.g. `http://prometheus.istio-system:9090` (a path prefix is kept).
    pub address: String,
    pub credentials: Option<Credentials>,
    pub insecure_skip_verify: bool,
    pub timeout: Duration,
    /// Extra request headers (a MetricTemplate's `provider.headers`).
    pub headers: BTreeMap<String, Vec<String>>,
    /// Evaluate queries at this Unix time (seconds) instead of "now". Used to query
    /// fixed, backfilled data and to replay an analysis.
    pub evaluation_time: Option<f64>,
}

impl PrometheusOptions {
    pub fn new(address: impl Into<String>) -> Self {
        Self {
            address: address.into(),
            credentials: None,
            insecure_skip_verify: false,
            timeout: DEFAULT_TIMEOUT,
            headers: BTreeMap::new(),
            evaluation_time: None,
        }
    }
}

/// Runs PromQL instant queries against one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusProvider {
    address: String,
    query_url: Url,
    credentials: Option<Credentials>,
    headers: HeaderMap,
    timeout: Duration,
    evaluation_time: Option<f64>,
    client: reqwest::Client,
}

impl PrometheusProvider {
    pub fn new(options: PrometheusOptions) -> Result<Self, ProviderConfigError> {
        let address = options.address.trim().to_string();
        let invalid = |reason: &str| ProviderConfigError::InvalidAddress {
            provider: PROVIDER.into(),
            address: options.address.clone(),
            reason: reason.into(),
        };
        if address.is_empty() {
            return Err(ProviderConfigError::NoAddress {
                provider: PROVIDER.into(),
            });
        }
        let base = Url::parse(&address).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.host_str().is_none_or(str::is_empty) {
            return Err(invalid("it has no host"));
        }
        let mut query_url = base.clone();
        let path = format!("{}/api/v1/query", base.path().trim_end_matches('/'));
        query_url.set_path(&path);
        query_url.set_query(None);
        query_url.set_fragment(None);

        let mut headers = HeaderMap::new();
        for (name, values) in &options.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| {
                ProviderConfigError::InvalidHeader {
                    provider: PROVIDER.into(),
                    name: name.clone(),
                    reason: e.to_string(),
                }
            })?;
            for value in values {
                let v = HeaderValue::from_str(value).map_err(|e| {
                    ProviderConfigError::InvalidHeader {
                        provider: PROVIDER.into(),
                        name: name.clone(),
                        reason: e.to_string(),
                    }
                })?;
                headers.append(header_name.clone(), v);
            }
        }

        let client = serin_http_client::client(&serin_http_client::ClientOptions {
            timeout: options.timeout,
            insecure_skip_verify: options.insecure_skip_verify,
            proxy: None,
        })
        .map_err(|e| ProviderConfigError::Client {
            provider: PROVIDER.into(),
            reason: e.to_string(),
        })?;

        Ok(Self {
            address: address.trim_end_matches('/').to_string(),
            query_url,
            credentials: options.credentials,
            headers,
            timeout: options.timeout,
            evaluation_time: options.evaluation_time,
            client,
        })
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// Runs one instant query and returns its value.
    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        self.query_value(query).await.map(|v| v.value)
    }

    /// Runs one instant query: its value, and how many series it came from. Of
    /// several series, the last one's value is taken, as Flagger does.
    pub async fn query_value(&self, query: &str) -> Result<QueryValue, ProviderError> {
        let query = collapse_whitespace(query);
        let mut url = self.query_url.clone();
        {
            let mut pairs = url.query_pairs_mut();
            pairs.append_pair("query", &query);
            if let Some(t) = self.evaluation_time {
                pairs.append_pair("time", &format!("{t:.3}"));
            }
        }
        // A pooled keep-alive connection may have been closed by a Prometheus that
        // restarted or stopped since the last query; such a failure happens before
        // any answer, so the (idempotent) GET is sent again on a new connection, which
        // then either works or reports the real cause (connection refused).
        let mut attempts_left = STALE_CONNECTION_RETRIES;
        loop {
            match self.send(url.clone()).await {
                Ok((status, Some(body))) => {
                    return parse_response(&self.address, &query, status, &body);
                }
                Ok((_, None)) => {
                    return Err(ProviderError::Decode {
                        provider: PROVIDER.into(),
                        address: self.address.clone(),
                        query,
                        reason: format!(
                            "the answer is larger than {} bytes",
                            crate::http::MAX_RESPONSE_BYTES
                        ),
                    });
                }
                Err(e) if attempts_left > 0 && is_stale_connection(&e) => attempts_left -= 1,
                Err(e) => return Err(self.transport_error(&query, e)),
            }
        }
    }

    /// The status and body of the answer; no body when it is larger than
    /// [`crate::http::MAX_RESPONSE_BYTES`].
    async fn send(&self, url: Url) -> Result<(u16, Option<Vec<u8>>), reqwest::Error> {
        let mut request = self.client.get(url).headers(self.headers.clone());
        request = match &self.credentials {
            Some(Credentials::Bearer { token }) => request.bearer_auth(token),
            Some(Credentials::Basic { username, password }) => {
                request.basic_auth(username, Some(password))
            }
            None => request,
        };
        let response = request.send().await?;
        let status = response.status().as_u16();
        let body =
            serin_http_client::read_limited(response, crate::http::MAX_RESPONSE_BYTES).await?;
        Ok((status, (!body.truncated).then_some(body.bytes)))
    }

    fn transport_error(&self, query: &str, e: reqwest::Error) -> ProviderError {
        let provider = PROVIDER.to_string();
        let address = self.address.clone();
        let query = query.to_string();
        if e.is_timeout() {
            return ProviderError::Timeout {
                provider,
                address,
                query,
                timeout: self.timeout,
            };
        }
        let reason = root_cause(&e);
        if e.is_connect() {
            ProviderError::Unreachable {
                provider,
                address,
                query,
                reason,
            }
        } else {
            ProviderError::Request {
                provider,
                address,
                query,
                reason,
            }
        }
    }
}

/// A request that failed on an established connection before any answer came.
fn is_stale_connection(e: &reqwest::Error) -> bool {
    e.is_request() && !e.is_timeout() && !e.is_connect()
}

/// The innermost message of an error chain: reqwest's outer message only says
/// "error sending request", the cause (connection refused, a certificate) is inside.
fn root_cause(e: &reqwest::Error) -> String {
    let mut deepest: &dyn std::error::Error = e;
    while let Some(inner) = deepest.source() {
        deepest = inner;
    }
    deepest.to_string()
}

#[derive(Deserialize)]
struct ApiResponse {
    status: String,
    #[serde(default)]
    data: Option<ApiData>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct ApiData {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Value,
}

/// Reads an answer of `/api/v1/query`.
fn parse_response(
    address: &str,
    query: &str,
    status: u16,
    body: &[u8],
) -> Result<QueryValue, ProviderError> {
    let decode = |reason: String| ProviderError::Decode {
        provider: PROVIDER.into(),
        address: address.into(),
        query: query.into(),
        reason,
    };
    let parsed: Result<ApiResponse, _> = serde_json::from_slice(body);
    let api = match parsed {
        Ok(api) => api,
        Err(e) => {
            if status >= 300 {
                return Err(http_error(address, query, status, body));
            }
            return Err(decode(format!(
                "{e} in {}",
                shorten(&String::from_utf8_lossy(body))
            )));
        }
    };
    if api.status != "success" {
        return Err(ProviderError::Query {
            provider: PROVIDER.into(),
            query: query.into(),
            error_type: api.error_type.unwrap_or_else(|| "error".into()),
            message: api
                .error
                .unwrap_or_else(|| format!("status {:?}", api.status)),
        });
    }
    if status >= 300 {
        return Err(http_error(address, query, status, body));
    }
    let data = api.data.ok_or_else(|| decode("no data field".into()))?;
    let mut series = 1;
    let sample = match data.result_type.as_str() {
        "vector" => {
            let list = data
                .result
                .as_array()
                .ok_or_else(|| decode("the vector result is not a list".into()))?;
            series = list.len();
            match list.as_slice() {
                [] => {
                    return Err(ProviderError::NoData {
                        provider: PROVIDER.into(),
                        query: query.into(),
                    });
                }
                [.., last] => last
                    .get("value")
                    .cloned()
                    .ok_or_else(|| decode("a sample without value".into()))?,
            }
        }
        "scalar" => data.result,
        other => {
            let is_empty_matrix =
                other == "matrix" && data.result.as_array().is_some_and(Vec::is_empty);
            if is_empty_matrix {
                return Err(ProviderError::NoData {
                    provider: PROVIDER.into(),
                    query: query.into(),
                });
            }
            return Err(ProviderError::UnexpectedResultType {
                provider: PROVIDER.into(),
                query: query.into(),
                result_type: match other {
                    "matrix" => "range vector".into(),
                    o => o.to_string(),
                },
            });
        }
    };
    // A sample is [timestamp, "value"].
    let text = sample
        .get(1)
        .and_then(Value::as_str)
        .ok_or_else(|| decode(format!("a sample that is not [time, \"value\"]: {sample}")))?;
    parse_sample_value(query, text)
        .map_err(decode)?
        .map(|value| QueryValue { value, series })
}

fn http_error(address: &str, query: &str, status: u16, body: &[u8]) -> ProviderError {
    let body = shorten(&String::from_utf8_lossy(body));
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or_default();
    ProviderError::Http {
        provider: PROVIDER.into(),
        address: address.into(),
        query: query.into(),
        status,
        body: if body.is_empty() {
            reason.to_string()
        } else {
            body
        },
    }
}

/// Prometheus writes sample values as strings, with `NaN`, `+Inf` and `-Inf`.
fn parse_sample_value(query: &str, text: &str) -> Result<Result<f64, ProviderError>, String> {
    let value = match text {
        "NaN" => f64::NAN,
        "+Inf" | "Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        t => t
            .parse::<f64>()
            .map_err(|_| format!("the value {t:?} is not a number"))?,
    };
    Ok(crate::http::finite(PROVIDER, query, value))
}

fn shorten(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= MAX_BODY_IN_MESSAGE {
        return t.to_string();
    }
    let mut s: String = t.chars().take(MAX_BODY_IN_MESSAGE).collect();
    s.push('…');
    s
}

impl MetricsProvider for PrometheusProvider {
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>> {
        Box::pin(self.query(query))
    }

    fn run_query_value<'a>(
        &'a self,
        query: &'a str,
    ) -> ProviderFuture<'a, Result<QueryValue, ProviderError>> {
        Box::pin(self.query_value(query))
    }

    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>> {
        Box::pin(async move {
            let value = self.query(ONLINE_QUERY).await?;
            if value == 1.0 {
                Ok(())
            } else {
                Err(ProviderError::NotOnline {
                    provider: format!("{PROVIDER} {}", self.address),
                    query: ONLINE_QUERY.into(),
                    value,
                })
            }
        })
    }

    fn describe(&self) -> String {
        format!("{PROVIDER} {}", self.address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, body: &str) -> Result<f64, ProviderError> {
        parse_response("http://prom:9090", "q", status, body.as_bytes()).map(|v| v.value)
    }

    #[test]
    fn several_series_give_the_last_value_and_their_count() {
        let v = parse_response(
            "http://prom:9090",
            "q",
            200,
            br#"{"status":"success","data":{"resultType":"vector","result":[
                {"metric":{"pod":"a"},"value":[1.5,"98"]},
                {"metric":{"pod":"b"},"value":[1.5,"97"]},
                {"metric":{"pod":"c"},"value":[1.5,"42.5"]}]}}"#,
        )
        .unwrap();
        assert_eq!(
            v,
            QueryValue {
                value: 42.5,
                series: 3
            }
        );
    }

    #[test]
    fn reads_one_sample() {
        let v = parse(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1.5,"98.25"]}]}}"#,
        )
        .unwrap();
        assert_eq!(v, 98.25);
        let v = parse(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1.5,"3"]}}"#,
        )
        .unwrap();
        assert_eq!(v, 3.0);
    }

    #[test]
    fn unusable_answers_are_errors() {
        let empty = parse(
            200,
            r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#,
        );
        assert!(matches!(empty, Err(ProviderError::NoData { .. })));
        let nan = parse(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#,
        );
        assert!(matches!(nan, Err(ProviderError::NaN { .. })));
        let inf = parse(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"+Inf"]}}"#,
        )
        .unwrap_err();
        assert!(inf.to_string().contains("+Inf"), "{inf}");
        let garbage = parse(
            200,
            r#"{"status":"success","data":{"resultType":"scalar","result":[1,"abc"]}}"#,
        );
        assert!(matches!(garbage, Err(ProviderError::Decode { .. })));
        let html = parse(502, "<html>bad gateway</html>").unwrap_err();
        assert!(html.to_string().contains("HTTP 502"), "{html}");
        let not_json = parse(200, "hello");
        assert!(matches!(not_json, Err(ProviderError::Decode { .. })));
    }

    #[test]
    fn secret_data_gives_credentials() {
        let data = |pairs: &[(&str, &str)]| -> BTreeMap<String, Vec<u8>> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(
            Credentials::from_secret_data(&data(&[("token", "t"), ("username", "u")])).unwrap(),
            Credentials::Bearer { token: "t".into() }
        );
        assert_eq!(
            Credentials::from_secret_data(&data(&[("username", "u"), ("password", "p")])).unwrap(),
            Credentials::Basic {
                username: "u".into(),
                password: "p".into()
            }
        );
        let err = Credentials::from_secret_data(&data(&[("username", "u")])).unwrap_err();
        assert!(err.to_string().contains("password"), "{err}");
        let shown = format!(
            "{:?}",
            Credentials::Basic {
                username: "u".into(),
                password: "secret".into()
            }
        );
        assert!(!shown.contains("secret"));
    }

    #[test]
    fn addresses_are_checked() {
        for bad in ["", "prometheus:9090", "ftp://x", "http://"] {
            assert!(
                PrometheusProvider::new(PrometheusOptions::new(bad)).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let p = PrometheusProvider::new(PrometheusOptions::new("http://h:9090/prom/")).unwrap();
        assert_eq!(p.query_url.as_str(), "http://h:9090/prom/api/v1/query");
    }
}
