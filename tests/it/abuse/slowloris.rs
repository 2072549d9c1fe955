//! Slowloris: 500 clients, each after its EHLO dripping a command line that never
//! ends — one byte every 1–2 s (20 of them one every 100 ms) — against a
//! `command_timeout` of 3 s. The timeout is one deadline per command line, so the
//! drip (every pause shorter than the timeout) must not keep anyone in: every
//! client gets `421 4.4.2 … Timeout waiting for client input` and is closed
//! between [`EARLIEST`] and [`TIMEOUT`] + [`CUT_SLACK`] after its last complete
//! line. Meanwhile fresh clients keep getting their mail through, each whole
//! transaction within [`PROBE_LIMIT`], and the server's memory stays under
//! [`SLOWLORIS_MEMORY_MIB`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt as _, BufReader};
use tokio::net::TcpStream;

use super::{
    MIB, Memory, closed_within, exclusive, fresh_transaction, ms, percentile, read_reply, runtime,
    start,
};

/// Slow clients.
const CLIENTS: usize = 500;
/// Of them, how many drip fast (every 100 ms).
const FAST: usize = 20;
/// The server's `command_timeout`.
const TIMEOUT: Duration = Duration::from_secs(3);
/// The earliest a 421 may come after our last complete line was answered (the
/// server starts its deadline a little before we see that answer).
const EARLIEST: Duration = Duration::from_millis(2500);
/// How late after the timeout a client may be cut off.
const CUT_SLACK: Duration = Duration::from_secs(4);
/// Longest whole transaction of a fresh client during the drip.
const PROBE_LIMIT: Duration = Duration::from_secs(2);
/// Most the server's resident memory may rise (500 sessions take ~15 MiB).
const SLOWLORIS_MEMORY_MIB: u64 = 64;
/// Longest wait for a connect, greeting or EHLO reply.
const REPLY_LIMIT: Duration = Duration::from_secs(10);

const TIMEOUT_REPLY: &str = "4.4.2 mx.test Timeout waiting for client input";

/// How a slow client ended: cut off this long after its EHLO was answered, having
/// dripped this many bytes.
struct Cut {
    after: Duration,
    dripped: usize,
}

/// The pause before byte `n` of client `index`: 100 ms for the fast ones, else
/// 1000–1999 ms, spread deterministically.
fn pause(index: usize, n: usize) -> Duration {
    if index < FAST {
        return Duration::from_millis(100);
    }
    let spread = (index.wrapping_mul(2_654_435_761) ^ n.wrapping_mul(40_503)) % 1000;
    Duration::from_millis(1000 + spread as u64)
}

