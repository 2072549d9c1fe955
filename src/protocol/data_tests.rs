//! Tests of `data`.
use super::*;
use BareLineEnding::{Normalize, Reject};
use DataOutcome as O;
use proptest::prelude::*;

const CMDS: &[u8] = b"MAIL FROM:<x@y.z>\r\nRCPT TO:<a@b.c>\r\nDATA\r\n";

/// The smuggling sequences, with what Normalize mode makes of each and
/// whether Reject mode sees a bare ending in it.
const SMUGGLE: &[(&[u8], &[u8], bool)] = &[
    (b"\n.\n", b"\r\n\r\n", true),
    (b"\n.\r\n", b"\r\n\r\n", true),
    (b"\r.\n", b"\r\n\r\n", true),
    (b"\r.\r\n", b"\r\n\r\n", true),
    (b"\n.\r", b"\r\n\r\n", true),
    (b"\r.\r", b"\r\n\r\n", true),
    (b"\r\n.\n", b"\r\n\r\n", true),
    (b"\r\n.\r", b"\r\n\r\n", true),
    (b"\r\n\0.\r\n", b"\r\n\0.\r\n", false),
    (b"\r\n.\0\r\n", b"\r\n\0\r\n", false),
    (b"\r\n.\r\r\n", b"\r\n\r\n\r\n", true),
];

fn lim(mode: BareLineEnding, max_message_size: u64, max_line_length: usize) -> DataLimits {
    DataLimits {
        max_message_size,
        max_line_length,
        bare_line_ending: mode,
    }
}

/// Message, outcome, total consumed, finished, size.
type Run = (Vec<u8>, DataOutcome, usize, bool, u64);

/// Feeds `chunks` the way a socket reader would: unconsumed bytes are
/// kept and put in front of the next chunk; stops once finished.
fn feed<'a>(limits: DataLimits, chunks: impl IntoIterator<Item = &'a [u8]>) -> Run {
    let mut dec = DataDecoder::new(limits);
    let (mut out, mut pending, mut consumed, mut finished) = (vec![], vec![], 0, false);
    for chunk in chunks {
        pending.extend_from_slice(chunk);
        let d = dec.decode(&pending, &mut out);
        assert!(d.consumed <= pending.len());
        assert!(
            d.finished || d.consumed == pending.len(),
            "unfinished takes all"
        );
        consumed += d.consumed;
        pending.drain(..d.consumed);
        finished = d.finished;
        if finished {
            // A finished decoder takes nothing more.
            let again = dec.decode(b".\r\nabc", &mut out);
            assert_eq!((again.consumed, again.finished), (0, true));
            break;
        }
    }
    assert!(
        out.len() as u64 <= limits.max_message_size,
        "out past limit"
    );
    (out, dec.outcome(), consumed, finished, dec.size())
}

struct Case {
    name: String,
    limits: DataLimits,
    input: Vec<u8>,
    /// Expected message; `None` for refused ones (their output is partial).
    message: Option<Vec<u8>>,
    outcome: DataOutcome,
    consumed: usize,
    finished: bool,
}

impl Case {
    fn norm(mut self) -> Self {
        self.limits.bare_line_ending = Normalize;
        self
    }
    fn open(mut self) -> Self {
        self.finished = false;
        self
    }
    fn max(mut self, size: u64, line: usize) -> Self {
        (self.limits.max_message_size, self.limits.max_line_length) = (size, line);
        self
    }
}

fn ok(name: &str, input: &[u8], message: &[u8], consumed: usize) -> Case {
    let (input, message) = (input.to_vec(), Some(message.to_vec()));
    let limits = lim(Reject, 1 << 20, 1000);
    Case {
        name: name.into(),
        limits,
        input,
        message,
        outcome: O::Ok,
        consumed,
        finished: true,
    }
}

