//! What every HTTP metric provider shares: one client per provider, answers read up
//! to a size limit, and transport failures turned into [`ProviderError`]s that name
//! the provider and its address.

use std::collections::BTreeMap;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{RequestBuilder, Url};

use crate::provider::{ProviderConfigError, ProviderError};

/// The largest answer a provider may send. A metric query returns a handful of
/// numbers; anything bigger is a misconfigured query or not the provider at all.
pub const MAX_RESPONSE_BYTES: usize = 4 * 1024 * 1024;
/// The longest part of an answer kept in a message.
pub const MAX_BODY_IN_MESSAGE: usize = 512;

/// An HTTP endpoint of one provider, for requests and their error messages.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `Datadog`, `CloudWatch`...
    pub provider: &'static str,
    /// The base address, as shown in messages.
    pub address: String,
    pub timeout: Duration,
    pub client: reqwest::Client,
}

/// An answer: status, headers and the (bounded) body.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn text(&self) -> String {
        shorten(&String::from_utf8_lossy(&self.body))
    }
}

impl Endpoint {
    /// A client for `provider` at `address` (an http or https URL).
    pub fn new(
        provider: &'static str,
        address: &str,
        timeout: Duration,
        insecure_skip_verify: bool,
    ) -> Result<(Self, Url), ProviderConfigError> {
        let url = parse_address(provider, address)?;
        let client = serin_http_client::client(&serin_http_client::ClientOptions {
            timeout,
            insecure_skip_verify,
            proxy: None,
        })
        .map_err(|e| ProviderConfigError::Client {
            provider: provider.into(),
            reason: e.to_string(),
        })?;
        Ok((
            Endpoint {
                provider,
                address: address.trim().trim_end_matches('/').to_string(),
                timeout,
                client,
            },
            url,
        ))
    }

    /// Sends a request and reads its answer, at most [`MAX_RESPONSE_BYTES`] of it.
    pub async fn send(
        &self,
        request: RequestBuilder,
        query: &str,
    ) -> Result<Answer, ProviderError> {
        let response = request
            .send()
            .await
            .map_err(|e| self.transport_error(query, e))?;
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = serin_http_client::read_limited(response, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| self.transport_error(query, e))?;
        if body.truncated {
            return Err(self.decode(
                query,
                format!("the answer is larger than {MAX_RESPONSE_BYTES} bytes"),
            ));
        }
        Ok(Answer {
            status,
            headers,
            body: body.bytes,
        })
    }

    /// The error for an answer that is not a 2xx.
    pub fn http_error(&self, query: &str, answer: &Answer) -> ProviderError {
        let body = answer.text();
        let reason = reqwest::StatusCode::from_u16(answer.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or_default();
        ProviderError::Http {
            provider: self.provider.into(),
            address: self.address.clone(),
            query: query.into(),
            status: answer.status,
            body: if body.is_empty() {
                reason.to_string()
            } else {
                body
            },
        }
    }

    /// The error for an answer serin cannot read.
    pub fn decode(&self, query: &str, reason: impl Into<String>) -> ProviderError {
        ProviderError::Decode {
            provider: self.provider.into(),
            address: self.address.clone(),
            query: query.into(),
            reason: reason.into(),
        }
    }

    /// The error the provider itself reported for a query.
    pub fn query_error(
        &self,
        query: &str,
        error_type: impl Into<String>,
        message: impl Into<String>,
    ) -> ProviderError {
        ProviderError::Query {
            provider: self.provider.into(),
            query: query.into(),
            error_type: error_type.into(),
            message: message.into(),
        }
    }

    pub fn no_data(&self, query: &str) -> ProviderError {
        ProviderError::NoData {
            provider: self.provider.into(),
            query: query.into(),
        }
    }

    /// A value that is NaN or infinite is an error, never a number.
    pub fn finite(&self, query: &str, value: f64) -> Result<f64, ProviderError> {
        finite(self.provider, query, value)
    }

    pub fn transport_error(&self, query: &str, e: reqwest::Error) -> ProviderError {
        let provider = self.provider.to_string();
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

/// A value that is NaN or infinite is an error naming the provider.
pub fn finite(provider: &str, query: &str, value: f64) -> Result<f64, ProviderError> {
    if value.is_nan() {
        return Err(ProviderError::NaN {
            provider: provider.into(),
            query: query.into(),
        });
    }
    if value.is_infinite() {
        return Err(ProviderError::Infinite {
            provider: provider.into(),
            query: query.into(),
            value: if value > 0.0 { "+Inf" } else { "-Inf" }.into(),
        });
    }
    Ok(value)
}

/// Checks that `address` is an http(s) URL with a host.
pub fn parse_address(provider: &str, address: &str) -> Result<Url, ProviderConfigError> {
    let trimmed = address.trim();
    if trimmed.is_empty() {
        return Err(ProviderConfigError::NoAddress {
            provider: provider.into(),
        });
    }
    let invalid = |reason: &str| ProviderConfigError::InvalidAddress {
        provider: provider.into(),
        address: address.into(),
        reason: reason.into(),
    };
    let url = Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid("the scheme must be http or https"));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("it has no host"));
    }
    Ok(url)
}

