//! The engine's view of the world during one run: [`ClusterObserver`] answers
//! [`serin_engine::Observe`] from the workload controller, the router and a [`Checks`]
//! (webhooks and metrics). The operator's checks call real webhooks and Prometheus
//! ([`LiveChecks`]); `simulate` scripts them. That is the only difference.

use std::collections::BTreeMap;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serin_api::canary::{CanaryMetric, CanaryPhase, CanaryWebhook};
use serin_api::manual::CheckResult;
use serin_api::{Canary, MetricTemplate};
use serin_engine::{MetricOutcome, Observe, Readiness, Routes, TargetRevision};
use serin_metrics::check::{
    CheckOutcome, ProviderContext, provider_available, run_check, template_key,
};

use crate::router::Router;
use crate::webhook::WebhookCaller;
use crate::workload::WorkloadController;

/// Webhook calls and metric checks, the parts of a run that leave the cluster.
#[async_trait]
pub trait Checks: Send + Sync {
    /// Calls a webhook; `Ok` for a 2xx answer. `extra` is added to its metadata.
    async fn call_webhook(
        &self,
        canary: &Canary,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), String>;

    /// Runs one metric check.
    async fn check_metric(&self, canary: &Canary, metric: &CanaryMetric) -> MetricOutcome;

    /// Whether every metric provider of the analysis answers (see
    /// [`Observe::metric_providers`]); scripted checks have no providers to ask.
    async fn metric_providers(&self, _canary: &Canary) -> Result<(), String> {
        Ok(())
    }

    /// Runs one metric check and gives the value measured, when there is one (shown
    /// by `serin status` and the dashboard).
    async fn measure_metric(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
    ) -> (MetricOutcome, Option<f64>) {
        (self.check_metric(canary, metric).await, None)
    }
}

/// Real webhooks over HTTP, real metric providers.
pub struct LiveChecks {
    pub client: kube::Client,
    pub webhooks: WebhookCaller,
    pub metrics: ProviderContext,
}

#[async_trait]
impl Checks for LiveChecks {
    async fn call_webhook(
        &self,
        canary: &Canary,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
        extra: &BTreeMap<String, String>,
    ) -> Result<(), String> {
        self.webhooks.call(canary, webhook, phase, extra).await
    }

    async fn check_metric(&self, canary: &Canary, metric: &CanaryMetric) -> MetricOutcome {
        self.measure_metric(canary, metric).await.0
    }

    async fn metric_providers(&self, canary: &Canary) -> Result<(), String> {
        let metrics = canary
            .analysis()
            .map(|a| a.metrics.clone())
            .unwrap_or_default();
        for metric in &metrics {
            let mut template = None;
            let mut secret = None;
            if let Some((name, namespace)) = template_key(canary, metric) {
                let api: Api<MetricTemplate> = Api::namespaced(self.client.clone(), &namespace);
                let t = api
                    .get_opt(&name)
                    .await
                    .map_err(|e| format!("metric template {name}.{namespace} error: {e}"))?
                    .ok_or_else(|| {
                        format!("metric template {name}.{namespace} error: not found")
                    })?;
                if let Some(r) = t.spec.provider.secret_ref.as_ref() {
                    let api: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
                    let found = api.get_opt(&r.name).await.map_err(|e| {
                        format!(
                            "metric template {name}.{namespace} secret {} error: {e}",
                            r.name
                        )
                    })?;
                    secret = found.map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect::<BTreeMap<String, Vec<u8>>>()
                    });
                }
                template = Some(t);
            }
            provider_available(
                canary,
                metric,
                template.as_ref(),
                secret.as_ref(),
                &self.metrics,
            )
            .await?;
        }
        Ok(())
    }

    async fn measure_metric(
        &self,
        canary: &Canary,
        metric: &CanaryMetric,
    ) -> (MetricOutcome, Option<f64>) {
        let mut template = None;
        let mut secret = None;
        if let Some((name, namespace)) = template_key(canary, metric) {
            let api: Api<MetricTemplate> = Api::namespaced(self.client.clone(), &namespace);
            match api.get_opt(&name).await {
                Ok(Some(t)) => template = Some(t),
                Ok(None) => {
                    return (
                        MetricOutcome::Halt(format!(
                            "Metric template {name}.{namespace} not found"
                        )),
                        None,
                    );
                }
                Err(e) => {
                    return (
                        MetricOutcome::Halt(format!(
                            "Metric template {name}.{namespace} error: {e}"
                        )),
                        None,
                    );
                }
            }
        }
        if let Some(t) = &template
            && let Some(r) = t.spec.provider.secret_ref.as_ref()
        {
            let ns = t.metadata.namespace.clone().unwrap_or_default();
            let api: Api<Secret> = Api::namespaced(self.client.clone(), &ns);
            match api.get_opt(&r.name).await {
                Ok(Some(s)) => {
                    secret = Some(
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, v.0))
                            .collect::<BTreeMap<String, Vec<u8>>>(),
                    )
                }
                Ok(None) => {}
                Err(e) => {
                    return (
                        MetricOutcome::Halt(format!(
                            "Metric template {} secret {}.{ns} error: {e}",
                            t.metadata.name.clone().unwrap_or_default(),
                            r.name
                        )),
                        None,
                    );
                }
            }
        }
        let check = run_check(
            canary,
            metric,
            template.as_ref(),
            secret.as_ref(),
            &self.metrics,
        )
        .await;
        let outcome = match check.outcome {
            CheckOutcome::Pass => MetricOutcome::Pass,
            CheckOutcome::Halt(m) => MetricOutcome::Halt(m),
        }
        .noted(check.warning);
        (outcome, check.value)
    }
}

