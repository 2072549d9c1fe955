//! Issue 19 item 7, the "too many connections" log limiter of the real binary:
//! a burst of refusals gets one line at once and the count of the rest a second
//! later, although no further refusal comes to carry it.

use crate::support::auth::start_binary;
use crate::support::common::Client;

#[test]
fn issue19_a_burst_of_refusals_is_counted_without_a_further_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut binary = start_binary(
        dir.path(),
        "max_connections = 1\n",
        "info",
        &["--listen".as_ref(), "127.0.0.1:0".as_ref()],
        1,
    );
    let port = binary.port("smtp");
    let holder = Client::connect(port);
    let burst = 5;
    for _ in 0..burst {
        let refused = Client::connect_any(port);
        assert_eq!(refused.greeting.code, 421, "{:?}", refused.greeting);
    }
    // The first refusal speaks at once; those within its second are held back
    // and must be reported by the timer (a second boundary inside the burst
    // may let one more speak: it carries the count held back before it).
    let first = binary.wait_for_lines("refused: too many connections", 1);
    let reports = binary.wait_for_lines("more connections refused", 1);
    drop(holder);
    let (_, log) = binary.stop();
    let spoken: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection from ") && l.contains(" refused: too many"))
        .collect();
    let counted_in_lines: u64 = spoken
        .iter()
        .map(|l| count_before(l, " more refused"))
        .sum();
    let by_timer: u64 = log
        .lines()
        .filter(|l| l.contains("more connections refused"))
        .map(|l| count_before(l, " more connections refused"))
        .sum();
    assert!(!first.is_empty() && !reports.is_empty());
    assert_eq!(
        spoken.len() as u64 + counted_in_lines + by_timer,
        burst,
        "{log}"
    );
}

/// The number just before `marker` in `line`.
fn count_before(line: &str, marker: &str) -> u64 {
    let head = line.split(marker).next().unwrap_or("");
    let digits = head
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap_or("");
    digits
        .parse()
        .unwrap_or_else(|_| panic!("no count in {line:?}"))
}
