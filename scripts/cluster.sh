#!/usr/bin/env bash
# A real Kubernetes control plane on loopback: etcd, kube-apiserver and
# kube-controller-manager from their Go modules (tests/cluster), plus a node stand-in
# that binds pods to fake Nodes and reports them Running and Ready.
#
#   scripts/cluster.sh up      build once (cached), start in the background, print
#                              `export KUBECONFIG=PATH`
#   scripts/cluster.sh down    stop exactly what `up` started (its pid file) and remove
#                              its data
#   scripts/cluster.sh status  say whether it runs, and where
#   scripts/cluster.sh build   only build; print the binary's path
#
# Environment: SERIN_CACHE (default ~/.cache/serin) holds the binary, one per hash of
# tests/cluster's sources; SERIN_CLUSTER_STATE (default /tmp/serin-cluster-UID.state)
# names the file that remembers a running cluster, so two can run side by side.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SERIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/serin}"
state="${SERIN_CLUSTER_STATE:-/tmp/serin-cluster-$(id -u).state}"

say() { echo "cluster.sh: $*" >&2; }

binary() {
  local hash
  hash="$(cd "$root/tests/cluster" && cat go.mod go.sum ./*.go "$root/scripts/cluster.sh" | sha256sum | cut -c1-16)"
  echo "$cache/cluster-$hash/serin-cluster"
}

build() {
  local bin
  bin="$(binary)"
  if [ ! -x "$bin" ]; then
    command -v go >/dev/null 2>&1 || { say "go is required to build the control plane"; exit 1; }
    say "building kube-apiserver, kube-controller-manager and etcd (tests/cluster) into $(dirname "$bin")"
    say "the first build compiles kube-apiserver and kube-controller-manager (many minutes on 2 cores); later ones reuse Go's build cache"
    mkdir -p "$(dirname "$bin")"
    local start=$SECONDS
    # The version Kubernetes' own build stamps in (kubectl version, /version).
    local v pkg=k8s.io/component-base/version
    v="$(cd "$root/tests/cluster" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
    local major="${v#v}" minor
    minor="${major#*.}"; minor="${minor%%.*}"; major="${major%%.*}"
    (cd "$root/tests/cluster" && go build -trimpath \
      -ldflags "-X $pkg.gitVersion=$v -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z" \
      -o "$bin.tmp" .)
    mv "$bin.tmp" "$bin"
    say "built in $((SECONDS - start))s"
  fi
  echo "$bin"
}

running() {
  [ -f "$state" ] || return 1
  local dir pid
  dir="$(cat "$state")"
  [ -f "$dir/up.pid" ] || return 1
  pid="$(cat "$dir/up.pid")"
  kill -0 "$pid" 2>/dev/null
}

up() {
  if running; then
    echo "export KUBECONFIG=$(cat "$state")/kubeconfig"
    return 0
  fi
  local bin dir pid
  bin="$(build)"
  dir="$(mktemp -d "${TMPDIR:-/tmp}/serin-cluster.XXXXXX")"
  mkdir -p "$dir/logs"
  setsid "$bin" up --dir "$dir" >"$dir/logs/up.log" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$dir/up.pid"
  echo "$dir" >"$state"
  local deadline=$((SECONDS + 180))
  until [ -f "$dir/ready" ]; do
    if ! kill -0 "$pid" 2>/dev/null; then
      say "the control plane exited before it was ready; its logs are in $dir/logs:"
      tail -n 30 "$dir/logs/up.log" "$dir/logs/kube-apiserver.log" 2>/dev/null >&2 || true
      rm -f "$state"
      exit 1
    fi
    if [ $SECONDS -ge $deadline ]; then
      say "not ready after 180s; logs in $dir/logs"
      down
      exit 1
    fi
    sleep 0.2
  done
  echo "export KUBECONFIG=$dir/kubeconfig"
}

down() {
  [ -f "$state" ] || { say "no cluster recorded in $state"; return 0; }
  local dir pid
  dir="$(cat "$state")"
  if [ -f "$dir/up.pid" ]; then
    pid="$(cat "$dir/up.pid")"
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 150); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.2
      done
      if kill -0 "$pid" 2>/dev/null; then
        say "still running after 30s: SIGKILL to $pid (its children die with it)"
        kill -KILL "$pid" 2>/dev/null || true
      fi
    fi
  fi
  case "$dir" in
    "${TMPDIR:-/tmp}"/serin-cluster.*) rm -rf "$dir" ;;
  esac
  rm -f "$state"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  build) build ;;
  status)
    if running; then echo "running: $(cat "$state") (KUBECONFIG=$(cat "$state")/kubeconfig)"; else echo "not running"; exit 1; fi
    ;;
  *)
    echo "usage: $0 up|down|status|build" >&2
    exit 2
    ;;
esac
