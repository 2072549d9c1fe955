#!/usr/bin/env bash
# bench/run.sh — net-receiver side by side with Postfix's smtp-sink and a real,
# private Postfix, on loopback.
#
# Usage:  bench/run.sh [RUNS]          (RUNS: runs per measurement, default 5)
#
# What it does
#   1. Installs what it needs if missing (Debian packages `postfix` for
#      smtp-source / smtp-sink / the private Postfix, `nsd` for the DNS zone,
#      `linux-perf` for the fsync count) WITHOUT starting or enabling any service:
#      debconf is preseeded with "No configuration", a policy-rc.d that forbids
#      every service start is in place during the install (an existing one is put
#      back afterwards), and the enable symlinks are removed again (`systemctl
#      disable`, which starts and stops nothing). The system's Postfix instance
#      and port 25 are never touched.
#   2. Builds the release binaries (`net-receiver`, `net-receiver-load`).
#   3. Starts a loopback DNS server (NSD, as root, in the foreground) with a
#      static zone whose answers are all cacheable (TTL 3600, negative TTL 3600):
#      `bench.example` (the sender and recipient domain: MX, A, AAAA, SPF, DMARC),
#      `client.example` (the EHLO name: A, AAAA, SPF) and 1.0.0.127.in-addr.arpa
#      (PTR client.example), on a free 127.0.0.1 port; one message through the
#      DNS-checking server must show spf=pass and dmarc=pass before any run.
#   4. For each run, for each shape, starts each server fresh on its own
#      127.0.0.1 port, in turn (interleaved), loads it, records the figures, stops it:
#        servers  sink      smtp-sink -m 30000 127.0.0.1:PORT 4096 (discards)
#                 nodel     net-receiver --no-deliver --quiet (parses, stores nothing)
#                 dns       nodel with the DNS checks on (--dns-server: PTR, EHLO,
#                           MX, SPF, DMARC against the zone above)
#                 maildir   net-receiver --quiet --maildir DIR (group commit of the Maildir)
#                 spool     net-receiver --quiet --spool-dir DIR --maildir DIR2
#                           (250 once the spool's group commit holds the mail)
#                 postfix   a private Postfix: its own config_directory, queue_directory
#                           and data_directory under the work directory, smtpd on a
#                           private 127.0.0.1 port, cleanup writing and fsyncing the
#                           queue file before the 250 (as Postfix always does),
#                           default_transport = discard, local delivery off, no
#                           client name lookups; stopped and removed by a trap
#        (DIRs under $BENCH_MAILDIR_ROOT, default ${TMPDIR:-/tmp})
#        shapes   reuse     smtp-source -s 20 -m 20000 -l 4096 -d   (-d: persistent sessions)
#                 cpm       smtp-source -s 20 -m 20000 -l 4096      (connection per message)
#                 idle      net-receiver-load --idle 2000 --hold 4  (sink, nodel)
#                 ours-reuse / ours-pipeline: net-receiver-load -s 20 -m 20000 -l 4096
#                           --reuse / --pipeline (sink, nodel)
#      Figures: msgs/s (wall time of the load run), server CPU µs per message
#      (utime+stime from /proc, before/after; Postfix: master and all its
#      processes), peak RSS (VmHWM), and for idle: (VmRSS while the sessions are
#      held - VmRSS before) / sessions. The durable servers are checked to have
#      stored every message (spool: once its delivery to the Maildir is done).
#      A run's Maildir and spool are moved aside, not deleted, until the script
#      ends: on an ext4 without a journal (this VM's) the inode allocator skips
#      every inode deleted in the last 5 minutes whose table block is still
#      dirty, one buffer lookup each, so after a run's 20,000 files are removed
#      each new file costs up to ~300 us more (a Python loop creating 20,000
#      4 KiB files: 23-47 us each on a fresh directory, 196-300 us after such a
#      delete) and the next durable run would pay for the previous one's cleanup.
#      So BENCH_MAILDIR_ROOT needs room for all of them: about 5 GB with the
#      defaults (170-230 MB per durable run of 22,000 messages).
#   5. A separate pass counts fsync + fdatasync + syncfs calls per accepted
#      message for each server and both shapes (FSYNC_MSGS messages): `perf stat
#      -a` counting the syscall tracepoints on the whole machine while the load
#      runs and, for the spool, until its delivery is done. The kernel counts;
#      nothing is slowed (the first version ran the server under `strace -f`,
#      which slows every system call and so changes how many messages share a
#      flush: 0.42 per message for the spool there, 0.14-0.23 counted this way).
#      System-wide: run on a quiet machine.
#   6. Prints one table: medians over the runs per server, and the ratios
#      ours / smtp-sink, spool / postfix, maildir / postfix, spool / no-deliver,
#      maildir / no-deliver and dns-on / dns-off, each the median of the ratios
#      within each run (interleaved, so the fairer figure).
#
# Environment (all optional): SESSIONS=20 SIZE=4096 REUSE_MSGS=20000 CPM_MSGS=20000
#   FSYNC_MSGS=20000 IDLE=2000 HOLD=4 PORT_BASE=24000 BENCH_MAILDIR_ROOT=/tmp
#   SKIP_INSTALL=1 SKIP_BUILD=1 KEEP=1 (keep the work directory with the raw figures).
#
# Must run as root (the private Postfix and its queue). Everything talks to
# 127.0.0.1 only; every wait and every load run is bounded, and any failure
# (a load run that fails, a message not stored, a server that does not start)
# fails the script. Runs on a shared or small machine are noisy (±30 %):
# compare only within one run of this script, and read the ratios.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${1:-${RUNS:-5}}
SESSIONS=${SESSIONS:-20}
SIZE=${SIZE:-4096}
REUSE_MSGS=${REUSE_MSGS:-20000}
CPM_MSGS=${CPM_MSGS:-20000}
FSYNC_MSGS=${FSYNC_MSGS:-20000}
IDLE=${IDLE:-2000}
HOLD=${HOLD:-4}
PORT_BASE=${PORT_BASE:-24000}
LOAD_TIMEOUT=600
for n in RUNS SESSIONS SIZE REUSE_MSGS CPM_MSGS FSYNC_MSGS IDLE HOLD PORT_BASE; do
  [[ ${!n} =~ ^[1-9][0-9]*$ ]] || { echo "$n must be a positive integer" >&2; exit 2; }
