//! serin-simulate: whole rollouts of the real controller and engine against the
//! in-process sandbox, on tokio's clock. Under paused time (a current-thread runtime with
//! `start_paused(true)`) a ten-minute rollout runs in well under a second; under a
//! normal clock it runs in real time. `serin simulate`, `serin demo` and the scenario
//! tests are built on [`Simulation`].
//!
//! Webhook and metric answers are scripted ([`ScriptedChecks`]): that is the only
//! difference from `serin operator`.

pub mod apply;
pub mod demo;
pub mod invariants;
pub mod scripted;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{DaemonSet, Deployment};
use kube::Api;
use kube::api::PostParams;
use serde_json::Value;
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_api::clock::Clock;
use serin_api::load::Document;
use serin_engine::EventType;
use serin_operator::controller::{self, ControllerOptions};
use serin_operator::events::{CanaryEvent, EventRecorder};
use serin_sandbox::{Sandbox, SandboxOptions};
use tokio::task::JoinHandle;

pub use scripted::{ScriptedChecks, WebhookCall};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Apply(String),
    #[error("{0}")]
    Timeout(String),
    #[error("{0}")]
    Kube(String),
    #[error("no Canary in the given files")]
    NoCanary,
}

/// How a simulation runs.
#[derive(Debug, Clone)]
pub struct Options {
    /// `--metric NAME=VALUE`: the value every check of that metric answers.
    pub metrics: BTreeMap<String, f64>,
    /// `--webhook NAME=pass|fail`: webhooks pass unless set to fail.
    pub webhooks: BTreeMap<String, bool>,
    /// The new revision never becomes ready.
    pub never_ready: bool,
    /// Provider of canaries that name none.
    pub mesh_provider: Option<String>,
    /// How long a workload takes to roll out in the sandbox.
    pub rollout_delay: Duration,
    /// Give up waiting for an outcome after this much (virtual) time.
    pub timeout: Duration,
    pub max_concurrent_canaries: Option<usize>,
    /// Pace for people: virtual seconds per real second (`None`: as fast as possible).
    pub pace: Option<f64>,
    /// The operator's other flags (labels, config tracking, event webhook...).
    pub controller: ControllerOptions,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            metrics: BTreeMap::new(),
            webhooks: BTreeMap::new(),
            never_ready: false,
            mesh_provider: None,
            rollout_delay: Duration::from_secs(1),
            timeout: Duration::from_secs(6 * 3600),
            max_concurrent_canaries: None,
            pace: None,
            controller: ControllerOptions::default(),
        }
    }
}

/// An event with the time since the simulation started.
#[derive(Debug, Clone, PartialEq)]
pub struct TimedEvent {
    pub elapsed: Duration,
    /// `name.namespace`.
    pub canary: String,
    pub type_: EventType,
    pub message: String,
    pub phase: CanaryPhase,
    pub canary_weight: i32,
}

impl TimedEvent {
    /// `MM:SS Normal message`.
    pub fn line(&self) -> String {
        format!(
            "{} {} {}",
            mmss(self.elapsed),
            self.type_.as_str(),
            self.message
        )
    }

    pub fn json(&self) -> Value {
        serde_json::json!({
            "time": mmss(self.elapsed),
            "seconds": self.elapsed.as_secs(),
            "canary": self.canary,
            "type": self.type_.as_str(),
            "message": self.message,
            "phase": self.phase.as_str(),
            "canaryWeight": self.canary_weight,
        })
    }
}

/// `MM:SS` (minutes keep counting past 59).
pub fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// How a rollout ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Per canary (`name.namespace`), its final phase.
    pub phases: BTreeMap<String, CanaryPhase>,
    pub elapsed: Duration,
}

impl Outcome {
    /// Failed when any canary failed, else Succeeded.
    pub fn phase(&self) -> CanaryPhase {
        if self.phases.values().any(|p| *p == CanaryPhase::Failed) {
            CanaryPhase::Failed
        } else {
            CanaryPhase::Succeeded
        }
    }

    pub fn line(&self) -> String {
        format!("result: {} after {}", self.phase(), mmss(self.elapsed))
    }
}

