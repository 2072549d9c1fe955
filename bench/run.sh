#!/usr/bin/env bash
# bench/run.sh — net-receiver side by side with Postfix's smtp-sink, on loopback.
#
# Usage:  bench/run.sh [RUNS]          (RUNS: runs per measurement, default 5)
#
# What it does
#   1. Installs the Debian package `postfix` for its smtp-source / smtp-sink test
#      programs if they are missing, WITHOUT starting or enabling the Postfix
#      service: debconf is preseeded with "No configuration", a policy-rc.d that
#      forbids every service start is in place during the install (an existing
#      one is put back afterwards), and the enable symlink the package creates is
#      removed again (`systemctl disable`, which starts and stops nothing).
#   2. Builds the release binaries (`net-receiver`, `net-receiver-load`).
#   3. For each run, for each shape, starts each server fresh on its own
#      127.0.0.1 port, in turn (interleaved), loads it, records the figures, stops it:
#        servers  sink      smtp-sink -m 30000 127.0.0.1:PORT 4096 (discards)
#                 nodel     net-receiver --no-deliver --quiet (parses, stores nothing)
#                 maildir   net-receiver --quiet --maildir DIR (fsync per mail;
#                           DIR under $BENCH_MAILDIR_ROOT, default ${TMPDIR:-/tmp})
#        shapes   reuse     smtp-source -s 20 -m 20000 -l 4096 -d   (-d: persistent sessions)
#                 cpm       smtp-source -s 20 -m 5000 -l 4096       (connection per message)
#                 idle      net-receiver-load --idle 2000 --hold 4  (sink, nodel)
#                 ours-reuse / ours-pipeline: net-receiver-load -s 20 -m 20000 -l 4096
#                           --reuse / --pipeline (sink, nodel)
#      Figures: msgs/s (wall time of the load run), server CPU µs per message
#      (utime+stime from /proc/PID/stat, before/after), peak RSS (VmHWM), and for
#      idle: (VmRSS while the sessions are held - VmRSS before) / sessions.
#   4. Prints one table of medians over the runs, with ours / smtp-sink ratios and
#      the cost of Maildir delivery (maildir / no-deliver).
#
# Environment (all optional): SESSIONS=20 SIZE=4096 REUSE_MSGS=20000 CPM_MSGS=5000
#   IDLE=2000 HOLD=4 PORT_BASE=24000 BENCH_MAILDIR_ROOT=/tmp SKIP_INSTALL=1
#   SKIP_BUILD=1 KEEP=1 (keep the work directory with the raw figures).
#
# The net-receiver instances get a config raising max_connections above the
# idle shape's session count (the default, 10000, is enough for IDLE <= 10000;
# loopback is exempt from max_connections_per_ip by default). Everything talks to 127.0.0.1 only;
# every wait and every load run is bounded. Runs on a shared or small machine are
# noisy (±30 %): compare only within one run of this script, and read the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-${RUNS:-5}}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
REUSE_MSGS=${REUSE_MSGS:-20000}
CPM_MSGS=${CPM_MSGS:-5000}
IDLE=${IDLE:-2000}
HOLD=${HOLD:-4}
PORT_BASE=${PORT_BASE:-24000}
LOAD_TIMEOUT=300
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || { echo "RUNS must be a positive integer" >&2; exit 2; }

log() { echo "bench: $*" >&2; }
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"

find_tool() { # smtp-source / smtp-sink live in /usr/sbin on Debian
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || true
}

install_postfix_tools() {
  [ -n "$(find_tool smtp-source)" ] && [ -n "$(find_tool smtp-sink)" ] && return 0
  [ "${SKIP_INSTALL:-}" = 1 ] && { log "smtp-source/smtp-sink missing and SKIP_INSTALL=1"; exit 1; }
  log "installing postfix (for smtp-source/smtp-sink; the service is not started or enabled)"
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then
    backup=$(mktemp /tmp/policy-rc.d.XXXXXX)
    $sudo_cmd cp -p "$policy" "$backup"
  fi
  # 101 = "action forbidden": invoke-rc.d starts no service during the install.
  printf '#!/bin/sh\nexit 101\n' | $sudo_cmd tee "$policy" >/dev/null
  $sudo_cmd chmod 755 "$policy"
  local status=0
  {
    echo "postfix postfix/main_mailer_type select No configuration" | $sudo_cmd debconf-set-selections
    $sudo_cmd apt-get update -qq
    $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postfix
  } >&2 || status=$?
  if [ -n "$backup" ]; then $sudo_cmd mv "$backup" "$policy"; else $sudo_cmd rm -f "$policy"; fi
  [ "$status" -eq 0 ] || { log "apt-get install postfix failed"; exit 1; }
  # The package enables postfix.service; undo that (no start or stop happens).
  if command -v systemctl >/dev/null 2>&1; then
    $sudo_cmd systemctl disable postfix.service >/dev/null 2>&1 || true
  fi
  [ -n "$(find_tool smtp-source)" ] || { log "smtp-source still not found after install"; exit 1; }
}

