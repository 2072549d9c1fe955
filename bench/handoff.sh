#!/usr/bin/env bash
# bench/handoff.sh — the hand-off targets against `--no-deliver` (issue 15's
# targets: each >= 0.5x): msgs/s of the persistent shape (net-receiver-load
# --reuse, SESSIONS sessions, MSGS messages of SIZE octets) with
#   nodel  net-receiver --no-deliver
#   nats   one [[deliver]] table of kind nats: a private nats-server with
#          JetStream on a free loopback port (a fresh store each run), the
#          stream made by the receiver; the 250 waits for each PubAck
#   instant the same target against examples/nats/instant_ack.rs, a NATS peer
#          that acknowledges each publish at once and stores nothing: the
#          receiver's own side of the hand-off, without nats-server's cost on
#          the same cores (a diagnostic, as noop_hook is for the webhook)
# interleaved, RUNS runs each (default 5); then the medians, the median of the
# per-run ratios, and CPU per message (utime+stime from /proc) of the server
# and of its peer (nats-server or instant_ack).
# Each server first takes WARM messages (default 2000) untimed, the same for
# both shapes: a fresh nats-server creates its stream, grows its heap and its
# first block files then, and the receiver connects; msgs/s and CPU are of the
# timed run only. After each nats run the stream must hold every accepted
# message (warm-up and timed). NATS_GOMAXPROCS, when set, is given to
# nats-server as GOMAXPROCS.
#
# Usage: bench/handoff.sh [RUNS]   (builds the release binaries unless SKIP_BUILD=1)
# Env: SESSIONS=20 MSGS=20000 WARM=2000 SIZE=4096 PORT_BASE=25300 WORKERS=1
#      NATS_GOMAXPROCS (unset)
# Talks to 127.0.0.1 only; every wait and run is bounded; any failure (a run
# with errors, a stream short of messages, a server that does not start) stops
# the script with a non-zero status.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
SESSIONS=${SESSIONS:-20}
MSGS=${MSGS:-20000}
SIZE=${SIZE:-4096}
PORT_BASE=${PORT_BASE:-25300}
WORKERS=${WORKERS:-1}
WARM=${WARM:-2000}
for n in RUNS SESSIONS MSGS WARM SIZE PORT_BASE WORKERS; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive integer" >&2; exit 2; }
done
command -v nats-server >/dev/null || { echo "nats-server missing: apt-get install nats-server" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
  cargo build --release --locked --bin net-receiver --bin net-receiver-load
  cargo build --release --locked -p net-receiver-examples --example instant_ack
fi
BIN=target/release/net-receiver
LOAD=target/release/net-receiver-load
INSTANT=target/release/examples/instant_ack
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done || :
  rm -rf "$WORK"
}
trap cleanup EXIT
ticks=$(getconf CLK_TCK)

wait_port() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  echo "nothing listens on 127.0.0.1:$1" >&2
  return 1
}

# JetStream's message count of stream MAIL, from the monitoring endpoint.
stream_messages() {
  python3 - "$1" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/jsz?streams=true", timeout=10) as r:
    info = json.load(r)
total = 0
for account in info.get("account_details", []):
    for stream in account.get("stream_detail", []):
        if stream["name"] == "MAIL":
            total += stream["state"]["messages"]
print(total)
EOF
}

# stop PID [SIGNAL]: the signal (default TERM), then wait; a status from the
# signal (>= 128) or 0 is fine, anything else is a failure.
stop() {
  local status=0
  kill -"${2:-TERM}" "$1"
  wait "$1" 2>/dev/null || status=$?
  if [ "$status" -ne 0 ] && [ "$status" -lt 128 ]; then
    echo "process $1 exited with status $status" >&2
    exit 1
  fi
  local kept=()
  for p in "${pids[@]}"; do [ "$p" = "$1" ] || kept+=("$p"); done
  pids=("${kept[@]}")
}

