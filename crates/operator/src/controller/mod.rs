//! The controller: watches Canaries and the objects they depend on, runs every canary
//! on its own schedule (`analysis.interval`) in its own task, and at once when a new
//! revision of its target or of a tracked config appears.
//!
//! One run ([`run::run_once`]) makes sure the generated objects exist, asks the engine
//! for a decision, applies its actions in order, writes the status with optimistic
//! concurrency, then records events and sends alerts. All progress lives in the status,
//! so a new process continues where a stopped one left off.

mod guard;
mod manual;
mod run;
mod status;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{Stream, StreamExt};
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use serin_api::Canary;
use serin_api::clock::Clock;
use serin_notify::Dispatcher;
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::events::EventRecorder;
use crate::labels::LabelOptions;
use crate::observer::Checks;
use crate::telemetry::Telemetry;

pub use guard::{INVALID_SPEC, READY, TARGET_IN_USE};
pub use run::{Next, run_once};
pub use status::write_status;

/// The finalizer serin puts on canaries with `revertOnDeletion`.
pub const FINALIZER: &str = "finalizer.flagger.app";

/// Settings of the controller (the `serin operator` flags).
#[derive(Debug, Clone)]
pub struct ControllerOptions {
    /// Watch only this namespace; all namespaces when `None`.
    pub namespace: Option<String>,
    /// Provider of canaries that name none (`istio` when `None`).
    pub mesh_provider: Option<String>,
    /// At most this many analyses run at once; `None` for no limit.
    pub max_concurrent_canaries: Option<usize>,
    /// `--selector-labels`, `--include-label-prefix`.
    pub labels: LabelOptions,
    /// `--enable-config-tracking` (on by default, as in Flagger).
    pub config_tracking: bool,
    /// `--event-webhook`: receives the events of canaries without an `event` webhook.
    pub event_webhook: Option<String>,
    /// `--no-cross-namespace-refs`: MetricTemplates and AlertProviders of other
    /// namespaces are refused.
    pub no_cross_namespace_refs: bool,
}

impl Default for ControllerOptions {
    fn default() -> Self {
        Self {
            namespace: None,
            mesh_provider: None,
            max_concurrent_canaries: None,
            labels: LabelOptions::default(),
            config_tracking: true,
            event_webhook: None,
            no_cross_namespace_refs: false,
        }
    }
}

/// What every run shares.
pub struct Context {
    pub client: Client,
    pub clock: Clock,
    pub options: ControllerOptions,
    pub recorder: EventRecorder,
    pub checks: Arc<dyn Checks>,
    pub alerts: Option<Dispatcher>,
    pub telemetry: Option<Telemetry>,
    /// Canaries (`namespace/name`) with an analysis under way.
    running: Mutex<HashSet<String>>,
    /// Canaries told they are queued (so the event is recorded once).
    queued: Mutex<HashSet<String>>,
    /// Every Canary's target, to refuse a second Canary on the same one.
    claims: Mutex<HashMap<String, guard::Claim>>,
}

impl Context {
    pub fn new(
        client: Client,
        clock: Clock,
        options: ControllerOptions,
        checks: Arc<dyn Checks>,
    ) -> Self {
        Self {
            recorder: EventRecorder::new(client.clone(), clock),
            client,
            clock,
            options,
            checks,
            alerts: None,
            telemetry: None,
            running: Mutex::new(HashSet::new()),
            queued: Mutex::new(HashSet::new()),
            claims: Mutex::new(HashMap::new()),
        }
    }

    pub fn with_alerts(mut self, alerts: Dispatcher) -> Self {
        self.alerts = Some(alerts);
        self
    }

