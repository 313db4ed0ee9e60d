//! The `influxdb` provider, for both query languages:
//!
//! - Flux, as Flagger sends it (InfluxDB 2.x, and 1.8+ with Flux enabled):
//!   `POST /api/v2/query?org=ORG` with `Authorization: Token TOKEN`, answered in
//!   annotated CSV; the value is the `_value` of the first record. The Secret holds
//!   `token` and `org`, both required when `provider.secretRef` is set.
//! - InfluxQL (a query that starts with `SELECT`; InfluxDB 1.x): `GET /query?q=...`,
//!   with the address's own query parameters (`?db=telegraf`) and, from the Secret,
//!   `username`/`password` or `token`; the value is the last column of the first row
//!   of the only series.
//!
//! The availability check is `GET /ping`, which both versions answer.

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::http::{Answer, Endpoint, header_map, join_path, required_secret, secret_value};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    collapse_whitespace,
};

const PROVIDER: &str = "InfluxDB";

pub struct InfluxdbProvider {
    endpoint: Endpoint,
    base: Url,
    headers: HeaderMap,
    token: Option<String>,
    org: Option<String>,
    basic_auth: Option<(String, String)>,
}

impl InfluxdbProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings.address.clone().unwrap_or_default();
        let (endpoint, base) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        let (mut token, mut org, mut basic_auth) = (None, None, None);
        if settings.secret_name.is_some() {
            let secret = settings.secret();
            match secret_value(PROVIDER, secret, "username")? {
                // InfluxDB 1.x users.
                Some(user) => {
                    basic_auth = Some((user, required_secret(PROVIDER, secret, "password")?));
                }
                None => {
                    token = Some(required_secret(PROVIDER, secret, "token")?);
                    org = Some(required_secret(PROVIDER, secret, "org")?);
                }
            }
        }
        Ok(Self {
            headers: header_map(PROVIDER, &settings.headers)?,
            endpoint,
            base,
            token,
            org,
            basic_auth,
        })
    }

    fn authorize(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        request = request.headers(self.headers.clone());
        if let Some(t) = &self.token {
            request = request.header("Authorization", format!("Token {t}"));
        }
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        request
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        if is_influxql(query) {
            self.influxql(&collapse_whitespace(query)).await
        } else {
            self.flux(query.trim()).await
        }
    }

    async fn flux(&self, query: &str) -> Result<f64, ProviderError> {
        let mut url = join_path(&self.base, "/api/v2/query");
        if let Some(org) = &self.org {
            url.query_pairs_mut().append_pair("org", org);
        }
        let body = json!({
            "query": query,
            "type": "flux",
            "dialect": {"header": true, "delimiter": ",",
                "annotations": ["datatype", "group", "default"]},
        });
        let request = self
            .authorize(self.endpoint.client.post(url))
            .header("Accept", "application/csv")
            .json(&body);
        let shown = collapse_whitespace(query);
        let answer = self.endpoint.send(request, &shown).await?;
        if !answer.is_success() {
            return Err(self.api_error(&shown, &answer));
        }
        match first_flux_value(&answer.body).map_err(|r| self.endpoint.decode(&shown, r))? {
            Some(v) => self.endpoint.finite(&shown, v),
            None => Err(self.endpoint.no_data(&shown)),
        }
    }

    async fn influxql(&self, query: &str) -> Result<f64, ProviderError> {
        let mut url = join_path(&self.base, "/query");
        {
            let mut pairs = url.query_pairs_mut();
            for (k, v) in self.base.query_pairs() {
                pairs.append_pair(&k, &v);
            }
            pairs.append_pair("q", query).append_pair("epoch", "s");
        }
        let answer = self
            .endpoint
            .send(self.authorize(self.endpoint.client.get(url)), query)
            .await?;
        let parsed: Result<InfluxqlResponse, _> = serde_json::from_slice(&answer.body);
        let response = match parsed {
            Ok(r) => r,
            Err(_) if !answer.is_success() => return Err(self.endpoint.http_error(query, &answer)),
            Err(e) => {
                return Err(self
                    .endpoint
                    .decode(query, format!("{e} in {}", answer.text())));
            }
        };
        if let Some(e) = response.error {
            return Err(self.endpoint.query_error(query, "error", e));
        }
        if !answer.is_success() {
            return Err(self.endpoint.http_error(query, &answer));
        }
        let Some(result) = response.results.into_iter().next() else {
            return Err(self.endpoint.no_data(query));
        };
        if let Some(e) = result.error {
            return Err(self.endpoint.query_error(query, "error", e));
        }
        let series = match result.series.as_slice() {
            [] => return Err(self.endpoint.no_data(query)),
            [one] => one,
            many => {
                return Err(ProviderError::SeveralSeries {
                    provider: PROVIDER.into(),
                    query: query.into(),
                    count: many.len(),
                });
            }
        };
        let Some(row) = series.values.first() else {
            return Err(self.endpoint.no_data(query));
        };
        match row.last() {
            Some(Value::Number(n)) => self.endpoint.finite(query, n.as_f64().unwrap_or(f64::NAN)),
            Some(Value::Null) | None => Err(self.endpoint.no_data(query)),
            Some(other) => Err(self
                .endpoint
                .decode(query, format!("the value {other} is not a number"))),
        }
    }

    fn api_error(&self, query: &str, answer: &Answer) -> ProviderError {
        #[derive(Deserialize)]
        struct V2Error {
            #[serde(default)]
            code: Option<String>,
            #[serde(default)]
            message: Option<String>,
            #[serde(default)]
            error: Option<String>,
        }
        match serde_json::from_slice::<V2Error>(&answer.body) {
            Ok(e) if e.message.is_some() || e.error.is_some() => self.endpoint.query_error(
                query,
                e.code.unwrap_or_else(|| format!("HTTP {}", answer.status)),
                e.message.or(e.error).unwrap_or_default(),
            ),
            _ => self.endpoint.http_error(query, answer),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        let what = "GET /ping";
        let request = self.authorize(self.endpoint.client.get(join_path(&self.base, "/ping")));
        let answer = self.endpoint.send(request, what).await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(self.endpoint.http_error(what, &answer))
        }
    }
}

