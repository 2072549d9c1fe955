# bench/table.awk — the table of bench/run.sh from its results file (lines:
# shape server metric value run). Medians over the runs per server; each
# ratio is the median over the runs of that ratio within the run (the servers
# were measured interleaved, so a run's ratio compares like with like).
# Environment: RUNS, ELAPSED (seconds).
{ key = $1 " " $2 " " $3; n[key]++; v[key, n[key]] = $4; at[key, $5] = $4; runs_of[$5] = 1 }
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
function run_ratio(shape, metric, top, bottom,   r, m, a, o, s) {
  m = 0
  for (r in runs_of) {
    o = at[shape " " top " " metric, r]; s = at[shape " " bottom " " metric, r]
    if (o != "" && s != "" && s + 0 != 0) a[++m] = o / s
  }
  return m ? sprintf("%.2f", median_of(a, m)) : "-"
}
function fmt(x) { return x == "" ? "-" : (x >= 100 ? sprintf("%.0f", x) : (x >= 10 ? sprintf("%.1f", x) : sprintf("%.2f", x))) }
function row(label, shape, metric,   i, line) {
  line = sprintf("%-32s", label)
  for (i = 1; i <= ns; i++) line = line sprintf(" %9s", fmt(median(shape " " servers[i] " " metric)))
  for (i = 1; i <= nr; i++) line = line sprintf(" %7s", run_ratio(shape, metric, top[i], bottom[i]))
  print line
}
BEGIN {
  ns = split("sink nodel dns maildir spool postfix", servers, " ")
  nr = split("nodel/sink spool/postfix maildir/postfix spool/nodel maildir/nodel dns/nodel", ratios, " ")
  for (i = 1; i <= nr; i++) { split(ratios[i], pair, "/"); top[i] = pair[1]; bottom[i] = pair[2] }
}
END {
  printf "\nmedians of %d run(s), %d s in all (fsyncs: a separate pass counted by perf stat -a). Servers: sink = smtp-sink,\n", ENVIRON["RUNS"], ENVIRON["ELAPSED"]
  printf "nodel = net-receiver --no-deliver, dns = nodel with the DNS checks, maildir = --maildir, spool = --spool-dir\n"
  printf "(+ Maildir), postfix = a private Postfix (fsync before 250, discard). Ratios: median of the per-run ratios.\n"
  line = sprintf("%-32s", "shape / metric")
  for (i = 1; i <= ns; i++) line = line sprintf(" %9s", servers[i])
  for (i = 1; i <= nr; i++) {
    label = ratios[i]; sub(/postfix/, "pf", label); sub(/maildir/, "md", label); sub(/spool/, "sp", label); sub(/nodel/, "nd", label)
    line = line sprintf(" %7s", label)
  }
  print line
  row("reuse (smtp-source -d): msgs/s", "reuse", "msgs_s")
  row("reuse: server CPU us/msg", "reuse", "cpu_us")
  row("reuse: fsyncs per message", "reuse", "fsyncs_per_msg")
  row("reuse: peak RSS MiB", "reuse", "rss_mib")
  row("conn/msg (smtp-source): msgs/s", "cpm", "msgs_s")
  row("conn/msg: server CPU us/msg", "cpm", "cpu_us")
  row("conn/msg: fsyncs per message", "cpm", "fsyncs_per_msg")
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
  printf "pipelined / plain reuse against net-receiver --no-deliver: %s\n", (r == "" || r == 0) ? "-" : sprintf("%.2f", p / r)
}
