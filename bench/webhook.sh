#!/usr/bin/env bash
# bench/webhook.sh — what the webhook delivery target costs (issue 15's target:
# webhook >= 0.5 x --no-deliver), on loopback.
#
# The endpoint is the no-op Rust HTTP server examples/hooks/noop_hook.rs (204 to
# every POST, keep-alive). Modes, interleaved in each of RUNS runs (default 5) of
# MESSAGES messages (default 20000), persistent shape (net-receiver-load --reuse,
# 20 sessions, 4 KiB):
#   none     net-receiver --no-deliver (parses, stores nothing)
#   webhook  [[deliver]] kind = "webhook" to the no-op endpoint: each 250 waits
#            for the signed POST's 204
#   spooled  the same behind --spool-dir (250 once the spool's group commit holds
#            the mail; the POSTs follow from the spool), for information
# Prints each run and the medians of msgs/s with the ratios webhook/none and
# spooled/none. The endpoint counts nothing, so the script checks no delivery
# count; the load client checks every reply was 250.
#
# Usage: bench/webhook.sh [RUNS] [MESSAGES]   (builds the release binaries first
# unless SKIP_BUILD=1; figures need RUNS >= 5 on a quiet machine). Talks to
# 127.0.0.1 only (ports PORT_BASE.., default 25400); every run is bounded by
# `timeout`. The spool lives under ${TMPDIR:-/tmp}.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
MESSAGES=${2:-20000}
PORT_BASE=${PORT_BASE:-25400}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || { echo "MESSAGES must be a positive integer" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
  cargo build --release --locked --bin net-receiver --bin net-receiver-load
  cargo build --release --locked -p net-receiver-examples --example noop_hook
fi
BIN=target/release/net-receiver
LOAD=target/release/net-receiver-load
HOOK=target/release/examples/noop_hook
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || :; done
  rm -rf "$work"
}
trap cleanup EXIT

"$HOOK" 0 >"$work/hook.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do
  grep -q '^listening on ' "$work/hook.out" && break
  sleep 0.1
done
url=$(sed -n 's/^listening on //p' "$work/hook.out")
[ -n "$url" ] || { echo "noop_hook did not start: $(cat "$work/hook.out")" >&2; exit 1; }
echo "no-op endpoint at $url"
cat >"$work/webhook.toml" <<TOML
[[deliver]]
kind = "webhook"
url = "$url"
secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOML

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2
  return 1
}
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

declare -A rates=([none]="" [webhook]="" [spooled]="")
port=$PORT_BASE
for run in $(seq "$RUNS"); do
  for mode in none webhook spooled; do
    port=$((port + 1))
    case $mode in
      none) extra=(--no-deliver) ;;
      webhook) extra=(--config "$work/webhook.toml") ;;
      spooled) rm -rf "$work/spool"; extra=(--config "$work/webhook.toml" --spool-dir "$work/spool") ;;
    esac
    RUST_LOG=warn "$BIN" --quiet --workers 1 --listen "127.0.0.1:$port" "${extra[@]}" &
    pid=$!
    pids+=($pid)
    wait_port "$port"
    result=$(timeout 600 "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$MESSAGES" -l 4096)
    kill "$pid"
    wait "$pid" || [ $? -eq 143 ]
    rate=$(echo "$result" | field msgs_per_s)
    errors=$(echo "$result" | field errors)
    [ -n "$rate" ] && [ "${errors:-1}" = 0 ] || { echo "run $run $mode failed: $result" >&2; exit 1; }
    echo "run $run $mode: $rate msgs/s"
    rates[$mode]+="$rate "
  done
done
none=$(echo "${rates[none]}" | median)
webhook=$(echo "${rates[webhook]}" | median)
spooled=$(echo "${rates[spooled]}" | median)
awk -v n="$none" -v w="$webhook" -v s="$spooled" 'BEGIN {
  printf "median msgs/s: --no-deliver %.1f, webhook %.1f, spool+webhook %.1f\n", n, w, s
  printf "webhook/no-deliver %.3f (target >= 0.5), spool+webhook/no-deliver %.3f\n", w/n, s/n }'
