//! The `cloudwatch` provider: Amazon CloudWatch's `GetMetricData` over the last ten
//! metric intervals (at most 20 data points), the first value of the first result,
//! as Flagger reads it. The query is the JSON list of `MetricDataQuery` objects, with
//! Flagger's (Go's) case-insensitive field names.
//!
//! Requests use CloudWatch's JSON protocol (`X-Amz-Target:
//! GraniteServiceVersion20100801.GetMetricData`), signed with AWS Signature Version 4
//! (the `aws-sigv4` crate, service `monitoring`). Credentials come from the
//! template's Secret when it holds `aws_access_key_id` and `aws_secret_access_key`
//! (and optionally `aws_session_token`; serin's addition: Flagger's CloudWatch reads
//! no Secret), else from the default chain: the `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN`
//! environment, the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`,
//! `~/.aws/credentials`, profile `AWS_PROFILE`), container credentials
//! (`AWS_CONTAINER_CREDENTIALS_FULL_URI`/`_RELATIVE_URI`, EKS Pod Identity) and the
//! EC2 instance metadata service (IMDSv2).

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use reqwest::Url;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{Endpoint, now_seconds};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
};

const PROVIDER: &str = "CloudWatch";
const SERVICE: &str = "monitoring";
const TARGET: &str = "GraniteServiceVersion20100801.GetMetricData";
const CONTENT_TYPE: &str = "application/x-amz-json-1.0";
/// How many metric intervals a query looks back over.
const START_INTERVALS: i64 = 10;
const MAX_DATAPOINTS: u32 = 20;

pub struct CloudWatchProvider {
    endpoint: Endpoint,
    /// Keys from the template's Secret, ahead of the default chain.
    static_credentials: Option<Credentials>,
    url: Url,
    region: String,
    start_delta: i64,
    evaluation_time: Option<f64>,
}

