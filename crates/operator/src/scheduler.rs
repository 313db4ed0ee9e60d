//! The per-canary schedule: one task per canary runs it every `analysis.interval`, and
//! earlier when a watch says something worth acting on changed (a new revision of the
//! target or of a tracked config, a spec change, a deletion). Each canary has its own
//! task, so a slow canary never delays another.

use std::sync::Arc;

use kube::Api;
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use tokio::sync::Notify;
use tokio::time::Instant;

use crate::controller::{Context, Next, run_once};

/// Runs one canary until it is deleted.
pub async fn canary_loop(
    ctx: Arc<Context>,
    namespace: String,
    name: String,
    nudge: Arc<Notify>,
    initial_delay: std::time::Duration,
) {
    if !initial_delay.is_zero() {
        tokio::time::sleep(initial_delay).await;
    }
    let mut last_generation: Option<i64> = None;
    loop {
        // Boxed: a run's future is large and lives only while it runs, so a thousand
        // idle canaries hold a few hundred bytes each, not the run's whole state.
        let (next, generation) = Box::pin(run_once(&ctx, &namespace, &name)).await;
        if generation.is_some() {
            last_generation = generation;
        }
        let wait = match next {
            Next::Stop => return,
            Next::After(d) => d,
        };
        let deadline = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = nudge.notified() => {
                    if Box::pin(worth_running_now(&ctx, &namespace, &name, last_generation)).await {
                        break;
                    }
                }
            }
        }
    }
}

/// True when a nudge calls for a run before the next tick.
async fn worth_running_now(
    ctx: &Context,
    namespace: &str,
    name: &str,
    last_generation: Option<i64>,
) -> bool {
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), namespace);
    let canary = match api.get_opt(name).await {
        Ok(Some(c)) => c,
        Ok(None) => return true,
        Err(_) => return false,
    };
    if canary.metadata.deletion_timestamp.is_some() {
        return true;
    }
    // A request made by hand (`serin promote` ...) is acted on at once.
    if canary
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(serin_api::manual::REQUEST))
    {
        return true;
    }
    if canary.metadata.generation != last_generation {
        return true;
    }
    let Some(status) = canary.status.clone() else {
        return true;
    };
    if canary.spec.suspend {
        return false;
    }
    match status.phase {
        // Finish the initialization as soon as the primary is ready.
        CanaryPhase::Initializing => {
            let canary = crate::controller::with_default_provider(ctx, canary);
            let Ok(workload) = crate::workload::workload_with(
                ctx.client.clone(),
                &canary,
                crate::workload::WorkloadOptions {
                    clock: ctx.clock,
                    labels: ctx.options.labels.clone(),
                    skip_config_tracking: !ctx.options.config_tracking,
                },
            ) else {
                return false;
            };
            return matches!(
                workload.primary_readiness(&canary).await,
                Ok(crate::workload::Readiness::Ready)
            );
        }
        CanaryPhase::Initialized
        | CanaryPhase::Succeeded
        | CanaryPhase::Failed
        | CanaryPhase::Progressing
        | CanaryPhase::WaitingPromotion => {}
        _ => return false,
    }
    let canary = crate::controller::with_default_provider(ctx, canary);
    let Ok(workload) = crate::workload::workload_with(
        ctx.client.clone(),
        &canary,
        crate::workload::WorkloadOptions {
            clock: ctx.clock,
            labels: ctx.options.labels.clone(),
            skip_config_tracking: !ctx.options.config_tracking,
        },
    ) else {
        return false;
    };
    let Ok(revision) = workload.target_revision(&canary).await else {
        return false;
    };
    revision.spec_hash != status.last_applied_spec.clone().unwrap_or_default()
        || revision.tracked_configs != status.tracked_configs.clone().unwrap_or_default()
}
