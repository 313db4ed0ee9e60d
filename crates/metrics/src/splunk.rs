//! The `splunk` provider: Splunk Observability Cloud (SignalFx) SignalFlow. The
//! program runs over the last ten metric intervals through SignalFlow's HTTP form,
//! `POST /v2/signalflow/execute?start=&stop=&immediate=true` on the stream host
//! (`api` in the address becomes `stream`, as Flagger turns it into its WebSocket
//! address), answered as server-sent events. The value is the last data point;
//! points of more than one time series are an error, as in Flagger. The Secret
//! holds `sf_token_key` (sent as `X-SF-Token`); the availability check is
//! `GET /v2/metric?limit=1` on the API host. `provider.address` is required
//! (`https://api.REALM.signalfx.com`).

use reqwest::Url;
use serde::Deserialize;
use serde_json::Value;

use crate::http::{Endpoint, join_path, now_seconds, required_secret};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    collapse_whitespace,
};

const PROVIDER: &str = "Splunk";
pub const TOKEN: &str = "sf_token_key";
const FROM_INTERVALS: i64 = 10;

pub struct SplunkProvider {
    endpoint: Endpoint,
    execute_url: Url,
    validate_url: Url,
    token: String,
    from_delta_ms: i64,
    evaluation_time: Option<f64>,
}

impl SplunkProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings.address.clone().unwrap_or_default();
        let token = required_secret(PROVIDER, settings.secret(), TOKEN)?;
        // Either host may be given: api.REALM... for REST, stream.REALM... for SignalFlow.
        let api = address
            .replacen("stream", "api", 1)
            .replacen("wss://", "https://", 1)
            .replacen("ws://", "http://", 1);
        let stream = api.replacen("api", "stream", 1);
        let (endpoint, api_url) = Endpoint::new(
            PROVIDER,
            &api,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        let stream_url = crate::http::parse_address(PROVIDER, &stream)?;
        let mut validate_url = join_path(&api_url, "/v2/metric");
        validate_url.query_pairs_mut().append_pair("limit", "1");
        Ok(Self {
            execute_url: join_path(&stream_url, "/v2/signalflow/execute"),
            validate_url,
            endpoint,
            token,
            from_delta_ms: FROM_INTERVALS * settings.interval.as_millis().max(1000) as i64,
            evaluation_time: settings.evaluation_time,
        })
    }

    pub async fn query(&self, program: &str) -> Result<f64, ProviderError> {
        let shown = collapse_whitespace(program);
        let now_ms = (now_seconds(self.evaluation_time) * 1000.0) as i64;
        let mut url = self.execute_url.clone();
        url.query_pairs_mut()
            .append_pair("start", &(now_ms - self.from_delta_ms).to_string())
            .append_pair("stop", &now_ms.to_string())
            .append_pair("immediate", "true");
        let request = self
            .endpoint
            .client
            .post(url)
            .header("X-SF-Token", &self.token)
            .header("Content-Type", "text/plain")
            .header("Accept", "text/event-stream")
            .body(program.trim().to_string());
        let answer = self.endpoint.send(request, &shown).await?;
        if !answer.is_success() {
            return Err(self.endpoint.http_error(&shown, &answer));
        }
        let text = String::from_utf8_lossy(&answer.body);
        let mut points: Vec<(String, f64)> = Vec::new();
        for (event, data) in server_sent_events(&text) {
            let message: Value = match serde_json::from_str(&data) {
                Ok(v) => v,
                Err(_) => continue,
            };
            match event.as_str() {
                "data" => {
                    #[derive(Deserialize)]
                    struct Point {
                        #[serde(rename = "tsId")]
                        ts_id: String,
                        value: Option<f64>,
                    }
                    let data: Vec<Point> = message
                        .get("data")
                        .cloned()
                        .map(serde_json::from_value)
                        .transpose()
                        .map_err(|e| self.endpoint.decode(&shown, format!("a data message: {e}")))?
                        .unwrap_or_default();
                    points.extend(data.into_iter().filter_map(|p| Some((p.ts_id, p.value?))));
                }
                "error" => {
                    let text = message
                        .get("message")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| message.to_string());
                    let kind = message
                        .get("error")
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "error".into());
                    return Err(self.endpoint.query_error(&shown, kind, text));
                }
                "control-message"
                    if message.get("event").and_then(Value::as_str) == Some("CHANNEL_ABORT") =>
                {
                    let reason = message
                        .pointer("/abortInfo/sf_job_abortReason")
                        .and_then(Value::as_str)
                        .unwrap_or("the computation was aborted");
                    return Err(self.endpoint.query_error(&shown, "CHANNEL_ABORT", reason));
                }
                _ => {}
            }
        }
        let mut series: Vec<&str> = points.iter().map(|(id, _)| id.as_str()).collect();
        series.sort_unstable();
        series.dedup();
        if series.len() > 1 {
            return Err(ProviderError::SeveralSeries {
                provider: PROVIDER.into(),
                query: shown,
                count: series.len(),
            });
        }
        match points.last() {
            Some((_, v)) => self.endpoint.finite(&shown, *v),
            None => Err(self.endpoint.no_data(&shown)),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let what = "GET /v2/metric?limit=1";
        let request = self
            .endpoint
            .client
            .get(self.validate_url.clone())
            .header("X-SF-Token", &self.token);
        let answer = self.endpoint.send(request, what).await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(self.endpoint.http_error(what, &answer))
        }
    }
}

/// The (event, data) pairs of a server-sent event stream; the `data:` lines of one
/// event are joined with newlines.
pub fn server_sent_events(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut event = String::new();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.is_empty() {
            if !data.is_empty() {
                let name = if event.is_empty() {
                    "message".to_string()
                } else {
                    event.clone()
                };
                out.push((name, data.join("\n")));
            }
            event.clear();
            data.clear();
            continue;
        }
        if line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_string(),
            "data" => data.push(value),
            _ => {}
        }
    }
    out
}

impl MetricsProvider for SplunkProvider {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_split_and_joined() {
        let text = "event: control-message\ndata: {\ndata:   \"event\" : \"STREAM_START\"\ndata: }\n\n: comment\nevent: data\ndata: {\"data\":[]}\n\n";
        let events = server_sent_events(text);
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].0, "control-message");
        assert_eq!(events[0].1, "{\n  \"event\" : \"STREAM_START\"\n}");
        assert_eq!(events[1], ("data".to_string(), "{\"data\":[]}".to_string()));
    }
}