impl CloudWatchProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let region = settings
            .region
            .clone()
            .map(|r| r.trim().to_string())
            .filter(|r| !r.is_empty())
            .ok_or_else(|| ProviderConfigError::Invalid {
                provider: PROVIDER.into(),
                reason: "region not specified (set provider.region)".into(),
            })?;
        // provider.address replaces the regional endpoint (a VPC endpoint, a test).
        let address = settings
            .address
            .clone()
            .filter(|a| !a.trim().is_empty())
            .unwrap_or_else(|| regional_endpoint(&region));
        let (endpoint, url) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        let secret = |k: &str| crate::http::secret_value(PROVIDER, settings.secret(), k);
        let static_credentials = match (
            secret("aws_access_key_id")?,
            secret("aws_secret_access_key")?,
        ) {
            (Some(id), Some(key)) => Some(Credentials::new(
                id.trim(),
                key.trim(),
                secret("aws_session_token")?.map(|t| t.trim().to_string()),
                None,
                "MetricTemplate Secret",
            )),
            (Some(_), None) => {
                return Err(ProviderConfigError::MissingCredential {
                    provider: PROVIDER.into(),
                    key: "aws_secret_access_key".into(),
                });
            }
            _ => None,
        };
        Ok(Self {
            endpoint,
            static_credentials,
            url,
            region,
            start_delta: START_INTERVALS * settings.interval_seconds(),
            evaluation_time: settings.evaluation_time,
        })
    }

    /// Sends one signed `GetMetricData` call.
    async fn call(&self, body: &Value, what: &str) -> Result<crate::http::Answer, ProviderError> {
        let credentials = match &self.static_credentials {
            Some(c) => c.clone(),
            None => credentials(&self.endpoint.client)
                .await
                .map_err(|reason| self.request_error(what, reason))?,
        };
        let body = serde_json::to_vec(body).map_err(|e| self.request_error(what, e.to_string()))?;
        let headers = [("content-type", CONTENT_TYPE), ("x-amz-target", TARGET)];
        let identity = credentials.into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SERVICE)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| self.request_error(what, e.to_string()))?
            .into();
        let signable = SignableRequest::new(
            "POST",
            self.url.as_str(),
            headers.iter().copied(),
            SignableBody::Bytes(&body),
        )
        .map_err(|e| self.request_error(what, e.to_string()))?;
        let (instructions, _) = sign(signable, &params)
            .map_err(|e| self.request_error(what, e.to_string()))?
            .into_parts();
        let mut request = self.endpoint.client.post(self.url.clone());
        for (name, value) in headers {
            request = request.header(name, value);
        }
        for (name, value) in instructions.headers() {
            request = request.header(name, value);
        }
        self.endpoint.send(request.body(body), what).await
    }

    fn request_error(&self, query: &str, reason: String) -> ProviderError {
        ProviderError::Request {
            provider: PROVIDER.into(),
            address: self.endpoint.address.clone(),
            query: query.into(),
            reason,
        }
    }

    fn api_error(&self, query: &str, answer: &crate::http::Answer) -> ProviderError {
        let parsed: Option<ErrorBody> = serde_json::from_slice(&answer.body).ok();
        match parsed {
            Some(e) if e.type_.is_some() || e.message().is_some() => {
                let type_ = e
                    .type_
                    .clone()
                    .or_else(|| {
                        answer
                            .headers
                            .get("x-amzn-errortype")
                            .and_then(|v| v.to_str().ok())
                            .map(str::to_string)
                    })
                    .unwrap_or_else(|| format!("HTTP {}", answer.status));
                // `com.amazonaws.cloudwatch#InvalidParameterValueException` reads as
                // `InvalidParameterValueException`.
                let type_ = type_.rsplit('#').next().unwrap_or(&type_).to_string();
                let type_ = type_.split(':').next().unwrap_or(&type_).to_string();
                self.endpoint
                    .query_error(query, type_, e.message().unwrap_or_default())
            }
            _ => self.endpoint.http_error(query, answer),
        }
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let shown = crate::provider::collapse_whitespace(query);
        let queries = metric_data_queries(query).map_err(|reason| ProviderError::Query {
            provider: PROVIDER.into(),
            query: shown.clone(),
            error_type: "invalid query".into(),
            message: reason,
        })?;
        let end = now_seconds(self.evaluation_time).floor() as i64;
        let body = json!({
            "StartTime": end - self.start_delta,
            "EndTime": end,
            "MaxDatapoints": MAX_DATAPOINTS,
            "MetricDataQueries": queries,
        });
        let answer = self.call(&body, &shown).await?;
        if !answer.is_success() {
            return Err(self.api_error(&shown, &answer));
        }
        let response: GetMetricDataOutput = serde_json::from_slice(&answer.body).map_err(|e| {
            self.endpoint
                .decode(&shown, format!("{e} in {}", answer.text()))
        })?;
        let Some(value) = response
            .metric_data_results
            .first()
            .and_then(|r| r.values.first())
        else {
            return Err(self.endpoint.no_data(&shown));
        };
        self.endpoint.finite(&shown, *value)
    }

    /// As Flagger: an empty `GetMetricData` call; an answer, or AWS's 400 for the
    /// empty call, means CloudWatch is there and the credentials are accepted.
    pub async fn online(&self) -> Result<(), ProviderError> {
        let what = "GetMetricData (availability check)";
        let body = json!({"StartTime": 0, "EndTime": 0, "MetricDataQueries": []});
        let answer = self.call(&body, what).await?;
        if answer.is_success() || answer.status == 400 {
            Ok(())
        } else {
            Err(self.api_error(what, &answer))
        }
    }
}

fn regional_endpoint(region: &str) -> String {
    if region.starts_with("cn-") {
        format!("https://{SERVICE}.{region}.amazonaws.com.cn")
    } else {
        format!("https://{SERVICE}.{region}.amazonaws.com")
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default, rename = "__type")]
    type_: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default, rename = "Message")]
    message_upper: Option<String>,
}

impl ErrorBody {
    fn message(&self) -> Option<String> {
        self.message.clone().or_else(|| self.message_upper.clone())
    }
}

#[derive(Deserialize)]
struct GetMetricDataOutput {
    #[serde(default, rename = "MetricDataResults")]
    metric_data_results: Vec<MetricDataResult>,
}

#[derive(Deserialize)]
struct MetricDataResult {
    #[serde(default, rename = "Values")]
    values: Vec<f64>,
}

/// The field names of the objects a query holds, per object kind.
#[derive(Clone, Copy)]
enum Shape {
    Query,
    MetricStat,
    Metric,
    Dimension,
}

impl Shape {
    fn fields(self) -> &'static [(&'static str, Option<Shape>, bool)] {
        // (name, shape of an object value, the value is a list of that shape)
        match self {
            Shape::Query => &[
                ("AccountId", None, false),
                ("Expression", None, false),
                ("Id", None, false),
                ("Label", None, false),
                ("MetricStat", Some(Shape::MetricStat), false),
                ("Period", None, false),
                ("ReturnData", None, false),
            ],
            Shape::MetricStat => &[
                ("Metric", Some(Shape::Metric), false),
                ("Period", None, false),
                ("Stat", None, false),
                ("Unit", None, false),
            ],
            Shape::Metric => &[
                ("Dimensions", Some(Shape::Dimension), true),
                ("MetricName", None, false),
                ("Namespace", None, false),
            ],
            Shape::Dimension => &[("Name", None, false), ("Value", None, false)],
        }
    }
}

