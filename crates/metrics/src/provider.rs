//! The metrics-provider trait: every backend (Prometheus today; Datadog, CloudWatch,
//! New Relic... later) is one type implementing it, in one file.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// The future a provider returns. Boxed so a provider can live behind
/// `Arc<dyn MetricsProvider>` and be chosen at run time from a MetricTemplate.
pub type ProviderFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A query's value, and how many series the answer held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QueryValue {
    pub value: f64,
    /// 1 for a single series or a scalar; more when the value was taken from
    /// one of several series, as Flagger does (the caller says so in a Warning).
    pub series: usize,
}

/// A backend that answers a query with one number.
pub trait MetricsProvider: Send + Sync {
    /// Runs `query` and returns its value. Empty results, NaN, infinities and
    /// every transport or query error are errors, never a number.
    fn run_query<'a>(&'a self, query: &'a str) -> ProviderFuture<'a, Result<f64, ProviderError>>;

    /// [`MetricsProvider::run_query`], saying how many series the value came
    /// from. A provider whose answers can hold several series overrides it.
    fn run_query_value<'a>(
        &'a self,
        query: &'a str,
    ) -> ProviderFuture<'a, Result<QueryValue, ProviderError>> {
        Box::pin(async move {
            self.run_query(query)
                .await
                .map(|value| QueryValue { value, series: 1 })
        })
    }

    /// Checks that the provider answers a trivial query.
    fn is_online(&self) -> ProviderFuture<'_, Result<(), ProviderError>>;

    /// The provider's kind and address, for messages (`prometheus http://...`).
    fn describe(&self) -> String;
}

/// Why a query gave no usable number. Every variant names the query (whitespace
/// collapsed, as sent) so an event or log line says which check failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    #[error("no values found: no data for query {query}")]
    NoData { query: String },
    #[error("no values found: NaN (nothing to compute it from) for query {query}")]
    NaN { query: String },
    #[error("{value} instead of a finite number for query {query}")]
    Infinite { query: String, value: String },
    #[error("a {result_type} where one value is expected for query {query}")]
    UnexpectedResultType { query: String, result_type: String },
    #[error("{provider} query error ({error_type}): {message}, for query {query}")]
    Query {
        provider: String,
        query: String,
        error_type: String,
        message: String,
    },
    #[error("{provider} {address} answered HTTP {status}{}{body}, for query {query}", if body.is_empty() { "" } else { ": " })]
    Http {
        provider: String,
        address: String,
        query: String,
        status: u16,
        body: String,
    },
    #[error("{provider} {address} unreachable: {reason}, for query {query}")]
    Unreachable {
        provider: String,
        address: String,
        query: String,
        reason: String,
    },
    #[error("{provider} {address} did not answer within {}, for query {query}", serin_api::duration::format_duration(*timeout))]
    Timeout {
        provider: String,
        address: String,
        query: String,
        timeout: Duration,
    },
    #[error("{provider} {address} request failed: {reason}, for query {query}")]
    Request {
        provider: String,
        address: String,
        query: String,
        reason: String,
    },
    #[error("{provider} {address} sent an answer serin cannot read: {reason}, for query {query}")]
    Decode {
        provider: String,
        address: String,
        query: String,
        reason: String,
    },
    #[error("{provider} is online but answered {value} to {query} instead of 1")]
    NotOnline {
        provider: String,
        query: String,
        value: f64,
    },
}

impl ProviderError {
    /// True when the provider worked but had nothing to say: Flagger's "no values
    /// found", which usually means the canary receives no traffic.
    pub fn is_no_data(&self) -> bool {
        matches!(
            self,
            ProviderError::NoData { .. } | ProviderError::NaN { .. }
        )
    }

    /// True when the provider could not be reached at all.
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ProviderError::Unreachable { .. } | ProviderError::Timeout { .. }
        )
    }
}

/// Why a provider could not be built from its settings.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ProviderConfigError {
    #[error("metric provider type {type_:?} is not supported (supported: {supported})")]
    UnsupportedType { type_: String, supported: String },
    #[error("{provider} address {address:?} is not a valid URL: {reason}")]
    InvalidAddress {
        provider: String,
        address: String,
        reason: String,
    },
    #[error(
        "no {provider} address: set the MetricTemplate's provider.address, the Canary's spec.metricsServer or the operator's --metrics-server"
    )]
    NoAddress { provider: String },
    #[error("{provider} credentials do not contain a {key}")]
    MissingCredential { provider: String, key: String },
    #[error("{provider} credentials: Secret {name} (provider.secretRef) was not found")]
    MissingSecret { provider: String, name: String },
    #[error("{provider} credential {key} is not valid UTF-8")]
    InvalidCredential { provider: String, key: String },
    #[error("{provider} header {name:?} is not valid: {reason}")]
    InvalidHeader {
        provider: String,
        name: String,
        reason: String,
    },
    #[error("cannot build the HTTP client for {provider}: {reason}")]
    Client { provider: String, reason: String },
}

/// Collapses runs of whitespace to one space, as Flagger does before sending a
/// query, so multi-line templates read well in URLs and messages.
pub fn collapse_whitespace(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}