install_postfix_tools
SMTP_SOURCE=$(find_tool smtp-source)
SMTP_SINK=$(find_tool smtp-sink)
if [ "${SKIP_BUILD:-}" != 1 ]; then
  log "building release binaries"
  cargo build --release --locked --bins >&2
fi
OURS=$PWD/target/release/net-receiver
LOAD=$PWD/target/release/net-receiver-load
if [ ! -x "$OURS" ] || [ ! -x "$LOAD" ]; then log "release binaries missing"; exit 1; fi

WORK=$(mktemp -d /tmp/net-receiver-bench.XXXXXX)
MAILDIR_ROOT=$(mktemp -d "${BENCH_MAILDIR_ROOT:-${TMPDIR:-/tmp}}/net-receiver-bench-mail.XXXXXX")
SERVER_PID=""
cleanup() {
  if [ -n "$SERVER_PID" ]; then kill "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$MAILDIR_ROOT"
  if [ "${KEEP:-}" = 1 ]; then log "raw figures kept in $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT
cat >"$WORK/bench.toml" <<EOF
max_connections = 30000
max_connections_per_ip = 30000
EOF
# Each side may hold IDLE sessions at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$WORK/results # lines: shape server metric value run

port_counter=0
next_port() { # a port nothing listens on (bounded scan)
  local tries=0 port hex
  while [ $tries -lt 1000 ]; do
    port=$((PORT_BASE + port_counter % 1000))
    port_counter=$((port_counter + 1)) tries=$((tries + 1))
    hex=$(printf '%04X' "$port")
    grep -qi "^ *[0-9]*: 0100007F:$hex 00000000:0000 0A" /proc/net/tcp || { echo "$port"; return; }
  done
  log "no free port near $PORT_BASE"; exit 1
}
listening() { grep -qi "^ *[0-9]*: 0100007F:$(printf '%04X' "$1") 00000000:0000 0A" /proc/net/tcp; }
# utime + stime of the whole process: fields 14 and 15, counted after "(comm)".
# shellcheck disable=SC2086 # the split is the point
cpu_ticks() { local s; s=$(cat "/proc/$1/stat"); s=${s##*) }; set -- $s; echo $((${12} + ${13})); }
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
record() { echo "$1 $2 $3 $4 $run" | tee -a "$RESULTS" >>"$WORK/current"; }

start_server() { # $1 = sink | nodel | maildir; sets SERVER_PID, PORT
  PORT=$(next_port)
  local user=()
  [ "$(id -u)" -eq 0 ] && user=(-u nobody) # smtp-sink refuses to run as root
  case $1 in
    sink) "$SMTP_SINK" "${user[@]}" -m 30000 "127.0.0.1:$PORT" 4096 >"$WORK/server.log" 2>&1 & ;;
    nodel) "$OURS" --config "$WORK/bench.toml" --listen "127.0.0.1:$PORT" --no-deliver --quiet \
             >"$WORK/server.log" 2>&1 & ;;
    maildir) rm -rf "$MAILDIR_ROOT/Maildir"
             "$OURS" --config "$WORK/bench.toml" --listen "127.0.0.1:$PORT" --quiet \
               --maildir "$MAILDIR_ROOT/Maildir" >"$WORK/server.log" 2>&1 & ;;
  esac
  SERVER_PID=$!
  for _ in $(seq 100); do listening "$PORT" && return 0; sleep 0.1; done
  log "$1 did not start listening on 127.0.0.1:$PORT"; cat "$WORK/server.log" >&2; exit 1
}
stop_server() {
  kill "$SERVER_PID" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$SERVER_PID" 2>/dev/null || true
  wait "$SERVER_PID" 2>/dev/null || true
  SERVER_PID=""
}

