//! BDAT (RFC 3030): chunks taken into the message, chunks refused and skipped,
//! and chunk sizes that can be neither taken nor skipped, which close the
//! session so that the declared octets are never read as commands.

use super::*;

#[test]
fn bdat_chunks() {
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n",
        b"BDAT 7\r\nline\r\n.",
        b"BDAT 6 LAST\r\n\r\nRSET",
        b"QUIT\r\n",
    ]);
    let t = drive(&input);
    assert_eq!(codes(&t), [220, 250, 250, 250, 250, 250, 221]);
    assert!(t.output.contains("250 2.0.0 7 octets received"));
    assert_eq!(t.messages, [b"line\r\n.\r\nRSET".to_vec()]);
}

#[test]
fn bdat_out_of_sequence_discards_its_chunk() {
    let input = script(&[HELLO, b"BDAT 13 LAST\r\nRCPT TO:<x>\r\n", b"NOOP\r\n"]);
    let t = drive(&input);
    assert_eq!(codes(&t), [220, 250, 503, 250]);
    let mut small = limits();
    small.max_message_size = 10;
    let input = script(&[
        HELLO,
        b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n",
        b"BDAT 8\r\n12345678BDAT 8 LAST\r\n12345678",
        b"NOOP\r\n",
    ]);
    let t = drive_with(small, &input);
    assert_eq!(codes(&t), [220, 250, 250, 250, 250, 552, 250]);
    assert!(t.messages.is_empty());
}

/// The hidden transaction a client declares as chunk data.
const HIDDEN: &[u8] = b"RCPT TO:<victim@x>\r\nDATA\r\nhidden message\r\n.\r\n";

const OPEN: &[u8] = b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\n";

#[test]
fn chunk_sizes_that_cannot_be_skipped_close_the_session() {
    let refused_then_closed = [220, 250, 250, 250, 552, 421];
    let sizes = [
        "9223372036854775808",                      // 2^63
        "18446744073709551615",                     // 2^64 - 1
        "18446744073709551616",                     // 2^64
        "1234567890123456789012345678901234567890", // 40 digits
        "26214401",                                 // max_message_size + 1
    ];
    for size in sizes {
        for last in ["", " LAST"] {
            let line = format!("BDAT {size}{last}\r\n");
            let input = script(&[HELLO, OPEN, line.as_bytes(), HIDDEN, b"QUIT\r\n"]);
            let t = drive(&input);
            assert_eq!(codes(&t), refused_then_closed, "{line}{}", t.output);
            assert!(
                t.output.contains("552 5.3.4 Message size exceeds"),
                "{line}"
            );
            assert!(
                t.output.ends_with(
                    "421 4.7.0 mx.test Cannot skip the BDAT chunk, closing connection\r\n"
                ),
                "{line}{}",
                t.output
            );
            assert!(t.closed, "{line}");
            assert!(t.messages.is_empty(), "{line}");
        }
    }
    // Out of sequence (no transaction) it is the same: never read as commands.
    let input = script(&[HELLO, b"BDAT 18446744073709551615 LAST\r\n", OPEN]);
    let t = drive(&input);
    assert_eq!(codes(&t), [220, 250, 552, 421]);
    assert!(t.closed);
}

#[test]
fn a_bdat_line_that_cannot_be_parsed_closes_the_session() {
    for line in [
        &b"BDAT 5 X\r\n"[..],
        b"BDAT 5 LAST X\r\n",
        b"BDAT x\r\n",
        b"BDAT +5\r\n",
        b"BDAT\r\n",
    ] {
        let input = script(&[HELLO, OPEN, line, HIDDEN]);
        let t = drive(&input);
        assert_eq!(
            codes(&t),
            [220, 250, 250, 250, 501, 421],
            "{}",
            String::from_utf8_lossy(line)
        );
        assert!(
            t.output
                .contains("501 5.5.4 Syntax error, expected BDAT <size> [LAST]")
        );
        assert!(t.closed && t.messages.is_empty());
    }
}

#[test]
fn chunk_sizes_that_can_be_taken() {
    // 0: an empty last chunk ends the message; the lines after it are commands.
    let t = drive(&script(&[HELLO, OPEN, b"BDAT 0 LAST\r\nNOOP\r\n"]));
    assert_eq!(codes(&t), [220, 250, 250, 250, 250, 250]);
    assert_eq!(t.messages, [Vec::<u8>::new()]);
    // Leading zeros are digits like any other (RFC 3030: 1*DIGIT).
    let t = drive(&script(&[
        HELLO,
        OPEN,
        b"BDAT 0000000000000000000000000000000000000005 LAST\r\nhelloNOOP\r\n",
    ]));
    assert_eq!(codes(&t), [220, 250, 250, 250, 250, 250]);
    assert_eq!(t.messages, [b"hello".to_vec()]);
    // Exactly max_message_size is taken; one more octet is not.
    let small = Limits {
        max_message_size: 5,
        ..limits()
    };
    let t = drive_with(
        small.clone(),
        &script(&[HELLO, OPEN, b"BDAT 5 LAST\r\nhello"]),
    );
    assert_eq!(t.messages, [b"hello".to_vec()]);
    let t = drive_with(
        small,
        &script(&[HELLO, OPEN, b"BDAT 6 LAST\r\nhello!NOOP\r\n"]),
    );
    assert_eq!(codes(&t), [220, 250, 250, 250, 552, 421]);
    assert!(t.messages.is_empty() && t.closed);
}

#[test]
fn a_refused_chunk_within_the_limit_is_skipped_exactly() {
    // The second chunk takes the message over the limit: its declared octets
    // (a hidden transaction) are skipped, the transaction ends with 552, and the
    // session goes on with the next real command.
    let small = Limits {
        max_message_size: 60,
        ..limits()
    };
    let hidden_len = HIDDEN.len();
    assert!(hidden_len <= 60);
    let second = format!("BDAT {hidden_len} LAST\r\n");
    let input = script(&[
        HELLO,
        OPEN,
        b"BDAT 20\r\n01234567890123456789",
        second.as_bytes(),
        HIDDEN,
        b"RCPT TO:<g@h.i>\r\nNOOP\r\n",
    ]);
    let t = drive_with(small, &input);
    assert_eq!(codes(&t), [220, 250, 250, 250, 250, 552, 503, 250]);
    assert!(t.messages.is_empty());
    assert!(!t.closed);
}
