//! What one alert is, and the trait every chat service implements.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A boxed future, so `Notifier` can be used as `dyn Notifier`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// How serious an alert is: the API's `info < warn < error`, so a provider with a
/// minimum severity of `warn` receives `warn` and `error` alerts.
pub use serin_api::canary::AlertSeverity as Severity;

/// The lowercase name of a severity, as manifests write it.
pub fn severity_name(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warn => "warn",
        Severity::Error => "error",
    }
}

/// Whether an alert of severity `event` reaches a provider subscribed at `minimum`.
pub fn admits(minimum: Severity, event: Severity) -> bool {
    event >= minimum
}

/// One name/value line of an alert (Target, Failed checks threshold, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Field {
    pub name: String,
    pub value: String,
}

impl Field {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// One alert about one canary, before a service formats it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The Canary's name.
    pub name: String,
    pub namespace: String,
    /// The Canary's phase the alert is about (`Succeeded`, `Failed`, ...), if known.
    pub phase: Option<String>,
    /// The human sentence ("Canary analysis completed successfully, promotion finished.").
    pub text: String,
    pub fields: Vec<Field>,
    pub severity: Severity,
}

impl Message {
    /// `name.namespace`, the way serin and Flagger name a canary everywhere.
    pub fn canary(&self) -> String {
        format!("{}.{}", self.name, self.namespace)
    }
}

/// The chat services serin can post to. The names are the AlertProvider `type` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Service {
    Slack,
    MsTeams,
    Discord,
    Rocket,
    GChat,
}

impl Service {
    pub const ALL: [Service; 5] = [
        Service::Slack,
        Service::MsTeams,
        Service::Discord,
        Service::Rocket,
        Service::GChat,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Service::Slack => "slack",
            Service::MsTeams => "msteams",
            Service::Discord => "discord",
            Service::Rocket => "rocket",
            Service::GChat => "gchat",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Service {
    type Err = crate::NotifyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Service::ALL
            .into_iter()
            .find(|service| service.as_str() == s)
            .ok_or_else(|| crate::NotifyError::UnknownType(s.to_string()))
    }
}

/// The answer of a chat service to one post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub status: u16,
    pub body: String,
}

/// A chat service that can receive alerts.
pub trait Notifier: Send + Sync {
    fn service(&self) -> Service;

    /// Posts one message. `Ok` only for a 2xx answer; any other answer is
    /// `NotifyError::Status` carrying the status and body.
    fn post<'a>(
        &'a self,
        message: &'a Message,
    ) -> BoxFuture<'a, Result<Delivery, crate::NotifyError>>;
}
