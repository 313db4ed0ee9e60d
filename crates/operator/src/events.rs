//! Events of a canary's life: a Kubernetes Event on the Canary (reason `Synced`, as
//! Flagger's, so `kubectl describe canary` reads the same), a JSON log line with `msg`
//! and `canary` fields, and a copy on an in-process channel for `simulate` and `demo`.

use chrono::{DateTime, Utc};
use k8s_openapi::api::core::v1::{Event as CoreEvent, EventSource, ObjectReference};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};
use serin_api::Canary;
use serin_api::canary::CanaryPhase;
use serin_api::clock::Clock;
use serin_engine::EventType;
use tokio::sync::broadcast;

/// The component name written as the event source.
pub const COMPONENT: &str = "serin";
/// Flagger records every canary event with this reason.
pub const REASON: &str = "Synced";

/// One recorded event, as `simulate` and `demo` see it.
#[derive(Debug, Clone, PartialEq)]
pub struct CanaryEvent {
    pub namespace: String,
    pub name: String,
    pub type_: EventType,
    pub message: String,
    pub time: DateTime<Utc>,
    /// The canary's phase and weight once the run that made the event is applied.
    pub phase: CanaryPhase,
    pub canary_weight: i32,
}

/// Records events on canaries.
#[derive(Clone)]
pub struct EventRecorder {
    client: Client,
    clock: Clock,
    sender: broadcast::Sender<CanaryEvent>,
    /// Also write Kubernetes Events (off for throwaway benchmarks).
    pub write_events: bool,
}

impl EventRecorder {
    pub fn new(client: Client, clock: Clock) -> Self {
        let (sender, _) = broadcast::channel(4096);
        Self {
            client,
            clock,
            sender,
            write_events: true,
        }
    }

    /// Every event recorded from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<CanaryEvent> {
        self.sender.subscribe()
    }

    /// Logs the event, publishes it in process, and creates the Kubernetes Event. A
    /// failure to write the Event is logged, never fatal: the log line stays.
    pub async fn record(
        &self,
        canary: &Canary,
        type_: EventType,
        message: &str,
        phase: CanaryPhase,
        canary_weight: i32,
    ) {
        let id = canary.id();
        match type_ {
            EventType::Normal => tracing::info!(msg = %message, canary = %id),
            EventType::Warning => tracing::warn!(msg = %message, canary = %id),
        }
        let now = self.clock.now();
        let _ = self.sender.send(CanaryEvent {
            namespace: canary.metadata.namespace.clone().unwrap_or_default(),
            name: canary.metadata.name.clone().unwrap_or_default(),
            type_,
            message: message.to_string(),
            time: now,
            phase,
            canary_weight,
        });
        if !self.write_events {
            return;
        }
        let namespace = canary.metadata.namespace.clone().unwrap_or_default();
        let name = canary.metadata.name.clone().unwrap_or_default();
        let t = serin_api::clock::k8s_time(now);
        // One Event object per distinct message, its count raised on each repeat (as
        // Kubernetes' own recorder aggregates), so a canary waiting for hours leaves one
        // object, not hundreds.
        let key = {
            use sha2::Digest;
            let mut h = sha2::Sha256::new();
            h.update(canary.metadata.uid.as_deref().unwrap_or_default());
            h.update(type_.as_str());
            h.update(message);
            hex::encode(&h.finalize()[..8])
        };
        let event_name = format!("{name}.{key}");
        let api: Api<CoreEvent> = Api::namespaced(self.client.clone(), &namespace);
        let event = CoreEvent {
            metadata: ObjectMeta {
                name: Some(event_name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            involved_object: object_reference(canary),
            reason: Some(REASON.into()),
            message: Some(message.to_string()),
            type_: Some(type_.as_str().into()),
            count: Some(1),
            first_timestamp: Some(t.clone()),
            last_timestamp: Some(t.clone()),
            source: Some(EventSource {
                component: Some(COMPONENT.into()),
                host: None,
            }),
            reporting_component: Some(COMPONENT.into()),
            reporting_instance: Some(COMPONENT.into()),
            ..Default::default()
        };
        let result = match api.create(&PostParams::default(), &event).await {
            Err(kube::Error::Api(s)) if s.code == 409 => {
                let patch = match api.get(&event_name).await {
                    Ok(existing) => serde_json::json!({
                        "count": existing.count.unwrap_or(1) + 1,
                        "lastTimestamp": t,
                    }),
                    Err(e) => {
                        tracing::debug!(msg = "cannot read event", canary = %id, error = %e);
                        return;
                    }
                };
                api.patch(&event_name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = result {
            tracing::debug!(msg = "cannot write event", canary = %id, error = %e);
        }
    }
}

/// A reference to the Canary for `involvedObject`.
pub fn object_reference(canary: &Canary) -> ObjectReference {
    ObjectReference {
        api_version: Some(Canary::api_version(&()).into_owned()),
        kind: Some(Canary::kind(&()).into_owned()),
        name: canary.metadata.name.clone(),
        namespace: canary.metadata.namespace.clone(),
        uid: canary.metadata.uid.clone(),
        resource_version: canary.metadata.resource_version.clone(),
        field_path: None,
    }
}
