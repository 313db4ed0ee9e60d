//! Simulated workload controllers: what the Deployment and DaemonSet controllers (and the
//! kubelets behind them) would report. No pods are created or run.
//!
//! After a spec change the status at once shows the rollout in progress (observedGeneration
//! caught up, updated replicas 0 when the pod template changed), and `rollout_delay` later
//! (on tokio's clock) every replica is updated, ready and available. A workload marked
//! never-ready stays unavailable and reports `ProgressDeadlineExceeded` once its
//! `progressDeadlineSeconds` pass.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{Value, json};

use crate::Sandbox;
use crate::resources::StorageKey;
use crate::store::{UpdateMode, timestamp};

/// The pod template each workload last finished rolling out.
#[derive(Default)]
pub(crate) struct Simulator {
    rolled: HashMap<(String, String, String), Value>,
}

/// Starts simulating every workload written since the last call.
pub(crate) fn kick(sb: &Sandbox) {
    let touched: Vec<(StorageKey, String, String)> =
        std::mem::take(&mut sb.state().touched_workloads);
    let mut seen = Vec::new();
    for t in touched {
        if !seen.contains(&t) {
            reconcile(sb, &t.0.resource, &t.1, &t.2, false);
            seen.push(t);
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Step {
    Progressing,
    Done,
    DeadlineExceeded,
}

pub(crate) fn reconcile(sb: &Sandbox, resource: &str, ns: &str, name: &str, force: bool) {
    if tokio::runtime::Handle::try_current().is_err() {
        return;
    }
    let sb = sb.clone();
    let (resource, ns, name) = (resource.to_string(), ns.to_string(), name.to_string());
    tokio::spawn(async move {
        let Some(generation) = step(&sb, &resource, &ns, &name, Step::Progressing, None, force)
        else {
            return;
        };
        tokio::time::sleep(sb.inner.options.rollout_delay).await;
        let kind = if resource == "daemonsets" {
            "daemonset"
        } else {
            "deployment"
        };
        if !sb.is_never_ready(&ns, kind, &name) {
            step(
                &sb,
                &resource,
                &ns,
                &name,
                Step::Done,
                Some(generation),
                false,
            );
            return;
        }
        let deadline = {
            let key = StorageKey {
                group: "apps".into(),
                resource: resource.clone(),
            };
            let obj = sb.state().get(&key, &ns, &name);
            obj.and_then(|o| {
                o.pointer("/spec/progressDeadlineSeconds")
                    .and_then(Value::as_u64)
            })
            .unwrap_or(600)
        };
        let waited = sb.inner.options.rollout_delay;
        let rest = Duration::from_secs(deadline).saturating_sub(waited);
        tokio::time::sleep(rest).await;
        if sb.is_never_ready(&ns, kind, &name) {
            step(
                &sb,
                &resource,
                &ns,
                &name,
                Step::DeadlineExceeded,
                Some(generation),
                false,
            );
        }
    });
}

fn condition(
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &str,
    old: Option<&Value>,
) -> Value {
    let status = if status { "True" } else { "False" };
    let prev = old
        .and_then(|s| s.get("conditions"))
        .and_then(Value::as_array)
        .and_then(|cs| {
            cs.iter()
                .find(|c| c.get("type").and_then(Value::as_str) == Some(type_))
        });
    let transition = match prev {
        Some(p) if p.get("status").and_then(Value::as_str) == Some(status) => {
            p.get("lastTransitionTime").cloned().unwrap_or(now.into())
        }
        _ => now.into(),
    };
    let updated = match prev {
        Some(p) if p.get("reason").and_then(Value::as_str) == Some(reason) => {
            p.get("lastUpdateTime").cloned().unwrap_or(now.into())
        }
        _ => now.into(),
    };
    json!({"type": type_, "status": status, "lastUpdateTime": updated, "lastTransitionTime": transition,
        "reason": reason, "message": message})
}

/// Writes the status of one step; returns the generation it describes when a rollout is
/// under way (so the caller finishes it later).
fn step(
    sb: &Sandbox,
    resource: &str,
    ns: &str,
    name: &str,
    step: Step,
    for_gen: Option<i64>,
    force: bool,
) -> Option<i64> {
    let key = StorageKey {
        group: "apps".into(),
        resource: resource.into(),
    };
    let kind = if resource == "daemonsets" {
        "daemonset"
    } else {
        "deployment"
    };
    let never_ready = sb.is_never_ready(ns, kind, name);
    let now = sb.inner.options.clock.now();
    let t = timestamp(now);
    let mut state = sb.state();
    let rt = state.registry.find("apps", "v1", resource)?;
    let obj = state.get(&key, ns, name)?;
    if obj.pointer("/metadata/deletionTimestamp").is_some() {
        return None;
    }
    let generation = obj
        .pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if for_gen.is_some_and(|g| g != generation) {
        return None;
    }
    let template = obj
        .pointer("/spec/template")
        .cloned()
        .unwrap_or(Value::Null);
    let id = (resource.to_string(), ns.to_string(), name.to_string());
    let mut sim = sb.inner.simulator.lock().unwrap_or_else(|p| p.into_inner());
    let same_template = sim.rolled.get(&id) == Some(&template);
    let old = obj.get("status");
    let old_int = |k: &str| {
        old.and_then(|s| s.get(k))
            .and_then(Value::as_i64)
            .unwrap_or(0)
    };
    let desired = if resource == "daemonsets" {
        sb.inner.options.daemonset_nodes
    } else {
        obj.pointer("/spec/replicas")
            .and_then(Value::as_i64)
            .unwrap_or(1)
    };
    let (updated, ready) = match step {
        Step::Done => (desired, desired),
        Step::DeadlineExceeded => (desired, 0),
        Step::Progressing if never_ready => (desired, 0),
        Step::Progressing => {
            let observed = old
                .and_then(|s| s.get("observedGeneration"))
                .and_then(Value::as_i64);
            let ready_key = if resource == "daemonsets" {
                "numberReady"
            } else {
                "readyReplicas"
            };
            let complete =
                observed == Some(generation) && same_template && old_int(ready_key) == desired;
            if complete && !force {
                return None;
            }
            let old_ready = old_int(ready_key).min(desired);
            // As the Deployment controller does: the new pods exist (updated) at once
            // and become available only when the rollout completes, so a rollout in
            // progress reads "0 of 1 updated replicas are available".
            if same_template {
                (desired, old_ready)
            } else {
                (desired, 0)
            }
        }
    };
    let status = if resource == "daemonsets" {
        json!({"currentNumberScheduled": desired, "desiredNumberScheduled": desired, "numberMisscheduled": 0,
            "numberReady": ready, "numberAvailable": ready, "numberUnavailable": desired - ready,
            "updatedNumberScheduled": updated, "observedGeneration": generation})
    } else {
        let rs = format!("{name}-{:x}", hash(&template) & 0xff_ffff_ffff);
        let max_unavailable = desired / 4;
        let available = ready >= desired - max_unavailable;
        let progressing = match step {
            Step::Done => condition(
                "Progressing",
                true,
                "NewReplicaSetAvailable",
                &format!("ReplicaSet \"{rs}\" has successfully progressed."),
                &t,
                old,
            ),
            Step::DeadlineExceeded => condition(
                "Progressing",
                false,
                "ProgressDeadlineExceeded",
                &format!("ReplicaSet \"{rs}\" has timed out progressing."),
                &t,
                old,
            ),
            Step::Progressing => condition(
                "Progressing",
                true,
                "ReplicaSetUpdated",
                &format!("ReplicaSet \"{rs}\" is progressing."),
                &t,
                old,
            ),
        };
        let avail = if available {
            condition(
                "Available",
                true,
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                &t,
                old,
            )
        } else {
            condition(
                "Available",
                false,
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                &t,
                old,
            )
        };
        let mut s = json!({"observedGeneration": generation, "replicas": desired, "updatedReplicas": updated,
            "readyReplicas": ready, "availableReplicas": ready, "conditions": [avail, progressing]});
        if desired > ready {
            s["unavailableReplicas"] = json!(desired - ready);
        }
        s
    };
    if step == Step::Done {
        sim.rolled.insert(id, template);
    }
    drop(sim);
    let mut new = (*obj).clone();
    new["status"] = status;
    if let Some(m) = new.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    let before = state.touched_workloads.len();
    let res = state.update(&rt, ns, name, new, UpdateMode::Status, now, false);
    // The simulator's own writes do not start another simulation.
    state.touched_workloads.truncate(before);
    if let Err(e) = res {
        tracing::warn!(msg = "simulated workload status not written", namespace = ns, name, error = %e);
        return None;
    }
    (step == Step::Progressing).then_some(generation)
}

fn hash(v: &Value) -> u64 {
    // FNV-1a over the JSON text: stable names for the simulated ReplicaSet.
    let mut h: u64 = 0xcbf29ce484222325;
    for b in v.to_string().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}
