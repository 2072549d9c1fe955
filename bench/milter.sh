#!/usr/bin/env bash
# bench/milter.sh — what a milter costs (issue 14's targets), on loopback, the
# persistent shape (net-receiver-load --reuse, 20 sessions, 4 KiB messages: one
# milter connection per session), interleaved in each of RUNS runs (default 3)
# of MESSAGES messages (default 5000):
#
#   none     no milter
#   noop     a no-op milter in Rust (examples/milters/noop_milter.rs: continue to
#            everything, each of the ~10 commands per message answered): the
#            server's CPU per message minus `none`'s is our client's own cost
#   noop-nr  the same milter asking for no answer but at end of message
#            (SMFIP_NR_*, as many real milters do): one round trip per message
#            (target for our client's CPU: <= 20 us)
#   noop-nr-unix  the same over a unix socket (unix:PATH, as milters are often
#            set up beside Postfix): the client without loopback TCP's cost
#   python   the Python test milter (tests/it/support/milters/test_milter.py,
#            python3-milter on libmilter) answering continue to everything
#   opendkim OpenDKIM signing every message (rsa-sha256, 2048-bit key)
#
# Prints each run, then the medians of msgs/s and of the server's CPU per message
# (utime+stime from /proc). Usage: bench/milter.sh [RUNS] [MESSAGES] (builds the
# release binaries first unless SKIP_BUILD=1; figures need a quiet machine).
# Talks to 127.0.0.1 only (ports PORT_BASE.., default 25400); every run is
# bounded by `timeout`. Needs python3-milter, opendkim, opendkim-tools.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
MESSAGES=${2:-5000}
PORT_BASE=${PORT_BASE:-25400}
MODES=${MODES:-none noop noop-nr noop-nr-unix python opendkim}
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }
[[ $MESSAGES =~ ^[1-9][0-9]*$ ]] || { echo "MESSAGES must be a positive integer" >&2; exit 2; }
if [ "${SKIP_BUILD:-}" != 1 ]; then
  cargo build --release --locked --bin net-receiver --bin net-receiver-load
  cargo build --release --locked -p net-receiver-examples --example noop_milter
fi
BIN=target/release/net-receiver
LOAD=target/release/net-receiver-load
NOOP=target/release/examples/noop_milter
ticks=$(getconf CLK_TCK)
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || :; done
  rm -rf "$work"
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.1; done
  echo "nothing listens on port $1" >&2
  return 1
}
wait_path() {
  for _ in $(seq 200); do [ -e "$1" ] && return 0; sleep 0.1; done
  echo "$1 never appeared" >&2
  return 1
}
cpu_us() { awk -v t="$ticks" '{printf "%.0f", ($14 + $15) * 1e6 / t}' "/proc/$1/stat"; }
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
field() { sed -n "s/.*$1=\([0-9.]*\).*/\1/p"; }

declare -A address
# The no-op milter.
"$NOOP" 0 >"$work/noop.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/noop.out" && break; sleep 0.1; done
address[noop]=$(sed -n 's/^listening on //p' "$work/noop.out")
[ -n "${address[noop]}" ] || { echo "noop_milter did not start" >&2; exit 1; }
"$NOOP" 0 --no-replies >"$work/noop-nr.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/noop-nr.out" && break; sleep 0.1; done
address[noop-nr]=$(sed -n 's/^listening on //p' "$work/noop-nr.out")
[ -n "${address[noop-nr]}" ] || { echo "noop_milter --no-replies did not start" >&2; exit 1; }
"$NOOP" "unix:$work/noop-nr.sock" --no-replies >"$work/noop-nr-unix.out" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q '^listening on ' "$work/noop-nr-unix.out" && break; sleep 0.1; done
address[noop-nr-unix]=$(sed -n 's/^listening on //p' "$work/noop-nr-unix.out")
[ -n "${address[noop-nr-unix]}" ] || { echo "noop_milter on a unix socket did not start" >&2; exit 1; }
# The Python test milter (continue to every recipient but its magic ones).
if [[ " $MODES " == *" python "* ]]; then
  /usr/bin/python3 tests/it/support/milters/test_milter.py "unix:$work/python.sock" "$work/python.log" \
    >/dev/null 2>"$work/python.err" &
  pids+=($!)
  wait_path "$work/python.sock"
  address[python]="unix:$work/python.sock"
fi
# OpenDKIM signing for example.com (net-receiver-load's From: domain).
if [[ " $MODES " == *" opendkim "* ]]; then
  opendkim-genkey -b 2048 -d example.com -s bench -D "$work"
  dkim_port=$((PORT_BASE + 99))
  cat >"$work/opendkim.conf" <<CONF
Syslog no
Mode s
Domain example.com
Selector bench
KeyFile $work/bench.private
Socket inet:$dkim_port@127.0.0.1
Canonicalization relaxed/simple
InternalHosts 127.0.0.1
RequireSafeKeys false
CONF
  opendkim -f -x "$work/opendkim.conf" 2>"$work/opendkim.err" &
  pids+=($!)
  wait_port "$dkim_port"
  address[opendkim]="inet:127.0.0.1:$dkim_port"
fi

declare -A rates cpus
port=$PORT_BASE
for run in $(seq "$RUNS"); do
  for mode in $MODES; do
    port=$((port + 1))
    extra=()
    [ "$mode" != none ] && extra=(--milter "${address[$mode]}")
    RUST_LOG=warn "$BIN" --no-deliver --quiet --workers 1 --listen "127.0.0.1:$port" "${extra[@]}" &
    pid=$!
    pids+=($pid)
    wait_port "$port"
    before=$(cpu_us "$pid")
    result=$(timeout 900 "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$MESSAGES" -l 4096)
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
none_cpu=$(echo "${cpus[none]:-0}" | median)
for mode in $MODES; do
  rate=$(echo "${rates[$mode]}" | median)
  cpu=$(echo "${cpus[$mode]}" | median)
  awk -v m="$mode" -v r="$rate" -v c="$cpu" -v n="$none_cpu" \
    'BEGIN {printf "median %-8s %8.1f msgs/s, server CPU %6.1f us/msg (%+.1f vs none)\n", m, r, c, c - n}'
done
