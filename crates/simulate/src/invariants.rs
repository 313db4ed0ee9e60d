//! Traffic invariants checked over the whole history of a simulation: at every
//! resourceVersion the weights of a route sum to 100, and no weight goes to a workload
//! scaled to zero. Every change of the VirtualServices, HTTPRoutes and Deployments is recorded from
//! watches, then replayed in resourceVersion order (the sandbox's versions are global).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serin_api::Canary;
use serin_api::istio::VirtualService;
use tokio::task::JoinHandle;

/// (host, weight) per route block of a VirtualService.
type Blocks = Vec<Vec<(String, i32)>>;

#[derive(Debug, Clone)]
enum Change {
    Routes {
        namespace: String,
        name: String,
        blocks: Blocks,
    },
    Replicas {
        namespace: String,
        name: String,
        replicas: i32,
    },
}

/// Records changes until dropped.
pub struct TrafficRecorder {
    changes: Arc<Mutex<Vec<(u64, Change)>>>,
    tasks: Vec<JoinHandle<()>>,
}

fn rv<K: kube::Resource>(o: &K) -> u64 {
    o.meta()
        .resource_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

impl TrafficRecorder {
    pub fn start(client: &kube::Client) -> Self {
        let changes: Arc<Mutex<Vec<(u64, Change)>>> = Arc::default();
        let mut tasks = Vec::new();
        {
            let changes = changes.clone();
            let api: Api<VirtualService> = Api::all(client.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = watcher(api, watcher::Config::default()).boxed();
                while let Some(e) = s.next().await {
                    let o = match e {
                        Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                        _ => continue,
                    };
                    let mut blocks = Vec::new();
                    for r in &o.spec.http {
                        blocks.push(
                            r.route
                                .iter()
                                .map(|d| (d.destination.host.clone(), d.weight))
                                .collect(),
                        );
                    }
                    for r in &o.spec.tcp {
                        blocks.push(
                            r.route
                                .iter()
                                .map(|d| (d.destination.host.clone(), d.weight))
                                .collect(),
                        );
                    }
                    changes.lock().unwrap_or_else(|p| p.into_inner()).push((
                        rv(&o),
                        Change::Routes {
                            namespace: o.namespace().unwrap_or_default(),
                            name: o.name_any(),
                            blocks,
                        },
                    ));
                }
            }));
        }
        {
            // Gateway API HTTPRoutes (both versions share one storage): a rule's
            // backendRefs are a route block.
            let changes = changes.clone();
            let ar = kube::core::ApiResource::from_gvk_with_plural(
                &kube::core::GroupVersionKind::gvk("gateway.networking.k8s.io", "v1", "HTTPRoute"),
                "httproutes",
            );
            let api: Api<kube::core::DynamicObject> = Api::all_with(client.clone(), &ar);
            tasks.push(tokio::spawn(async move {
                let mut s = watcher(api, watcher::Config::default()).boxed();
                while let Some(e) = s.next().await {
                    let o = match e {
                        Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                        _ => continue,
                    };
                    let rules = o
                        .data
                        .pointer("/spec/rules")
                        .and_then(serde_json::Value::as_array)
                        .cloned()
                        .unwrap_or_default();
                    let blocks = rules
                        .iter()
                        .map(|r| {
                            r.get("backendRefs")
                                .and_then(serde_json::Value::as_array)
                                .into_iter()
                                .flatten()
                                .map(|b| {
                                    (
                                        b["name"].as_str().unwrap_or_default().to_string(),
                                        b["weight"].as_i64().unwrap_or(1) as i32,
                                    )
                                })
                                .collect()
                        })
                        .collect();
                    changes.lock().unwrap_or_else(|p| p.into_inner()).push((
                        rv(&o),
                        Change::Routes {
                            namespace: o.namespace().unwrap_or_default(),
                            name: o.name_any(),
                            blocks,
                        },
                    ));
                }
            }));
        }
        {
            let changes = changes.clone();
            let api: Api<Deployment> = Api::all(client.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = watcher(api, watcher::Config::default()).boxed();
                while let Some(e) = s.next().await {
                    let o = match e {
                        Ok(watcher::Event::Apply(o)) | Ok(watcher::Event::InitApply(o)) => o,
                        _ => continue,
                    };
                    let replicas = o.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
                    changes.lock().unwrap_or_else(|p| p.into_inner()).push((
                        rv(&o),
                        Change::Replicas {
                            namespace: o.namespace().unwrap_or_default(),
                            name: o.name_any(),
                            replicas,
                        },
                    ));
                }
            }));
        }
        Self { changes, tasks }
    }

    /// Replays the history; returns every violation found (empty when none).
    pub fn violations(&self, canaries: &[Canary]) -> Vec<String> {
        let mut changes = self
            .changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        changes.sort_by_key(|(rv, _)| *rv);
        let mut replicas: BTreeMap<(String, String), i32> = BTreeMap::new();
        let mut routes: BTreeMap<(String, String), Blocks> = BTreeMap::new();
        let mut out = Vec::new();
        for (rv, change) in changes {
            match change {
                Change::Replicas {
                    namespace,
                    name,
                    replicas: r,
                } => {
                    replicas.insert((namespace, name), r);
                }
                Change::Routes {
                    namespace,
                    name,
                    blocks,
                } => {
                    routes.insert((namespace, name), blocks);
                }
            }
            for c in canaries {
                let ns = c.metadata.namespace.clone().unwrap_or_default();
                let (apex, primary_host, canary_host) = c.service_names();
                let Some(blocks) = routes.get(&(ns.clone(), apex.clone())) else {
                    continue;
                };
                let target = c.spec.target_ref.name.clone();
                let primary = format!("{target}-primary");
                for block in blocks {
                    if block.len() > 1 {
                        let sum: i32 = block.iter().map(|(_, w)| *w).sum();
                        if sum != 100 {
                            out.push(format!(
                                "rv {rv}: {apex}.{ns} weights sum to {sum}: {block:?}"
                            ));
                        }
                    }
                    for (host, weight) in block {
                        let host = host.split('.').next().unwrap_or_default();
                        let workload = if host == canary_host {
                            &target
                        } else if host == primary_host {
                            &primary
                        } else {
                            continue;
                        };
                        let positive = *weight > 0 || block.len() == 1;
                        let scaled = replicas.get(&(ns.clone(), workload.clone())).copied();
                        if positive && scaled == Some(0) {
                            out.push(format!(
                                "rv {rv}: {apex}.{ns} sends weight {weight} to {workload} scaled to zero"
                            ));
                        }
                    }
                }
            }
        }
        out
    }

    /// How many changes were recorded.
    pub fn len(&self) -> usize {
        self.changes.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The highest weight any route gave a `-canary` host.
    pub fn max_canary_weight(&self) -> i32 {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter_map(|(_, c)| match c {
                Change::Routes { blocks, .. } => blocks
                    .iter()
                    .flatten()
                    .filter(|(h, _)| h.split('.').next().is_some_and(|h| h.ends_with("-canary")))
                    .map(|(_, w)| *w)
                    .max(),
                _ => None,
            })
            .max()
            .unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for TrafficRecorder {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}
