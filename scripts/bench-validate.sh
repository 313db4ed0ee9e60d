#!/usr/bin/env bash
# `serin validate` on a large generated stream of Canaries: wall time and peak
# resident memory, for the README's Figures (a benchmark, not a test).
#
#   scripts/bench-validate.sh [MEGABYTES...]     default: 1 50
#
# Each Canary is a full one (analysis, two metrics, two webhooks; a third of them A/B
# tests with a header regex); of the weighted ones, every tenth has an error (stepWeight
# above maxWeight) and every seventh a misspelt field, so findings are printed as a
# user would see them. Runs $SERIN_BIN, or the release binary in
# ${CARGO_TARGET_DIR:-target}/release (built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
serin="${SERIN_BIN:-${CARGO_TARGET_DIR:-$PWD/target}/release/serin}"
[ -x "$serin" ] || [ -n "${SERIN_BIN:-}" ] || cargo build --release -p serin >&2
[ -x "$serin" ] || { echo "no serin binary at $serin" >&2; exit 1; }
work="$(mktemp -d "${TMPDIR:-/tmp}/serin-bench-validate.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# canaries N: N Canary documents on stdout.
canaries() {
  awk -v n="$1" 'BEGIN {
    for (i = 0; i < n; i++) {
      step = (i % 10 == 0) ? 80 : 10
      field = (i % 7 == 0) ? "stepWieght" : "stepWeightPromotion"
      printf "---\napiVersion: flagger.app/v1beta1\nkind: Canary\nmetadata:\n  name: app-%d\n  namespace: team-%d\n", i, i % 50
      printf "spec:\n  targetRef:\n    apiVersion: apps/v1\n    kind: Deployment\n    name: app-%d\n", i
      printf "  service:\n    port: 9898\n    gateways:\n    - public-gateway.istio-system.svc.cluster.local\n    hosts:\n    - app-%d.example.com\n", i
      printf "  analysis:\n    interval: 1m\n    threshold: 5\n"
      if (i % 3 == 1) {
        printf "    iterations: 10\n    match:\n    - headers:\n        x-canary:\n          regex: \"^(insider|beta-%d)$\"\n", i
      } else {
        printf "    maxWeight: 50\n    stepWeight: %d\n    %s: 20\n", step, field
      }
      printf "    metrics:\n    - name: request-success-rate\n      thresholdRange:\n        min: 99\n      interval: 1m\n"
      printf "    - name: request-duration\n      thresholdRange:\n        max: 500\n      interval: 30s\n"
      printf "    webhooks:\n    - name: acceptance-test\n      type: pre-rollout\n      url: http://flagger-loadtester.test/\n      timeout: 30s\n      metadata:\n        type: bash\n        cmd: \"curl -sd test http://app-%d-canary.team-%d:9898/token\"\n", i, i % 50
      printf "    - name: load-test\n      url: http://flagger-loadtester.test/\n      timeout: 5s\n      metadata:\n        cmd: \"hey -z 1m -q 10 -c 2 http://app-%d-canary.team-%d:9898/\"\n", i, i % 50
    }
  }'
}

printf '| input | documents | wall time | peak RSS | findings |\n|---|---|---|---|---|\n'
for mb in "${@:-1 50}"; do
  for m in $mb; do
    file="$work/canaries-$m.yaml"
    # About 1,020 bytes a Canary.
    canaries $((m * 1000 * 1000 / 1020)) >"$file"
    size=$(stat -c %s "$file")
    /usr/bin/time -f '%e %M' -o "$work/time" "$serin" validate -f "$file" >"$work/out" || true
    read -r secs kib < <(tail -1 "$work/time")
    summary="$(tail -1 "$work/out")"
    printf '| %s MB (%s bytes) | %s | %s s | %s MiB | %s |\n' "$m" "$size" \
      "$(echo "$summary" | cut -d' ' -f1)" "$secs" "$((kib / 1024))" "$(echo "$summary" | cut -d, -f2-)"
  done
done
