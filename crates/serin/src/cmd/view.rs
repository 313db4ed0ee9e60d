//! What `serin status` and the dashboard show of a canary, read from the cluster only
//! (the Canary, its annotations and its Events), so both work with any operator
//! replica and survive its restarts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context as _;
use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde::Serialize;
use serin_api::Canary;
use serin_api::canary::HookType;
use serin_api::manual::{self, LastChecks, ManualState};

/// How to reach the cluster and which namespace to act in.
#[derive(clap::Args, Clone, Debug)]
pub struct Conn {
    /// Path to a kubeconfig ($KUBECONFIG or ~/.kube/config when unset)
    #[arg(long, env = "KUBECONFIG", global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// Namespace (the kubeconfig context's namespace when unset)
    #[arg(short = 'n', long, global = true)]
    pub namespace: Option<String>,
}

impl Conn {
    pub async fn client(&self) -> anyhow::Result<Client> {
        super::operator::client(self.kubeconfig.as_ref()).await
    }

    /// The namespace given, or the client's default.
    pub fn namespace_for(&self, client: &Client) -> String {
        self.namespace
            .clone()
            .unwrap_or_else(|| client.default_namespace().to_string())
    }

    /// Who is asking, for the event the operator records: the kubeconfig context's
    /// user, else $USER.
    pub fn who(&self) -> String {
        let kubeconfig = match &self.kubeconfig {
            Some(p) => kube::config::Kubeconfig::read_from(p).ok(),
            None => kube::config::Kubeconfig::read().ok(),
        };
        let user = kubeconfig.and_then(|kc| {
            let current = kc.current_context.clone()?;
            kc.contexts
                .iter()
                .find(|c| c.name == current)
                .and_then(|c| c.context.as_ref())
                .and_then(|c| c.user.clone())
        });
        user.filter(|u| !u.is_empty())
            .or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "unknown".to_string())
    }
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CanaryView {
    pub name: String,
    pub namespace: String,
    pub target: String,
    pub phase: String,
    pub canary_weight: i32,
    pub primary_weight: i32,
    pub max_weight: i32,
    pub iterations: i32,
    pub failed_checks: i32,
    pub threshold: i32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_transition_time: Option<String>,
    /// RFC 3339 time the canary was paused by hand.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused_since: Option<String>,
    /// A request not yet acted on: `abort by alice: reason`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_request: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_request_result: Option<String>,
    pub metrics: Vec<MetricView>,
    pub webhooks: Vec<WebhookView>,
    /// The gates holding the canary now, by name.
    pub holding: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked: Option<String>,
    /// Oldest first.
    pub events: Vec<EventView>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct MetricView {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    pub interval: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WebhookView {
    pub name: String,
    #[serde(rename = "type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub passed: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventView {
    pub time: String,
    #[serde(rename = "type")]
    pub type_: String,
    pub message: String,
    pub count: i32,
}

/// Events recorded on a canary, oldest first.
pub fn events_of(canary: &Canary, events: &[Event]) -> Vec<EventView> {
    let uid = canary.metadata.uid.as_deref();
    let mut out: Vec<((String, u64), EventView)> = events
        .iter()
        .filter(|e| {
            let o = &e.involved_object;
            o.kind.as_deref() == Some("Canary")
                && o.name.as_deref() == canary.metadata.name.as_deref()
                && o.namespace.as_deref() == canary.metadata.namespace.as_deref()
                && (uid.is_none() || o.uid.is_none() || o.uid.as_deref() == uid)
        })
        .map(|e| {
            let time = e
                .last_timestamp
                .as_ref()
                .or(e.first_timestamp.as_ref())
                .map(|t| t.0.to_string())
                .or_else(|| e.event_time.as_ref().map(|t| t.0.to_string()))
                .unwrap_or_default();
            // Event times have seconds: the resourceVersion orders events of one
            // second as they were written.
            let written = e
                .metadata
                .resource_version
                .as_deref()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (
                (time.clone(), written),
                EventView {
                    time,
                    type_: e.type_.clone().unwrap_or_default(),
                    message: e.message.clone().unwrap_or_default(),
                    count: e.count.unwrap_or(1),
                },
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, v)| v).collect()
}

/// The view of one canary given its events.
pub fn view(canary: &Canary, events: &[Event]) -> CanaryView {
    let status = canary.status_or_default();
    let manual_state = ManualState::of(canary);
    let last = LastChecks::of(canary);
    let results = last.as_ref().map(|l| l.results.clone()).unwrap_or_default();
    let analysis = canary.analysis();
    let metrics = analysis
        .map(|a| a.metrics.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|m| {
            let seen = results
                .iter()
                .find(|r| r.kind == "metric" && r.name == m.name);
            let (min, max) = match &m.threshold_range {
                Some(r) => (r.min, r.max),
                None => (None, m.threshold),
            };
            MetricView {
                interval: m.interval.clone().unwrap_or_else(|| "1m".into()),
                name: m.name,
                min,
                max,
                value: seen.and_then(|s| s.value),
                passed: seen.map(|s| s.passed),
                message: seen.and_then(|s| s.message.clone()),
            }
        })
        .collect();
    let events = events_of(canary, events);
    let webhooks: Vec<WebhookView> = analysis
        .map(|a| a.webhooks.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|w| {
            let seen = results
                .iter()
                .find(|r| r.kind != "metric" && r.name == w.name);
            WebhookView {
                type_: w
                    .hook_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_else(|| "rollout".into()),
                passed: seen.map(|s| s.passed),
                message: seen.and_then(|s| s.message.clone()),
                name: w.name,
            }
        })
        .collect();
    // A gate holds the canary while its phase says so and it did not pass last time.
    let phase = status.phase;
    let holding = webhooks
        .iter()
        .filter(|w| w.passed == Some(false))
        .filter(|w| {
            let t = HookType::parse(&w.type_);
            matches!(
                (t, phase),
                (
                    Some(HookType::ConfirmRollout),
                    serin_api::canary::CanaryPhase::Waiting
                ) | (
                    Some(HookType::ConfirmPromotion),
                    serin_api::canary::CanaryPhase::WaitingPromotion
                ) | (
                    Some(HookType::ConfirmTrafficIncrease),
                    serin_api::canary::CanaryPhase::Progressing
                )
            )
        })
        .map(|w| w.name.clone())
        .collect();
    CanaryView {
        name: canary.name_any(),
        namespace: canary.namespace().unwrap_or_default(),
        target: format!(
            "{}/{}",
            canary.spec.target_ref.kind.clone().unwrap_or_default(),
            canary.spec.target_ref.name
        ),
        phase: phase.as_str().to_string(),
        canary_weight: status.canary_weight,
        primary_weight: 100 - status.canary_weight.clamp(0, 100),
        max_weight: canary.max_weight(),
        iterations: status.iterations,
        failed_checks: status.failed_checks,
        threshold: canary.analysis_threshold(),
        last_transition_time: status.last_transition_time.map(|t| t.0.to_string()),
        paused_since: canary.annotations().get(manual::PAUSED).cloned(),
        pending_request: manual_state.request.map(|r| {
            let kind = match &r.kind {
                Ok(k) => k.as_str().to_string(),
                Err(v) => v.clone(),
            };
            format!("{kind} {}", r.who_and_why())
        }),
        last_request_result: canary.annotations().get(manual::RESULT).cloned(),
        metrics,
        webhooks,
        holding,
        last_checked: last.map(|l| l.time),
        events,
    }
}

/// Canaries of a namespace (all when `None`) and their events.
pub async fn list(client: &Client, namespace: Option<&str>) -> anyhow::Result<Vec<CanaryView>> {
    let (canaries, events): (Api<Canary>, Api<Event>) = match namespace {
        Some(ns) => (
            Api::namespaced(client.clone(), ns),
            Api::namespaced(client.clone(), ns),
        ),
        None => (Api::all(client.clone()), Api::all(client.clone())),
    };
    let canaries = canaries
        .list(&ListParams::default())
        .await
        .context("cannot list canaries")?;
    let events = events
        .list(&ListParams::default().limit(2000))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let mut out: Vec<CanaryView> = canaries.items.iter().map(|c| view(c, &events)).collect();
    out.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    Ok(out)
}

/// Views of canaries kept from watches, by `namespace/name`.
#[derive(Default, Clone)]
pub struct Store {
    pub canaries: BTreeMap<String, Canary>,
    pub events: BTreeMap<String, Event>,
}

impl Store {
    pub fn views(&self) -> Vec<CanaryView> {
        let events: Vec<Event> = self.events.values().cloned().collect();
        self.canaries.values().map(|c| view(c, &events)).collect()
    }
}

/// `primary 80% [████████████████░░░░]  20% canary`, as `serin demo` draws it.
pub fn bar(canary_weight: i32) -> String {
    serin_simulate::demo::weight_bar(canary_weight)
}

/// Text for one canary.
pub fn text(v: &CanaryView, events: usize) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{}/{}  {:<16} {}",
        v.namespace,
        v.name,
        v.phase,
        bar(v.canary_weight)
    );
    let _ = writeln!(
        s,
        "  target {}  iteration {}  failed checks {}/{}  max weight {}{}",
        v.target,
        v.iterations,
        v.failed_checks,
        v.threshold,
        v.max_weight,
        v.last_transition_time
            .as_ref()
            .map(|t| format!("  since {t}"))
            .unwrap_or_default()
    );
    if let Some(p) = &v.paused_since {
        let _ = writeln!(s, "  PAUSED since {p} (serin resume {})", v.name);
    }
    if let Some(r) = &v.pending_request {
        let _ = writeln!(s, "  request pending: {r}");
    }
    for m in &v.metrics {
        let range = format!(
            "[{} .. {}]",
            m.min.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
            m.max.map(|x| x.to_string()).unwrap_or_else(|| "-".into())
        );
        let value = m
            .value
            .map(|x| format!("{x:.2}"))
            .unwrap_or_else(|| "-".into());
        let verdict = match m.passed {
            Some(true) => "ok",
            Some(false) => "FAIL",
            None => "not checked yet",
        };
        let _ = writeln!(
            s,
            "  metric  {:<24} {:>10} in {:<16} {verdict}",
            m.name, value, range
        );
    }
    for w in &v.webhooks {
        let state = if v.holding.contains(&w.name) {
            "HOLDING"
        } else {
            match w.passed {
                Some(true) => "passed",
                Some(false) => "failed",
                None => "-",
            }
        };
        let _ = writeln!(s, "  webhook {:<24} {:<24} {state}", w.name, w.type_);
    }
    let skip = v.events.len().saturating_sub(events);
    for e in &v.events[skip..] {
        let _ = writeln!(s, "  {} {:<7} {}", e.time, e.type_, e.message);
    }
    s
}