declare -A rates cpus peer_cpus
shapes=(nodel nats instant)
port=$PORT_BASE
ratios=""
instant_ratios=""
for run in $(seq "$RUNS"); do
  declare -A this=()
  for shape in "${shapes[@]}"; do
    port=$((port + 3))
    args=(--quiet --workers "$WORKERS" --listen "127.0.0.1:$port")
    peer_pid=""
    case $shape in
      nodel) args+=(--no-deliver) ;;
      nats)
        store="$WORK/nats-$run"
        printf 'listen: 127.0.0.1:%s\nhttp: 127.0.0.1:%s\njetstream { store_dir: "%s" }\n' \
          $((port + 1)) $((port + 2)) "$store" > "$WORK/nats.conf"
        if [ -n "${NATS_GOMAXPROCS:-}" ]; then
          GOMAXPROCS=$NATS_GOMAXPROCS nats-server -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
        else
          nats-server -c "$WORK/nats.conf" >"$WORK/nats.log" 2>&1 &
        fi
        peer_pid=$!; pids+=("$peer_pid")
        wait_port $((port + 1))
        printf '[[deliver]]\nkind = "nats"\nurl = "nats://127.0.0.1:%s"\nsubject = "mail.in"\nstream = "MAIL"\n' \
          $((port + 1)) > "$WORK/receiver.toml"
        args+=(--config "$WORK/receiver.toml")
        ;;
      instant)
        "$INSTANT" $((port + 1)) >"$WORK/instant.log" 2>&1 &
        peer_pid=$!; pids+=("$peer_pid")
        wait_port $((port + 1))
        # No stream: the peer answers publishes only, not JetStream's API.
        printf '[[deliver]]\nkind = "nats"\nurl = "nats://127.0.0.1:%s"\nsubject = "mail.in"\n' \
          $((port + 1)) > "$WORK/receiver.toml"
        args+=(--config "$WORK/receiver.toml")
        ;;
    esac
    RUST_LOG=warn "$BIN" "${args[@]}" &
    pid=$!; pids+=("$pid")
    wait_port "$port"
    status=0
    warm=$(timeout 600 "$LOAD" "127.0.0.1:$port" --reuse -s "$SESSIONS" -m "$WARM" -l "$SIZE" 2>&1) || status=$?
    if [ "$status" -ne 0 ] || [ "$(sed -n 's/.* ok=\([0-9]*\) .*/\1/p' <<<"$warm")" != "$WARM" ]; then
      echo "run $run $shape: the warm-up failed (status $status):" >&2
      echo "$warm" >&2
      exit 1
    fi
    cpu_before=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    peer_before=0
    [ -z "$peer_pid" ] || peer_before=$(awk '{print $14 + $15}' "/proc/$peer_pid/stat")
    out=$(timeout 600 "$LOAD" "127.0.0.1:$port" --reuse -s "$SESSIONS" -m "$MSGS" -l "$SIZE" 2>&1) || status=$?
    ok=$(sed -n 's/.* ok=\([0-9]*\) .*/\1/p' <<<"$out")
    rate=$(sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
    if [ "$status" -ne 0 ] || [ "${ok:-0}" != "$MSGS" ] || [ -z "$rate" ]; then
      echo "run $run $shape: the load run failed (status $status) or not every message was accepted:" >&2
      echo "$out" >&2
      exit 1
    fi
    cpu_us=$(awk -v t="$ticks" -v m="$MSGS" -v b="$cpu_before" '{printf "%.1f", ($14 + $15 - b) * 1e6 / t / m}' "/proc/$pid/stat")
    peer_us=0
    [ -z "$peer_pid" ] || peer_us=$(awk -v t="$ticks" -v m="$MSGS" -v b="$peer_before" '{printf "%.1f", ($14 + $15 - b) * 1e6 / t / m}' "/proc/$peer_pid/stat")
    stop "$pid"
    if [ "$shape" = instant ]; then
      stop "$peer_pid"
    elif [ -n "$peer_pid" ]; then
      stored=$(stream_messages $((port + 2)))
      if [ "$stored" -lt $((MSGS + WARM)) ]; then
        echo "run $run nats: $((MSGS + WARM)) accepted but the stream holds $stored" >&2
        exit 1
      fi
      stop "$peer_pid" INT # nats-server exits 0 on SIGINT (1 on SIGTERM with JetStream)
      rm -rf "$store"
    fi
    echo "run $run $shape: $rate msgs/s, server CPU $cpu_us us/msg, peer CPU $peer_us us/msg"
    rates[$shape]+="$rate "
    cpus[$shape]+="$cpu_us "
    peer_cpus[$shape]+="$peer_us "
    this[$shape]=$rate
  done
  ratios+="$(awk -v a="${this[nats]}" -v b="${this[nodel]}" 'BEGIN {printf "%.3f", a / b}') "
  instant_ratios+="$(awk -v a="${this[instant]}" -v b="${this[nodel]}" 'BEGIN {printf "%.3f", a / b}') "
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
for shape in "${shapes[@]}"; do
  echo "median $shape: $(echo "${rates[$shape]}" | median) msgs/s, server CPU $(echo "${cpus[$shape]}" | median) us/msg, peer CPU $(echo "${peer_cpus[$shape]}" | median) us/msg"
done
echo "nats / nodel msgs/s, median of the per-run ratios: $(echo "$ratios" | median) (runs: $ratios)"
echo "instant / nodel msgs/s (the receiver's own side), median of the per-run ratios: $(echo "$instant_ratios" | median) (runs: $instant_ratios)"