done
[ "$(id -u)" -eq 0 ] || { echo "bench/run.sh runs as root (the private Postfix needs it)" >&2; exit 2; }

log() { echo "bench: $*" >&2; }
fail() { log "FAILED: $*"; exit 1; }

find_tool() { # smtp-source / smtp-sink / nsd live in /usr/sbin on Debian
  command -v "$1" 2>/dev/null || { [ -x "/usr/sbin/$1" ] && echo "/usr/sbin/$1"; } || echo ""
}

install_packages() {
  local missing=()
  [ -n "$(find_tool smtp-source)" ] && [ -n "$(find_tool postfix)" ] || missing+=(postfix)
  [ -n "$(find_tool nsd)" ] || missing+=(nsd)
  [ -n "$(find_tool perf)" ] || missing+=(linux-perf)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "${SKIP_INSTALL:-}" = 1 ] && fail "missing ${missing[*]} and SKIP_INSTALL=1"
  log "installing ${missing[*]} (no service is started or enabled)"
  local policy=/usr/sbin/policy-rc.d backup=""
  if [ -e "$policy" ]; then
    backup=$(mktemp /tmp/policy-rc.d.XXXXXX)
    cp -p "$policy" "$backup"
  fi
  # 101 = "action forbidden": invoke-rc.d starts no service during the install.
  printf '#!/bin/sh\nexit 101\n' >"$policy"
  chmod 755 "$policy"
  local status=0
  {
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
  } >&2 || status=$?
  if [ -n "$backup" ]; then mv "$backup" "$policy"; else rm -f "$policy"; fi
  [ "$status" -eq 0 ] || fail "apt-get install ${missing[*]} failed"
  # The packages enable their services; undo that (no start or stop happens).
  if command -v systemctl >/dev/null 2>&1; then
    local unit
    for unit in postfix.service nsd.service; do
      if systemctl is-enabled --quiet "$unit" 2>/dev/null; then
        systemctl disable "$unit" >/dev/null 2>&1 || log "could not disable $unit (it was not started)"
      fi
    done
  fi
  for tool in smtp-source smtp-sink postfix nsd perf; do
    [ -n "$(find_tool "$tool")" ] || fail "$tool still not found after the install"
  done
}

install_packages
SMTP_SOURCE=$(find_tool smtp-source)
SMTP_SINK=$(find_tool smtp-sink)
POSTFIX=$(find_tool postfix)
NSD=$(find_tool nsd)
PERF=$(find_tool perf)
if [ "${SKIP_BUILD:-}" != 1 ]; then
  log "building release binaries"
  cargo build --release --locked --bins >&2
