//! Scripted answers for webhooks and metrics: the only part of a simulated run that is
//! not the operator's own code.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use serin_api::Canary;
use serin_api::canary::{CanaryMetric, CanaryPhase, CanaryWebhook};
use serin_engine::MetricOutcome;
use serin_metrics::check::{CheckOutcome, evaluate};
use serin_operator::observer::Checks;

/// One webhook call a simulated run made.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookCall {
    pub canary: String,
    pub webhook: String,
    pub phase: CanaryPhase,
    pub metadata: BTreeMap<String, String>,
}

/// Metric values and webhook answers, changeable while a simulation runs (to open a
/// gate, or to inject errors).
#[derive(Debug, Default)]
pub struct ScriptedChecks {
    metrics: Mutex<BTreeMap<String, f64>>,
    webhooks: Mutex<BTreeMap<String, bool>>,
    delays: Mutex<BTreeMap<String, std::time::Duration>>,
    calls: Mutex<Vec<WebhookCall>>,
}

impl ScriptedChecks {
    pub fn new(metrics: BTreeMap<String, f64>, webhooks: BTreeMap<String, bool>) -> Self {
        Self {
            metrics: Mutex::new(metrics),
            webhooks: Mutex::new(webhooks),
            delays: Mutex::new(BTreeMap::new()),
            calls: Mutex::new(Vec::new()),
        }
    }

    /// The value every check of metric `name` answers from now on.
    pub fn set_metric(&self, name: &str, value: f64) {
        self.metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), value);
    }

    /// Whether webhook `name` passes from now on.
    pub fn set_webhook(&self, name: &str, pass: bool) {
        self.webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), pass);
    }

    /// Webhook `name` takes this long to answer from now on (a slow service).
    pub fn set_webhook_delay(&self, name: &str, delay: std::time::Duration) {
        self.delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), delay);
    }

    /// Every webhook call so far.
    pub fn calls(&self) -> Vec<WebhookCall> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl Checks for ScriptedChecks {
    async fn call_webhook(
        &self,
        canary: &Canary,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        let mut metadata = webhook.metadata.clone().unwrap_or_default();
        metadata.extend(extra.clone());
        self.calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(WebhookCall {
                canary: canary.id(),
                webhook: webhook.name.clone(),
                phase,
                metadata,
            });
        let delay = self
            .delays
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&webhook.name)
            .copied();
        if let Some(d) = delay {
            tokio::time::sleep(d).await;
        }
        let pass = self
            .webhooks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&webhook.name)
            .copied()
            .unwrap_or(true);
        if pass {
            Ok(())
        } else {
            Err("500 simulated failure (--webhook set to fail)".to_string())
        }
    }

    async fn check_metric(&self, canary: &Canary, metric: &CanaryMetric) -> MetricOutcome {
        self.measure_metric(canary, metric).await.0
    }

    async fn measure_metric(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
    ) -> (MetricOutcome, Option<f64>) {
        let value = self
            .metrics
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&metric.name)
            .copied();
        let Some(value) = value else {
            return (
                MetricOutcome::Halt(format!(
                    "Halt {} advancement {} has no simulated value (give one with --metric {}=VALUE)",
                    canary.id(),
                    metric.name,
                    metric.name
                )),
                None,
            );
        };
        let outcome = match evaluate(
            canary.metadata.name.as_deref().unwrap_or_default(),
            canary.metadata.namespace.as_deref().unwrap_or_default(),
            metric,
            value,
        ) {
            CheckOutcome::Pass => MetricOutcome::Pass,
            CheckOutcome::Halt(m) => MetricOutcome::Halt(m),
        };
        (outcome, Some(value))
    }
}
