//! RCPTs past `max_recipients` (RFC 5321 §4.5.3.1.10): answered 452 4.5.3
//! without counting as errors up to [`RECIPIENT_OVERSHOOT_LIMIT`] per
//! transaction, so the message still goes to the accepted ones.

use super::*;

fn rcpts(n: usize) -> Vec<u8> {
    (0..n)
        .flat_map(|i| format!("RCPT TO:<r{i}@e.f>\r\n").into_bytes())
        .collect()
}

#[test]
fn one_hundred_fifty_recipients_deliver_to_the_first_hundred() {
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\n",
        &rcpts(150),
        b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n",
    ]);
    // Whole and split at a sample of points (every split of 3 kB is slow in debug).
    let t = drive_chunks(limits(), &[&input]);
    for split in (1..input.len()).step_by(97) {
        let (a, b) = input.split_at(split);
        assert_eq!(drive_chunks(limits(), &[a, b]), t, "split at {split}");
    }
    let want: Vec<u16> = [
        &[220, 250, 250][..],
        &[250; 100],
        &[452; 50],
        &[354, 250, 221],
    ]
    .concat();
    assert_eq!(codes(&t), want);
    assert_eq!(
        t.output.matches("452 4.5.3 Too many recipients").count(),
        50
    );
    assert_eq!(t.messages, [b"Subject: x\r\n\r\nbody\r\n".to_vec()]);
    assert!(t.closed);
}

#[test]
fn an_overshoot_beyond_the_limit_counts_as_errors() {
    let few = Limits {
        max_recipients: 1,
        max_errors: 3,
        ..limits()
    };
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\n",
        &rcpts(1 + RECIPIENT_OVERSHOOT_LIMIT + 3),
        b"NOOP\r\n",
    ]);
    let t = drive_chunks(few, &[&input]);
    let want: Vec<u16> = [
        &[220, 250, 250, 250][..],
        &vec![452; RECIPIENT_OVERSHOOT_LIMIT],
        &[452, 452, 452, 421],
    ]
    .concat();
    assert_eq!(codes(&t), want);
    assert!(t.closed);
}

#[test]
fn the_overshoot_is_counted_per_transaction() {
    let few = Limits {
        max_recipients: 1,
        max_errors: 2,
        ..limits()
    };
    let transaction = script(&[
        b"MAIL FROM:<a@b.c>\r\n",
        &rcpts(1 + RECIPIENT_OVERSHOOT_LIMIT),
        b"RSET\r\n",
    ]);
    let input = script(&[HELLO, &transaction, &transaction, b"NOOP\r\n"]);
    let t = drive_chunks(few, &[&input]);
    let one: Vec<u16> = [
        &[250, 250][..],
        &vec![452; RECIPIENT_OVERSHOOT_LIMIT],
        &[250],
    ]
    .concat();
    let want: Vec<u16> = [&[220, 250][..], &one, &one, &[250]].concat();
    assert_eq!(codes(&t), want);
    assert!(!t.closed);
}
