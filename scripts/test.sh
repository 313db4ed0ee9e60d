#!/usr/bin/env bash
# serin's one test command: installs what the tests need on a fresh Debian machine,
# then runs formatting, lint, the fast tier (every test of the workspace, on the
# sandbox, in process) and the real tier (a real Kubernetes control plane from
# scripts/cluster.sh, real kubectl and helm, serin operator as its own process).
#
#   SERIN_SKIP_REAL=1 ./scripts/test.sh   the fast tier only (the quick loop)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$(pwd)"

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
stamp() { echo "== $(date -u +%H:%M:%S) $*"; }
start=$SECONDS

# Debian packages the tests use for real parts: Prometheus (metric queries), openssl
# (the insecureSkipVerify test's certificate), InfluxDB 1.x and Graphite (carbon and
# graphite-web) for their metric providers, Chromium and its driver (the dashboard in a
# real headless browser), buildah and podman (serin's image, scripts/image.sh, built and
# run by the real tier).
missing=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ] || missing+=(prometheus)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
[ -x /usr/bin/influxd ] || missing+=(influxdb)
[ -x /usr/bin/carbon-cache ] || missing+=(graphite-carbon)
[ -x /usr/bin/django-admin ] && [ -d /usr/lib/python3/dist-packages/graphite ] || missing+=(graphite-web)
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ -x /usr/bin/chromedriver ] || missing+=(chromium-driver)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v podman >/dev/null 2>&1 || missing+=(podman)
if [ ${#missing[@]} -gt 0 ]; then
  stamp "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package starts its own daemon on :9090; tests start their own instances. Stop
  # the packaged service by its name only (never a process by name: a user's own
  # Prometheus is not ours to kill).
  as_root sh -c 'for s in prometheus influxdb carbon-cache; do service $s stop >/dev/null 2>&1; update-rc.d $s disable >/dev/null 2>&1; done; true'
fi
# moto's server mode (PyPI) stands in for CloudWatch's API, signatures checked.
command -v moto_server >/dev/null 2>&1 || {
  echo "installing moto[server] from PyPI"
  python3 -m pip install -q 'moto[server]'
}
command -v kubectl >/dev/null 2>&1 || { echo "kubectl is required (it ships on these machines)"; exit 1; }

# Rust's build output lives in a cache outside the clone, as the Go peers' does, so a
# second run on the same machine (a fresh clone included) recompiles only serin's own
# crates, not its dependencies. A CARGO_TARGET_DIR set by the caller wins.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/serin/cargo-target}"
mkdir -p "$CARGO_TARGET_DIR"

stamp "fast tier: fmt, clippy, cargo test --workspace (build output in $CARGO_TARGET_DIR)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
stamp "fast tier done after $((SECONDS - start))s"

if [ "${SERIN_SKIP_REAL:-}" = 1 ]; then
  echo "SERIN_SKIP_REAL=1: the real tier was not run"
  exit 0
fi

# The real tier. Its peers are built from the Go modules pinned in tests/cluster
# (go.mod, go.sum) into a cache outside the repository, once per version.
command -v go >/dev/null 2>&1 || { echo "go is required for the real tier (it ships on these machines)"; exit 1; }
stamp "real tier: building the peers (cached after the first run)"
# shellcheck source=scripts/peers.sh
. scripts/peers.sh
peers_cluster
peers_flagger
peers_flux
stamp "peers ready after $((SECONDS - start))s: $SERIN_CLUSTER_BIN, $SERIN_HELM, $SERIN_FLAGGER, $(dirname "$SERIN_FLUX_CLI")"

# The seeds' GitOps walkthrough under real Flux, on a control plane of its own, runs
# beside the real tier and the Flagger comparison (all three spend most of their time
# waiting out analysis intervals). Its output is shown when it ends; it runs in a
# process group of its own, stopped if this script stops first.
mkdir -p target
lab_log=target/gitops-lab.log
setsid scripts/gitops-lab.sh >"$lab_log" 2>&1 </dev/null &
lab_pid=$!
stamp "GitOps lab started (pid $lab_pid, output in $lab_log)"

# A control plane of this run only (its own state file), stopped on exit.
export SERIN_CLUSTER_STATE
SERIN_CLUSTER_STATE="$(mktemp "${TMPDIR:-/tmp}/serin-test-cluster.XXXXXX")"
rm -f "$SERIN_CLUSTER_STATE"
trap 'kill -TERM -- "-$lab_pid" 2>/dev/null || true; scripts/cluster.sh down >/dev/null 2>&1 || true' EXIT
eval "$(scripts/cluster.sh up)"
export SERIN_REAL_KUBECONFIG="$KUBECONFIG"
SERIN_REAL_CLUSTER_DIR="$(cat "$SERIN_CLUSTER_STATE")"
export SERIN_REAL_CLUSTER_DIR
stamp "control plane up: $(kubectl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -1)"
cargo test -p serin --test real --locked -- --ignored --test-threads=3 --skip compare:: --skip gitops::
scripts/cluster.sh down >/dev/null
stamp "real tier done after $((SECONDS - start))s"

# Flagger side by side on a control plane of its own, with Flagger's CRDs: the golden
# compatibility check (the performance half is `scripts/compare-flagger.sh --perf`).
scripts/compare-flagger.sh --golden
stamp "Flagger comparison done after $((SECONDS - start))s"

lab_status=0
wait "$lab_pid" || lab_status=$?
cat "$lab_log"
if [ "$lab_status" != 0 ]; then
  stamp "the GitOps lab failed (exit $lab_status); its output is above and in $lab_log"
  exit 1
fi
stamp "GitOps lab done; whole test command took $((SECONDS - start))s"
