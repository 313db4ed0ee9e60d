//! serin-sandbox: an in-memory Kubernetes API server.
//!
//! It serves the resources serin works with (core/v1 namespaces, configmaps, secrets,
//! services, pods, events, serviceaccounts, endpoints; events.k8s.io/v1 events, the same
//! objects as core/v1 events, converted; apps/v1 deployments, daemonsets, replicasets,
//! statefulsets; autoscaling/v2 and v2beta2 HPAs; coordination.k8s.io/v1 leases;
//! rbac.authorization.k8s.io/v1 roles and bindings (stored, not enforced); policy/v1 PDBs;
//! apiextensions.k8s.io/v1 CRDs and whatever resources they define; Istio's
//! networking.istio.io v1/v1beta1/v1alpha3 VirtualService, DestinationRule and Gateway) with
//! the API semantics controllers rely on: a global resourceVersion and `409 Conflict` on a
//! stale one, uid, creationTimestamp, generation (bumped on spec changes only), generateName,
//! status and scale subresources, label and field selectors, watches from a resourceVersion
//! with bookmarks, streaming lists and `410 Gone`, finalizers and deletionTimestamp, garbage
//! collection by owner references (background, foreground and orphan), JSON / merge / strategic merge patches and server-side
//! apply, dry runs, `Status` error bodies, CRD structural schemas (pruning, defaults, type
//! checks, bounds, patterns, `x-kubernetes-validations` CEL rules, `fieldValidation`, 422s
//! with kube-apiserver's `details.causes`), discovery, OpenAPI v3 stubs and Table
//! responses for kubectl.
//! Deployments and DaemonSets get a simulated status after [`SandboxOptions::rollout_delay`]
//! on tokio's clock, so paused (virtual) time works.
//!
//! Two ways to use it:
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use serin_sandbox::{Sandbox, SandboxOptions};
//! let sandbox = Sandbox::new(SandboxOptions::default());
//! // 1. In process: an ordinary kube::Client over the sandbox as a tower service
//! //    (needs a tokio runtime, like any kube::Client).
//! let client: kube::Client = sandbox.client();
//! // 2. Over HTTP/1.1 on loopback, for kubectl.
//! let server = sandbox.serve("127.0.0.1:0".parse()?).await?;
//! sandbox.write_kubeconfig(std::path::Path::new("/tmp/kubeconfig"), server.addr())?;
//! server.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Knobs for tests: [`Sandbox::set_never_ready`], [`Sandbox::faults`] (409/500 rates and
//! delays per resource and verb) and [`Sandbox::drop_watches`].
//!
//! Modules: `store` (objects, resourceVersion, history, GC), `watch`, `http` (routing and
//! verbs), `patch`, `schema` (CRD structural schemas), `cel` (their CEL rules), `convert`
//! (served versions), `discovery` (discovery and OpenAPI), `table`, `workload` (simulated
//! controllers), `faults`, `proto` (kubectl's protobuf create bodies), `serve` (HTTP server
//! and kubeconfig).
//!
//! Not emulated: no scheduler, no kubelet, no pods are created or run, no ReplicaSets behind
//! Deployments, no HPA controller, no networking (Services route nothing), no admission
//! webhooks, no authentication or RBAC, no schema validation of built-in kinds, no
//! aggregated discovery, no pagination (lists return everything), no managedFields, no CRD
//! conversion webhooks.

mod cel;
mod convert;
mod discovery;
pub mod error;
mod faults;
mod http;
mod patch;
mod proto;
mod resources;
mod schema;
mod selector;
mod serve;
mod store;
mod table;
mod watch;
mod workload;

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serin_api::clock::Clock;

pub use error::{ApiError, FieldError};
pub use faults::{FaultRule, Faults, Verb};
pub use http::SandboxBody;
pub use patch::{PatchKind, apply_patch, strategic_merge};
pub use selector::{FieldSelector, LabelSelector};
pub use serve::ServeHandle;

