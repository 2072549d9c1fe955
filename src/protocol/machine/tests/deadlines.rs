//! The command timeout is one deadline per command line, counted from the end of
//! the previous line: bytes dripped into an unfinished line (slowloris) never move
//! it, whether the line is a command, an over-long line being skipped, or an AUTH
//! response. Only a complete line starts the next deadline.

use super::*;

/// A machine past the greeting at `t0`, with AUTH allowed in the clear.
fn machine(t0: Instant) -> Machine {
    let limits = Arc::new(limits());
    let keywords = ehlo_keywords(&limits);
    let options = ConnectionOptions {
        auth: true,
        allow_plaintext_auth: true,
        ..ConnectionOptions::default()
    };
    let mut machine = Machine::with_options(limits, keywords, options, t0);
    machine.answer(Reply::plain(220, "mx.test ESMTP"));
    let _greeting = output(&mut machine);
    machine
}

/// Feeds `line` one byte every `step` from `start` (keeping unconsumed bytes like
/// a socket reader), answering events like the defaults; stops before the first
/// byte that would come at or after the deadline. Returns when the last byte was
/// fed and how many were.
fn drip(machine: &mut Machine, line: &[u8], start: Instant, step: Duration) -> (Instant, usize) {
    let mut buffer = Vec::new();
    let mut now = start;
    let mut fed = 0;
    for byte in line {
        if machine
            .poll_timeout()
            .is_some_and(|deadline| now >= deadline)
        {
            break;
        }
        buffer.push(*byte);
        fed += 1;
        loop {
            let progress = machine.handle_input(&buffer, now);
            buffer.drain(..progress.consumed);
            let Some(event) = progress.event else { break };
            let reply = respond(event, &mut Vec::new());
            machine.answer(reply);
        }
        now += step;
    }
    (now - step, fed)
}

fn output(machine: &mut Machine) -> String {
    let mut out = Vec::new();
    machine.poll_transmit(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn a_dripped_line_never_moves_the_command_deadline() {
    let t0 = Instant::now();
    let timeout = limits().command_timeout;
    let second = Duration::from_secs(1);
    // What comes before the drip, and how fast the drip is: fast enough for the
    // over-long line to pass max_command_line (512) and be skipped.
    let cases: [(&str, &[u8], Duration); 3] = [
        ("command", b"NOOP ", second),
        ("over-long line", b"", Duration::from_millis(100)),
        ("AUTH response", b"AUTH LOGIN\r\n", second),
    ];
    for (what, opening, step) in cases {
        let mut machine = machine(t0);
        let (ehlo_at, _) = drip(&mut machine, b"EHLO client.test\r\n", t0, second);
        assert!(output(&mut machine).starts_with("250-"), "{what}");
        let (opened_at, _) = drip(&mut machine, opening, ehlo_at + second, second);
        // Only a complete line (EHLO, or AUTH LOGIN) starts a deadline.
        let deadline = if opening.ends_with(b"\n") {
            assert!(output(&mut machine).starts_with("334 "), "{what}");
            opened_at + timeout
        } else {
            ehlo_at + timeout
        };
        assert_eq!(machine.poll_timeout(), Some(deadline), "{what}");
        let endless = vec![b'y'; 10_000];
        let dripping = opened_at + step;
        let (_, fed) = drip(&mut machine, &endless, dripping, step);
        // A byte every `step` right up to the deadline.
        let room = (deadline - dripping).as_millis() / step.as_millis();
        assert_eq!(fed as u128, room, "{what}: bytes fed before the deadline");
        assert_eq!(machine.poll_timeout(), Some(deadline), "{what}: moved");
        if what == "over-long line" {
            assert!(matches!(machine.mode, Mode::SkipLine), "{:?}", machine.mode);
        }
        machine.handle_timeout(deadline - Duration::from_millis(1));
        assert!(!machine.is_closed(), "{what}: closed early");
        machine.handle_timeout(deadline);
        assert!(machine.is_closed(), "{what}");
        let text = output(&mut machine);
        assert_eq!(
            text, "421 4.4.2 mx.test Timeout waiting for client input\r\n",
            "{what}"
        );
    }
}
