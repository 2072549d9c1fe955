# bench/postfix.sh — sourced by bench/run.sh: a real Postfix, private to the
# benchmark. Its own config_directory ($PF/etc), queue_directory ($PF/queue) and
# data_directory ($PF/data); smtpd on one private 127.0.0.1 port (master.cf
# lists nothing else that listens); cleanup writes and fsyncs each queue file
# before smtpd answers 250, as Postfix always does; default_transport = discard
# and local delivery off, so qmgr discards each message once it is queued. It
# logs (as Postfix does to syslog) to $PF/maillog through its postlogd. The
# system's Postfix configuration, queue and port 25 are never touched.
# Needs: PF, WORK, POSTFIX, log, fail, stop_pid; sets SERVER_PID.

postfix_setup() {
  mkdir -p "$PF/etc" "$PF/queue" "$PF/data"
  chown postfix "$PF/data"
  cat >"$PF/etc/main.cf" <<CONF
compatibility_level = 3.6
queue_directory = $PF/queue
data_directory = $PF/data
mail_owner = postfix
setgid_group = postdrop
myhostname = postfix.bench.localhost
mydomain = bench.localhost
myorigin = \$myhostname
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mydestination =
local_recipient_maps =
local_transport = error:local delivery is off
default_transport = discard
relay_transport = discard
relay_domains =
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
# No name lookups of the client, no flow-control pauses: Postfix at its fastest.
smtpd_peername_lookup = no
in_flow_delay = 0
alias_maps =
alias_database =
biff = no
default_process_limit = 100
maillog_file_prefixes = $PF
maillog_file = $PF/maillog
CONF
}

# master.cf for smtpd on 127.0.0.1:$1 (no chroot: the queue is not set up for one).
postfix_master_cf() {
  cat >"$PF/etc/master.cf" <<CONF
127.0.0.1:$1 inet n - n - - smtpd
cleanup   unix  n - n - 0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n - - trivial-rewrite
bounce    unix  - - n - 0 bounce
defer     unix  - - n - 0 bounce
trace     unix  - - n - 0 bounce
verify    unix  - - n - 1 verify
proxymap  unix  - - n - - proxymap
error     unix  - - n - - error
retry     unix  - - n - - error
discard   unix  - - n - - discard
anvil     unix  - - n - 1 anvil
scache    unix  - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
CONF
}

postfix_master_pid() {
  local pid=""
  [ -r "$PF/queue/pid/master.pid" ] && pid=$(tr -d ' \n' <"$PF/queue/pid/master.pid")
  echo "$pid"
}

# Master and every process it started.
postfix_pids() {
  local master
  master=$(postfix_master_pid)
  [ -n "$master" ] || return 0
  echo "$master"
  ps -o pid= --ppid "$master" || true # no children is not an error
}

postfix_start() { # $1 = port
  [ -d "$PF/etc" ] || postfix_setup
  postfix_master_cf "$1"
  rm -f "$PF/maillog"
  "$POSTFIX" -c "$PF/etc" check >"$WORK/server.log" 2>&1 || fail "postfix check: $(cat "$WORK/server.log")"
  "$POSTFIX" -c "$PF/etc" start >>"$WORK/server.log" 2>&1 \
    || fail "postfix start: $(cat "$WORK/server.log" "$PF/maillog" 2>/dev/null | tail -5)"
  local _
  for _ in $(seq 100); do
    SERVER_PID=$(postfix_master_pid)
    [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null && return 0
    sleep 0.1
  done
  fail "postfix master did not start: $(tail -5 "$PF/maillog" 2>/dev/null)"
}

postfix_stop() {
  local master _
  master=$(postfix_master_pid)
  [ -n "$master" ] || return 0
  "$POSTFIX" -c "$PF/etc" stop >/dev/null 2>&1 || log "postfix stop failed: killing its master"
  for _ in $(seq 100); do kill -0 "$master" 2>/dev/null || break; sleep 0.1; done
  if kill -0 "$master" 2>/dev/null; then
    log "postfix did not stop in 10 s: killed"
    kill -9 "$master" 2>/dev/null || true
  fi
  rm -f "$PF/queue/pid/master.pid"
}

# Messages Postfix queued and discarded so far.
postfix_accepted() {
  local n
  n=$(grep -c 'status=sent' "$PF/maillog" 2>/dev/null) || n=0
  echo "$n"
}

postfix_cleanup() {
  [ -d "$PF/etc" ] || return 0
  postfix_stop
  rm -rf "$PF"
}
