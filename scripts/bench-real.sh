#!/usr/bin/env bash
# The controller benchmarks against a real API server (figures, not assertions): a
# control plane of its own from scripts/cluster.sh, serin's and Istio's CRDs, the
# operator's ServiceAccount from deploy/kustomize/kubernetes, then
# `cargo bench -p serin-simulate --bench controller -- --real ...` with 100 and 1,000
# canaries (`--quick`: 20 and 100). Prints one line per size and a JSON summary.
set -euo pipefail
cd "$(dirname "$0")/.."

export SERIN_CLUSTER_STATE
SERIN_CLUSTER_STATE="$(mktemp "${TMPDIR:-/tmp}/serin-bench-cluster.XXXXXX")"
rm -f "$SERIN_CLUSTER_STATE"
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
eval "$(scripts/cluster.sh up)"
dir="$(cat "$SERIN_CLUSTER_STATE")"
istio_dir="$(cd tests/cluster && go mod download -json istio.io/api | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"

kubectl apply --server-side -f deploy/crds/crds.yaml >/dev/null
kubectl apply --server-side -f "$istio_dir/kubernetes/customresourcedefinitions.gen.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/canaries.flagger.app crd/virtualservices.networking.istio.io >/dev/null
kubectl apply --server-side -k deploy/kustomize/kubernetes >/dev/null
token="$(kubectl -n serin-system create token serin --duration=4h)"
server="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
ca="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
cat >"$dir/operator.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: real
  cluster:
    server: $server
    certificate-authority-data: $ca
users:
- name: serin
  user:
    token: $token
contexts:
- name: serin
  context:
    cluster: real
    user: serin
current-context: serin
KC
echo "real API server $(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1)"
cargo bench -p serin-simulate --bench controller -- --real "$KUBECONFIG" "$dir/operator.kubeconfig" "$dir/logs/audit.log" "$@"