/// Reads a query (a JSON list of MetricDataQuery) and writes its field names as the
/// API spells them. Like Flagger's Go decoding, names match without regard to case
/// and unknown fields are left out.
pub fn metric_data_queries(query: &str) -> Result<Value, String> {
    let value: Value =
        serde_json::from_str(query).map_err(|e| format!("the query is not JSON: {e}"))?;
    let Value::Array(items) = value else {
        return Err("the query must be a JSON list of MetricDataQuery objects".into());
    };
    if items.is_empty() {
        return Err("the query has no MetricDataQuery".into());
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, item)| canonical(item, Shape::Query, &format!("[{i}]")))
        .collect::<Result<Vec<_>, _>>()
        .map(Value::Array)
}

fn canonical(value: Value, shape: Shape, at: &str) -> Result<Value, String> {
    let Value::Object(object) = value else {
        return Err(format!("{at} must be an object"));
    };
    let mut out = Map::new();
    for (key, value) in object {
        let Some((name, inner, list)) = shape
            .fields()
            .iter()
            .find(|(name, _, _)| *name == key)
            .or_else(|| {
                shape
                    .fields()
                    .iter()
                    .find(|(name, _, _)| name.eq_ignore_ascii_case(&key))
            })
        else {
            continue;
        };
        let path = format!("{at}.{name}");
        let value = match (inner, list, value) {
            (Some(s), true, Value::Array(items)) => Value::Array(
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| canonical(v, *s, &format!("{path}[{i}]")))
                    .collect::<Result<_, _>>()?,
            ),
            (Some(_), true, _) => return Err(format!("{path} must be a list")),
            (Some(s), false, v) => canonical(v, *s, &path)?,
            (None, _, v) => v,
        };
        out.insert(name.to_string(), value);
    }
    Ok(Value::Object(out))
}

/// Finds AWS credentials the way the AWS SDKs' default chain does (the parts a pod
/// or a workstation uses).
async fn credentials(client: &reqwest::Client) -> Result<Credentials, String> {
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(id), Some(secret)) = (env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY")) {
        return Ok(Credentials::new(
            id,
            secret,
            env("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ));
    }
    if let Some(c) = shared_file_credentials()? {
        return Ok(c);
    }
    if let Some(c) = container_credentials(client).await? {
        return Ok(c);
    }
    if env("AWS_EC2_METADATA_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Err(no_credentials());
    }
    imds_credentials(client).await
}

fn no_credentials() -> String {
    "no AWS credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, a shared credentials file, container credentials or an instance profile".into()
}

/// `[profile]` sections of `~/.aws/credentials`.
fn shared_file_credentials() -> Result<Option<Credentials>, String> {
    let path = match std::env::var("AWS_SHARED_CREDENTIALS_FILE") {
        Ok(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => match std::env::var("HOME") {
            Ok(home) if !home.is_empty() => std::path::Path::new(&home).join(".aws/credentials"),
            _ => return Ok(None),
        },
    };
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let profile = std::env::var("AWS_PROFILE")
        .ok()
        .filter(|p| !p.is_empty())
        .unwrap_or_else(|| "default".into());
    let mut in_profile = false;
    let (mut id, mut secret, mut token) = (None, None, None);
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            continue;
        }
        if !in_profile {
            continue;
        }
        if let Some((k, v)) = line.split_once('=') {
            let v = v.trim().to_string();
            match k.trim() {
                "aws_access_key_id" => id = Some(v),
                "aws_secret_access_key" => secret = Some(v),
                "aws_session_token" => token = Some(v),
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok(Some(Credentials::new(
            id,
            secret,
            token,
            None,
            "shared credentials file",
        ))),
        _ => Ok(None),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TemporaryCredentials {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    token: Option<String>,
}

const CREDENTIALS_TIMEOUT: Duration = Duration::from_secs(2);

/// ECS task roles and EKS Pod Identity.
async fn container_credentials(client: &reqwest::Client) -> Result<Option<Credentials>, String> {
    let url = match (
        std::env::var("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"),
        std::env::var("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
    ) {
        (Ok(rel), _) if !rel.is_empty() => format!("http://169.254.170.2{rel}"),
        (_, Ok(full)) if !full.is_empty() => full,
        _ => return Ok(None),
    };
    let mut request = client.get(&url).timeout(CREDENTIALS_TIMEOUT);
    let token = match std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE") {
        Ok(f) if !f.is_empty() => Some(
            std::fs::read_to_string(&f)
                .map_err(|e| {
                    format!("cannot read AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE {f}: {e}")
                })?
                .trim()
                .to_string(),
        ),
        _ => std::env::var("AWS_CONTAINER_AUTHORIZATION_TOKEN").ok(),
    };
    if let Some(t) = token.filter(|t| !t.is_empty()) {
        request = request.header("Authorization", t);
    }
    let c: TemporaryCredentials = fetch_json(request, "container credentials").await?;
    Ok(Some(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        c.token,
        None,
        "container credentials",
    )))
}

/// The EC2 instance profile, through IMDSv2.
async fn imds_credentials(client: &reqwest::Client) -> Result<Credentials, String> {
    let base = std::env::var("AWS_EC2_METADATA_SERVICE_ENDPOINT")
        .ok()
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| "http://169.254.169.254".into());
    let base = base.trim_end_matches('/');
    let failed = |e: String| format!("{}; instance metadata: {e}", no_credentials());
    let token = client
        .put(format!("{base}/latest/api/token"))
        .header("x-aws-ec2-metadata-token-ttl-seconds", "300")
        .timeout(CREDENTIALS_TIMEOUT)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| failed(crate::http::root_cause(&e)))?
        .text()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let path = format!("{base}/latest/meta-data/iam/security-credentials/");
    let role = client
        .get(&path)
        .header("x-aws-ec2-metadata-token", &token)
        .timeout(CREDENTIALS_TIMEOUT)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| failed(crate::http::root_cause(&e)))?
        .text()
        .await
        .map_err(|e| failed(e.to_string()))?;
    let role = role.lines().next().unwrap_or_default().trim().to_string();
    if role.is_empty() {
        return Err(failed("the instance has no IAM role".into()));
    }
    let request = client
        .get(format!("{path}{role}"))
        .header("x-aws-ec2-metadata-token", &token)
        .timeout(CREDENTIALS_TIMEOUT);
    let c: TemporaryCredentials = fetch_json(request, "instance metadata")
        .await
        .map_err(failed)?;
    Ok(Credentials::new(
        c.access_key_id,
        c.secret_access_key,
        c.token,
        None,
        "instance profile",
    ))
}

async fn fetch_json<T: serde::de::DeserializeOwned>(
    request: reqwest::RequestBuilder,
    what: &str,
) -> Result<T, String> {
    let response = request
        .send()
        .await
        .map_err(|e| format!("{what}: {}", crate::http::root_cause(&e)))?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| format!("{what}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{what} answered HTTP {status}: {}",
            crate::http::shorten(&String::from_utf8_lossy(&body))
        ));
    }
    serde_json::from_slice(&body).map_err(|e| format!("{what}: {e}"))
}

