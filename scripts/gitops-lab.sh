#!/usr/bin/env bash
# The seeds' GitOps walkthrough under real Flux, on a control plane of its own
# (scripts/cluster.sh): Flux's source-, kustomize- and helm-controller and the flux
# CLI built from their Go modules (tests/flux), gitops/ served by a loopback Git
# server, Istio's charts (istio.io/istio module) by a loopback Helm repository, serin
# installed by Flux from its own chart and run with that chart's ServiceAccount.
# Prints each step and the command a user would type; fails on the first step that
# does not do what the seeds say. scripts/test.sh runs it.
#
#   scripts/gitops-lab.sh                        analysis every 10s (the shortest Flagger and serin run)
#   SERIN_LAB_INTERVAL=15s scripts/gitops-lab.sh the seeds' own interval
set -euo pipefail
cd "$(dirname "$0")/.."
say() { echo "gitops-lab.sh: $*" >&2; }
start=$SECONDS

# shellcheck source=scripts/peers.sh
. scripts/peers.sh
peers_cluster
peers_flux
say "Flux $("$SERIN_FLUX_CLI" version --client 2>/dev/null | tail -1) ($(dirname "$SERIN_FLUX_CLI"))"

export SERIN_CLUSTER_STATE
SERIN_CLUSTER_STATE="$(mktemp "${TMPDIR:-/tmp}/serin-gitops-cluster.XXXXXX")"
rm -f "$SERIN_CLUSTER_STATE"
trap 'scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
eval "$(scripts/cluster.sh up)"
export SERIN_REAL_KUBECONFIG="$KUBECONFIG"
say "control plane up after $((SECONDS - start))s"

cargo test -p serin --test real --locked -- --ignored --exact --nocapture \
  gitops::a_git_push_of_a_new_tag_ends_in_a_promoted_canary_and_a_failing_one_stays_rolled_back
say "the lab passed; $((SECONDS - start))s in all"
