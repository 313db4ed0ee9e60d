//! What the control loop calls: `dispatcher.alert(&canary, event)` sends in the
//! background and returns at once, so a slow or broken chat service never delays
//! or fails an analysis. Failures are logged and counted.

use std::sync::Arc;
use std::time::Duration;

use serin_api::Canary;
use tokio::task::{JoinHandle, JoinSet};

use crate::config::Args;
use crate::event::AlertEvent;
use crate::factory::build_notifier;
use crate::lookup::{ProviderLookup, resolve_provider};
use crate::metrics::AlertMetrics;
use crate::{Message, Notifier, NotifyError, ResolveError, admits, severity_name};

/// Where one alert went and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// `global slack`, or the provider as `namespace/name`.
    pub destination: String,
    /// The provider type, `unknown` when it could not be read.
    pub provider: String,
    /// The HTTP status of a delivered alert, or why it failed.
    pub result: Result<u16, String>,
}

/// Every outcome of one `alert` call.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertReport {
    pub outcomes: Vec<Outcome>,
}

impl AlertReport {
    pub fn sent(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_ok()).count()
    }

    pub fn failed(&self) -> usize {
        self.outcomes.iter().filter(|o| o.result.is_err()).count()
    }
}

/// Sends canary alerts to the global notifiers, or, for a canary with
/// `analysis.alerts`, to each listed AlertProvider whose severity admits the alert
/// (the alerts list replaces the global setting, as in Flagger).
#[derive(Clone)]
pub struct Dispatcher {
    global: Arc<Vec<Box<dyn Notifier>>>,
    lookup: Arc<dyn ProviderLookup>,
    metrics: AlertMetrics,
    timeout: Duration,
    cluster_name: Option<String>,
}

struct Destination {
    label: String,
    target: Target,
}

enum Target {
    Global(usize),
    Provider { namespace: String, name: String },
}

impl Dispatcher {
    pub fn new(
        global: Vec<Box<dyn Notifier>>,
        lookup: Arc<dyn ProviderLookup>,
        metrics: AlertMetrics,
        timeout: Duration,
    ) -> Self {
        Self {
            global: Arc::new(global),
            lookup,
            metrics,
            timeout,
            cluster_name: None,
        }
    }

    /// The dispatcher the operator runs with its `Args`.
    pub fn from_args(
        args: &Args,
        lookup: Arc<dyn ProviderLookup>,
        metrics: AlertMetrics,
    ) -> Result<Self, NotifyError> {
        let mut dispatcher = Self::new(
            args.global_notifiers()?,
            lookup,
            metrics,
            args.alert_timeout,
        );
        dispatcher.cluster_name = args.cluster_name.clone().filter(|c| !c.is_empty());
        Ok(dispatcher)
    }

    pub fn with_cluster_name(mut self, cluster_name: Option<String>) -> Self {
        self.cluster_name = cluster_name;
        self
    }

    pub fn metrics(&self) -> &AlertMetrics {
        &self.metrics
    }

    /// Sends `event` about `canary` in the background and returns at once. Must be
    /// called inside a tokio runtime. The handle may be dropped; awaiting it gives
    /// the outcome of each destination (each bounded by the alert timeout).
    pub fn alert(&self, canary: &Canary, event: AlertEvent) -> JoinHandle<AlertReport> {
        let message = event.message(canary, self.cluster_name.as_deref());
        let destinations = self.destinations(canary, &event);
        let this = self.clone();
        tokio::spawn(async move { this.send_all(Arc::new(message), destinations).await })
    }

    fn destinations(&self, canary: &Canary, event: &AlertEvent) -> Vec<Destination> {
        let alerts = canary
            .analysis()
            .map(|a| a.alerts.as_slice())
            .unwrap_or_default();
        if alerts.is_empty() {
            return (0..self.global.len())
                .map(|i| Destination {
                    label: format!("global {}", self.global[i].service()),
                    target: Target::Global(i),
                })
                .collect();
        }
        let canary_namespace = canary.metadata.namespace.as_deref().unwrap_or_default();
        let mut out = Vec::new();
        for alert in alerts {
            let Some(minimum) = alert.severity() else {
                tracing::warn!(
                    msg = %format!(
                        "alert {} of {} skipped: severity {:?} is not info, warn or error",
                        alert.name,
                        canary.id(),
                        alert.severity.as_deref().unwrap_or_default()
                    ),
                    canary = %canary.id(),
                    alert = %alert.name,
                );
                continue;
            };
            if !admits(minimum, event.severity) {
                continue;
            }
            let namespace = alert
                .provider_ref
                .namespace
                .clone()
                .filter(|ns| !ns.is_empty())
                .unwrap_or_else(|| canary_namespace.to_string());
            let name = alert.provider_ref.name.clone();
            out.push(Destination {
                label: format!("{namespace}/{name}"),
                target: Target::Provider { namespace, name },
            });
        }
        out
    }

    async fn send_all(self, message: Arc<Message>, destinations: Vec<Destination>) -> AlertReport {
        let mut set = JoinSet::new();
        for (index, destination) in destinations.into_iter().enumerate() {
            let this = self.clone();
            let message = message.clone();
            set.spawn(async move { (index, this.send_one(&message, destination).await) });
        }
        let mut outcomes = Vec::new();
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => tracing::error!(msg = %format!("alert task failed: {e}")),
            }
        }
        outcomes.sort_by_key(|(index, _)| *index);
        AlertReport {
            outcomes: outcomes.into_iter().map(|(_, o)| o).collect(),
        }
    }

    async fn send_one(&self, message: &Message, destination: Destination) -> Outcome {
        let mut provider = "unknown".to_string();
        let work = async {
            match &destination.target {
                Target::Global(i) => {
                    let notifier = &self.global[*i];
                    provider = notifier.service().to_string();
                    notifier
                        .post(message)
                        .await
                        .map(|d| d.status)
                        .map_err(|e| e.to_string())
                }
                Target::Provider { namespace, name } => {
                    let config =
                        resolve_provider(self.lookup.as_ref(), namespace, name, self.timeout)
                            .await
                            .map_err(|e| e.to_string())?;
                    provider = config.type_.clone();
                    let notifier = build_notifier(&config).map_err(|source| {
                        ResolveError::Notifier {
                            namespace: namespace.clone(),
                            name: name.clone(),
                            source,
                        }
                        .to_string()
                    })?;
                    notifier
                        .post(message)
                        .await
                        .map(|d| d.status)
                        .map_err(|e| e.to_string())
                }
            }
        };
        let result = match tokio::time::timeout(self.timeout, work).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "alert to {} timed out after {}",
                destination.label,
                serin_api::duration::format_duration(self.timeout)
            )),
        };
        if !crate::Service::ALL.iter().any(|s| s.as_str() == provider) {
            provider = "unknown".to_string();
        }
        self.metrics.record(&provider, result.is_ok());
        match &result {
            Ok(status) => tracing::info!(
                msg = %format!("alert for {} sent to {}", message.canary(), destination.label),
                canary = %message.canary(),
                destination = %destination.label,
                provider = %provider,
                severity = severity_name(message.severity),
                status = *status,
            ),
            Err(error) => tracing::warn!(
                msg = %format!(
                    "alert for {} can't be sent to {}: {error}",
                    message.canary(),
                    destination.label
                ),
                canary = %message.canary(),
                destination = %destination.label,
                provider = %provider,
                severity = severity_name(message.severity),
            ),
        }
        Outcome {
            destination: destination.label,
            provider,
            result,
        }
    }
}