fi
OURS=$PWD/target/release/net-receiver
LOAD=$PWD/target/release/net-receiver-load
if [ ! -x "$OURS" ] || [ ! -x "$LOAD" ]; then fail "release binaries missing"; fi

WORK=$(mktemp -d /tmp/net-receiver-bench.XXXXXX)
chmod 755 "$WORK" # the Postfix daemons (user postfix) reach their queue under it
MAILDIR_ROOT=$(mktemp -d "${BENCH_MAILDIR_ROOT:-${TMPDIR:-/tmp}}/net-receiver-bench-mail.XXXXXX")
chmod 755 "$MAILDIR_ROOT"
SERVER_PID="" SERVER_KIND="" NSD_PID="" PERF_PID=""
PF=$MAILDIR_ROOT/postfix # the private Postfix: etc/ queue/ data/
source bench/postfix.sh
source bench/dns-zone.sh

cleanup() {
  local status=$?
  if [ -n "$PERF_PID" ]; then kill "$PERF_PID" 2>/dev/null || true; fi
  if [ -n "$SERVER_PID" ]; then stop_server; fi
  if [ -n "$NSD_PID" ]; then stop_pid "$NSD_PID" nsd; fi
  postfix_cleanup
  # Gigabytes of kept Maildirs: a benchmark started before this ends would
  # measure the deletion (and, on ext4, the deleted inodes; see above).
  log "deleting the runs' Maildirs and spools ($(du -sh "$MAILDIR_ROOT" 2>/dev/null | cut -f1)); start no other benchmark until this script has exited"
  rm -rf "$MAILDIR_ROOT"
  if [ "${KEEP:-}" = 1 ]; then log "raw figures kept in $WORK"; else rm -rf "$WORK"; fi
  log "done"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cat >"$WORK/bench.toml" <<EOF
max_connections = 30000
max_connections_per_ip = 30000
EOF
# Each side may hold IDLE sessions at once.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || log "could not raise the open-files limit"
CLK_TCK=$(getconf CLK_TCK)
RESULTS=$WORK/results # lines: shape server metric value run

port_counter=0
next_port() { # a TCP and UDP port nothing uses on 127.0.0.1 (bounded scan)
  local tries=0 port hex
  while [ $tries -lt 1000 ]; do
    port=$((PORT_BASE + port_counter % 1000))
    port_counter=$((port_counter + 1)) tries=$((tries + 1))
    hex=$(printf '%04X' "$port")
    if ! grep -qi ":$hex " /proc/net/tcp /proc/net/udp; then echo "$port"; return; fi
  done
  fail "no free port near $PORT_BASE"
}
listening() { grep -qi "^ *[0-9]*: 0100007F:$(printf '%04X' "$1") 00000000:0000 0A" /proc/net/tcp; }
wait_listening() { # $1 port, $2 what
  local _
  for _ in $(seq 150); do listening "$1" && return 0; sleep 0.1; done
  cat "$WORK/server.log" >&2 2>/dev/null || true
  fail "$2 did not start listening on 127.0.0.1:$1"
}
# utime + stime of one process (fields 14 and 15, counted after "(comm)"); with
# $2 = all, also cutime + cstime (16, 17): its children that have exited.
# shellcheck disable=SC2086 # the split is the point
ticks_of() {
  local s; s=$(cat "/proc/$1/stat" 2>/dev/null) || { echo 0; return; }
  s=${s##*) }; set -- $s "${2:-}"
  if [ "${!#}" = all ]; then echo $((${12} + ${13} + ${14} + ${15})); else echo $((${12} + ${13})); fi
}
cpu_ticks() { # the server's CPU: Postfix is master, its exited children and the live ones
  if [ "$SERVER_KIND" = postfix ]; then
    local master total pid
    master=$(postfix_master_pid)
    total=$(ticks_of "$master" all)
    for pid in $(postfix_pids); do
      [ "$pid" = "$master" ] || total=$((total + $(ticks_of "$pid")))
    done
    echo "$total"
  else
    ticks_of "$SERVER_PID"
  fi
}
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.3f\", $* }"; }
record() { echo "$1 $2 $3 $4 $run" | tee -a "$RESULTS" >>"$WORK/current"; }
stop_pid() { # $1 pid, $2 what: TERM, up to 5 s, then KILL
  local _
  kill "$1" 2>/dev/null || return 0
  for _ in $(seq 50); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$1" 2>/dev/null; then log "$2 did not stop in 5 s: killed"; kill -9 "$1" 2>/dev/null || true; fi
  wait "$1" 2>/dev/null || true
}
count_files() { find "$1" -type f 2>/dev/null | wc -l; }

start_server() { # $1 = sink | nodel | dns | maildir | spool | postfix; sets SERVER_PID, PORT
  PORT=$(next_port)
  SERVER_KIND=$1
  local ours=("$OURS" --config "$WORK/bench.toml" --listen "127.0.0.1:$PORT" --quiet)
  # Moved aside, deleted when the script ends (see 4. above).
  local used
  used=$(mktemp -d "$MAILDIR_ROOT/used.XXXXXX")
  for dir in Maildir spool; do
    if [ -e "$MAILDIR_ROOT/$dir" ]; then mv "$MAILDIR_ROOT/$dir" "$used/"; fi
  done
  case $1 in
    # smtp-sink refuses to run as root.
    sink) "$SMTP_SINK" -u nobody -m 30000 "127.0.0.1:$PORT" 4096 >"$WORK/server.log" 2>&1 & ;;
    nodel) "${ours[@]}" --no-deliver >"$WORK/server.log" 2>&1 & ;;
    dns) "${ours[@]}" --no-deliver --dns-server "127.0.0.1:$DNS_PORT" >"$WORK/server.log" 2>&1 & ;;
    maildir) "${ours[@]}" --maildir "$MAILDIR_ROOT/Maildir" >"$WORK/server.log" 2>&1 & ;;
    spool) "${ours[@]}" --spool-dir "$MAILDIR_ROOT/spool" --maildir "$MAILDIR_ROOT/Maildir" \
             >"$WORK/server.log" 2>&1 & ;;
    postfix) postfix_start "$PORT"; wait_listening "$PORT" postfix; return 0 ;;
    *) fail "unknown server $1" ;;
  esac
  SERVER_PID=$!
  wait_listening "$PORT" "$1"
}
stop_server() {
  if [ "$SERVER_KIND" = postfix ]; then postfix_stop; else stop_pid "$SERVER_PID" "$SERVER_KIND"; fi
  SERVER_PID="" SERVER_KIND=""
}

