//! The per-canary schedule: one task per canary runs it every `analysis.interval`, and
//! earlier when a watch says something worth acting on changed (a new revision of the
//! target or of a tracked config, a spec change, a deletion). Each canary has its own
//! task, so a slow canary never delays another.
//!
//! A spec change while an analysis is under way is the exception: as in Flagger, no
//! step of the analysis comes before its interval has passed, so the next run stays
//! due when it was (or one edited, shorter `analysis.interval` after the last run).

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
        let started = Instant::now();
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
        let mut deadline = Instant::now() + wait;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => break,
                _ = nudge.notified() => {
                    match Box::pin(worth_running_now(&ctx, &namespace, &name, last_generation)).await {
                        Wake::Now => break,
                        Wake::NotYet => {}
                        Wake::Edited { generation, interval } => {
                            // Seen: the edit is acted on at the next run, still due
                            // when it was (a retry after an error included), or one
                            // edited interval after the last run when that is sooner.
                            last_generation = generation;
                            deadline = deadline.min(started + interval);
                            if deadline <= Instant::now() {
                                break;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// What a nudge calls for.
enum Wake {
    /// A run before the next tick.
    Now,
    NotYet,
    /// The spec was edited during an analysis: the next run stays due one
    /// `interval` after the last.
    Edited {
        generation: Option<i64>,
        interval: std::time::Duration,
    },
}

/// Whether a nudge calls for a run before the next tick.
async fn worth_running_now(
    ctx: &Context,
    namespace: &str,
    name: &str,
    last_generation: Option<i64>,
) -> Wake {
    let api: Api<Canary> = Api::namespaced(ctx.client.clone(), namespace);
    let canary = match api.get_opt(name).await {
        Ok(Some(c)) => c,
        Ok(None) => return Wake::Now,
        Err(_) => return Wake::NotYet,
    };
    if canary.metadata.deletion_timestamp.is_some() {
        return Wake::Now;
    }
    // A request made by hand (`serin promote` ...) is acted on at once.
    if canary
        .metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(serin_api::manual::REQUEST))
    {
        return Wake::Now;
    }
    let edited = canary.metadata.generation != last_generation;
    let Some(status) = canary.status.clone() else {
        return Wake::Now;
    };
    if edited {
        // Outside an analysis an edit is applied at once (no step can come of it);
        // during one, a run now would take the next step early.
        if !status.phase.is_running() {
            return Wake::Now;
        }
        if new_revision(ctx, &canary, &status).await {
            return Wake::Now;
        }
        return Wake::Edited {
            generation: canary.metadata.generation,
            interval: canary.analysis_interval(),
        };
    }
    if canary.spec.suspend {
        return Wake::NotYet;
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
                return Wake::NotYet;
            };
            return if matches!(
                workload.primary_readiness(&canary).await,
                Ok(crate::workload::Readiness::Ready)
            ) {
                Wake::Now
            } else {
                Wake::NotYet
            };
        }
        CanaryPhase::Initialized
        | CanaryPhase::Succeeded
        | CanaryPhase::Failed
        | CanaryPhase::Progressing
        | CanaryPhase::WaitingPromotion => {}
        _ => return Wake::NotYet,
    }
    if new_revision(ctx, &canary, &status).await {
        Wake::Now
    } else {
        Wake::NotYet
    }
}

/// The target or a tracked config has a revision the status has not recorded.
async fn new_revision(ctx: &Context, canary: &Canary, status: &serin_api::CanaryStatus) -> bool {
    if !matches!(
        status.phase,
        CanaryPhase::Initialized
            | CanaryPhase::Succeeded
            | CanaryPhase::Failed
            | CanaryPhase::Progressing
            | CanaryPhase::WaitingPromotion
    ) {
        return false;
    }
    let canary = crate::controller::with_default_provider(ctx, canary.clone());
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