/// Answers the engine's questions for one run of one canary. Each answer is read at
/// most once per run.
pub struct ClusterObserver<'a> {
    pub canary: &'a Canary,
    pub workload: &'a dyn WorkloadController,
    pub router: &'a dyn Router,
    pub checks: &'a dyn Checks,
    revision: Option<Result<TargetRevision, String>>,
    canary_ready: Option<Result<Readiness, String>>,
    primary_ready: Option<Result<Readiness, String>>,
    routes: Option<Result<Routes, String>>,
    /// The webhook and metric results of this run, in order.
    pub seen: Vec<CheckResult>,
}

impl<'a> ClusterObserver<'a> {
    pub fn new(
        canary: &'a Canary,
        workload: &'a dyn WorkloadController,
        router: &'a dyn Router,
        checks: &'a dyn Checks,
    ) -> Self {
        Self {
            canary,
            workload,
            router,
            checks,
            revision: None,
            canary_ready: None,
            primary_ready: None,
            routes: None,
            seen: Vec::new(),
        }
    }
}

impl ClusterObserver<'_> {
    /// The routes read this run, when they were read and could be.
    pub fn routes_read(&self) -> Option<Routes> {
        self.routes.as_ref().and_then(|r| r.as_ref().ok()).copied()
    }
}

/// Asks once per run: the first answer, error included, is the answer for the run.
async fn once<T: Clone>(
    slot: &mut Option<Result<T, String>>,
    ask: impl std::future::Future<Output = crate::error::Result<T>>,
) -> Result<T, String> {
    if let Some(answer) = slot {
        return answer.clone();
    }
    let answer = ask.await.map_err(|e| e.to_string());
    *slot = Some(answer.clone());
    answer
}

#[async_trait]
impl Observe for ClusterObserver<'_> {
    async fn target_revision(&mut self) -> Result<TargetRevision, String> {
        once(
            &mut self.revision,
            self.workload.target_revision(self.canary),
        )
        .await
    }

    async fn canary_readiness(&mut self) -> Result<Readiness, String> {
        once(
            &mut self.canary_ready,
            self.workload.canary_readiness(self.canary),
        )
        .await
    }

    async fn primary_readiness(&mut self) -> Result<Readiness, String> {
        once(
            &mut self.primary_ready,
            self.workload.primary_readiness(self.canary),
        )
        .await
    }

    async fn routes(&mut self) -> Result<Routes, String> {
        once(&mut self.routes, self.router.get_routes(self.canary)).await
    }

    async fn call_webhook(
        &mut self,
        webhook: &CanaryWebhook,
        phase: CanaryPhase,
    ) -> Result<(), String> {
        let result = self
            .checks
            .call_webhook(self.canary, webhook, phase, &BTreeMap::new())
            .await;
        self.seen.push(seen_webhook(webhook, &result));
        result
    }

    async fn metric_providers(&mut self) -> Result<(), String> {
        self.checks.metric_providers(self.canary).await
    }

    async fn check_metric(&mut self, metric: &CanaryMetric) -> MetricOutcome {
        let (outcome, value) = self.checks.measure_metric(self.canary, metric).await;
        self.seen.push(seen_metric(metric, value, &outcome));
        outcome
    }
}

fn seen_webhook(webhook: &CanaryWebhook, result: &Result<(), String>) -> CheckResult {
    let kind = webhook.hook_type().map(|t| t.as_str()).unwrap_or("rollout");
    CheckResult::new(
        kind,
        &webhook.name,
        result.is_ok(),
        result.as_ref().err().map(|e| e.as_str()),
    )
}

fn seen_metric(metric: &CanaryMetric, value: Option<f64>, outcome: &MetricOutcome) -> CheckResult {
    // A noted outcome (a warning beside it, such as several series) counts as itself.
    let mut outcome = outcome;
    while let MetricOutcome::Noted { outcome: inner, .. } = outcome {
        outcome = inner;
    }
    let message = match outcome {
        MetricOutcome::Halt(m) => Some(m.as_str()),
        _ => None,
    };
    let mut r = CheckResult::new(
        "metric",
        &metric.name,
        matches!(outcome, MetricOutcome::Pass),
        message,
    );
    r.value = value.filter(|v| v.is_finite());
    if let Some(range) = &metric.threshold_range {
        r.min = range.min;
        r.max = range.max;
    } else {
        r.max = metric.threshold;
    }
    r
}
