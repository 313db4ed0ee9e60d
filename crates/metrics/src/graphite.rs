//! The `graphite` provider: graphite-web's render API (`GET /render?...&format=json`).
//! The query is the render API's parameters (`target=...&from=-5min`), whitespace
//! collapsed; the value is the last non-null data point of the answer, as Flagger
//! reads it. With `provider.secretRef`, its `username` and `password` are sent as
//! basic auth.

use reqwest::Url;
use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::http::{Endpoint, header_map, join_path, required_secret};
use crate::provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    collapse_whitespace,
};

const PROVIDER: &str = "Graphite";
/// Flagger's availability check: a render of a target that need not exist.
pub const ONLINE_QUERY: &str = "target=test";

pub struct GraphiteProvider {
    endpoint: Endpoint,
    render_url: Url,
    headers: HeaderMap,
    basic_auth: Option<(String, String)>,
}

impl GraphiteProvider {
    pub fn new(settings: &ProviderSettings) -> Result<Self, ProviderConfigError> {
        let address = settings.address.clone().unwrap_or_default();
        let (endpoint, base) = Endpoint::new(
            PROVIDER,
            &address,
            settings.timeout,
            settings.insecure_skip_verify,
        )?;
        let basic_auth = if settings.secret_name.is_some() {
            Some((
                required_secret(PROVIDER, settings.secret(), "username")?,
                required_secret(PROVIDER, settings.secret(), "password")?,
            ))
        } else {
            None
        };
        Ok(Self {
            render_url: join_path(&base, "/render"),
            headers: header_map(PROVIDER, &settings.headers)?,
            endpoint,
            basic_auth,
        })
    }

    pub async fn query(&self, query: &str) -> Result<f64, ProviderError> {
        let query = collapse_whitespace(query);
        let mut url = self.render_url.clone();
        {
            let mut pairs: Vec<(String, String)> =
                url::form_urlencoded::parse(query.trim_start_matches('?').as_bytes())
                    .into_owned()
                    .filter(|(k, _)| k != "format")
                    .collect();
            pairs.push(("format".into(), "json".into()));
            url.query_pairs_mut().extend_pairs(pairs);
        }
        let mut request = self.endpoint.client.get(url).headers(self.headers.clone());
        if let Some((user, password)) = &self.basic_auth {
            request = request.basic_auth(user, Some(password));
        }
        let answer = self.endpoint.send(request, &query).await?;
        if answer.status >= 400 {
            return Err(self.endpoint.http_error(&query, &answer));
        }
        let targets: Vec<Target> = serde_json::from_slice(&answer.body).map_err(|e| {
            self.endpoint
                .decode(&query, format!("{e} in {}", answer.text()))
        })?;
        let mut last = None;
        for target in &targets {
            for point in &target.datapoints {
                if let Some(v) = point_value(point).map_err(|r| self.endpoint.decode(&query, r))? {
                    last = Some(v);
                }
            }
        }
        match last {
            Some(v) => self.endpoint.finite(&query, v),
            None => Err(self.endpoint.no_data(&query)),
        }
    }

    pub async fn online(&self) -> Result<(), ProviderError> {
        match self.query(ONLINE_QUERY).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_no_data() => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[derive(serde::Deserialize)]
struct Target {
    #[serde(default)]
    datapoints: Vec<Vec<Value>>,
}

/// A data point is `[value, timestamp]`; the value is a number, a numeric string or
/// null (no data in that slot).
fn point_value(point: &[Value]) -> Result<Option<f64>, String> {
    if point.len() != 2 {
        return Err(format!(
            "a data point that is not [value, timestamp]: {point:?}"
        ));
    }
    match &point[0] {
        Value::Null => Ok(None),
        Value::Number(n) => Ok(n.as_f64()),
        Value::String(s) => s
            .parse::<f64>()
            .map(Some)
            .map_err(|_| format!("the value {s:?} is not a number")),
        other => Err(format!("the value {other} is not a number")),
    }
}

impl MetricsProvider for GraphiteProvider {
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
    use serde_json::json;

    #[test]
    fn data_point_values() {
        assert_eq!(point_value(&[json!(1.5), json!(10)]), Ok(Some(1.5)));
        assert_eq!(point_value(&[json!("2"), json!(10)]), Ok(Some(2.0)));
        assert_eq!(point_value(&[json!(null), json!(10)]), Ok(None));
        assert!(point_value(&[json!(1)]).is_err());
        assert!(point_value(&[json!("x"), json!(1)]).is_err());
    }
}