/// Settings of a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// How long a Deployment or DaemonSet takes to become ready after a spec change.
    pub rollout_delay: Duration,
    /// Source of creationTimestamp and other times (maps tokio's clock to UTC).
    pub clock: Clock,
    /// How many changes watches can resume from; older resourceVersions get `410 Gone`.
    pub watch_history: usize,
    /// Interval of BOOKMARK events on watches that allow them.
    pub bookmark_interval: Duration,
    /// Nodes a DaemonSet is scheduled on.
    pub daemonset_nodes: i64,
    /// Namespaces that exist from the start.
    pub namespaces: Vec<String>,
    /// Seed of the generator of uids, generated names and fault rolls.
    pub seed: u64,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        Self {
            rollout_delay: Duration::from_secs(1),
            clock: Clock::system(),
            watch_history: 50_000,
            bookmark_interval: Duration::from_secs(60),
            daemonset_nodes: 1,
            namespaces: ["default", "kube-system", "kube-public", "kube-node-lease"]
                .map(String::from)
                .to_vec(),
            seed: 0x5e41_5a4d_b0c5,
        }
    }
}

pub(crate) struct Inner {
    state: Mutex<store::State>,
    options: SandboxOptions,
    faults: Faults,
    never_ready: Mutex<HashSet<(String, String, String)>>,
    drops: tokio::sync::watch::Sender<u64>,
    simulator: Mutex<workload::Simulator>,
}

/// A handle to one in-memory API server; clones share it.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

impl Sandbox {
    pub fn new(options: SandboxOptions) -> Self {
        let mut state = store::State::new(options.watch_history, options.seed);
        let ns_type = state
            .registry
            .find("", "v1", "namespaces")
            .expect("namespaces are built in");
        let now = options.clock.now();
        for ns in &options.namespaces {
            let obj = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            if let Err(e) = state.create(&ns_type, "", obj, now, false) {
                tracing::warn!(msg = "cannot create initial namespace", namespace = %ns, error = %e);
            }
        }
        let (drops, _) = tokio::sync::watch::channel(0);
        Self {
            inner: Arc::new(Inner {
                state: Mutex::new(state),
                options,
                faults: Faults::default(),
                never_ready: Mutex::new(HashSet::new()),
                drops,
                simulator: Mutex::new(workload::Simulator::default()),
            }),
        }
    }

    pub(crate) fn state(&self) -> MutexGuard<'_, store::State> {
        // A panic while holding the lock leaves a consistent store (every write is one
        // insert), so a poisoned lock is still usable.
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn options(&self) -> &SandboxOptions {
        &self.inner.options
    }

    /// An ordinary kube client whose requests this sandbox answers in process.
    pub fn client(&self) -> kube::Client {
        kube::Client::new(self.clone(), "default")
    }

    /// The current global resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.state().resource_version()
    }

    /// Fault injection rules, shared by every request path.
    pub fn faults(&self) -> &Faults {
        &self.inner.faults
    }

    /// Ends every open watch stream (clients see the connection end and re-watch).
    pub fn drop_watches(&self) {
        self.inner.drops.send_modify(|g| *g += 1);
    }

    /// Makes a Deployment or DaemonSet (`kind` is `Deployment` or `DaemonSet`) never become
    /// ready (`true`), or lets it become ready again (`false`).
    pub fn set_never_ready(&self, namespace: &str, kind: &str, name: &str, never: bool) {
        let key = (namespace.to_string(), kind.to_lowercase(), name.to_string());
        {
            let mut set = self
                .inner
                .never_ready
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if never {
                set.insert(key);
            } else {
                set.remove(&key);
            }
        }
        let resource = match kind.to_lowercase().as_str() {
            "daemonset" | "daemonsets" => "daemonsets",
            _ => "deployments",
        };
        workload::reconcile(self, resource, namespace, name, true);
    }

    pub(crate) fn is_never_ready(&self, namespace: &str, kind: &str, name: &str) -> bool {
        self.inner
            .never_ready
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&(namespace.to_string(), kind.to_lowercase(), name.to_string()))
    }

    /// Serves the API over HTTP/1.1 on `addr` (must be a loopback address).
    pub async fn serve(&self, addr: std::net::SocketAddr) -> std::io::Result<ServeHandle> {
        serve::serve(self.clone(), addr).await
    }

    /// Writes a kubeconfig whose current context points at `addr` (namespace `default`).
    pub fn write_kubeconfig(
        &self,
        path: &std::path::Path,
        addr: std::net::SocketAddr,
    ) -> std::io::Result<()> {
        serve::write_kubeconfig(path, addr)
    }
}