fn bad(name: &str, input: &[u8], outcome: DataOutcome) -> Case {
    Case {
        message: None,
        outcome,
        ..ok(name, input, b"", input.len())
    }
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

fn table() -> Vec<Case> {
    let (x, y, e) = (&[b'x'; 998][..], &[b'y'; 999][..], &b".\r\n"[..]);
    let (l998, l999) = (cat(&[x, b"\r\n"]), cat(&[y, b"\r\n"])); // 1000 and 1001 octets
    let (body, hi8) = (b"0123456\r\nab\r\n", b"\xff\x80\xc3\xa9\0\t\r\n"); // 13 and 8 octets
    let mut t = vec![
        ok("empty", b".\r\n", b"", 3),
        ok("empty+next", b".\r\nQUIT\r\n", b"", 3),
        ok("simple", b"a\r\nbc\r\n.\r\n", b"a\r\nbc\r\n", 10),
        ok("blank lines", b"\r\n\r\n.\r\n", b"\r\n\r\n", 7),
        ok("stuffed ..", b"..x\r\n.\r\n", b".x\r\n", 8),
        ok("stuffed .x", b".x\r\n.\r\n", b"x\r\n", 7),
        ok("line ..", b"a\r\n..\r\n.\r\n", b"a\r\n.\r\n", 10),
        ok("line ...", b"...\r\n.\r\n", b"..\r\n", 8),
        ok("dot mid-line", b"a.b\r\n.\r\n", b"a.b\r\n", 8),
        ok("trailing", b"hi\r\n.\r\nMAIL FROM:<>\r\n", b"hi\r\n", 7),
        ok("8-bit", &cat(&[hi8, e]), hi8, 11),
        ok("unfinished", b"a\r\n.\r", b"a\r\n", 5).open(),
        ok("unfinished dot", b"a\r\n.", b"a\r\n", 4).open(),
        bad("bare lf", b"a\nb\r\n.\r\n", O::BareLineEnding),
        bad("bare cr", b"a\rb\r\n.\r\n", O::BareLineEnding),
        bad("bare lf first", b"\n.\r\n.\r\n", O::BareLineEnding),
        ok("norm lf", b"a\nb\n\r\n.\r\n", b"a\r\nb\r\n\r\n", 9).norm(),
        ok("norm cr", b"a\rb\r\r\n.\r\n", b"a\r\nb\r\n\r\n", 9).norm(),
        ok("norm soft ..", b"a\n..x\r\n.\r\n", b"a\r\n.x\r\n", 10).norm(),
        ok("norm soft .lf", b"\n.\n.\r\n.\r\n", b"\r\n\r\n\r\n", 9).norm(),
        ok("norm crcrlf", b"a\r\r\n.\r\n", b"a\r\n\r\n", 7).norm(),
        ok("norm dot cr x", b".\rx\r\n.\r\n", b"\r\nx\r\n", 8).norm(),
        ok("line 1000", &cat(&[&l998, e]), &l998, 1003),
        ok("line 1000 stuffed", &cat(&[b".", &l998, e]), &l998, 1004),
        ok("two 1000s", &cat(&[&l998, &l998, e]), &l998.repeat(2), 2003),
        ok(
            "two 1000s lf",
            &cat(&[x, b"\n", &l998, e]),
            &l998.repeat(2),
            2002,
        )
        .norm(),
        bad("line 1001", &cat(&[&l999, e]), O::LineTooLong),
        bad("line 1001 open", &l999[..1000], O::LineTooLong).open(),
        ok("no limit", &cat(&[&l999, &l999, e]), &l999.repeat(2), 2005).max(1 << 20, 0),
        ok("size at limit", &cat(&[body, e]), body, 16).max(13, 1000),
        bad("size over", &cat(&[body, b"c\r\n", e]), O::TooLarge).max(14, 1000),
        ok("size 0 empty", b".\r\n", b"", 3).max(0, 1000),
        // TooLarge wins over an earlier refusal; otherwise the first wins.
        bad("too large wins", b"a\nbbbbbb\r\n.\r\n", O::TooLarge).max(5, 4),
        bad("first wins", b"a\nbbbbbb\r\n.\r\n", O::BareLineEnding).max(1 << 20, 4),
        bad("long first", b"bbbbbb\na\r\n.\r\n", O::LineTooLong).max(1 << 20, 4),
    ];
    for &(seq, norm, bare) in SMUGGLE {
        let input = cat(&[b"hi", seq, CMDS, b"evil\r\n.\r\n"]);
        let message = cat(&[b"hi", norm, CMDS, b"evil\r\n"]);
        let name = format!("smuggle {seq:?}");
        t.push(ok(&name, &input, &message, input.len()).norm());
        t.push(match bare {
            true => bad(&name, &input, O::BareLineEnding),
            false => ok(&name, &input, &message, input.len()),
        });
    }
    t
}

fn check(c: &Case, run: &Run, how: &str) {
    let (out, outcome, consumed, finished, size) = run;
    let ctx = format!("case {:?} ({:?}) {how}", c.name, c.limits.bare_line_ending);
    assert_eq!(
        (*outcome, *consumed, *finished),
        (c.outcome, c.consumed, c.finished),
        "{ctx}"
    );
    if let Some(m) = &c.message {
        assert_eq!(out, m, "{ctx}: {:?}", String::from_utf8_lossy(out));
        assert_eq!(*size, m.len() as u64, "{ctx}");
    }
}

#[test]
fn table_whole_split_and_bytewise() {
    let t = table();
    assert_eq!(t.len(), 35 + 2 * SMUGGLE.len());
    for c in &t {
        let whole = feed(c.limits, [c.input.as_slice()]);
        check(c, &whole, "whole");
        for at in 0..=c.input.len() {
            let r = feed(c.limits, <[&[u8]; 2]>::from(c.input.split_at(at)));
            check(c, &r, &format!("split at {at}"));
            assert_eq!(r.4, whole.4, "{} size, split at {at}", c.name);
        }
        let r = feed(c.limits, c.input.chunks(1));
        check(c, &r, "bytewise");
        assert_eq!(r.4, whole.4, "{} size, bytewise", c.name);
    }
}

#[test]
fn smuggling_sequences_do_not_end_data() {
    for &(seq, _, _) in SMUGGLE {
        // Right after the sequence and the commands, the data is still open.
        let open = [b"hi", seq, CMDS].concat();
        for mode in [Normalize, Reject] {
            for at in 0..=open.len() {
                let r = feed(
                    lim(mode, 1 << 20, 1000),
                    <[&[u8]; 2]>::from(open.split_at(at)),
                );
                assert!(!r.3 && r.2 == open.len(), "{seq:?} {mode:?} ended early");
            }
        }
    }
}

#[test]
fn too_large_keeps_out_bounded() {
    let line = b"0123456789012345678\r\n";
    let input = [&line.repeat(1000)[..], b".\r\n"].concat();
    for chunk in [1, 7, 64, input.len()] {
        let (out, outcome, consumed, finished, size) =
            feed(lim(Reject, 100, 1000), input.chunks(chunk));
        assert_eq!(
            (outcome, finished, consumed),
            (O::TooLarge, true, input.len())
        );
        assert!(out.len() <= 100 && input.starts_with(&out));
        // Every whole line within the limit is kept, however the input came
        // (the mail structure of a refused message shows its start).
        assert!(out.len() >= 100 / line.len() * line.len(), "chunk {chunk}");
        assert_eq!(size, (line.len() * 1000) as u64);
    }
}

/// Dot-stuffs CRLF-terminated `lines`: (message, wire form with end marker).
fn stuff(lines: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let (mut body, mut wire) = (vec![], vec![]);
    for l in lines {
        if l.first() == Some(&b'.') {
            wire.push(b'.');
        }
        for v in [&mut body, &mut wire] {
            v.extend_from_slice(l);
            v.extend_from_slice(b"\r\n");
        }
    }
    wire.extend_from_slice(b".\r\n");
    (body, wire)
}

/// Splits `input` into chunks whose sizes cycle through `sizes`.
fn chunked<'a>(mut input: &'a [u8], sizes: &[usize]) -> Vec<&'a [u8]> {
    let mut v = vec![];
    for &n in sizes.iter().cycle() {
        if input.is_empty() {
            break;
        }
        let (a, b) = input.split_at(n.clamp(1, input.len()));
        v.push(a);
        input = b;
    }
    v
}

