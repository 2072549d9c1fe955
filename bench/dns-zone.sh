# bench/dns-zone.sh — sourced by bench/run.sh: a loopback DNS server (NSD, in
# the foreground, as root, nothing but 127.0.0.1:$DNS_PORT) with a static zone
# whose answers are all cacheable (TTL 3600; negative answers carry an SOA
# with a 3600 s minimum): the load's sender and recipient domain bench.example
# (MX, A, AAAA, SPF, DMARC p=none), its EHLO name client.example (A, AAAA,
# SPF) and the PTR of 127.0.0.1 (client.example). DMARC's tree walk also asks
# _dmarc.example, which is in the zone (NXDOMAIN, cacheable).
# Needs: WORK, NSD, OURS, SMTP_SOURCE, next_port, wait_listening, stop_pid,
# log, fail; sets DNS_PORT, NSD_PID.

dns_start() {
  local dir=$WORK/nsd _
  mkdir -p "$dir"
  DNS_PORT=$(next_port)
  local soa='@ IN SOA ns.example. hostmaster.example. 1 3600 600 86400 3600
@ IN NS ns.example.'
  cat >"$dir/example.zone" <<ZONE
\$ORIGIN example.
\$TTL 3600
$soa
ns IN A 127.0.0.1
bench IN A 127.0.0.1
bench IN AAAA ::1
bench IN MX 10 mx.bench.example.
bench IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
_dmarc.bench IN TXT "v=DMARC1; p=none"
mx.bench IN A 127.0.0.1
mx.bench IN AAAA ::1
client IN A 127.0.0.1
client IN AAAA ::1
client IN TXT "v=spf1 ip4:127.0.0.0/8 -all"
ZONE
  cat >"$dir/127.zone" <<ZONE
\$ORIGIN 127.in-addr.arpa.
\$TTL 3600
$soa
1.0.0 IN PTR client.example.
ZONE
  cat >"$dir/nsd.conf" <<CONF
server:
  ip-address: 127.0.0.1@$DNS_PORT
  port: $DNS_PORT
  do-ip6: no
  username: ""
  chroot: ""
  zonesdir: "$dir"
  database: ""
  pidfile: "$dir/nsd.pid"
  xfrdfile: "$dir/xfrd.state"
  zonelistfile: "$dir/zone.list"
  logfile: "$dir/nsd.log"
  server-count: 1
  verbosity: 1
remote-control:
  control-enable: no
zone:
  name: example
  zonefile: example.zone
zone:
  name: 127.in-addr.arpa
  zonefile: 127.zone
CONF
  "$NSD" -d -c "$dir/nsd.conf" >"$dir/nsd.out" 2>&1 &
  NSD_PID=$!
  for _ in $(seq 100); do
    grep -q "nsd started" "$dir/nsd.log" 2>/dev/null && break
    kill -0 "$NSD_PID" 2>/dev/null || break
    sleep 0.1
  done
  grep -q "nsd started" "$dir/nsd.log" 2>/dev/null \
    || fail "nsd did not start: $(cat "$dir/nsd.out" "$dir/nsd.log" 2>/dev/null | tail -5)"
  log "DNS zone served by nsd on 127.0.0.1:$DNS_PORT"
}

# One message through the DNS-checking server: its findings must come from the
# zone (iprev, SPF and DMARC pass), or the dns shape would measure failures.
dns_check() {
  local port json=$WORK/dns-check.json pid rc=0
  port=$(next_port)
  "$OURS" --config "$WORK/bench.toml" --listen "127.0.0.1:$port" --no-deliver \
    --dns-server "127.0.0.1:$DNS_PORT" --json-file "$json" >"$WORK/server.log" 2>&1 &
  pid=$!
  wait_listening "$port" "the DNS check's net-receiver"
  timeout 60 "$SMTP_SOURCE" -s 1 -m 1 -l 512 -M client.example -f load@bench.example \
    -t sink@bench.example "127.0.0.1:$port" >"$WORK/load.out" 2>&1 || rc=$?
  stop_pid "$pid" "the DNS check's net-receiver"
  [ "$rc" -eq 0 ] || fail "DNS check: smtp-source failed (rc $rc): $(head -c 300 "$WORK/load.out")"
  local want
  for want in '"iprev":"pass"' '"spf":"pass"' '"dmarc":"pass"'; do
    grep -q "$want" "$json" || fail "DNS check: no $want in $(head -c 2000 "$json")"
  done
}
