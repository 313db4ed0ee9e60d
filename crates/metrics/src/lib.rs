//! serin's metric analysis: metric providers behind one trait, the built-in Istio
//! checks, MetricTemplate query rendering, and the verdict of a metric check with
//! Flagger's texts.
//!
//! A check runs in three steps, each usable on its own:
//! 1. [`check::prepare`] turns a Canary metric (and its MetricTemplate) into a
//!    rendered query and the provider settings to run it with;
//! 2. a [`MetricsProvider`] (one per MetricTemplate `provider.type`: Prometheus,
//!    Datadog, CloudWatch, New Relic, Graphite, InfluxDB, Dynatrace, Stackdriver,
//!    Splunk, Keptn, external metrics; see [`factory`]) runs the query to one number;
//! 3. [`check::evaluate`] compares the number with the metric's threshold range and
//!    says pass or halt, with the message the user sees as an event.

pub mod builtin;
pub mod check;
pub mod cloudwatch;
pub mod datadog;
pub mod dynatrace;
pub mod external;
pub mod factory;
pub mod format;
pub mod graphite;
pub mod http;
pub mod influxdb;
pub mod keptn;
pub mod newrelic;
pub mod prometheus;
pub mod provider;
pub mod splunk;
pub mod stackdriver;
pub mod template;

pub use builtin::BuiltinMetric;
pub use check::{
    CheckOutcome, MetricCheck, PreparedQuery, ProviderContext, QuerySource, check_provider_online,
    evaluate, failure_message, prepare, run_check,
};
pub use prometheus::{Credentials, PrometheusOptions, PrometheusProvider};
pub use provider::{
    MetricsProvider, ProviderConfigError, ProviderError, ProviderFuture, ProviderSettings,
    QueryValue,
};
pub use template::{QueryModel, TemplateError, render_query};