async fn slow_client(addr: SocketAddr, index: usize) -> Result<Cut, String> {
    let within = |what: &'static str| move |_| format!("no {what} within {REPLY_LIMIT:?}");
    let stream = tokio::time::timeout(REPLY_LIMIT, TcpStream::connect(addr))
        .await
        .map_err(within("connect"))?
        .map_err(|e| format!("connect: {e}"))?;
    let (reader, mut writer) = stream.into_split();
    let mut reader = BufReader::new(reader);
    let greeting = tokio::time::timeout(REPLY_LIMIT, read_reply(&mut reader))
        .await
        .map_err(within("greeting"))?
        .map_err(|e| e.to_string())?;
    if greeting.code != 220 {
        return Err(format!("greeting {greeting:?}"));
    }
    writer
        .write_all(b"EHLO slow.test\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let ehlo = tokio::time::timeout(REPLY_LIMIT, read_reply(&mut reader))
        .await
        .map_err(within("EHLO reply"))?
        .map_err(|e| e.to_string())?;
    if ehlo.code != 250 {
        return Err(format!("EHLO {ehlo:?}"));
    }
    let line_done = Instant::now();
    let give_up = TIMEOUT + CUT_SLACK + Duration::from_secs(5);
    let (after, dripped) = {
        // One read for the whole drip, so no partial reply is ever dropped.
        let reply = tokio::time::timeout(give_up, read_reply(&mut reader));
        tokio::pin!(reply);
        let mut drip = b"NOOP ".iter().chain(std::iter::repeat(&b'x'));
        let mut writing = true;
        let mut dripped = 0;
        loop {
            tokio::select! {
                read = &mut reply => {
                    let after = line_done.elapsed();
                    let reply = read
                        .map_err(|_| format!("not cut off {give_up:?} after EHLO"))?
                        .map_err(|e| format!("waiting for the 421: {e}"))?;
                    if (reply.code, reply.text()) != (421, TIMEOUT_REPLY) {
                        return Err(format!("unexpected reply {reply:?}"));
                    }
                    break (after, dripped);
                }
                () = tokio::time::sleep(pause(index, dripped)), if writing => {
                    // Once the server has closed, writing fails: then just wait.
                    let byte = drip.next().copied().unwrap_or(b'x');
                    writing = writer.write_all(&[byte]).await.is_ok();
                    dripped += usize::from(writing);
                }
            }
        }
    };
    if !closed_within(&mut reader, REPLY_LIMIT).await {
        return Err("not closed after the 421".into());
    }
    Ok(Cut { after, dripped })
}

#[test]
fn slowloris_clients_are_cut_off_at_the_command_timeout() {
    let _serial = exclusive();
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "quiet = true\ncommand_timeout = {}\nmax_connections_per_ip = {}\n",
        TIMEOUT.as_secs(),
        2 * CLIENTS
    );
    let binary = start(dir.path(), &toml);
    let pid = binary.pid();
    let addr = binary.addr();
    fresh_transaction(addr, "warm-up");
    let baseline = Memory::of(pid);

    let dripping = Arc::new(AtomicBool::new(true));
    let prober = {
        let dripping = Arc::clone(&dripping);
        std::thread::spawn(move || {
            let mut times = Vec::new();
            while dripping.load(Ordering::SeqCst) && times.len() < 200 {
                times.push(fresh_transaction(addr, "during the drip"));
                std::thread::sleep(Duration::from_millis(200));
            }
            times
        })
    };
    let started = Instant::now();
    let results: Vec<Result<Cut, String>> = runtime().block_on(async {
        let tasks: Vec<_> = (0..CLIENTS)
            .map(|index| tokio::spawn(slow_client(addr, index)))
            .collect();
        let mut results = Vec::with_capacity(CLIENTS);
        for task in tasks {
            results.push(task.await.unwrap_or_else(|e| Err(format!("task: {e}"))));
        }
        results
    });
    let all_cut_in = started.elapsed();
    dripping.store(false, Ordering::SeqCst);
    let mut probes = prober.join().expect("prober");
    let memory = Memory::of(pid);

    let errors: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors.is_empty(),
        "{} slow clients went wrong, e.g. {:?}",
        errors.len(),
        &errors[..errors.len().min(5)]
    );
    let cuts: Vec<Cut> = results.into_iter().flatten().collect();
    let mut afters: Vec<Duration> = cuts.iter().map(|c| c.after).collect();
    for (index, cut) in cuts.iter().enumerate() {
        assert!(
            cut.after >= EARLIEST && cut.after <= TIMEOUT + CUT_SLACK,
            "client {index} cut off {:?} after its EHLO",
            cut.after
        );
        let least = if index < FAST { 20 } else { 1 };
        assert!(
            cut.dripped >= least,
            "client {index} dripped {}",
            cut.dripped
        );
    }
    let dripped: usize = cuts.iter().map(|c| c.dripped).sum();
    assert!(
        probes.len() >= 5,
        "only {} fresh transactions",
        probes.len()
    );
    let probe_max = percentile(&mut probes, 100);
    assert!(
        probe_max < PROBE_LIMIT,
        "a fresh transaction took {probe_max:?}"
    );
    assert!(
        memory.growth_since(baseline) < SLOWLORIS_MEMORY_MIB * MIB,
        "memory: {memory:?} from {baseline:?}"
    );
    eprintln!(
        "slowloris: {CLIENTS} clients ({FAST} fast), {dripped} bytes dripped in all, cut off \
         after their EHLO: min {} ms p50 {} ms max {} ms; all done in {} ms; {} fresh \
         transactions meanwhile, p50 {} ms max {} ms; server RSS {} KiB before, VmHWM {} KiB",
        ms(percentile(&mut afters, 0)),
        ms(percentile(&mut afters, 50)),
        ms(percentile(&mut afters, 100)),
        ms(all_cut_in),
        probes.len(),
        ms(percentile(&mut probes, 50)),
        ms(probe_max),
        baseline.rss,
        memory.hwm,
    );
}
