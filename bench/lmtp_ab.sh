#!/usr/bin/env bash
# bench/lmtp_ab.sh — two builds of the receiver side by side, each delivering over
# LMTP to a private Dovecot (Debian dovecot-lmtpd; no spool, the persistent shape:
# net-receiver-load --reuse, 20 sessions, 4 KiB), interleaved, RUNS runs of MSGS
# messages each after 500 untimed; a fresh Dovecot (its own config, port and
# Maildir under ROOT) for every run. Prints msgs/s, the receiver's CPU and the
# whole machine's busy time per message, per run; every message must be in
# Dovecot's Maildir, or the script stops with a non-zero status.
#
# Usage (as root: Dovecot stores as nobody): bench/lmtp_ab.sh A_BIN B_BIN [RUNS] [MSGS]
# Env: ROOT (default: a new directory under /tmp), PORT_BASE=25500
# How the 2026-12-05 figures in docs/performance.md were made: A = the build
# before LMTP connection reuse (commit 1b562cb), B = the one after (b739add).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$1 B=$2 RUNS=${3:-5} MSGS=${4:-20000} WARM=500
LOAD=target/release/net-receiver-load
[ -x "$LOAD" ] || cargo build --release --locked --bin net-receiver-load
command -v dovecot >/dev/null || { echo "dovecot missing: apt-get install dovecot-lmtpd" >&2; exit 2; }
ROOT=${ROOT:-$(mktemp -d)}
mkdir -p "$ROOT"; chmod 755 "$ROOT"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null && wait "$p" 2>/dev/null; done || :; }
trap cleanup EXIT
ticks=$(getconf CLK_TCK)
wait_port() {
  for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done
  echo "nothing listens on 127.0.0.1:$1" >&2; return 1
}
port=${PORT_BASE:-25500}
for run in $(seq "$RUNS"); do
  for side in A B; do
    bin=${!side}
    port=$((port + 2)); root=$ROOT/$side-$run
    mkdir -p "$root"/{run,state,mail}; chmod 755 "$root"; chown nobody:nogroup "$root/mail"
    printf 'base_dir = %s/run\nstate_dir = %s/state\nlog_path = %s/dovecot.log\nprotocols = lmtp\nssl = no\nlisten = 127.0.0.1\nfirst_valid_uid = 1\nauth_username_format = %%Ln\nmail_location = maildir:%s/mail/%%u\nuserdb {\n  driver = passwd-file\n  args = %s/users\n}\npassdb {\n  driver = passwd-file\n  args = %s/users\n}\nservice lmtp {\n  inet_listener lmtp {\n    address = 127.0.0.1\n    port = %s\n  }\n}\nmail_save_crlf = yes\n' \
      "$root" "$root" "$root" "$root" "$root" "$root" $((port + 1)) > "$root/dovecot.conf"
    echo "sink:{PLAIN}x:65534:65534::$root/mail/sink::" > "$root/users"
    dovecot -F -c "$root/dovecot.conf" & dpid=$!; pids+=("$dpid")
    wait_port $((port + 1))
    printf '[[deliver]]\nkind = "lmtp"\naddress = "127.0.0.1:%s"\n' $((port + 1)) > "$root/receiver.toml"
    RUST_LOG=warn "$bin" --quiet --workers 1 --listen "127.0.0.1:$port" --config "$root/receiver.toml" & rpid=$!; pids+=("$rpid")
    wait_port "$port"
    "$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$WARM" -l 4096 > /dev/null
    cpu0=$(awk '{print $14 + $15}' "/proc/$rpid/stat"); read -r _ u0 n0 s0 _ < /proc/stat
    out=$("$LOAD" "127.0.0.1:$port" --reuse -s 20 -m "$MSGS" -l 4096)
    cpu1=$(awk '{print $14 + $15}' "/proc/$rpid/stat"); read -r _ u1 n1 s1 _ < /proc/stat
    kill "$rpid"; wait "$rpid" 2>/dev/null || :; kill "$dpid"; wait "$dpid" 2>/dev/null || :
    pids=()
    stored=$(find "$root/mail/sink/new" -type f | wc -l)
    ok=$(sed -n 's/.* ok=\([0-9]*\) .*/\1/p' <<<"$out")
    rate=$(sed -n 's/.*msgs_per_s=\([0-9.]*\).*/\1/p' <<<"$out")
    if [ "${ok:-0}" != "$MSGS" ] || [ "$stored" != $((MSGS + WARM)) ]; then
      echo "run $run $side: $ok of $MSGS accepted, $stored of $((MSGS + WARM)) in Dovecot's Maildir" >&2
      exit 1
    fi
    echo "run $run $side: $rate msgs/s, receiver $(( (cpu1 - cpu0) * 1000000 / ticks / MSGS )) us/msg, machine busy $(( (u1 + n1 + s1 - u0 - n0 - s0) * 1000000 / ticks / MSGS )) us/msg"
    rm -rf "$root"
  done
done
echo "bench: done"
