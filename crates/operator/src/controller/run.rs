//! One run of one canary.

use std::time::Duration;

use kube::Api;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use serin_api::Canary;
use serin_api::canary::{CanaryPhase, CanaryStatus, CanaryWebhook, HookType};
use serin_engine::{Action, Decision, EventType, Observe, Readiness};
use serin_notify::AlertEvent;

use super::guard;
use super::{Context, FINALIZER, RETRY_AFTER, event_metadata, key_of, with_default_provider};
use crate::observer::ClusterObserver;
use crate::router::Router;
use crate::workload::{WorkloadController, WorkloadOptions};

/// When to run a canary next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    After(Duration),
    /// The canary is gone.
    Stop,
}

/// Runs one canary once. Returns when to run it next and the generation it ran.
pub async fn run_once(ctx: &Context, namespace: &str, name: &str) -> (Next, Option<i64>) {
    let started = tokio::time::Instant::now();
    let api: Api<Canary> = ctx.api(namespace);
    let canary = match api.get_opt(name).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            ctx.claims().remove(&format!("{namespace}/{name}"));
            return (Next::Stop, None);
        }
        Err(e) => {
            tracing::warn!(msg = format!("cannot read canary: {e}"), canary = %format!("{name}.{namespace}"));
            return (Next::After(RETRY_AFTER), None);
        }
    };
    let generation = canary.metadata.generation;
    let canary = with_default_provider(ctx, canary);
    let interval = canary.analysis_interval();
    let next = run_canary(ctx, &api, canary, started).await;
    (
        match next {
            Some(d) => Next::After(d.min(interval)),
            None if generation.is_none() => Next::Stop,
            None => Next::After(interval),
        },
        generation,
    )
}

type Adapters = (Box<dyn WorkloadController>, Box<dyn Router>);

fn build(ctx: &Context, canary: &Canary) -> Result<Adapters, String> {
    let workload = crate::workload::workload_with(
        ctx.client.clone(),
        canary,
        WorkloadOptions {
            clock: ctx.clock,
            labels: ctx.options.labels.clone(),
            skip_config_tracking: !ctx.options.config_tracking,
        },
    )
    .map_err(|e| e.to_string())?;
    let router = crate::router::router_with(ctx.client.clone(), canary, ctx.options.labels.clone())
        .map_err(|e| e.to_string())?;
    Ok((workload, router))
}

/// With `--no-cross-namespace-refs`, the first reference to another namespace, in
/// Flagger's words.
fn cross_namespace_ref(canary: &Canary) -> Option<String> {
    let own = canary.metadata.namespace.clone().unwrap_or_default();
    let other = |ns: &Option<String>| ns.as_deref().is_some_and(|n| !n.is_empty() && n != own);
    let analysis = canary.analysis()?;
    for m in &analysis.metrics {
        if let Some(r) = &m.template_ref
            && other(&r.namespace)
        {
            return Some(format!(
                "can't access metric template {}.{}, cross-namespace references are blocked",
                r.name,
                r.namespace.as_deref().unwrap_or_default()
            ));
        }
    }
    for a in &analysis.alerts {
        let r = &a.provider_ref;
        if other(&r.namespace) {
            return Some(format!(
                "can't access alert provider {}.{}, cross-namespace references are blocked",
                r.name,
                r.namespace.as_deref().unwrap_or_default()
            ));
        }
    }
    None
}

