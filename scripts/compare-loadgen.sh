#!/usr/bin/env bash
# serin's built-in hey against the programs it replaces, on one target in one run: the
# real hey (rakyll/hey v0.1.5, built from the Go module in tests/flagger) and wrk
# (Debian's package). Measures requests per second at 1, 16 and 64 connections for a
# fixed duration, and the rate that hey's per-worker limit achieves (`-c 4 -q 250` asks
# 1,000 req/s). Each measurement runs LOADGEN_REPEAT times, the tools taking turns in
# an order that rotates, and the median is kept. Prints a table and writes target/compare/loadgen.json.
# Figures, not assertions. Traffic goes to 127.0.0.1 only and every run is bounded.
#
# The target is one process for all three tools: `generator serve` from
# crates/loadtester/benches/generator.rs, a small hyper HTTP/1.1 server answering 12
# bytes; it is started here, known by its pid and stopped by that pid. serin's
# generator runs as `generator hey ...`, the same code as `serin loadtester`'s hey.
#
# Environment:
#   SERIN_CACHE             where hey is built (default ~/.cache/serin): hey-v0.1.5/hey
#   SERIN_HEY_MODULE        the Go module that pins hey (default tests/flagger); without
#                           it, an already built $SERIN_CACHE/hey-v0.1.5/hey is used
#   LOADGEN_DURATION        seconds per measurement (default 5; 1 to 60)
#   LOADGEN_REPEAT          runs per measurement (default 3; 1 to 9)
#   LOADGEN_THREADS         wrk's -t and the target's threads (default: the CPUs; wrk's
#                           -t is never more than the connections). hey and serin use
#                           one thread per CPU on their own (GOMAXPROCS, -cpus)
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
started="$(date +%s.%N)"

cache="${SERIN_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/serin}"
module="${SERIN_HEY_MODULE:-$root/tests/flagger}"
duration="${LOADGEN_DURATION:-5}"
repeat="${LOADGEN_REPEAT:-3}"
cpus="$(nproc)"
threads="${LOADGEN_THREADS:-$cpus}"
connections=(1 16 64)
q_workers=4
q_rate=250

die() {
  echo "compare-loadgen: $*" >&2
  exit 1
}
in_range() { [[ $1 =~ ^[0-9]+$ ]] && (($1 >= $2 && $1 <= $3)); }
in_range "$duration" 1 60 || die "LOADGEN_DURATION must be 1 to 60 (seconds)"
in_range "$repeat" 1 9 || die "LOADGEN_REPEAT must be 1 to 9"
in_range "$threads" 1 64 || die "LOADGEN_THREADS must be 1 to 64"
command -v wrk >/dev/null || die "wrk is not installed: apt-get install -y wrk"

# hey v0.1.5, from the module that pins it (fast: Go's build cache).
hey_dir="$cache/hey-v0.1.5"
hey="$hey_dir/hey"
if [[ -f $module/go.mod ]]; then
  grep -q 'github.com/rakyll/hey v0\.1\.5' "$module/go.mod" || die "$module/go.mod does not pin github.com/rakyll/hey v0.1.5"
  mkdir -p "$hey_dir"
  echo "building hey v0.1.5 from $module" >&2
  (cd "$module" && go build -trimpath -o "$hey" github.com/rakyll/hey)
elif [[ -x $hey ]]; then
  echo "no Go module at $module: using the hey already built at $hey" >&2
else
  die "no Go module at $module to build hey from (set SERIN_HEY_MODULE) and no $hey"
fi

# serin's generator and the target: the bench's executable, release profile.
echo "building the generator bench (cargo bench --no-run)" >&2
bench="$(cargo bench -p serin-loadtester --bench generator --no-run --message-format=json-render-diagnostics |
  grep -o '"executable":"[^"]*"' | tail -1 | cut -d'"' -f4)"
[[ -x $bench ]] || die "cargo did not report the bench's executable"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/serin-loadgen.XXXXXX")"
target_pid=""
cleanup() {
  if [[ -n $target_pid ]]; then
    kill "$target_pid" 2>/dev/null || true
    wait "$target_pid" 2>/dev/null || true
  fi
  rm -rf "$tmp"
}
trap cleanup EXIT