# Every message of a run of $1 messages is stored (durable servers only).
check_stored() { # $1 server, $2 messages, $3 label
  local stored=0 _
  case $1 in
    maildir) stored=$(count_files "$MAILDIR_ROOT/Maildir/new") ;;
    spool) # delivered from the spool after the 250: wait (bounded) for the Maildir
      for _ in $(seq 1200); do
        stored=$(count_files "$MAILDIR_ROOT/Maildir/new")
        [ "$stored" -ge "$2" ] && break
        sleep 0.1
      done ;;
    postfix) # queued, then discarded by qmgr: wait (bounded) for its log to say so
      for _ in $(seq 1200); do
        stored=$(postfix_accepted)
        [ "$stored" -ge "$2" ] && break
        sleep 0.1
      done ;;
    *) return 0 ;;
  esac
  [ "$stored" -eq "$2" ] || fail "$3: $stored of $2 messages stored"
}

smtp_load() { # $1 shape (reuse|cpm), $2 messages; runs smtp-source against $PORT
  local flags=()
  [ "$1" = reuse ] && flags=(-d)
  timeout "$LOAD_TIMEOUT" "$SMTP_SOURCE" -s "$SESSIONS" -m "$2" -l "$SIZE" "${flags[@]}" \
    -M client.example -f load@bench.example -t sink@bench.example "127.0.0.1:$PORT"
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
      msgs=$CPM_MSGS
      [ "$shape" = reuse ] && msgs=$REUSE_MSGS
      cpu0=$(cpu_ticks); t0=$(now)
      smtp_load "$shape" "$msgs" >"$out" 2>&1 || rc=$?
      t1=$(now); cpu1=$(cpu_ticks)
      if [ "$rc" -ne 0 ] || grep -q . "$out"; then
        fail "$shape/$server: smtp-source failed (rc $rc): $(head -c 300 "$out")"
      fi
      record "$shape" "$server" msgs_s "$(calc "$msgs / ($t1 - $t0)")"
      record "$shape" "$server" cpu_us "$(calc "($cpu1 - $cpu0) * 1000000 / $CLK_TCK / $msgs")"
      if [ "$server" != postfix ]; then
        record "$shape" "$server" rss_mib "$(calc "$(status_kib "$SERVER_PID" VmHWM) / 1024")"
      fi
      check_stored "$server" "$msgs" "run $run $shape/$server"
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
      [ "$rc" -eq 0 ] || fail "idle/$server: load client rc $rc: $(cat "$out" "$out.err" | head -c 300)"
      [ -n "$held" ] && [ "$held" -gt 0 ] || fail "idle/$server: no session held"
      record idle "$server" kib_per_session "$(calc "($rss1 - $rss0) / $held")"
      record idle "$server" idle_rss_mib "$(calc "$rss0 / 1024")"
      record idle "$server" noop_ok "$(sed -n 's/.*answered_noop=\([0-9]*\).*/\1/p' "$out")"
      ;;
    ours-reuse|ours-pipeline)
      cpu0=$(cpu_ticks)
      timeout "$LOAD_TIMEOUT" "$LOAD" "--${shape#ours-}" -s "$SESSIONS" -m "$REUSE_MSGS" -l "$SIZE" \
        "127.0.0.1:$PORT" >"$out" 2>"$out.err" || rc=$?
      cpu1=$(cpu_ticks)
      [ "$rc" -eq 0 ] || fail "$shape/$server: load client rc $rc: $(cat "$out" "$out.err" | head -c 300)"
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