fn line_byte() -> impl Strategy<Value = u8> {
    prop_oneof![
        Just(b'.'),
        any::<u8>().prop_filter("no CR/LF", |b| !b"\r\n".contains(b))
    ]
}

proptest! {
    #[test]
    fn stuffed_body_roundtrips(
        lines in prop::collection::vec(prop::collection::vec(line_byte(), 0..40), 0..30),
        sizes in prop::collection::vec(1usize..64, 1..8),
        trailer in prop::collection::vec(any::<u8>(), 0..10),
    ) {
        let (body, mut wire) = stuff(&lines);
        let end = wire.len();
        wire.extend_from_slice(&trailer);
        let r = feed(lim(Reject, u64::MAX, 0), chunked(&wire, &sizes));
        prop_assert_eq!((r.1, r.2, r.3, r.4), (O::Ok, end, true, body.len() as u64));
        prop_assert_eq!(r.0, body);
    }

    #[test]
    fn arbitrary_input_never_panics_and_chunking_is_invisible(
        input in prop::collection::vec(prop_oneof![Just(b'\r'), Just(b'\n'), Just(b'.'), any::<u8>()], 0..300),
        sizes in prop::collection::vec(1usize..32, 1..8),
        normalize: bool,
        max_size in 0u64..400,
        max_line in 0usize..20,
    ) {
        let limits = lim(if normalize { Normalize } else { Reject }, max_size, max_line);
        let whole = feed(limits, [input.as_slice()]);
        for r in [feed(limits, chunked(&input, &sizes)), feed(limits, input.chunks(1))] {
            prop_assert_eq!((r.1, r.2, r.3, r.4), (whole.1, whole.2, whole.3, whole.4));
            if whole.1 == O::Ok {
                prop_assert_eq!(&r.0, &whole.0);
                prop_assert_eq!(whole.4, whole.0.len() as u64);
            }
        }
        // It ends right after the first CRLF.CRLF (a CRLF assumed before the input).
        let first = [b"\r\n", &input[..]].concat().windows(5).position(|w| w == b"\r\n.\r\n");
        prop_assert_eq!(whole.3, first.is_some());
        prop_assert_eq!(whole.2, first.map_or(input.len(), |p| p + 3));
    }
}
