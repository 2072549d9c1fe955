//! Mail ids in the seed's shape, unique on one host.
//!
//! An id is three upper-case base-36 parts joined by `-`, e.g.
//! `OELGQA-A58QI3-AA`:
//! 1. Unix seconds, unpadded (6 characters until the year 2038+);
//! 2. 6 characters, zero-padded: `pid * 512 + counter`, where the counter
//!    (0..512) counts ids within one millisecond in this process. The seed
//!    used a random number here; pid and counter make ids unique across
//!    processes and connections instead;
//! 3. the milliseconds 0–999, zero-padded to 2.
//!
//! A process-wide atomic sequence `millis * 512 + counter` only ever grows:
//! when more than 512 ids are asked for within one millisecond (or the clock
//! goes back) ids move on to the next millisecond, so they may run slightly
//! ahead of the clock but never repeat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Ids per process per millisecond.
const PER_MILLI: u64 = 512;
/// Process ids are taken modulo this (Linux pids are below 2^22).
const PID_SPACE: u64 = 1 << 22;
/// 36^6: part 2 must stay below this to fit 6 base-36 digits.
const PART2_LIMIT: u64 = 36 * 36 * 36 * 36 * 36 * 36;
const _: () = assert!(PID_SPACE * PER_MILLI <= PART2_LIMIT);

/// The last sequence value handed out: `millis * PER_MILLI + counter`.
static LAST: AtomicU64 = AtomicU64::new(0);

/// A new id for a mail received now.
pub fn new_mail_id() -> String {
    let millis = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    mail_id_at(millis)
}

/// A new id for a mail received at `unix_millis` (milliseconds since the Unix
/// epoch). Unique within the process even for equal or decreasing inputs: the
/// id's time is never earlier than that of an id handed out before.
pub fn mail_id_at(unix_millis: u64) -> String {
    let floor = unix_millis.saturating_mul(PER_MILLI);
    let mut seq = floor;
    // fetch_update retries on contention; the closure never returns None.
    let _ = LAST.fetch_update(Ordering::AcqRel, Ordering::Acquire, |last| {
        seq = last.saturating_add(1).max(floor);
        Some(seq)
    });
    let pid = u64::from(process_id()) % PID_SPACE;
    format_id(seq / PER_MILLI, pid * PER_MILLI + seq % PER_MILLI)
}

/// This process's id, asked of the kernel once (it is a system call, and ids are
/// made for every connection). We never fork; `--daemon` re-executes.
pub(crate) fn process_id() -> u32 {
    static PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    *PID.get_or_init(std::process::id)
}

/// Formats an id from its time in milliseconds and its part-2 number, into
/// one string sized up front (an id is made for every connection).
fn format_id(millis: u64, unique: u64) -> String {
    let mut id = String::with_capacity(13 + 1 + 6 + 1 + 2);
    push_base36(&mut id, millis / 1000, 1);
    id.push('-');
    push_base36(&mut id, unique % PART2_LIMIT, 6);
    id.push('-');
    push_base36(&mut id, millis % 1000, 2);
    id
}

/// Appends `n` in upper-case base 36, zero-padded to at least `width` digits.
fn push_base36(out: &mut String, mut n: u64, width: usize) {
    const DIGITS: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    // u64::MAX has 13 base-36 digits.
    let mut digits = [b'0'; 13];
    let mut start = digits.len();
    loop {
        start -= 1;
        // n % 36 < 36, so the index is always in range.
        digits[start] = DIGITS[(n % 36) as usize];
        n /= 36;
        if n == 0 {
            break;
        }
    }
    for _ in digits.len()..width {
        out.push('0');
    }
    let start = start.min(digits.len().saturating_sub(width));
    for &digit in &digits[start..] {
        out.push(char::from(digit));
    }
}

/// `n` in upper-case base 36, zero-padded to at least `width` digits.
#[cfg(test)]
fn base36(n: u64, width: usize) -> String {
    let mut out = String::new();
    push_base36(&mut out, n, width);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn decode(part: &str) -> u64 {
        u64::from_str_radix(part, 36).unwrap()
    }

    /// (seconds, part 2, millis) of a well-formed id.
    fn parse(id: &str) -> (u64, u64, u64) {
        let parts: Vec<&str> = id.split('-').collect();
        assert_eq!(parts.len(), 3, "{id}");
        for p in &parts {
            assert!(
                p.bytes()
                    .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase()),
                "{id}"
            );
        }
        assert!(!parts[0].is_empty() && !parts[0].starts_with('0'), "{id}");
        assert_eq!(parts[1].len(), 6, "{id}");
        assert_eq!(parts[2].len(), 2, "{id}");
        (decode(parts[0]), decode(parts[1]), decode(parts[2]))
    }

    #[test]
    fn seed_example_parts() {
        // OELGQA = 1475704306, AA = 370.
        let id = format_id(1_475_704_306_370, decode("A58QI3"));
        assert_eq!(id, "OELGQA-A58QI3-AA");
        for (n, width, want) in [
            (0, 1, "0"),
            (0, 2, "00"),
            (35, 2, "0Z"),
            (999, 2, "RR"),
            (36, 1, "10"),
            (PART2_LIMIT - 1, 6, "ZZZZZZ"),
            (u64::MAX, 1, "3W5E11264SGSF"),
            (35, 15, "00000000000000Z"),
        ] {
            assert_eq!(base36(n, width), want);
        }
    }

    #[test]
    fn shape_and_time() {
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let id = new_mail_id();
        let after = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let (secs, part2, millis) = parse(&id);
        assert_eq!(id.split('-').next().unwrap().len(), 6, "{id}");
        let t = secs * 1000 + millis;
        // Tests running in parallel ask for far more than 512 ids per
        // millisecond, which pushes the sequence ahead of the clock.
        assert!(t >= before && t <= after + 5000, "{id}: {before}..{after}");
        assert!(millis < 1000);
        assert_eq!(part2 / PER_MILLI, u64::from(std::process::id()) % PID_SPACE);
    }

    #[test]
    fn hundred_thousand_distinct() {
        let ids: HashSet<String> = (0..100_000).map(|_| new_mail_id()).collect();
        assert_eq!(ids.len(), 100_000);
    }

    #[test]
    fn same_or_earlier_millisecond_never_repeats() {
        let t = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let ids: Vec<String> = (0..2000).map(|i| mail_id_at(t - (i % 3))).collect();
        let set: HashSet<&String> = ids.iter().collect();
        assert_eq!(set.len(), ids.len());
        // 2000 ids within ~1 ms overflow the 512 counter into later milliseconds.
        let times: Vec<u64> = ids
            .iter()
            .map(|id| {
                let (s, _, ms) = parse(id);
                s * 1000 + ms
            })
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times[0] >= t && *times.last().unwrap() >= t + 3);
    }

    #[test]
    fn threads_distinct() {
        let handles: Vec<_> = (0..8)
            .map(|_| std::thread::spawn(|| (0..20_000).map(|_| new_mail_id()).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().unwrap() {
                assert!(all.insert(id));
            }
        }
        assert_eq!(all.len(), 160_000);
    }
}