# One measurement: shape $1 against server $2.
measure() {
  local shape=$1 server=$2 msgs cpu0 cpu1 t0 t1 out rc=0
  : >"$WORK/current"
  start_server "$server"
  sleep 0.2
  out=$WORK/load.out
  case $shape in
    reuse|cpm)
      local flags=() ; msgs=$CPM_MSGS
      [ "$shape" = reuse ] && flags=(-d) msgs=$REUSE_MSGS
      cpu0=$(cpu_ticks "$SERVER_PID"); t0=$(now)
      timeout "$LOAD_TIMEOUT" "$SMTP_SOURCE" -s "$SESSIONS" -m "$msgs" -l "$SIZE" "${flags[@]}" \
        -M load.example -f load@example.com -t sink@example.com "127.0.0.1:$PORT" >"$out" 2>&1 || rc=$?
      t1=$(now); cpu1=$(cpu_ticks "$SERVER_PID")
      if [ "$rc" -ne 0 ] || grep -q . "$out"; then
        log "$shape/$server: smtp-source failed (rc $rc): $(head -c 300 "$out")"
        record "$shape" "$server" errors 1
      fi
      if [ "$server" = maildir ]; then
        local stored; stored=$(find "$MAILDIR_ROOT/Maildir/new" -type f | wc -l)
        [ "$stored" -eq "$msgs" ] || log "$shape/maildir: $stored of $msgs mails stored"
      fi
      record "$shape" "$server" msgs_s "$(calc "$msgs / ($t1 - $t0)")"
      record "$shape" "$server" cpu_us "$(calc "($cpu1 - $cpu0) * 1000000 / $CLK_TCK / $msgs")"
      record "$shape" "$server" rss_mib "$(calc "$(status_kib "$SERVER_PID" VmHWM) / 1024")"
      ;;
    idle)
      local rss0 rss1 held=""
      rss0=$(status_kib "$SERVER_PID" VmRSS)
      timeout $((LOAD_TIMEOUT + HOLD)) "$LOAD" --idle "$IDLE" --hold "$HOLD" "127.0.0.1:$PORT" \
        >"$out" 2>"$out.err" &
      local client=$!
      for _ in $(seq 600); do
        held=$(sed -n 's/^holding=//p' "$out"); [ -n "$held" ] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
      done
      sleep 1
      rss1=$(status_kib "$SERVER_PID" VmRSS)
      wait "$client" || rc=$?
      [ "$rc" -eq 0 ] || log "idle/$server: load client rc $rc: $(cat "$out" "$out.err" | head -c 300)"
      if [ -n "$held" ] && [ "$held" -gt 0 ]; then
        record idle "$server" kib_per_session "$(calc "($rss1 - $rss0) / $held")"
      fi
      record idle "$server" idle_rss_mib "$(calc "$rss0 / 1024")"
      record idle "$server" noop_ok "$(sed -n 's/.*answered_noop=\([0-9]*\).*/\1/p' "$out")"
      ;;
    ours-reuse|ours-pipeline)
      cpu0=$(cpu_ticks "$SERVER_PID")
      timeout "$LOAD_TIMEOUT" "$LOAD" "--${shape#ours-}" -s "$SESSIONS" -m "$REUSE_MSGS" -l "$SIZE" \
        "127.0.0.1:$PORT" >"$out" 2>"$out.err" || rc=$?
      cpu1=$(cpu_ticks "$SERVER_PID")
      [ "$rc" -eq 0 ] || log "$shape/$server: load client rc $rc: $(cat "$out" "$out.err" | head -c 300)"
      local key
      for key in msgs_per_s p50_us p99_us; do
        record "$shape" "$server" "$key" "$(sed -n "s/.* $key=\([0-9.]*\).*/\1/p" "$out")"
      done
      record "$shape" "$server" cpu_us "$(calc "($cpu1 - $cpu0) * 1000000 / $CLK_TCK / $REUSE_MSGS")"
      ;;
  esac
  stop_server
  log "run $run $shape/$server: $(awk '{ printf "%s=%.1f ", $3, $4 }' "$WORK/current")"
}