/// A sandbox with the controller running on it.
pub struct Simulation {
    pub sandbox: Sandbox,
    pub client: kube::Client,
    pub clock: Clock,
    pub checks: Arc<ScriptedChecks>,
    pub canaries: Vec<Canary>,
    /// Notes on the stand-ins created because the files lacked them
    /// ([`serin_api::stand_in::StandIn::note`]).
    pub stand_ins: Vec<String>,
    options: Options,
    recorder: EventRecorder,
    controller: Option<JoinHandle<()>>,
    alerts: Option<serin_notify::Dispatcher>,
    events: Arc<Mutex<Vec<TimedEvent>>>,
    receiver: tokio::sync::broadcast::Receiver<CanaryEvent>,
    start: chrono::DateTime<chrono::Utc>,
}

impl Simulation {
    /// A sandbox holding `docs` (and stand-ins for missing targets), with the
    /// controller started.
    pub async fn start(docs: Vec<Document>, options: Options) -> Result<Self, Error> {
        let clock = Clock::system();
        let sandbox = Sandbox::new(SandboxOptions {
            rollout_delay: options.rollout_delay,
            clock,
            ..Default::default()
        });
        let client = sandbox.client();
        apply::install_crds(&client).await?;
        let canaries = apply::canaries(&docs)?;
        if canaries.is_empty() {
            return Err(Error::NoCanary);
        }
        let extra = serin_api::stand_in::stand_ins(&docs, "default");
        let mut values: Vec<Value> = docs.iter().map(|d| d.value.clone()).collect();
        let mut stand_ins = Vec::new();
        for s in extra {
            stand_ins.push(s.note());
            values.push(s.document.value);
        }
        values.sort_by_key(apply::apply_order);
        for v in values {
            apply::apply_value(&client, v).await?;
        }
        let checks = Arc::new(ScriptedChecks::new(
            options.metrics.clone(),
            options.webhooks.clone(),
        ));
        let recorder = EventRecorder::new(client.clone(), clock);
        let receiver = recorder.subscribe();
        let mut sim = Self {
            start: clock.now(),
            sandbox,
            client,
            clock,
            checks,
            canaries,
            stand_ins,
            options,
            recorder,
            controller: None,
            alerts: None,
            events: Arc::new(Mutex::new(Vec::new())),
            receiver,
        };
        sim.start_controller();
        Ok(sim)
    }

    /// A controller context as a fresh process would build it.
    fn context(&self) -> controller::Context {
        let mut ctx = controller::Context::new(
            self.client.clone(),
            self.clock,
            ControllerOptions {
                namespace: None,
                mesh_provider: self.options.mesh_provider.clone(),
                max_concurrent_canaries: self.options.max_concurrent_canaries,
                ..self.options.controller.clone()
            },
            self.checks.clone(),
        );
        ctx.recorder = self.recorder.clone();
        if let Some(d) = &self.alerts {
            ctx = ctx.with_alerts(d.clone());
        }
        ctx
    }

    /// Starts a controller (a fresh process, as after a crash) on the same sandbox.
    pub fn start_controller(&mut self) {
        self.stop_controller();
        let ctx = self.context();
        self.controller = Some(tokio::spawn(controller::run(Arc::new(ctx))));
    }

    /// Starts a replica that runs the controller only while it holds the leader
    /// Lease `default/serin-leader` (as `serin operator --leader-elect`). Stop the
    /// simulation's own controller first ([`Simulation::stop_controller`]).
    pub fn spawn_replica(&self, identity: &str) -> JoinHandle<()> {
        let ctx = self.context();
        let election = serin_operator::leader::LeaderElection::new(
            self.client.clone(),
            "default",
            "serin-leader",
            identity,
            self.clock,
        );
        tokio::spawn(async move {
            let _ = election.run_as_leader(controller::run(Arc::new(ctx))).await;
        })
    }

    /// Sends alerts through `dispatcher` from now on (the controller is restarted).
    pub fn set_alerts(&mut self, dispatcher: serin_notify::Dispatcher) {
        self.alerts = Some(dispatcher);
        self.start_controller();
    }

    /// Stops the controller at once, wherever it is.
    pub fn stop_controller(&mut self) {
        if let Some(h) = self.controller.take() {
            h.abort();
        }
    }

