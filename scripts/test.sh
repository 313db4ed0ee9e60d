#!/usr/bin/env bash
# serin's one test command: installs what the tests need on a fresh Debian machine,
# then runs formatting, lint and every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# Debian packages the tests use for real parts: Prometheus (metric queries).
missing=()
command -v prometheus >/dev/null 2>&1 || [ -x /usr/bin/prometheus ] || missing+=(prometheus)
command -v promtool >/dev/null 2>&1 || [ -x /usr/bin/promtool ] || missing+=(prometheus)
# openssl makes the self-signed certificate of the insecureSkipVerify test.
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # The package may start its own daemon on :9090; tests start their own instances.
  as_root sh -c 'service prometheus stop >/dev/null 2>&1; pkill -x prometheus; update-rc.d prometheus disable >/dev/null 2>&1; true'
fi
command -v kubectl >/dev/null 2>&1 || { echo "kubectl is required (it ships on these machines)"; exit 1; }

cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked
