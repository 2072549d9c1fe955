//! Unit tests of the session's reply mapping.

use super::*;
use nix::errno::Errno;

fn io(errno: Errno) -> DeliveryError {
    std::io::Error::from_raw_os_error(errno as i32).into()
}

#[test]
fn delivery_errors_map_to_transient_or_permanent_replies() {
    for (error, code, enhanced) in [
        (io(Errno::ENOSPC), 452, (4, 3, 1)),
        (io(Errno::EDQUOT), 452, (4, 3, 1)),
        (
            DeliveryError::InsufficientStorage("db".into()),
            452,
            (4, 3, 1),
        ),
        (io(Errno::EROFS), 451, (4, 3, 0)),
        (io(Errno::EACCES), 451, (4, 3, 0)),
        (io(Errno::EIO), 451, (4, 3, 0)),
        (DeliveryError::Temporary("later".into()), 451, (4, 3, 0)),
        (DeliveryError::Permanent("never".into()), 554, (5, 3, 0)),
    ] {
        let reply = delivery_error_reply(&error, &Mail::default());
        let got = reply.enhanced.map(|e| (e.0, e.1, e.2));
        assert_eq!((reply.code, got), (code, Some(enhanced)), "{error}");
        assert!(!reply.close, "{error}: the session goes on");
    }
}

/// A mail whose recipients are `(address, accepted, delivered)`.
fn outcomes(recipients: &[(&str, bool, Option<bool>)]) -> Mail {
    let mut mail = Mail::default();
    for &(url, accepted, delivered) in recipients {
        let mut rcpt = RcptTo::from(Address {
            accepted,
            url: url.to_owned(),
            ..Address::default()
        });
        rcpt.delivered = delivered;
        mail.rcptto.push(rcpt);
    }
    mail
}

#[test]
fn a_554_names_the_refused_recipients_and_counts_the_stored_ones() {
    let refused = DeliveryError::Permanent("LMTP: 550 5.1.1 internal detail".into());
    for (recipients, text) in [
        (
            outcomes(&[("gone@example.com", true, Some(false))]),
            "5.3.0 Not delivered to <gone@example.com>: refused for good by the destination",
        ),
        (
            outcomes(&[
                ("a@example.com", true, Some(true)),
                ("never@example.com", false, None),
                ("gone@example.com", true, Some(false)),
            ]),
            "5.3.0 Not delivered to <gone@example.com>: refused for good by the destination; \
             delivered to 1 other recipient, who gets a second copy if it is sent again",
        ),
        (
            outcomes(&[
                ("1@example.com", true, Some(false)),
                ("2@example.com", true, Some(true)),
                ("3@example.com", true, None),
                ("4@example.com", true, Some(false)),
                ("5@example.com", true, Some(true)),
                ("6@example.com", true, Some(false)),
            ]),
            "5.3.0 Not delivered to <1@example.com>, <3@example.com>, <4@example.com> and 1 more: \
             refused for good by the destination; delivered to 2 other recipients, who get a \
             second copy if it is sent again",
        ),
        // A hook's address with a line break cannot split the reply; a long one is cut.
        (
            outcomes(&[("a\r\nb@example.com", true, Some(false))]),
            "5.3.0 Not delivered to <a??b@example.com>: refused for good by the destination",
        ),
        (
            outcomes(&[(&"x".repeat(300), true, Some(false))]),
            &format!(
                "5.3.0 Not delivered to <{}...>: refused for good by the destination",
                "x".repeat(100)
            ),
        ),
        (
            outcomes(&[]),
            "5.3.0 Not delivered: refused for good by the destination",
        ),
    ] {
        let reply = delivery_error_reply(&refused, &recipients);
        assert_eq!(reply.code, 554);
        assert_eq!(reply.to_string(), format!("554 {text}"));
        assert!(!reply.to_string().contains("internal detail"), "{reply}");
    }
}

#[test]
fn the_log_of_a_failure_has_every_other_recipients_reason() {
    let first = DeliveryError::Permanent("LMTP: 550 5.1.1 no such user".into());
    let mut mail = outcomes(&[
        ("a@example.com", true, Some(true)),
        ("gone@example.com", true, Some(false)),
        ("full@example.com", true, Some(false)),
        ("never@example.com", false, None),
    ]);
    mail.rcptto[1].delivery_error = Some(first.to_string());
    mail.rcptto[2].delivery_error =
        Some("permanent delivery failure: LMTP: 552 5.2.2 quota".into());
    assert_eq!(
        other_failures(&mail, &first).as_deref(),
        Some("<full@example.com>: permanent delivery failure: LMTP: 552 5.2.2 quota")
    );
    mail.rcptto[2].delivery_error = Some(first.to_string());
    assert_eq!(
        other_failures(&mail, &first),
        None,
        "the same reason is said once"
    );
}