/// `base` with `path` appended to its own path (a path prefix in the address is kept).
pub fn join_path(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url.set_query(None);
    url.set_fragment(None);
    url
}

/// A MetricTemplate's `provider.headers` as request headers.
pub fn header_map(
    provider: &str,
    headers: &BTreeMap<String, Vec<String>>,
) -> Result<HeaderMap, ProviderConfigError> {
    let mut map = HeaderMap::new();
    for (name, values) in headers {
        let invalid = |reason: String| ProviderConfigError::InvalidHeader {
            provider: provider.into(),
            name: name.clone(),
            reason,
        };
        let header_name =
            HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        for value in values {
            let v = HeaderValue::from_str(value).map_err(|e| invalid(e.to_string()))?;
            map.append(header_name.clone(), v);
        }
    }
    Ok(map)
}

/// One key of a provider's Secret, as text. `None` when the key is absent.
pub fn secret_value(
    provider: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    key: &str,
) -> Result<Option<String>, ProviderConfigError> {
    match data.and_then(|d| d.get(key)) {
        None => Ok(None),
        Some(bytes) => String::from_utf8(bytes.clone()).map(Some).map_err(|_| {
            ProviderConfigError::InvalidCredential {
                provider: provider.into(),
                key: key.into(),
            }
        }),
    }
}

/// One key of a provider's Secret that must be there.
pub fn required_secret(
    provider: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    key: &str,
) -> Result<String, ProviderConfigError> {
    secret_value(provider, data, key)?.ok_or_else(|| ProviderConfigError::MissingCredential {
        provider: provider.into(),
        key: key.into(),
    })
}

/// The innermost message of an error chain: reqwest's outer message only says
/// "error sending request", the cause (connection refused, a certificate) is inside.
pub fn root_cause(e: &reqwest::Error) -> String {
    let mut deepest: &dyn std::error::Error = e;
    while let Some(inner) = deepest.source() {
        deepest = inner;
    }
    deepest.to_string()
}

/// `text` cut to [`MAX_BODY_IN_MESSAGE`] characters.
pub fn shorten(text: &str) -> String {
    let t = text.trim();
    if t.chars().count() <= MAX_BODY_IN_MESSAGE {
        return t.to_string();
    }
    let mut s: String = t.chars().take(MAX_BODY_IN_MESSAGE).collect();
    s.push('…');
    s
}

/// Seconds since the Unix epoch: `evaluation_time` when given (a replay, a test on
/// fixed data), else now.
pub fn now_seconds(evaluation_time: Option<f64>) -> f64 {
    evaluation_time.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default()
    })
}