impl MetricsProvider for CloudWatchProvider {
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>> {
        Box::pin(self.query(query))
    }

    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>> {
        Box::pin(self.online())
    }

    fn describe(&self) -> String {
        format!("{PROVIDER} {} ({})", self.endpoint.address, self.region)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_match_without_case_and_unknown_ones_are_dropped() {
        let q = r#"[{"id":"e1","expression":"m1 / m2","label":"ratio","returnData":true},
            {"ID":"m1","metricStat":{"metric":{"namespace":"MyApp","metricName":"errors",
            "dimensions":[{"name":"Service","value":"podinfo"}]},"period":60,"stat":"Sum"},
            "returndata":false,"colour":"red"}]"#;
        assert_eq!(
            metric_data_queries(q).unwrap(),
            json!([
                {"Id": "e1", "Expression": "m1 / m2", "Label": "ratio", "ReturnData": true},
                {"Id": "m1", "MetricStat": {"Metric": {"Namespace": "MyApp", "MetricName": "errors",
                    "Dimensions": [{"Name": "Service", "Value": "podinfo"}]}, "Period": 60, "Stat": "Sum"},
                    "ReturnData": false}
            ])
        );
    }

    #[test]
    fn queries_that_are_not_lists_of_objects_are_errors() {
        for bad in [
            "",
            "{}",
            "[]",
            "[1]",
            r#"[{"MetricStat":{"Metric":{"Dimensions":{}}}}]"#,
        ] {
            assert!(metric_data_queries(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_region_is_required() {
        let err = CloudWatchProvider::new(&ProviderSettings {
            type_: "cloudwatch".into(),
            timeout: Duration::from_secs(1),
            interval: Duration::from_secs(60),
            ..Default::default()
        })
        .err()
        .expect("an error");
        assert!(err.to_string().contains("region"), "{err}");
        assert_eq!(
            regional_endpoint("eu-west-1"),
            "https://monitoring.eu-west-1.amazonaws.com"
        );
    }
}