    /// Every event recorded so far.
    pub fn events(&mut self) -> Vec<TimedEvent> {
        self.drain();
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Moves newly recorded events into the log; returns them.
    fn drain(&mut self) -> Vec<TimedEvent> {
        let mut fresh = Vec::new();
        loop {
            match self.receiver.try_recv() {
                Ok(e) => fresh.push(TimedEvent {
                    elapsed: (e.time - self.start).to_std().unwrap_or_default(),
                    canary: format!("{}.{}", e.name, e.namespace),
                    type_: e.type_,
                    message: e.message,
                    phase: e.phase,
                    canary_weight: e.canary_weight,
                }),
                Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
                Err(_) => break,
            }
        }
        self.events
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(fresh.iter().cloned());
        fresh
    }

    /// Lets `d` of (virtual) time pass; returns the events recorded meanwhile.
    pub async fn tick(&mut self, d: Duration) -> Vec<TimedEvent> {
        tokio::time::sleep(d).await;
        self.drain()
    }

    /// Time since the simulation started.
    pub fn elapsed(&self) -> Duration {
        (self.clock.now() - self.start).to_std().unwrap_or_default()
    }

    pub async fn canary(&self, c: &Canary) -> Result<Canary, Error> {
        let api: Api<Canary> = Api::namespaced(
            self.client.clone(),
            c.metadata.namespace.as_deref().unwrap_or("default"),
        );
        let name = c.metadata.name.as_deref().unwrap_or_default();
        let mut last = None;
        for _ in 0..50 {
            match api.get(name).await {
                Ok(c) => return Ok(c),
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(Error::Kube(format!(
            "canary {}: {}",
            c.id(),
            last.map(|e| e.to_string()).unwrap_or_default()
        )))
    }

    /// Waits until `done` holds for every canary, calling `on_event` for each event as
    /// it is recorded.
    pub async fn wait_until(
        &mut self,
        what: &str,
        on_event: &mut dyn FnMut(&TimedEvent),
        mut done: impl FnMut(&Canary) -> bool,
    ) -> Result<(), Error> {
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        loop {
            for e in self.drain() {
                on_event(&e);
            }
            let mut all = true;
            for c in self.canaries.clone() {
                match self.canary(&c).await {
                    Ok(current) if done(&current) => {}
                    _ => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                // Let the run that wrote this status finish recording its events.
                tokio::time::sleep(Duration::from_millis(10)).await;
                for e in self.drain() {
                    on_event(&e);
                }
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::Timeout(format!(
                    "gave up after {} waiting for {what}",
                    mmss(self.elapsed())
                )));
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            if let Some(speed) = self.options.pace.filter(|s| *s > 0.0) {
                // Holding the (current-thread) runtime holds virtual time too.
                std::thread::sleep(Duration::from_secs_f64((1.0 / speed).min(1.0)));
            }
        }
    }

    /// Waits for every canary to be Initialized.
    pub async fn wait_initialized(
        &mut self,
        on_event: &mut dyn FnMut(&TimedEvent),
    ) -> Result<(), Error> {
        self.wait_until("initialization", on_event, |c| {
            c.status.as_ref().is_some_and(|s| {
                !matches!(s.phase, CanaryPhase::Initializing) && s.last_applied_spec.is_some()
            })
        })
        .await
    }

    /// Changes the image of every canary's target: a new revision.
    pub async fn new_revision(&self) -> Result<(), Error> {
        for c in &self.canaries {
            let ns = c.metadata.namespace.as_deref().unwrap_or("default");
            let name = &c.spec.target_ref.name;
            let kind = serin_operator::workload::target_kind(c);
            // Like a user's kubectl, retry what the API server refuses for a moment
            // (conflicts and server errors under fault injection).
            let mut last = String::new();
            let mut done = false;
            for _ in 0..50 {
                let result = if kind == "DaemonSet" {
                    bump::<DaemonSet>(&self.client, ns, name, |d| {
                        d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
                    })
                    .await
                } else {
                    bump::<Deployment>(&self.client, ns, name, |d| {
                        d.spec.as_mut().and_then(|s| s.template.spec.as_mut())
                    })
                    .await
                };
                match result {
                    Ok(()) => {
                        done = true;
                        break;
                    }
                    Err(e) => last = e,
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if !done {
                return Err(Error::Kube(format!(
                    "{} {ns}/{name}: {last}",
                    kind.to_lowercase()
                )));
            }
            if self.options.never_ready {
                self.sandbox.set_never_ready(ns, kind, name, true);
            }
        }
        Ok(())
    }

    /// Makes a new revision and waits until every canary has finished analysing it
    /// (Succeeded or Failed).
    pub async fn rollout(
        &mut self,
        on_event: &mut dyn FnMut(&TimedEvent),
    ) -> Result<Outcome, Error> {
        let mut before = BTreeMap::new();
        for c in self.canaries.clone() {
            let current = self.canary(&c).await?;
            before.insert(c.id(), current.status.and_then(|s| s.last_applied_spec));
        }
        self.new_revision().await?;
        self.wait_until("the end of the analysis", on_event, |c| {
            c.status.as_ref().is_some_and(|s| {
                matches!(s.phase, CanaryPhase::Succeeded | CanaryPhase::Failed)
                    && before.get(&c.id()).cloned().flatten() != s.last_applied_spec
            })
        })
        .await?;
        let mut phases = BTreeMap::new();
        for c in self.canaries.clone() {
            let current = self.canary(&c).await?;
            phases.insert(c.id(), current.status_or_default().phase);
        }
        // The outcome happened at the last event, not at the poll that saw it.
        let elapsed = self
            .events()
            .last()
            .map(|e| e.elapsed)
            .unwrap_or_else(|| self.elapsed());
        Ok(Outcome { phases, elapsed })
    }

    /// The whole of `serin simulate`: initialization, a new revision, its analysis.
    pub async fn run(&mut self, on_event: &mut dyn FnMut(&TimedEvent)) -> Result<Outcome, Error> {
        self.wait_initialized(on_event).await?;
        self.rollout(on_event).await
    }
}

impl Drop for Simulation {
    fn drop(&mut self) {
        self.stop_controller();
    }
}

async fn bump<K>(
    client: &kube::Client,
    ns: &str,
    name: &str,
    pod_spec: impl Fn(&mut K) -> Option<&mut k8s_openapi::api::core::v1::PodSpec>,
) -> Result<(), String>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::namespaced(client.clone(), ns);
    let mut object = api.get(name).await.map_err(|e| e.to_string())?;
    if let Some(spec) = pod_spec(&mut object) {
        bump_containers(&mut spec.containers);
    }
    api.replace(name, &PostParams::default(), &object)
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn bump_containers(containers: &mut [k8s_openapi::api::core::v1::Container]) {
    if let Some(c) = containers.first_mut() {
        let image = c.image.clone().unwrap_or_else(|| "podinfo".into());
        c.image = Some(bump_image(&image));
    }
}

/// The next version of an image: `podinfo:6.0.0` → `podinfo:6.0.1`, else a `-next` tag.
pub fn bump_image(image: &str) -> String {
    let (repo, tag) = match image.rsplit_once(':') {
        Some((r, t)) if !t.contains('/') => (r, t),
        _ => return format!("{image}:next"),
    };
    let mut parts: Vec<String> = tag.split('.').map(str::to_string).collect();
    if let Some(last) = parts.last_mut()
        && let Ok(n) = last.parse::<u64>()
    {
        *last = (n + 1).to_string();
        return format!("{repo}:{}", parts.join("."));
    }
    format!("{repo}:{tag}-next")
}

/// A current-thread runtime on paused (virtual) time, for `serin simulate`.
pub fn virtual_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_bumps() {
        assert_eq!(
            bump_image("ghcr.io/stefanprodan/podinfo:6.0.0"),
            "ghcr.io/stefanprodan/podinfo:6.0.1"
        );
        assert_eq!(bump_image("demo:1.0"), "demo:1.1");
        assert_eq!(bump_image("demo:latest"), "demo:latest-next");
        assert_eq!(
            bump_image("localhost:5000/demo"),
            "localhost:5000/demo:next"
        );
    }

    #[test]
    fn mmss_counts_minutes() {
        assert_eq!(mmss(Duration::from_secs(61)), "01:01");
        assert_eq!(mmss(Duration::from_secs(3725)), "62:05");
    }
}
