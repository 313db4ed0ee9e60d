#!/usr/bin/env bash
# serin's container image, built FROM scratch with buildah (no base image is pulled):
# the serin binary, the shared libraries `ldd` lists for it and the dynamic loader,
# nothing else (no shell, no /etc/passwd), run as the numeric user 65532:65532.
#
#   scripts/image.sh build [--binary PATH]   build the image (a release build of serin
#                                            unless --binary names one); prints its name,
#                                            localhost/serin:<version>
#   scripts/image.sh run [PODMAN-ARGS...] -- [SERIN-ARGS...]
#                                            podman run --rm of that image, on the host's
#                                            network; e.g. `scripts/image.sh run -- --version`
#   scripts/image.sh podman ARGS...          podman on the same storage (ps, logs, rm -f ID,
#                                            images, image inspect, ...)
#   scripts/image.sh run-flags               the flags `run` gives podman run, for
#                                            `scripts/image.sh podman run -d $(scripts/image.sh run-flags) ...`
#   scripts/image.sh clean                   remove the storage (every image and container
#                                            in it)
#
# Environment: SERIN_IMAGE_STORE (default ~/.cache/serin/image) holds buildah's and
# podman's storage, their run state and crun's, so these commands use none of the
# system's (/var/lib/containers/storage, /run/libpod, /run/crun; buildah still keeps
# its blob-info cache in /var/lib/containers/cache, which no option moves for root);
# SERIN_IMAGE_DRIVER is the storage driver (default overlay; vfs works too);
# SERIN_IMAGE is the image `run` starts (default localhost/serin:<Cargo.toml's version>).
#
# What podman needs on machines like this project's (each checked; README "Container
# image" says what fails without it):
# - --ulimit nofile/nproc: podman asks crun for 1048576 of each by default, above this
#   machine's hard limits, and root here lacks CAP_SYS_RESOURCE to raise them. podman
#   itself lowers its own RLIMIT_NPROC to 32768 before it starts crun, so nproc is
#   capped there.
# - a private mount namespace with /sys/fs/cgroup/unified unmounted: on a cgroup v1/v2
#   hybrid host whose v2 hierarchy has a controller (hugetlb here), crun refuses to run
#   ("cgroups in hybrid mode not supported"); inside `unshare -m` the v2 mount is gone
#   for podman and crun only.
# - --cgroups disabled: no cgroup is made for the container or conmon (they would be
#   left under /sys/fs/cgroup/*/libpod_parent). --cgroup-manager cgroupfs is the default
#   without systemd; passed so a systemd host does not differ.
# - --network host: the operator reaches the API server on loopback, and no bridge or
#   firewall rule is made on the host (the default network adds cni-podman0 and CNI's
#   iptables chains).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cache="${SERIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/serin}"
store="${SERIN_IMAGE_STORE:-$cache/image}"
driver="${SERIN_IMAGE_DRIVER:-overlay}"
user=65532:65532

say() { echo "image.sh: $*" >&2; }

need() {
  local t
  for t in "$@"; do
    command -v "$t" >/dev/null 2>&1 || { say "$t is required (Debian: apt-get install buildah podman)"; exit 1; }
  done
}

storage=(--root "$store/storage" --runroot "$store/run" --storage-driver "$driver")

# in_ns CMD...: CMD in a private mount namespace where a hybrid host's cgroup v2 mount
# is gone (nothing to do on a host with one cgroup version). exec all the way down, so
# the caller's pid is CMD's.
in_ns() {
  if [ "$(stat -f -c %T /sys/fs/cgroup 2>/dev/null)" = tmpfs ] && mountpoint -q /sys/fs/cgroup/unified 2>/dev/null; then
    exec unshare -m --propagation private sh -c 'umount /sys/fs/cgroup/unified && exec "$@"' sh "$@"
  fi
  exec "$@"
}

# crun with its state in the store. A wrapper, not --runtime-flag root=...: podman 4.3
# does not pass runtime flags on to the `podman container cleanup` that conmon starts
# when a container exits, whose `crun delete` would then look in (and make) /run/crun.
crun_wrapper() {
  local w="$store/bin/crun" crun
  crun="$(command -v crun)" || { say "crun is required (Debian: apt-get install podman)"; exit 1; }
  if [ ! -x "$w" ]; then
    mkdir -p "$store/bin" "$store/crun"
    printf '#!/bin/sh\nexec "%s" --root="%s" "$@"\n' "$crun" "$store/crun" >"$w.tmp"
    chmod 0755 "$w.tmp"
    mv "$w.tmp" "$w"
  fi
  echo "$w"
}

