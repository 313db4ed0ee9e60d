//! The metrics-provider trait: every backend (Prometheus, Datadog, CloudWatch, New
//! Relic...) is one type implementing it, in one file.

use std::collections::BTreeMap;
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
    #[error("no values found: {provider} has no data for query {query}")]
    NoData { provider: String, query: String },
    #[error(
        "no values found: {provider} answered NaN (nothing to compute it from) for query {query}"
    )]
    NaN { provider: String, query: String },
    #[error("{provider} answered {value} instead of a finite number for query {query}")]
    Infinite {
        provider: String,
        query: String,
        value: String,
    },
    #[error("{provider} answered {count} series where one value is expected for query {query}")]
    SeveralSeries {
        provider: String,
        query: String,
        count: usize,
    },
    #[error("{provider} answered a {result_type} where one value is expected for query {query}")]
    UnexpectedResultType {
        provider: String,
        query: String,
        result_type: String,
    },
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
    #[error("{provider}: {reason}")]
    Invalid { provider: String, reason: String },
}

/// Collapses runs of whitespace to one space, as Flagger does before sending a
/// query, so multi-line templates read well in URLs and messages.
pub fn collapse_whitespace(query: &str) -> String {
    query.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Everything a provider is built from: the MetricTemplate's `provider` block, the
/// data of its Secret, and the operator's settings.
#[derive(Clone, Default)]
pub struct ProviderSettings {
    /// `provider.type` (`prometheus` when empty).
    pub type_: String,
    /// The address to use: `provider.address`, or the address given on the command
    /// line; for Prometheus also the Canary's and operator's metrics server.
    pub address: Option<String>,
    /// The data of the Secret `provider.secretRef` names, when it has one.
    pub secret: Option<BTreeMap<String, Vec<u8>>>,
    /// The name of `provider.secretRef`, when set.
    pub secret_name: Option<String>,
    pub region: Option<String>,
    pub insecure_skip_verify: bool,
    pub headers: BTreeMap<String, Vec<String>>,
    pub timeout: Duration,
    /// The metric's `interval`: the window providers look back over.
    pub interval: Duration,
    /// Evaluate at this Unix time (seconds) instead of now.
    pub evaluation_time: Option<f64>,
    /// The Kubernetes API, for the providers that read it (keptn, externalmetrics).
    pub kube: Option<kube::Client>,
}

impl std::fmt::Debug for ProviderSettings {
    // The Secret's values never reach logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProviderSettings")
            .field("type_", &self.type_)
            .field("address", &self.address)
            .field(
                "secret_keys",
                &self.secret.as_ref().map(|s| s.keys().collect::<Vec<_>>()),
            )
            .field("region", &self.region)
            .field("timeout", &self.timeout)
            .field("interval", &self.interval)
            .finish()
    }
}

impl ProviderSettings {
    pub fn secret(&self) -> Option<&BTreeMap<String, Vec<u8>>> {
        self.secret.as_ref()
    }

    /// The metric interval in whole seconds, at least one.
    pub fn interval_seconds(&self) -> i64 {
        (self.interval.as_secs() as i64).max(1)
    }
}