    pub fn with_telemetry(mut self, telemetry: Telemetry) -> Self {
        self.telemetry = Some(telemetry);
        self
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.running.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn queued(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.queued.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claims(&self) -> std::sync::MutexGuard<'_, HashMap<String, guard::Claim>> {
        self.claims.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Number of analyses under way.
    pub fn running_analyses(&self) -> usize {
        self.running().len()
    }

    fn api<K>(&self, namespace: &str) -> Api<K>
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        <K as kube::Resource>::DynamicType: Default,
    {
        Api::namespaced(self.client.clone(), namespace)
    }
}

/// The `namespace/name` key of a canary.
pub fn key_of(canary: &Canary) -> String {
    format!(
        "{}/{}",
        canary.metadata.namespace.as_deref().unwrap_or_default(),
        canary.name_any()
    )
}

/// A running canary task and what wakes it up.
struct Tracked {
    nudge: Arc<Notify>,
    abort: tokio::task::AbortHandle,
    target_kind: String,
    target_name: String,
    configs: Vec<String>,
}

enum Change {
    Canary(Box<watcher::Event<Canary>>),
    Workload {
        kind: &'static str,
        namespace: String,
        name: String,
    },
    Config {
        kind: &'static str,
        namespace: String,
        name: String,
    },
}

fn api_all<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>,
    <K as kube::Resource>::DynamicType: Default,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Reports a watch's stream to the readiness state (when there is one) and logs its
/// errors: failing from an error until it delivers again.
/// A watch answered "Too large resource version": the API server has not reached the
/// version the watch resumes from and will not soon (it restarted on other data, or a
/// sandbox was restarted empty). kube's watcher would resume from that version forever;
/// only a new list sees what the server holds now.
fn resumes_from_the_future(err: &watcher::Error) -> bool {
    matches!(err, watcher::Error::WatchError(s) if s.code == 504
        && (s.details.as_ref().is_some_and(|d| d.causes.iter().any(|c| c.reason == "ResourceVersionTooLarge"))
            || s.message.contains("Too large resource version")))
}

/// kube's watcher with its default backoff, started again from a fresh list when the
/// version it resumes from is one the API server does not have
/// ([`resumes_from_the_future`]); its events otherwise as they come.
fn relisting_watcher<K>(
    api: Api<K>,
) -> impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    let start = move |api: &Api<K>| {
        watcher(api.clone(), watcher::Config::default())
            .default_backoff()
            .boxed()
    };
    let first = start(&api);
    futures::stream::unfold((api, first), move |(api, mut stream)| async move {
        let item = stream.next().await?;
        if let Err(e) = &item
            && resumes_from_the_future(e)
        {
            tracing::warn!(
                msg = format!(
                    "the watch of {} resumed from a resourceVersion the API server does not have ({e}); listing again",
                    api.resource_url()
                )
            );
            stream = start(&api);
        }
        Some((item, (api, stream)))
    })
}

fn reported<K>(
    stream: impl Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send,
    name: &'static str,
    health: Option<crate::health::Health>,
) -> impl Stream<Item = watcher::Event<K>> + Send
where
    K: Send,
{
    stream.filter_map(move |e| {
        let out = match e {
            Ok(ev) => {
                if !matches!(ev, watcher::Event::Init)
                    && let Some(h) = &health
                {
                    h.watch_delivered(name);
                }
                Some(ev)
            }
            Err(err) => {
                let text = crate::api_client::causes(&err);
                tracing::warn!(msg = format!("{name} watch error: {text}"));
                if let Some(h) = &health {
                    h.watch_failed(name, &text);
                }
                None
            }
        };
        futures::future::ready(out)
    })
}

/// Removes the controller's watches from the readiness state when it stops.
struct WatchesGuard(Option<crate::health::Health>, Vec<&'static str>);

impl Drop for WatchesGuard {
    fn drop(&mut self) {
        if let Some(h) = &self.0 {
            for name in &self.1 {
                h.watch_stopped(name);
            }
        }
    }
}

fn touched<K>(
    api: Api<PartialObjectMeta<K>>,
    name: &'static str,
    health: Option<crate::health::Health>,
    make: impl Fn(String, String) -> Change + Send + 'static,
) -> impl Stream<Item = Change> + Send
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
    PartialObjectMeta<K>: kube::Resource<DynamicType = K::DynamicType>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    if let Some(h) = &health {
        h.watch_started(name, api.resource_url());
    }
    // Names are all that is needed: a metadata-only watch moves less data and never
    // reads a Secret's contents.
    reported(relisting_watcher(api), name, health).filter_map(move |e| {
        let out = match e {
            watcher::Event::Apply(o) | watcher::Event::Delete(o) => {
                Some(make(o.namespace().unwrap_or_default(), o.name_any()))
            }
            _ => None,
        };
        futures::future::ready(out)
    })
}

/// Runs the controller until the future is dropped (which stops every canary task).
pub async fn run(ctx: Arc<Context>) {
    let ns = ctx.options.namespace.as_deref();
    let health = ctx.telemetry.as_ref().map(|t| t.health().clone());
    let _watches = WatchesGuard(
        health.clone(),
        vec!["Canary", "Deployment", "DaemonSet", "ConfigMap", "Secret"],
    );
    let canary_api = api_all::<Canary>(&ctx.client, ns);
    if let Some(h) = &health {
        h.watch_started("Canary", canary_api.resource_url());
    }
    let canaries = reported(relisting_watcher(canary_api), "Canary", health.clone())
        .map(|ev| Change::Canary(Box::new(ev)));
    let deployments = touched(
        api_all::<PartialObjectMeta<Deployment>>(&ctx.client, ns),
        "Deployment",
        health.clone(),
        |namespace, name| Change::Workload {
            kind: "Deployment",
            namespace,
            name,
        },
    );
    let daemonsets = touched(
        api_all::<PartialObjectMeta<DaemonSet>>(&ctx.client, ns),
        "DaemonSet",
        health.clone(),
        |namespace, name| Change::Workload {
            kind: "DaemonSet",
            namespace,
            name,
        },
    );
    let configmaps = touched(
        api_all::<PartialObjectMeta<ConfigMap>>(&ctx.client, ns),
        "ConfigMap",
        health.clone(),
        |namespace, name| Change::Config {
            kind: "configmap",
            namespace,
            name,
        },
    );
    let secrets = touched(
        api_all::<PartialObjectMeta<Secret>>(&ctx.client, ns),
        "Secret",
        health.clone(),
        |namespace, name| Change::Config {
            kind: "secret",
            namespace,
            name,
        },
    );
    let mut changes = futures::stream::select_all(vec![
        canaries.boxed(),
        deployments.boxed(),
        daemonsets.boxed(),
        configmaps.boxed(),
        secrets.boxed(),
    ]);

    let mut tasks: JoinSet<()> = JoinSet::new();
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    // Canaries found by the current (re)list, to spread their first runs.
    let mut starting = 0usize;
    loop {
        tokio::select! {
            change = changes.next() => {
                let Some(change) = change else { break };
                handle_change(&ctx, &mut tasks, &mut tracked, &mut starting, change);
            }
            Some(done) = tasks.join_next_with_id() => {
                let id = match &done { Ok((id, _)) => *id, Err(e) => e.id() };
                if let Err(e) = &done && e.is_panic() {
                    tracing::error!(msg = "canary task panicked", error = %e);
                }
                tracked.retain(|_, t| t.abort.id() != id);
            }
        }
    }
}

fn handle_change(
    ctx: &Arc<Context>,
    tasks: &mut JoinSet<()>,
    tracked: &mut HashMap<String, Tracked>,
    starting: &mut usize,
    change: Change,
) {
    match change {
        Change::Canary(event) => handle_canary(ctx, tasks, tracked, starting, *event),
        Change::Workload {
            kind,
            namespace,
            name,
        } => {
            for (key, t) in tracked.iter() {
                // The target (a new revision) or its primary (ready to initialize).
                let ours = name == t.target_name
                    || name.strip_suffix("-primary") == Some(t.target_name.as_str());
                if t.target_kind == kind
                    && ours
                    && key.split_once('/').map(|k| k.0) == Some(namespace.as_str())
                {
                    t.nudge.notify_one();
                }
            }
        }
        Change::Config {
            kind,
            namespace,
            name,
        } => {
            let wanted = format!("{kind}/{name}");
            for (key, t) in tracked.iter() {
                if key.split_once('/').map(|k| k.0) == Some(namespace.as_str())
                    && t.configs.iter().any(|c| c.eq_ignore_ascii_case(&wanted))
                {
                    t.nudge.notify_one();
                }
            }
        }
    }
}

fn handle_canary(
    ctx: &Arc<Context>,
    tasks: &mut JoinSet<()>,
    tracked: &mut HashMap<String, Tracked>,
    starting: &mut usize,
    event: watcher::Event<Canary>,
) {
    let initial = matches!(event, watcher::Event::InitApply(_));
    match event {
        watcher::Event::Init => *starting = 0,
        watcher::Event::Apply(c) | watcher::Event::InitApply(c) => {
            let key = key_of(&c);
            ctx.claims().insert(key.clone(), guard::Claim::of(&c));
            if c.status.as_ref().is_some_and(|s| s.phase.is_running()) {
                ctx.running().insert(key.clone());
            }
            let configs = c
                .status
                .as_ref()
                .and_then(|s| s.tracked_configs.clone())
                .unwrap_or_default()
                .into_keys()
                .collect::<Vec<_>>();
            let target_kind = crate::workload::target_kind(&c).to_string();
            let target_name = c.spec.target_ref.name.clone();
            match tracked.get_mut(&key) {
                Some(t) => {
                    t.configs = configs;
                    t.target_kind = target_kind;
                    t.target_name = target_name;
                    t.nudge.notify_one();
                }
                None => {
                    let nudge = Arc::new(Notify::new());
                    let namespace = c.namespace().unwrap_or_default();
                    let name = c.name_any();
                    // At startup, spread the first runs of many canaries (16 every
                    // 100ms) instead of running them all at the same instant: a lower
                    // peak of memory, and their schedules stay spread afterwards.
                    let delay = if initial {
                        *starting += 1;
                        Duration::from_millis(100 * ((*starting as u64 - 1) / 16))
                    } else {
                        Duration::ZERO
                    };
                    let abort = tasks.spawn(crate::scheduler::canary_loop(
                        ctx.clone(),
                        namespace,
                        name,
                        nudge.clone(),
                        delay,
                    ));
                    tracked.insert(
                        key,
                        Tracked {
                            nudge,
                            abort,
                            target_kind,
                            target_name,
                            configs,
                        },
                    );
                }
            }
        }
        watcher::Event::Delete(c) => {
            let key = key_of(&c);
            if let Some(t) = tracked.remove(&key) {
                t.abort.abort();
            }
            ctx.running().remove(&key);
            ctx.queued().remove(&key);
            ctx.claims().remove(&key);
            if let Some(t) = &ctx.telemetry {
                t.forget(&c);
            }
        }
        _ => {}
    }
}

/// A canary with the operator's default provider applied when it names none.
pub(crate) fn with_default_provider(ctx: &Context, mut canary: Canary) -> Canary {
    if canary.spec.provider.as_deref().unwrap_or("").is_empty()
        && let Some(p) = &ctx.options.mesh_provider
    {
        canary.spec.provider = Some(p.clone());
    }
    canary
}

/// Extra metadata for `event` webhooks.
pub(crate) fn event_metadata(
    type_: &str,
    message: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("eventMessage".to_string(), message.to_string()),
        ("eventType".to_string(), type_.to_string()),
        // Milliseconds since the epoch, as Flagger sends it.
        ("timestamp".to_string(), now.timestamp_millis().to_string()),
    ])
}

/// A short pause before retrying after an API error.
pub(crate) const RETRY_AFTER: Duration = Duration::from_secs(5);