podman_() {
  need podman unshare
  local crun
  crun="$(crun_wrapper)"
  mkdir -p "$store/tmp"
  in_ns podman "${storage[@]}" --tmpdir "$store/tmp" --runtime "$crun" \
    --cgroup-manager cgroupfs --events-backend none "$@"
}

run_flags() {
  local nofile nproc
  nofile="$(ulimit -Hn)"
  nproc="$(ulimit -Hu)"
  [ "$nofile" = unlimited ] && nofile=1048576
  if [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; then nproc=32768; fi
  echo --ulimit "nofile=$nofile:$nofile" --ulimit "nproc=$nproc:$nproc" --cgroups disabled --network host
}

build() {
  local bin=""
  while [ $# -gt 0 ]; do
    case "$1" in
      --binary) bin="${2:?--binary needs a path}"; shift 2 ;;
      *) say "unknown argument $1"; exit 2 ;;
    esac
  done
  need buildah ldd
  if [ -z "$bin" ]; then
    say "building serin (cargo build --release -p serin)"
    (cd "$root" && cargo build --release --locked -p serin --bin serin >&2)
    bin="${CARGO_TARGET_DIR:-$root/target}/release/serin"
  fi
  [ -x "$bin" ] || { say "no executable at $bin"; exit 1; }
  local version
  version="$("$bin" --version | sed -n 's/^serin \([^ ]*\)$/\1/p')"
  [ -n "$version" ] || { say "$bin --version does not say 'serin VERSION'"; exit 1; }
  local image="localhost/serin:$version"

  # The files of the image, laid out in a staging directory: the binary, and each
  # library and the loader at the path ldd resolves (a static binary has none).
  stage="$(mktemp -d "${TMPDIR:-/tmp}/serin-image.XXXXXX")"
  trap 'rm -rf "$stage"' EXIT
  chmod 0755 "$stage"
  install -D -m 0755 "$bin" "$stage/usr/local/bin/serin"
  local lib libs
  libs="$(ldd "$bin" 2>/dev/null | grep -o '/[^ ]*' | tr '\n' ' ' || true)"
  libs="${libs% }"
  for lib in $libs; do
    cp -L --parents "$lib" "$stage/"
    chmod 0755 "$stage$lib"
  done

  local b=(buildah "${storage[@]}")
  mkdir -p "$store/tmp"
  export TMPDIR="$store/tmp"
  local c
  c="$("${b[@]}" from --quiet scratch)"
  "${b[@]}" copy --quiet "$c" "$stage/" / >/dev/null
  "${b[@]}" config \
    --user "$user" \
    --entrypoint '["/usr/local/bin/serin"]' \
    --cmd operator \
    --port 8080 \
    --label org.opencontainers.image.title=serin \
    --label "org.opencontainers.image.version=$version" \
    --label org.opencontainers.image.description="serin, a progressive delivery operator speaking Flagger's API" \
    "$c"
  "${b[@]}" commit --quiet --rm "$c" "$image" >/dev/null
  # A rebuild leaves the image it untagged behind: remove it (the store is ours).
  "${b[@]}" rmi --prune >/dev/null 2>&1 || true
  say "built $image: /usr/local/bin/serin and what ldd lists (${libs:-nothing: a static binary}), $(du -sb "$stage" | cut -f1) bytes"
  echo "$image"
}

case "${1:-}" in
  build)
    shift
    build "$@"
    ;;
  run)
    shift
    opts=()
    while [ $# -gt 0 ] && [ "$1" != -- ]; do opts+=("$1"); shift; done
    [ "${1:-}" = -- ] && shift
    version="$(cd "$root" && sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)"
    # shellcheck disable=SC2046
    podman_ run --rm $(run_flags) "${opts[@]}" "${SERIN_IMAGE:-localhost/serin:$version}" "$@"
    ;;
  run-flags)
    run_flags
    ;;
  podman)
    shift
    podman_ "$@"
    ;;
  clean)
    if [ -d "$store" ]; then
      # Containers first (their state is in the store), then the files.
      (podman_ rm -a -f >/dev/null 2>&1) || true
      rm -rf "$store"
    fi
    ;;
  *)
    echo "usage: $0 build [--binary PATH] | run [PODMAN-ARGS...] -- [SERIN-ARGS...] | run-flags | podman ARGS... | clean" >&2
    exit 2
    ;;
esac