/// The run itself. `Some(d)` asks for the next run sooner than the interval.
async fn run_canary(
    ctx: &Context,
    api: &Api<Canary>,
    canary: Canary,
    started: tokio::time::Instant,
) -> Option<Duration> {
    if ctx.options.no_cross_namespace_refs
        && canary.metadata.deletion_timestamp.is_none()
        && let Some(e) = cross_namespace_ref(&canary)
    {
        warn(ctx, &canary, &e).await;
        return None;
    }
    let (workload, router) = match build(ctx, &canary) {
        Ok(x) => x,
        Err(e) => {
            warn(ctx, &canary, &e).await;
            return None;
        }
    };
    if canary.metadata.deletion_timestamp.is_some() {
        return finalize(ctx, api, &canary, workload.as_ref(), router.as_ref()).await;
    }
    if !canary.spec.revert_on_deletion && canary.finalizers().iter().any(|f| f == FINALIZER) {
        // revertOnDeletion turned off: deleting the canary no longer reverts anything.
        if let Err(e) = remove_finalizer(api, &canary).await {
            warn(ctx, &canary, &format!("cannot remove finalizer: {e}")).await;
            return Some(RETRY_AFTER);
        }
    }
    if canary.spec.revert_on_deletion && !canary.finalizers().iter().any(|f| f == FINALIZER) {
        let mut finalizers = canary.finalizers().to_vec();
        finalizers.push(FINALIZER.to_string());
        let patch = serde_json::json!({"metadata": {"finalizers": finalizers}});
        if let Err(e) = api
            .patch(
                &canary.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            warn(ctx, &canary, &format!("cannot add finalizer: {e}")).await;
            return Some(RETRY_AFTER);
        }
    }
    if let Some(refusal) = guard::refusal(ctx, &canary) {
        guard::refuse(ctx, api, &canary, refusal).await;
        return None;
    }
    let mut canary = canary;
    let cleared = guard::clear(&mut canary);
    let mut observer = ClusterObserver::new(
        &canary,
        workload.as_ref(),
        router.as_ref(),
        ctx.checks.as_ref(),
    );
    if !canary.spec.suspend {
        if let Err(e) = workload.initialize_primary(&canary).await {
            if target_missing(&canary, &e)
                && guard::target_deleted(ctx, api, &canary, router.as_ref()).await
            {
                return None;
            }
            warn(ctx, &canary, &e.to_string()).await;
            return Some(RETRY_AFTER);
        }
        if let Err(e) = router.initialize(&canary).await {
            warn(ctx, &canary, &e.to_string()).await;
            return Some(RETRY_AFTER);
        }
        // A canary being put in place touches what clients call (the apex service,
        // the mesh's routes) only once the primary is ready, as Flagger does: until
        // then the target keeps serving and the engine reports what it waits for.
        let onboarding = canary
            .status
            .as_ref()
            .is_none_or(|s| s.phase == CanaryPhase::Initializing);
        let primary_ready =
            !onboarding || matches!(observer.primary_readiness().await, Ok(Readiness::Ready));
        if primary_ready && let Err(e) = router.reconcile(&canary).await {
            warn(ctx, &canary, &e.to_string()).await;
            return Some(RETRY_AFTER);
        }
    }
    let before = canary.status.as_ref().map(|s| s.phase);
    let mut decision = serin_engine::decide(&canary, ctx.clock.now(), &mut observer).await;
    let seen = std::mem::take(&mut observer.seen);
    let seen_routes = observer.routes_read();
    drop(observer);
    if let Some(t) = &ctx.telemetry {
        t.observe_checks(&canary, &seen);
    }
    if queued(ctx, &canary, &decision).await {
        return None;
    }
    if cleared && decision.status.is_none() {
        decision.status = Some(canary.status_or_default());
    }
    let mut slot = Slot {
        ctx,
        key: key_of(&canary),
        keep: canary.status.as_ref().is_some_and(|s| s.phase.is_running()),
    };
    // Routes are set with the decided status, so the router sees the session
    // affinity cookies the engine chose this run.
    let mut decided = canary.clone();
    if let Some(status) = &decision.status {
        decided.status = Some(status.clone());
    }
    let mut post_rollout = Vec::new();
    for action in &decision.actions {
        let result = match action {
            Action::ScaleToZero => workload.scale_to_zero(&canary).await,
            Action::ScaleFromZero => workload.scale_from_zero(&canary).await,
            Action::SetRoutes(r) => router.set_routes(&decided, *r).await,
            Action::Promote => workload.promote(&canary).await,
            Action::RunPostRolloutHooks(phase) => {
                post_rollout.push(*phase);
                Ok(())
            }
        };
        if let Err(e) = result {
            warn(ctx, &canary, &e.to_string()).await;
            return Some(RETRY_AFTER);
        }
    }
    let (canary, status) = match decision.status.clone() {
        Some(status) => match super::write_status(api, &canary, status.clone()).await {
            Ok(updated) => (updated, status),
            Err(e) => {
                warn(ctx, &canary, &format!("cannot write status: {e}")).await;
                return Some(RETRY_AFTER);
            }
        },
        None => {
            let status = canary.status_or_default();
            (canary, status)
        }
    };
    slot.keep = true;
    let mut annotations = decision.annotations.clone();
    if !seen.is_empty() {
        // Each check keeps its latest result: a pre-rollout check passed on the first
        // step still shows as passed later in the analysis.
        let mut results = serin_api::manual::LastChecks::of(&canary)
            .map(|l| l.results)
            .unwrap_or_default();
        results.retain(|r| !seen.iter().any(|s| s.kind == r.kind && s.name == r.name));
        results.extend(seen);
        let last = serin_api::manual::LastChecks {
            time: ctx
                .clock
                .now()
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            results,
        };
        annotations.insert(
            serin_api::manual::LAST_CHECKS.to_string(),
            serde_json::to_string(&last).ok(),
        );
    }
    if let Err(e) = super::manual::apply_annotations(api, &canary, &annotations).await {
        if decision.annotations.is_empty() {
            // Only the results shown by `serin status`: the next run writes them again.
            tracing::debug!(msg = format!("cannot write the last checks: {e}"), canary = %canary.id());
        } else {
            warn(
                ctx,
                &canary,
                &format!("cannot close the request made by hand: {e}"),
            )
            .await;
        }
    }
    note_phase(ctx, &canary, &status);
    publish(ctx, &canary, &status, &decision, &post_rollout).await;
    if let Some(t) = &ctx.telemetry {
        // The split this run set, else the one it read (Flagger's gauge follows the
        // routes, so an A/B canary under analysis shows its routed weight).
        let routes = decision
            .actions
            .iter()
            .rev()
            .find_map(|a| match a {
                Action::SetRoutes(r) => Some((r.primary, r.canary)),
                _ => None,
            })
            .or(seen_routes.map(|r| (r.primary, r.canary)));
        let run = crate::telemetry::RunReport {
            before,
            status: &status,
            routes,
            took: started.elapsed(),
        };
        t.observe_run(&canary, &run);
    }
    None
}

