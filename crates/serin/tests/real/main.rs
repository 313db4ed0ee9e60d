//! The real tier: serin against a real Kubernetes control plane (etcd, kube-apiserver,
//! kube-controller-manager built from their Go modules by scripts/cluster.sh), with
//! real kubectl and helm, `serin operator` as its own process authenticated with a
//! real ServiceAccount token (so Kubernetes enforces deploy/'s RBAC), and a real
//! Prometheus scraping live Istio-style series.
//!
//! Every test here is `#[ignore]`d so the fast tier (`cargo test --workspace`) builds
//! this binary without running it; scripts/test.sh then starts the control plane and
//! runs `cargo test -p serin --test real -- --ignored`. Each test works in its own
//! namespace with its own operator (`--namespace`), so tests run side by side; the one
//! that restarts the API server takes the cluster for itself.

mod compare;
mod gitops;
mod health;
mod image;
mod live;
mod loadtester;
mod manifests;
mod scenarios;
mod schema;
mod support;