/// InfluxQL reads `SELECT ...`; Flux reads `from(bucket: ...) |> ...`.
fn is_influxql(query: &str) -> bool {
    let q = query.trim_start();
    q.get(..6).is_some_and(|w| w.eq_ignore_ascii_case("select")) && !q.contains("|>")
}

#[derive(Deserialize)]
struct InfluxqlResponse {
    #[serde(default)]
    results: Vec<InfluxqlResult>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct InfluxqlResult {
    #[serde(default)]
    series: Vec<InfluxqlSeries>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct InfluxqlSeries {
    #[serde(default)]
    values: Vec<Vec<Value>>,
}

/// The `_value` of the first record of a Flux answer (annotated CSV). `None` when
/// there is no record or the value is empty (null).
pub fn first_flux_value(body: &[u8]) -> Result<Option<f64>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut datatypes: Option<Vec<String>> = None;
    let mut header: Option<Vec<String>> = None;
    for record in reader.records() {
        let record = record.map_err(|e| format!("the CSV answer cannot be read: {e}"))?;
        let first = record.get(0).unwrap_or_default();
        if record.iter().all(str::is_empty) {
            // A blank line ends a table; the next one brings its own annotations.
            header = None;
            datatypes = None;
            continue;
        }
        if first == "#datatype" {
            datatypes = Some(record.iter().map(str::to_string).collect());
            continue;
        }
        if first.starts_with('#') {
            continue;
        }
        let Some(columns) = &header else {
            header = Some(record.iter().map(str::to_string).collect());
            if !header
                .as_ref()
                .is_some_and(|h| h.iter().any(|c| c == "_value"))
            {
                if let Some(error) = header
                    .as_ref()
                    .and_then(|h| h.iter().position(|c| c == "error"))
                {
                    return Err(format!("the query failed (column {error} is an error)"));
                }
                return Err("the answer has no _value column".into());
            }
            continue;
        };
        let index = columns
            .iter()
            .position(|c| c == "_value")
            .unwrap_or_default();
        let text = record.get(index).unwrap_or_default();
        if text.is_empty() {
            return Ok(None);
        }
        let datatype = datatypes
            .as_ref()
            .and_then(|d| d.get(index))
            .map(String::as_str)
            .unwrap_or("double");
        return match datatype {
            "double" | "long" | "unsignedLong" => text
                .parse::<f64>()
                .map(Some)
                .map_err(|_| format!("the _value {text:?} is not a number")),
            other => Err(format!("the _value {text:?} is a {other}, not a number")),
        };
    }
    Ok(None)
}

impl MetricsProvider for InfluxdbProvider {
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

    /// The annotated CSV of InfluxDB's documentation ("Annotated CSV", InfluxDB v2
    /// reference, /influxdb/v2/reference/syntax/annotated-csv/).
    #[test]
    fn reads_the_value_of_annotated_csv() {
        let body = "#datatype,string,long,dateTime:RFC3339,dateTime:RFC3339,dateTime:RFC3339,double,string,string\r\n\
#group,false,false,true,true,false,false,true,true\r\n\
#default,_result,,,,,,,\r\n\
,result,table,_start,_stop,_time,_value,_field,_measurement\r\n\
,,0,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:30:00Z,99.25,rate,http\r\n\
,,0,2026-01-01T00:00:00Z,2026-01-01T01:00:00Z,2026-01-01T00:40:00Z,97,rate,http\r\n\r\n";
        assert_eq!(first_flux_value(body.as_bytes()), Ok(Some(99.25)));
        assert_eq!(first_flux_value(b"\r\n"), Ok(None));
        let text = body.replace("double", "string").replace("99.25", "up");
        assert!(first_flux_value(text.as_bytes()).is_err());
    }

    #[test]
    fn influxql_or_flux() {
        assert!(is_influxql(" select mean(\"v\") from \"m\""));
        assert!(!is_influxql("from(bucket: \"b\") |> range(start: -1m)"));
    }
}