/// A slot among the concurrent analyses taken by a run, given back when the run ends
/// before writing its status.
struct Slot<'a> {
    ctx: &'a Context,
    key: String,
    keep: bool,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        if !self.keep {
            self.ctx.running().remove(&self.key);
        }
    }
}

/// Holds back a new analysis when `--max-concurrent-canaries` analyses are under way.
async fn queued(ctx: &Context, canary: &Canary, decision: &Decision) -> bool {
    let Some(max) = ctx.options.max_concurrent_canaries else {
        return false;
    };
    let key = key_of(canary);
    let was_running = canary.status.as_ref().is_some_and(|s| s.phase.is_running());
    let starts = decision
        .status
        .as_ref()
        .is_some_and(|s| s.phase.is_running());
    if was_running || !starts {
        return false;
    }
    // Check and take the slot under one lock, so two canaries starting at the same
    // moment cannot both take the last one. A run that then fails gives it back
    // (see `Slot`); a written status keeps it until the analysis ends.
    let busy = {
        let mut running = ctx.running();
        let busy = running.len() >= max && !running.contains(&key);
        if !busy {
            running.insert(key.clone());
        }
        busy
    };
    if !busy {
        ctx.queued().remove(&key);
        return false;
    }
    let first = ctx.queued().insert(key);
    if first {
        let status = canary.status_or_default();
        ctx.recorder
            .record(
                canary,
                EventType::Normal,
                &format!(
                    "Canary {} is queued, waiting for a free analysis slot (--max-concurrent-canaries {max})",
                    canary.id()
                ),
                status.phase,
                status.canary_weight,
            )
            .await;
    }
    true
}

