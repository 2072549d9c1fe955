//! `max_header_size`: a header section (up to the first empty line) over the
//! limit gets 552 5.3.4 after the end of data and nothing is delivered, by DATA
//! and by BDAT; a big body under a small header section is fine; 0 turns it off.

use super::*;

fn with_header_limit(limit: usize) -> Limits {
    Limits {
        max_header_size: limit,
        ..limits()
    }
}

fn data_message(message: &[u8]) -> Vec<u8> {
    script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n",
        message,
        b".\r\nNOOP\r\n",
    ])
}

#[test]
fn an_oversized_header_section_is_refused_after_the_end() {
    let headers = b"X-H: v\r\n".repeat(20); // 160 octets
    let message = [headers.as_slice(), b"\r\nbody\r\n"].concat();
    let t = drive_with(with_header_limit(100), &data_message(&message));
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 552, 250]);
    assert!(
        t.output
            .contains("552 5.3.4 Message header section exceeds the maximum of 100 octets"),
        "{}",
        t.output
    );
    assert!(t.messages.is_empty());

    // Without an empty line the whole message is header section.
    let t = drive_with(with_header_limit(100), &data_message(&headers));
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 552, 250]);

    // 0: no limit.
    let t = drive_with(with_header_limit(0), &data_message(&message));
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 250, 250]);
    assert_eq!(t.messages, [message]);
}

#[test]
fn a_big_body_under_a_small_header_section_is_fine() {
    let message = [
        b"Subject: s\r\n\r\n".as_slice(),
        &b"body line\r\n".repeat(50),
    ]
    .concat();
    let t = drive_with(with_header_limit(100), &data_message(&message));
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 250, 250]);
    assert_eq!(t.messages, [message]);
    // No header section at all.
    let message = [b"\r\n".as_slice(), &b"x\r\n".repeat(100)].concat();
    let t = drive_with(with_header_limit(10), &data_message(&message));
    assert_eq!(codes(&t), [220, 250, 250, 250, 354, 250, 250]);
}

#[test]
fn bdat_messages_are_held_to_the_same_limit() {
    let headers = b"X-H: v\r\n".repeat(20);
    let mut input = script(&[HELLO, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n"]);
    input.extend_from_slice(format!("BDAT {} LAST\r\n", headers.len() + 2).as_bytes());
    input.extend_from_slice(&headers);
    input.extend_from_slice(b"\r\nNOOP\r\n");
    let t = drive_with(with_header_limit(100), &input);
    assert_eq!(codes(&t), [220, 250, 250, 250, 552, 250]);
    assert!(t.messages.is_empty());
}
