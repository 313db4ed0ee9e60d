module github.com/serin-dev/serin/tests/sources

go 1.26.0

// Modules read, not built here: scripts/peers.sh takes files from them in the module
// cache. istio.io/istio: Istio's Helm charts (manifests/charts), packaged by the GitOps
// lab into a Helm repository on loopback. github.com/fluxcd/flux2/v2: the flux CLI's
// source, which needs a generated file before it builds (see flux_cli in peers.sh).
require (
	github.com/fluxcd/flux2/v2 v2.9.5
	istio.io/istio v0.0.0-20260827124520-eed52ebb66ad
)