fn note_phase(ctx: &Context, canary: &Canary, status: &CanaryStatus) {
    let key = key_of(canary);
    if status.phase.is_running() {
        ctx.running().insert(key.clone());
        ctx.queued().remove(&key);
    } else {
        ctx.running().remove(&key);
    }
}

/// Records the decision's events (and passes them to `event` webhooks), runs the
/// post-rollout hooks with their results in Flagger's place among them, and sends
/// the alerts.
async fn publish(
    ctx: &Context,
    canary: &Canary,
    status: &CanaryStatus,
    decision: &Decision,
    post_rollout: &[CanaryPhase],
) {
    let record = |type_: EventType, message: String| async move {
        ctx.recorder
            .record(canary, type_, &message, status.phase, status.canary_weight)
            .await;
        send_to_event_webhooks(ctx, canary, type_, &message, status.phase);
    };
    let at = decision.post_rollout_after.min(decision.events.len());
    for event in &decision.events[..at] {
        record(event.type_, event.message.clone()).await;
    }
    for phase in post_rollout {
        for (type_, message) in run_post_rollout_hooks(ctx, canary, *phase).await {
            record(type_, message).await;
        }
    }
    for event in &decision.events[at..] {
        record(event.type_, event.message.clone()).await;
    }
    if let Some(dispatcher) = &ctx.alerts {
        for alert in &decision.alerts {
            let mut event =
                AlertEvent::new(alert.message.clone(), alert.severity).in_phase(status.phase);
            if alert.with_details {
                event = event.with_details();
            }
            drop(dispatcher.alert(canary, event));
        }
    }
}