runs=$((repeat * (${#connections[@]} * 3 + 2)))
# The target stops by itself after every run could have taken twice its bound.
"$bench" serve --threads "$threads" --max-secs "$((runs * (duration + 15) * 2 + 60))" >"$tmp/target" &
target_pid=$!
url=""
for _ in $(seq 100); do
  url="$(head -1 "$tmp/target")"
  [[ -n $url ]] && break
  kill -0 "$target_pid" 2>/dev/null || die "the target exited"
  sleep 0.1
done
[[ $url == http://127.0.0.1:* ]] || die "the target did not print its URL"

load_before="$(cut -d' ' -f1-3 /proc/loadavg)"
wrk_version="$({ wrk -v 2>&1 || true; } | sed -n 's/^wrk \([^ ]*\).*/\1/p' | head -1)"
echo "target $url (pid $target_pid, $threads threads), ${duration}s per run, $repeat runs each, $cpus CPUs, load $load_before" >&2

bound=$((duration + 30))
# One run; prints its requests per second. Errors in a tool's output are reported.
measure() {
  local tool=$1 c=$2
  shift 2
  local out
  case $tool in
    hey) out="$(timeout -k 5 "$bound" "$hey" -z "${duration}s" -c "$c" "$@" "$url")" ;;
    serin) out="$(timeout -k 5 "$bound" "$bench" hey -z "${duration}s" -c "$c" "$@" "$url")" ;;
    wrk) out="$(timeout -k 5 "$bound" wrk -t "$((threads < c ? threads : c))" -c "$c" -d "${duration}s" "$url")" ;;
  esac
  printf '%s\n' "$out" >"$tmp/last-$tool"
  if grep -qE 'Error distribution|Socket errors|Non-2xx' "$tmp/last-$tool"; then
    echo "warning: $tool -c $c $* reported errors:" >&2
    grep -A3 -E 'Error distribution|Socket errors|Non-2xx' "$tmp/last-$tool" >&2
  fi
  local rps
  rps="$(sed -n 's/^[[:space:]]*Requests\/sec:[[:space:]]*\([0-9.]*\).*/\1/p' "$tmp/last-$tool" | head -1)"
  [[ -n $rps ]] || die "no Requests/sec in $tool's output: $out"
  echo "$rps"
}

# The median and the JSON list of space-separated runs.
median() {
  local -a v
  read -ra v <<<"$1"
  printf '%s\n' "${v[@]}" | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'
}
json_list() {
  local -a v
  read -ra v <<<"$1"
  local IFS=,
  echo "[${v[*]}]"
}

declare -A all
tools=(hey wrk serin)
for ((r = 1; r <= repeat; r++)); do
  # The order turns each repetition, so that none always follows the same tool.
  order=("${tools[@]:$(((r - 1) % 3))}" "${tools[@]:0:$(((r - 1) % 3))}")
  for c in "${connections[@]}"; do
    for tool in "${order[@]}"; do
      got="$(measure "$tool" "$c")"
      all[$tool,c$c]+=" $got"
      echo "run $r/$repeat  -c $c  $tool  $got req/s" >&2
    done
  done
  q_order=(hey serin)
  ((r % 2 == 0)) && q_order=(serin hey)
  for tool in "${q_order[@]}"; do
    got="$(measure "$tool" "$q_workers" -q "$q_rate")"
    all[$tool,q]+=" $got"
    echo "run $r/$repeat  -c $q_workers -q $q_rate  $tool  $got req/s" >&2
  done
done
load_after="$(cut -d' ' -f1-3 /proc/loadavg)"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {if (b > 0) printf "%.2f", a / b; else print "-"}'; }
asked=$((q_workers * q_rate))
rows=()
json_rows=()
for key in "${connections[@]/#/c}" q; do
  h="$(median "${all[hey,$key]}")"
  s="$(median "${all[serin,$key]}")"
  if [[ $key == q ]]; then
    metric="req/s -c $q_workers -q $q_rate (asks $asked)"
    w="-"
    w_json=null
    w_runs="[]"
  else
    w="$(median "${all[wrk,$key]}")"
    w_json="$w"
    w_runs="$(json_list "${all[wrk,$key]}")"
    metric="req/s -c ${key#c}"
  fi
  rows+=("$(printf '%-34s %10.0f %10s %10.0f %9s %9s' "$metric" "$h" "$([[ $w == - ]] && echo - || printf '%.0f' "$w")" "$s" "$(ratio "$s" "$h")" "$(ratio "$s" "$w")")")
  extra=""
  [[ $key == q ]] && extra=", \"asked\": $asked, \"serin_vs_asked\": $(ratio "$s" "$asked"), \"hey_vs_asked\": $(ratio "$h" "$asked")"
  json_rows+=("    {\"metric\": \"$metric\", \"hey\": $h, \"wrk\": $w_json, \"serin\": $s, \"serin_vs_hey\": $(ratio "$s" "$h"), \"serin_vs_wrk\": $(ratio "$s" "$w" | sed 's/^-$/null/')$extra,
     \"runs\": {\"hey\": $(json_list "${all[hey,$key]}"), \"wrk\": $w_runs, \"serin\": $(json_list "${all[serin,$key]}")}}")
done
wall="$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN {printf "%.0f", b - a}')"

printf '\n%-34s %10s %10s %10s %9s %9s\n' metric "hey" "wrk" serin serin/hey serin/wrk
printf '%s\n' "${rows[@]}"
printf '\nhey v0.1.5, wrk %s (-t = min(%s, -c)); median of %s runs of %ss; %s CPUs; load %s before, %s after; %ss wall\n' \
  "$wrk_version" "$threads" "$repeat" "$duration" "$cpus" "$load_before" "$load_after" "$wall"

mkdir -p target/compare
{
  echo "{"
  echo "  \"target\": \"hyper HTTP/1.1, 12-byte answer, $threads threads, own process\","
  echo "  \"tools\": {\"hey\": \"v0.1.5\", \"wrk\": \"$wrk_version\", \"wrk_threads\": \"min($threads, connections)\"},"
  echo "  \"duration_secs\": $duration, \"repeat\": $repeat, \"cpus\": $cpus,"
  echo "  \"load_before\": \"$load_before\", \"load_after\": \"$load_after\", \"wall_secs\": $wall,"
  echo "  \"results\": ["
  for i in "${!json_rows[@]}"; do
    sep=","
    ((i == ${#json_rows[@]} - 1)) && sep=""
    echo "${json_rows[$i]}$sep"
  done
  echo "  ]"
  echo "}"
} >target/compare/loadgen.json
echo "wrote target/compare/loadgen.json" >&2
