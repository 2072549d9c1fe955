//! Unit tests of the per-recipient outcomes: the default `deliver_each`, the
//! one reply result, and what is written into the mail structure.

use super::*;
use crate::delivery::{Deliver, DeliverFuture};
use crate::mail::Address;
use std::sync::atomic::{AtomicUsize, Ordering};

fn rcpt(url: &str, accepted: bool) -> RcptTo {
    RcptTo::from(Address {
        url: url.to_owned(),
        accepted,
        ..Address::default()
    })
}

/// `a` and `c` accepted, `b` refused at RCPT.
fn mail() -> Mail {
    Mail {
        id: "ID".into(),
        rcptto: vec![rcpt("a@x", true), rcpt("b@x", false), rcpt("c@x", true)],
        ..Mail::default()
    }
}

fn temporary() -> DeliveryError {
    DeliveryError::Temporary("later".into())
}

fn permanent() -> DeliveryError {
    DeliveryError::Permanent("never".into())
}

/// A whole-message target: counts its calls, answers `answer`.
struct Whole {
    calls: AtomicUsize,
    answer: fn() -> Result<(), DeliveryError>,
}

impl Deliver for Whole {
    fn deliver<'a>(&'a self, _mail: &'a Mail) -> DeliverFuture<'a> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move { (self.answer)() })
    }
}

fn whole(answer: fn() -> Result<(), DeliveryError>) -> Whole {
    Whole {
        calls: AtomicUsize::new(0),
        answer,
    }
}

#[tokio::test]
async fn the_default_delivers_once_for_every_accepted_recipient() {
    let target = whole(|| Ok(()));
    let dyn_target: &dyn Deliver = &target;
    let report = dyn_target.deliver_each(&mail()).await;
    assert_eq!(target.calls.load(Ordering::Relaxed), 1);
    let got: Vec<(usize, &str, bool)> = report
        .outcomes
        .iter()
        .map(|o| (o.index, o.recipient.as_str(), o.result.is_ok()))
        .collect();
    assert_eq!(got, [(0, "a@x", true), (2, "c@x", true)]);

    let target = whole(|| Err(DeliveryError::from(std::io::Error::from_raw_os_error(28))));
    let report = target.deliver_each(&mail()).await;
    assert_eq!(report.outcomes.len(), 2);
    for outcome in &report.outcomes {
        let error = outcome.result.as_ref().unwrap_err();
        assert!(error.is_insufficient_storage(), "ENOSPC survives the copy");
    }
}

#[tokio::test]
async fn the_default_stores_nothing_without_an_accepted_recipient() {
    let target = whole(|| Ok(()));
    let mut m = mail();
    m.rcptto.retain(|r| !r.accepted);
    let report = target.deliver_each(&m).await;
    assert_eq!(target.calls.load(Ordering::Relaxed), 0);
    assert!(report.outcomes.is_empty());
    assert!(report.result().unwrap_err().is_permanent());
}

type Outcomes = Vec<Result<(), DeliveryError>>;

fn report(results: Outcomes) -> DeliveryReport {
    let m = Mail {
        rcptto: (0..results.len())
            .map(|i| rcpt(&format!("{i}@x"), true))
            .collect(),
        ..Mail::default()
    };
    let mut report = DeliveryReport::default();
    for ((index, to), result) in accepted_recipients(&m).zip(results) {
        report.push(index, to, result);
    }
    report
}

#[test]
fn one_result_for_the_reply() {
    let full = || DeliveryError::InsufficientStorage("quota".into());
    // (outcomes, expected: None = Ok, Some(permanent?))
    let cases: Vec<(Outcomes, Option<bool>)> = vec![
        (vec![Ok(()), Ok(())], None),
        (vec![Ok(()), Err(temporary())], Some(false)),
        (vec![Err(permanent()), Err(temporary())], Some(false)),
        (vec![Err(permanent()), Err(full())], Some(false)),
        (vec![Err(permanent()), Err(permanent())], Some(true)),
        (vec![Ok(()), Err(permanent())], Some(true)),
        (vec![], Some(true)),
    ];
    for (results, expected) in cases {
        let shown = format!("{results:?}");
        let got = report(results).result().err().map(|e| e.is_permanent());
        assert_eq!(got, expected, "{shown}");
    }
    // The first transient error is the one answered (452 for a full store).
    let got = report(vec![Err(permanent()), Err(full()), Err(temporary())]).result();
    assert!(got.unwrap_err().is_insufficient_storage());
}

#[test]
fn record_writes_each_recipient_and_the_whole() {
    let mut m = mail();
    let mut r = DeliveryReport::default();
    r.push(0, &m.rcptto[0], Ok(()));
    r.push(2, &m.rcptto[2], Err(permanent()));
    let result = r.record(&mut m);
    assert!(result.unwrap_err().is_permanent());
    let got: Vec<(Option<bool>, Option<&str>)> = m
        .rcptto
        .iter()
        .map(|r| (r.delivered, r.delivery_error.as_deref()))
        .collect();
    let never = Some("permanent delivery failure: never");
    assert_eq!(
        got,
        [(Some(true), None), (None, None), (Some(false), never)]
    );
    assert_eq!(
        (m.delivered, m.delivery_error.as_deref()),
        (Some(false), never)
    );

    let mut m = mail();
    let mut r = DeliveryReport::default();
    r.push(0, &m.rcptto[0], Ok(()));
    r.push(2, &m.rcptto[2], Ok(()));
    assert!(r.record(&mut m).is_ok());
    assert_eq!((m.delivered, m.delivery_error), (Some(true), None));
}

#[test]
fn a_recipient_left_out_is_transient_and_a_stray_outcome_is_dropped() {
    let mut m = mail();
    let mut r = DeliveryReport::default();
    r.push(0, &m.rcptto[0], Ok(()));
    // Position 1 was refused at RCPT, 9 does not exist: both ignored.
    r.push(1, &m.rcptto[1], Ok(()));
    r.push(9, &m.rcptto[1], Ok(()));
    let error = r.record(&mut m).unwrap_err();
    assert!(!error.is_permanent(), "{error}");
    assert_eq!(m.rcptto[1].delivered, None);
    assert_eq!(m.rcptto[2].delivered, Some(false));
    let why = m.rcptto[2].delivery_error.as_deref().unwrap_or_default();
    assert!(why.contains("reported nothing for c@x"), "{why}");
}

#[test]
fn a_failure_wins_over_a_second_outcome_for_the_same_recipient() {
    let mut m = mail();
    let mut r = DeliveryReport::default();
    r.push(0, &m.rcptto[0], Err(temporary()));
    r.push(0, &m.rcptto[0], Ok(()));
    r.push(2, &m.rcptto[2], Ok(()));
    assert!(r.record(&mut m).is_err());
    assert_eq!(m.rcptto[0].delivered, Some(false));
}

#[test]
fn unrecorded_outcomes_come_from_the_hook_result() {
    let mut m = mail();
    m.rcptto[0].delivered = Some(true);
    record_unrecorded(&mut m, &Err(temporary()));
    let got: Vec<Option<bool>> = m.rcptto.iter().map(|r| r.delivered).collect();
    assert_eq!(got, [Some(true), None, Some(false)]);
    assert_eq!(m.delivered, Some(false));
    assert_eq!(
        m.delivery_error.as_deref(),
        Some("temporary delivery failure: later")
    );

    let mut m = mail();
    record_unrecorded(&mut m, &Ok(()));
    assert_eq!(m.delivered, Some(true));
    assert!(
        m.rcptto
            .iter()
            .filter(|r| r.accepted)
            .all(|r| r.delivered == Some(true))
    );
}