/// Passes one event to the canary's `event` webhooks, or to `--event-webhook` when
/// it has none, as Flagger does; in the background, so a slow receiver holds
/// nothing up.
fn send_to_event_webhooks(
    ctx: &Context,
    canary: &Canary,
    type_: EventType,
    message: &str,
    phase: CanaryPhase,
) {
    let mut event_hooks: Vec<_> = canary
        .analysis()
        .map(|a| {
            a.webhooks
                .iter()
                .filter(|w| w.hook_type() == Some(HookType::Event))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    if event_hooks.is_empty()
        && let Some(url) = &ctx.options.event_webhook
    {
        event_hooks.push(CanaryWebhook {
            type_: Some("event".into()),
            name: "events".into(),
            url: url.clone(),
            ..Default::default()
        });
    }
    for hook in event_hooks {
        let checks = ctx.checks.clone();
        let canary = canary.clone();
        let extra = event_metadata(type_.as_str(), message, ctx.clock.now());
        tokio::spawn(async move {
            if let Err(e) = checks.call_webhook(&canary, &hook, phase, &extra).await {
                tracing::debug!(msg = format!("event webhook {} failed: {e}", hook.name), canary = %canary.id());
            }
        });
    }
}

/// Calls the post-rollout hooks in order until one fails, as Flagger does; their
/// results, as events.
async fn run_post_rollout_hooks(
    ctx: &Context,
    canary: &Canary,
    phase: CanaryPhase,
) -> Vec<(EventType, String)> {
    let hooks: Vec<_> = canary
        .analysis()
        .map(|a| {
            a.webhooks
                .iter()
                .filter(|w| w.hook_type() == Some(HookType::PostRollout))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let mut results = Vec::new();
    for hook in hooks {
        match ctx
            .checks
            .call_webhook(canary, &hook, phase, &Default::default())
            .await
        {
            Ok(()) => results.push((
                EventType::Normal,
                format!("Post-rollout check {} passed", hook.name),
            )),
            Err(e) => {
                results.push((
                    EventType::Warning,
                    format!("Post-rollout hook {} failed {e}", hook.name),
                ));
                break;
            }
        }
    }
    results
}

/// Deletion of a canary: with `revertOnDeletion`, restore the target and remove the
/// routing objects (Terminating → Terminated), then let the deletion finish.
async fn finalize(
    ctx: &Context,
    api: &Api<Canary>,
    canary: &Canary,
    workload: &dyn WorkloadController,
    router: &dyn Router,
) -> Option<Duration> {
    if !canary.finalizers().iter().any(|f| f == FINALIZER) {
        return None;
    }
    let mut status = canary.status_or_default();
    if status.phase != CanaryPhase::Terminated {
        if status.phase != CanaryPhase::Terminating {
            status.phase = CanaryPhase::Terminating;
            status.last_transition_time = Some(ctx.clock.now_k8s());
            if let Err(e) = super::write_status(api, canary, status.clone()).await {
                warn(ctx, canary, &format!("cannot write status: {e}")).await;
                return Some(RETRY_AFTER);
            }
            ctx.recorder
                .record(
                    canary,
                    EventType::Normal,
                    &format!("Terminating canary {}", canary.id()),
                    CanaryPhase::Terminating,
                    status.canary_weight,
                )
                .await;
        }
        if let Err(e) = workload.finalize(canary).await {
            warn(ctx, canary, &format!("Failed to finalize: {e}")).await;
            return Some(RETRY_AFTER);
        }
        // The routes go back to the target only once it serves again, as in Flagger.
        match workload.canary_readiness(canary).await {
            Ok(Readiness::Ready) => {}
            Ok(Readiness::Waiting(m)) | Ok(Readiness::DeadlineExceeded(m)) => {
                tracing::info!(msg = format!("canary not ready during finalizing: {m}"), canary = %canary.id());
                return Some(RETRY_AFTER);
            }
            Err(e) => {
                warn(
                    ctx,
                    canary,
                    &format!("canary not ready during finalizing: {e}"),
                )
                .await;
                return Some(RETRY_AFTER);
            }
        }
        if let Err(e) = router.finalize(canary).await {
            warn(ctx, canary, &format!("Failed to finalize: {e}")).await;
            return Some(RETRY_AFTER);
        }
        status.phase = CanaryPhase::Terminated;
        status.last_transition_time = Some(ctx.clock.now_k8s());
        if let Ok(fresh) = api.get(&canary.name_any()).await
            && let Err(e) = super::write_status(api, &fresh, status.clone()).await
        {
            tracing::warn!(msg = format!("cannot write status: {e}"), canary = %canary.id());
        }
    }
    if let Err(e) = remove_finalizer(api, canary).await {
        warn(ctx, canary, &format!("cannot remove finalizer: {e}")).await;
        return Some(RETRY_AFTER);
    }
    ctx.recorder
        .record(
            canary,
            EventType::Normal,
            &format!("Terminated canary {}", canary.id()),
            CanaryPhase::Terminated,
            0,
        )
        .await;
    None
}

async fn remove_finalizer(api: &Api<Canary>, canary: &Canary) -> kube::Result<Canary> {
    let finalizers: Vec<String> = canary
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    let patch = serde_json::json!({"metadata": {"finalizers": finalizers}});
    api.patch(
        &canary.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
}

/// The error says the canary's target itself does not exist.
fn target_missing(canary: &Canary, e: &crate::error::Error) -> bool {
    matches!(e, crate::error::Error::NotFound { kind, name, .. }
        if kind == crate::workload::target_kind(canary) && *name == canary.spec.target_ref.name)
}

/// A warning event (and log line) about a run that could not finish; event
/// webhooks receive it too.
async fn warn(ctx: &Context, canary: &Canary, message: &str) {
    let status = canary.status_or_default();
    ctx.recorder
        .record(
            canary,
            EventType::Warning,
            message,
            status.phase,
            status.canary_weight,
        )
        .await;
    send_to_event_webhooks(ctx, canary, EventType::Warning, message, status.phase);
}
