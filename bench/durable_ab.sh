#!/usr/bin/env bash
# bench/durable_ab.sh — builds (or modes) of the receiver side by side in a durable
# mode, interleaved: RUNS runs, in each every SERVER in turn, fresh on its own port
# and Maildir, loaded with smtp-source (20 sessions, 4 KiB; SHAPE reuse = persistent
# sessions `-d`, cpm = a connection per message) for MSGS messages after 500 untimed.
# Prints msgs/s and the receiver's CPU per message per run, then the medians per
# server and, against the first server, the median of the per-run msgs/s ratios.
# Every message must be in the Maildir's new/ (with the spool: within 60 s after the
# load), or the script stops with a non-zero status.
#
# Usage (as root, smtp-source from Debian's postfix package: bench/run.sh installs it):
#   bench/durable_ab.sh SHAPE RUNS MSGS SERVER...
#   SERVER = BIN[:MODE][@TOML], MODE = maildir (default) | spool | nodel; TOML, a
#   file of configuration lines added to that server's (e.g. spool_commit_delay = 0)
# Env: ROOT (default /var/tmp/durable_ab), PORT_BASE=26100, KEEP=1 (keep the
# used Maildirs and spools, to delete later: no trap for the next benchmark).
# Each run's Maildir and spool are moved aside and deleted only when the script
# ends: on ext4 without a journal, files deleted in the last minutes make every
# new file's creation slower (docs/performance.md, "A trap of this VM's file
# system"), so wait 5 minutes after this script before timing anything else.
# How the 2026-12-06 figures in docs/performance.md were made:
#   bench/durable_ab.sh reuse 5 20000 OLD:maildir NEW:maildir
set -euo pipefail
[ $# -ge 4 ] || { sed -n '2,20p' "$0" >&2; exit 2; }
SHAPE=$1 RUNS=$2 MSGS=$3; shift 3
SOURCE=$(command -v smtp-source || echo /usr/sbin/smtp-source)
[ -x "$SOURCE" ] || { echo "smtp-source missing: apt-get install postfix (bench/run.sh does)" >&2; exit 2; }
case $SHAPE in reuse) flags=(-d) ;; cpm) flags=() ;; *) echo "SHAPE is reuse or cpm" >&2; exit 2 ;; esac
ROOT=${ROOT:-/var/tmp/durable_ab}
mkdir -p "$ROOT"
used=$(mktemp -d "$ROOT/used.XXXXXX")
pid=""
cleanup() {
  [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  if [ "${KEEP:-}" = 1 ]; then echo "used Maildirs and spools kept in $used" >&2; else rm -rf "$used"; fi
}
trap cleanup EXIT
printf 'max_connections = 30000\nmax_connections_per_ip = 30000\n' >"$ROOT/bench.toml"
ticks=$(getconf CLK_TCK) port=${PORT_BASE:-26100}
load() { timeout 600 "$SOURCE" -s 20 -m "$1" -l 4096 "${flags[@]}" -M client.example \
  -f load@bench.example -t sink@bench.example "127.0.0.1:$port"; }
results=$ROOT/results.$$
: >"$results"
for run in $(seq "$RUNS"); do
  n=0
  for server in "$@"; do
    n=$((n + 1)) port=$((port + 1))
    spec=${server%%@*} extra=""
    [ "$spec" != "$server" ] && extra=${server#*@}
    bin=${spec%%:*} mode=maildir
    [ "$spec" != "$bin" ] && mode=${spec#*:}
    cat "$ROOT/bench.toml" ${extra:+"$extra"} >"$ROOT/server.toml"
    for dir in Maildir spool; do
      if [ -e "$ROOT/$dir" ]; then mv "$ROOT/$dir" "$used/$dir.$run.$n"; fi
    done
    case $mode in
      maildir) args=(--maildir "$ROOT/Maildir") ;;
      spool) args=(--spool-dir "$ROOT/spool" --maildir "$ROOT/Maildir") ;;
      nodel) args=(--no-deliver) ;;
      *) echo "unknown mode $mode" >&2; exit 2 ;;
    esac
    "$bin" --config "$ROOT/server.toml" --listen "127.0.0.1:$port" --quiet "${args[@]}" \
      >"$ROOT/server.log" 2>&1 &
    pid=$!
    for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
    out=$(load 500 2>&1) && [ -z "$out" ] || { echo "warm-up failed: $out" >&2; exit 1; }
    cpu0=$(awk '{print $14 + $15}' "/proc/$pid/stat") t0=$(date +%s.%N)
    out=$(load "$MSGS" 2>&1) && [ -z "$out" ] || { echo "run $run $server: $out" >&2; exit 1; }
    t1=$(date +%s.%N)
    stored=-
    if [ "$mode" != nodel ]; then
      for _ in $(seq 600); do
        stored=$(find "$ROOT/Maildir/new" -type f | wc -l)
        [ "$stored" -ge $((MSGS + 500)) ] && break
        sleep 0.1
      done
      [ "$stored" -eq $((MSGS + 500)) ] || { echo "run $run $server: $stored of $((MSGS + 500)) stored" >&2; exit 1; }
    fi
    cpu1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || :; pid=""
    rate=$(echo "$MSGS / ($t1 - $t0)" | bc -l)
    cpu=$(echo "($cpu1 - $cpu0) * 1000000 / $ticks / $MSGS" | bc -l)
    printf 'run %s server %s (%s): %.0f msgs/s, receiver %.1f us/msg (until stored)\n' "$run" "$n" "$server" "$rate" "$cpu"
    echo "$run $n $rate $cpu" >>"$results"
  done
done
median() { sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
n=0
for server in "$@"; do
  n=$((n + 1))
  rate=$(awk -v n=$n '$2 == n {print $3}' "$results" | median)
  cpu=$(awk -v n=$n '$2 == n {print $4}' "$results" | median)
  ratio=$(awk -v n=$n '$2 == 1 {first[$1] = $3} $2 == n {mine[$1] = $3} END {for (r in mine) print mine[r] / first[r]}' "$results" | median)
  printf 'median server %s (%s): %.0f msgs/s, %.1f us/msg, %.3f x server 1\n' "$n" "$server" "$rate" "$cpu" "$ratio"
done
rm -f "$results"
