#!/usr/bin/env bash
# bench/metrics.sh — the cost of counting: msgs/s of the persistent shape with
# metrics off and on (`--metrics-listen`), interleaved, RUNS runs each (default 5),
# then the medians and their ratio (issue 16's target: on >= 0.97 x off), and the
# server's CPU per message (utime+stime from /proc, steadier than msgs/s on a busy
# machine).
#
# Usage: bench/metrics.sh [RUNS]   (builds the release binaries first unless SKIP_BUILD=1)
# Talks to 127.0.0.1 only (ports PORT_BASE.., default 25100); every run is bounded.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
PORT_BASE=${PORT_BASE:-25100}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
[ "${SKIP_BUILD:-}" = 1 ] || cargo build --release --locked --bin net-receiver --bin net-receiver-load
BIN=target/release/net-receiver
LOAD=target/release/net-receiver-load
declare -A rates=([off]="" [on]="") cpus=([off]="" [on]="")
ticks=$(getconf CLK_TCK)
port=$PORT_BASE
for run in $(seq "$RUNS"); do
  for mode in off on; do
    port=$((port + 1))
    extra=()
    [ "$mode" = on ] && extra=(--metrics-listen 127.0.0.1:0)
    RUST_LOG=warn "$BIN" --no-deliver --quiet --workers 1 --listen "127.0.0.1:$port" "${extra[@]}" &
    pid=$!
    for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
    rate=$(timeout 300 "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m 20000 -l 4096 |
      sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p')
    # utime + stime (fields 14 and 15; the name in field 2 has no spaces here).
    cpu_us=$(awk -v t="$ticks" '{printf "%.1f", ($14 + $15) * 1e6 / t / 20000}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "run $run metrics $mode: ${rate:-failed} msgs/s, server CPU ${cpu_us} us/msg"
    rates[$mode]+="${rate:-0} "
    cpus[$mode]+="$cpu_us "
  done
done
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
off=$(echo "${rates[off]}" | median)
on=$(echo "${rates[on]}" | median)
awk -v off="$off" -v on="$on" 'BEGIN {printf "median msgs/s: off %.1f, on %.1f, on/off %.3f\n", off, on, on/off}'
off=$(echo "${cpus[off]}" | median)
on=$(echo "${cpus[on]}" | median)
awk -v off="$off" -v on="$on" 'BEGIN {printf "median server CPU us/msg: off %.1f, on %.1f, on/off %.3f\n", off, on, on/off}'