# The fsync pass: fsync + fdatasync + syncfs calls per accepted message, counted by
# the kernel's syscall tracepoints on the whole machine (perf stat -a) while the
# load runs and until every message is stored.
count_fsyncs() { # $1 shape, $2 server
  local shape=$1 server=$2 calls _ rc=0
  : >"$WORK/current"
  start_server "$server"
  rm -f "$WORK/perf.out"
  "$PERF" stat -a -x, -o "$WORK/perf.out" \
    -e syscalls:sys_enter_fsync,syscalls:sys_enter_fdatasync,syscalls:sys_enter_syncfs \
    -- sleep 3600 2>"$WORK/perf.err" &
  PERF_PID=$!
  sleep 1 # perf opens its counters on every CPU; nothing is loaded yet
  kill -0 "$PERF_PID" 2>/dev/null || fail "perf stat did not start: $(head -c 300 "$WORK/perf.err")"
  smtp_load "$shape" "$FSYNC_MSGS" >"$WORK/load.out" 2>&1 || rc=$?
  [ "$rc" -eq 0 ] && ! grep -q . "$WORK/load.out" || fail "fsync pass $shape/$server: smtp-source failed (rc $rc)"
  check_stored "$server" "$FSYNC_MSGS" "fsync pass $shape/$server"
  # perf stat stops its workload on SIGINT and writes the counts.
  pkill -INT -P "$PERF_PID" sleep 2>/dev/null || kill -INT "$PERF_PID"
  for _ in $(seq 100); do kill -0 "$PERF_PID" 2>/dev/null || break; sleep 0.1; done
  stop_pid "$PERF_PID" perf
  PERF_PID=""
  stop_server
  [ -s "$WORK/perf.out" ] || fail "perf stat wrote no counts: $(head -c 300 "$WORK/perf.err")"
  calls=$(awk -F, '$3 ~ /^syscalls:sys_enter_(fsync|fdatasync|syncfs)$/ { n += $1; k++ } END { if (k == 3) print n + 0 }' "$WORK/perf.out")
  [ -n "$calls" ] || fail "fsync pass $shape/$server: perf stat did not count all three calls: $(cat "$WORK/perf.out")"
  record "$shape" "$server" fsyncs_per_msg "$(calc "$calls / $FSYNC_MSGS")"
  log "fsync pass $shape/$server: $calls calls for $FSYNC_MSGS messages"
}

dns_start
dns_check
log "$RUNS run(s); durable servers on $(stat -f -c %T "$MAILDIR_ROOT") ($MAILDIR_ROOT)"
: >"$RESULTS"
started=$(date +%s)
DURABLE="maildir spool postfix"
for run in $(seq "$RUNS"); do
  for server in sink nodel dns $DURABLE; do measure reuse "$server"; done
  for server in sink nodel dns $DURABLE; do measure cpm "$server"; done
  for server in sink nodel; do measure idle "$server"; done
  for server in sink nodel; do measure ours-reuse "$server"; measure ours-pipeline "$server"; done
done
run=0
for shape in reuse cpm; do
  for server in sink nodel $DURABLE; do count_fsyncs "$shape" "$server"; done
done

RUNS=$RUNS ELAPSED=$(( $(date +%s) - started )) awk -f bench/table.awk "$RESULTS"
