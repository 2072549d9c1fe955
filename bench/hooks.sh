#!/usr/bin/env bash
# bench/hooks.sh — what an HTTP stage hook costs (issue 13's targets), on loopback:
#
# 1. A no-op hook in Rust (examples/hooks/noop_hook.rs: 204 to every call, keep-
#    alive) at the data stage vs no hook: the persistent shape (net-receiver-load
#    --reuse, 20 sessions, 4 KiB), the two interleaved in each of RUNS runs
#    (default 5) of MESSAGES messages (default 20000). Prints the medians of msgs/s
#    and their ratio (target: hook >= 0.5 x none), and the server's CPU per message
#    (utime+stime from /proc) with the difference: the CPU the hook adds in our
#    process (target: <= 30 us).
# 2. A hook that never answers some sessions: the same hook at mail_from, told to
#    hang every call for stuck@example.com; HELD sessions (default 200) sit at MAIL
#    FROM waiting for it while the load runs. Prints the load's p99 latency without
#    and with them (target: unchanged within noise) and the server's RSS.
#
# Usage: bench/hooks.sh [RUNS] [MESSAGES]   (builds the release binaries first
# unless SKIP_BUILD=1; figures need RUNS >= 5 and MESSAGES >= 20000 on a quiet
# machine). Talks to 127.0.0.1 only (ports PORT_BASE.., default 25200); every run
# is bounded by `timeout`.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
MESSAGES=${2:-20000}
HELD=${HELD:-200}
PORT_BASE=${PORT_BASE:-25200}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || { echo "MESSAGES must be a positive integer" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
  cargo build --release --locked --bin net-receiver --bin net-receiver-load
  cargo build --release --locked -p net-receiver-examples --example noop_hook
fi
BIN=target/release/net-receiver
LOAD=target/release/net-receiver-load
HOOK=target/release/examples/noop_hook
ticks=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
# On exit: whatever is still running goes (most have ended already, hence `|| :`).
cleanup() {
  rm -rf "$work"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || :; done
}
trap cleanup EXIT

# start_hook VAR PROGRAM ARGS...: starts a hook that prints "listening on URL"
# (in this shell, so the exit trap can stop it) and sets VAR to its URL.
start_hook() {
  local var=$1 out="$work/hook.$RANDOM"
  shift
  "$@" >"$out" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do
    grep -q '^listening on ' "$out" && break
    sleep 0.1
  done
  printf -v "$var" '%s' "$(sed -n 's/^listening on //p' "$out")"
  [ -n "${!var}" ] || { echo "$* did not start: $(cat "$out")" >&2; exit 1; }
}

wait_port() {
  for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2
  return 1
}

# The server's utime+stime in microseconds.
cpu_us() { awk -v t="$ticks" '{printf "%.0f", ($14 + $15) * 1e6 / t}' "/proc/$1/stat"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

start_hook noop_url "$HOOK" 0
echo "no-op hook at $noop_url"

declare -A rates=([none]="" [hook]="") cpus=([none]="" [hook]="")
port=$PORT_BASE
for run in $(seq "$RUNS"); do
  for mode in none hook; do
    port=$((port + 1))
    extra=()
    [ "$mode" = hook ] && extra=(--hook "$noop_url")
    RUST_LOG=warn "$BIN" --no-deliver --quiet --workers 1 --listen "127.0.0.1:$port" "${extra[@]}" &
    pid=$!
    pids+=($pid)
    wait_port "$port"
    before=$(cpu_us "$pid")
    result=$(timeout 600 "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$MESSAGES" -l 4096)
    after=$(cpu_us "$pid")
    kill "$pid"
    wait "$pid" || [ $? -eq 143 ]
    rate=$(echo "$result" | field msgs_per_s)
    errors=$(echo "$result" | field errors)
    [ -n "$rate" ] && [ "${errors:-1}" = 0 ] || { echo "run $run $mode failed: $result" >&2; exit 1; }
    cpu=$(awk -v a="$before" -v b="$after" -v m="$MESSAGES" 'BEGIN {printf "%.1f", (b - a) / m}')
    echo "run $run $mode: $rate msgs/s, server CPU $cpu us/msg"
    rates[$mode]+="$rate "
    cpus[$mode]+="$cpu "
  done
done
none=$(echo "${rates[none]}" | median)
hook=$(echo "${rates[hook]}" | median)
awk -v n="$none" -v h="$hook" 'BEGIN {printf "median msgs/s: no hook %.1f, no-op hook at data %.1f, hook/none %.3f\n", n, h, h/n}'
none=$(echo "${cpus[none]}" | median)
hook=$(echo "${cpus[hook]}" | median)
awk -v n="$none" -v h="$hook" 'BEGIN {printf "median server CPU us/msg: no hook %.1f, hook %.1f, added by the hook %.1f\n", n, h, h-n}'

# Part 2: a hook that never answers HELD sessions.
start_hook stuck_url "$HOOK" 0 --never-for stuck@example.com
cat >"$work/stuck.toml" <<TOML
max_connections_per_ip = $((HELD + 100))
shutdown_grace = 1
[[hook]]
url = "$stuck_url"
stages = ["mail_from"]
timeout = 600
max_concurrency = $((HELD + 100))
TOML
cat >"$work/held.py" <<'PY'
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
held = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port))
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"EHLO stuck.test\r\n")
    while f.readline()[3:4] != b" ":
        pass
    s.sendall(b"MAIL FROM:<stuck@example.com>\r\n")
    held.append((s, f))
print("held", n, flush=True)
time.sleep(3600)
PY
declare -A p99s=([alone]="" [held]="")
for run in $(seq "$RUNS"); do
  port=$((port + 1))
  RUST_LOG=warn "$BIN" --config "$work/stuck.toml" --no-deliver --quiet --workers 1 --listen "127.0.0.1:$port" &
  pid=$!
  pids+=($pid)
  wait_port "$port"
  result=$(timeout 600 "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$MESSAGES" -l 4096)
  p99=$(echo "$result" | field p99_us)
  [ -n "$p99" ] || { echo "run $run alone failed: $result" >&2; exit 1; }
  p99s[alone]+="$p99 "
  python3 "$work/held.py" "$port" "$HELD" >"$work/held.out" &
  held=$!
  pids+=($held)
  for _ in $(seq 300); do grep -q '^held' "$work/held.out" && break; sleep 0.1; done
  grep -q '^held' "$work/held.out" || { echo "the held sessions did not start" >&2; exit 1; }
  sleep 1
  result=$(timeout 600 "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$MESSAGES" -l 4096)
  p99_held=$(echo "$result" | field p99_us)
  [ -n "$p99_held" ] || { echo "run $run held failed: $result" >&2; exit 1; }
  p99s[held]+="$p99_held "
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  echo "run $run: p99 alone $p99 us, with $HELD sessions held by the hook $p99_held us; server RSS $rss KiB"
  kill "$held"
  wait "$held" || [ $? -eq 143 ]
  kill "$pid"
  wait "$pid" || [ $? -eq 143 ]
done
alone=$(echo "${p99s[alone]}" | median)
held=$(echo "${p99s[held]}" | median)
awk -v a="$alone" -v h="$held" -v n="$HELD" 'BEGIN {printf "median p99 us: alone %.0f, with %d held by a hook that never answers %.0f, ratio %.2f\n", a, n, h, h/a}'
