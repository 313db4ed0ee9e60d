#!/usr/bin/env bash
# Flagger and serin side by side on one real control plane (scripts/cluster.sh), with
# Flagger's own CRDs installed (the migration case), Flagger built from its Go module
# (tests/flagger pins github.com/fluxcd/flagger), the same live Prometheus and the same
# manifests in two namespaces (flagger-side, serin-side).
#
#   scripts/compare-flagger.sh            the golden check, then the performance runs
#   scripts/compare-flagger.sh --golden   only the golden compatibility check (a test
#                                         of the real suite: scripts/test.sh runs it)
#   scripts/compare-flagger.sh --perf [--quick]
#                                         only the performance comparison (not the
#                                         load generators'); SERIN_COMPARE_ONLY=serin
#                                         (or flagger) measures one side again
#
# Golden: the seed scenarios on both operators; the objects each generated, its
# events and the Canary status at each step, compared field by field; every
# difference must be listed in README.md's "Known differences from Flagger"
# (target/compare/golden.json has the observations). Then serin takes over the
# canaries Flagger promoted.
# Performance: reaction time to `kubectl set image`, wall time of one promotion,
# resident memory and CPU with 100 and 1,000 canaries, API requests per canary per
# analysis interval (from the API server's audit log, by user); a table on stdout and
# target/compare/flagger.json. Then scripts/compare-loadgen.sh (hey, wrk, serin's).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=all quick=
for a in "$@"; do
  case "$a" in
    --golden) mode=golden ;;
    --perf) mode=perf ;;
    --quick) quick=--quick ;;
    *) echo "usage: $0 [--golden|--perf [--quick]]" >&2; exit 2 ;;
  esac
done
say() { echo "compare-flagger.sh: $*" >&2; }

# shellcheck source=scripts/peers.sh
. scripts/peers.sh
peers_cluster
peers_flagger
export SERIN_CANARY_CRDS="$SERIN_FLAGGER_MODULE/artifacts/flagger/crd.yaml"
say "Flagger $("$SERIN_FLAGGER" -version 2>/dev/null | tail -1) ($SERIN_FLAGGER)"

up() {
  export SERIN_CLUSTER_STATE
  SERIN_CLUSTER_STATE="$(mktemp "${TMPDIR:-/tmp}/serin-compare-cluster.XXXXXX")"
  rm -f "$SERIN_CLUSTER_STATE"
  eval "$(scripts/cluster.sh up)"
  export SERIN_REAL_KUBECONFIG="$KUBECONFIG"
  SERIN_REAL_CLUSTER_DIR="$(cat "$SERIN_CLUSTER_STATE")"
  export SERIN_REAL_CLUSTER_DIR
}
down() { [ -z "${SERIN_CLUSTER_STATE:-}" ] || scripts/cluster.sh down >/dev/null 2>&1 || true; }
trap down EXIT

if [ "$mode" != perf ]; then
  up
  start=$SECONDS
  cargo test -p serin --test real --locked -- --ignored --exact \
    compare::flagger_and_serin_agree_on_the_seed_scenarios_but_for_the_documented_differences
  say "golden check done in $((SECONDS - start))s; observations in target/compare/golden.json"
  down
fi

if [ "$mode" != golden ]; then
  up
  dir="$SERIN_REAL_CLUSTER_DIR"
  start=$SECONDS
  kubectl apply --server-side -f "$SERIN_CANARY_CRDS" >/dev/null
  kubectl apply --server-side -f "$SERIN_ISTIO_CRDS" >/dev/null
  kubectl wait --for=condition=Established --timeout=60s crd/canaries.flagger.app crd/virtualservices.networking.istio.io >/dev/null
  kubectl apply --server-side -k deploy/kustomize/kubernetes >/dev/null
  kubectl apply --server-side -f "$SERIN_FLAGGER_MODULE/artifacts/flagger/account.yaml" >/dev/null
  kubeconfig_for() { # NAMESPACE ACCOUNT FILE
    local token server ca
    token="$(kubectl -n "$1" create token "$2" --duration=4h)"
    server="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.server}')"
    ca="$(kubectl config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}')"
    printf 'apiVersion: v1\nkind: Config\nclusters:\n- name: real\n  cluster:\n    server: %s\n    certificate-authority-data: %s\nusers:\n- name: u\n  user:\n    token: %s\ncontexts:\n- name: c\n  context:\n    cluster: real\n    user: u\ncurrent-context: c\n' "$server" "$ca" "$token" >"$3"
  }
  kubeconfig_for serin-system serin "$dir/serin.kubeconfig"
  kubeconfig_for default flagger "$dir/flagger.kubeconfig"
  cargo build --release --locked -p serin
  mkdir -p target/compare
  cargo bench --locked -p serin-simulate --bench controller -- --compare-flagger \
    "$KUBECONFIG" "$dir/logs/audit.log" \
    "$SERIN_FLAGGER" "$dir/flagger.kubeconfig" \
    "${CARGO_TARGET_DIR:-$PWD/target}/release/serin" "$dir/serin.kubeconfig" \
    "$PWD/target/compare/flagger.json" $quick
  say "performance comparison done in $((SECONDS - start))s; target/compare/flagger.json"
  down
  if [ "$mode" = all ]; then
    scripts/compare-loadgen.sh
  fi
fi