log "$RUNS run(s); maildir on $(stat -f -c %T "$MAILDIR_ROOT") ($MAILDIR_ROOT)"
: >"$RESULTS"
started=$(date +%s)
for run in $(seq "$RUNS"); do
  for server in sink nodel maildir; do measure reuse "$server"; done
  for server in sink nodel maildir; do measure cpm "$server"; done
  for server in sink nodel; do measure idle "$server"; done
  for server in sink nodel; do measure ours-reuse "$server"; measure ours-pipeline "$server"; done
done

# Medians and the table.
awk -v runs="$RUNS" -v elapsed=$(( $(date +%s) - started )) '
  { key = $1 " " $2 " " $3; n[key]++; v[key, n[key]] = $4; at[key, $5] = $4 }
  function median_of(a, m,   i, j, t) {
    if (!m) return ""
    for (i = 2; i <= m; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
    return (m % 2) ? a[(m + 1) / 2] : (a[m / 2] + a[m / 2 + 1]) / 2
  }
  function median(key,   m, i, a) {
    m = n[key]
    for (i = 1; i <= m; i++) a[i] = v[key, i] + 0
    return median_of(a, m)
  }
  # Median over runs of (ours / smtp-sink) within the same run: the fairest figure.
  function run_ratio(shape, metric,   r, m, a, o, s) {
    m = 0
    for (r = 1; r <= runs; r++) {
      o = at[shape " nodel " metric, r]; s = at[shape " sink " metric, r]
      if (o != "" && s != "" && s + 0 != 0) a[++m] = o / s
    }
    return m ? sprintf("%.2f", median_of(a, m)) : "-"
  }
  function fmt(x) { return x == "" ? "-" : (x >= 100 ? sprintf("%.0f", x) : sprintf("%.1f", x)) }
  function ratio(a, b) { return (a == "" || b == "" || b == 0) ? "-" : sprintf("%.2f", a / b) }
  function row(label, shape, metric,   s, o, m) {
    s = median(shape " sink " metric); o = median(shape " nodel " metric); m = median(shape " maildir " metric)
    printf "%-34s %10s %10s %6s %7s %9s %6s %8s\n", label, fmt(s), fmt(o), ratio(o, s), run_ratio(shape, metric), fmt(m), ratio(m, s), ratio(m, o)
  }
  END {
    printf "\nmedians of %d run(s), %d s in all. ratio: ours / smtp-sink of the medians; per-run: median of\n", runs, elapsed
    printf "the ratios within each run (interleaved, so the fairer figure); md/nodel: maildir / no-deliver\n"
    printf "%-34s %10s %10s %6s %7s %9s %6s %8s\n", "shape / metric", "smtp-sink", "no-deliver", "ratio", "per-run", "maildir", "ratio", "md/nodel"
    row("reuse (smtp-source -d): msgs/s", "reuse", "msgs_s")
    row("reuse: server CPU us/msg", "reuse", "cpu_us")
    row("reuse: peak RSS MiB", "reuse", "rss_mib")
    row("conn/msg (smtp-source): msgs/s", "cpm", "msgs_s")
    row("conn/msg: server CPU us/msg", "cpm", "cpu_us")
    row("conn/msg: peak RSS MiB", "cpm", "rss_mib")
    row("idle: KiB per held session", "idle", "kib_per_session")
    row("idle: RSS before, MiB", "idle", "idle_rss_mib")
    row("idle: sessions answering NOOP", "idle", "noop_ok")
    row("our client --reuse: msgs/s", "ours-reuse", "msgs_per_s")
    row("our client --reuse: p50 us", "ours-reuse", "p50_us")
    row("our client --reuse: p99 us", "ours-reuse", "p99_us")
    row("our client --reuse: CPU us/msg", "ours-reuse", "cpu_us")
    row("our client --pipeline: msgs/s", "ours-pipeline", "msgs_per_s")
    row("our client --pipeline: p50 us", "ours-pipeline", "p50_us")
    row("our client --pipeline: p99 us", "ours-pipeline", "p99_us")
    row("our client --pipeline: CPU us/msg", "ours-pipeline", "cpu_us")
    p = median("ours-pipeline nodel msgs_per_s"); r = median("ours-reuse nodel msgs_per_s")
    printf "pipelined / plain reuse against net-receiver --no-deliver: %s\n", ratio(p, r)
    e = 0; for (k in n) if (k ~ / errors$/) e += n[k]
    printf "failed load runs: %d\n", e
  }' "$RESULTS"
