//! Tests of `address`.
use super::*;
use PathKind::{Forward as F, Reverse as R};
use proptest::prelude::*;

type Row<'a> = (
    &'a str,
    PathKind,
    Result<(&'a str, Path, &'a str), AddressError>,
);

fn mb(local: &str, domain: &str) -> Path {
    Path::Mailbox(Mailbox {
        local_part: local.into(),
        domain: domain.into(),
    })
}

#[test]
fn parse_table() {
    let long_local = format!("<{}@x.org>", "a".repeat(65));
    let ok_local = format!("<{}@x.org>", "a".repeat(64));
    let label = "d".repeat(63);
    let long_domain = format!("<a@{label}.{label}.{label}.{label}>"); // 255, path 259
    let max_path = format!("<{}@{label}.{label}.{}>", "a".repeat(64), "f".repeat(61)); // 256
    let too_long_domain = format!("<a@{label}.{label}.{label}.{label}.x>"); // 257
    let long_path = format!("<{}@{label}.{label}.{label}.eeeeee>", "a".repeat(60)); // 261
    let long_label = format!("<a@{}.com>", "l".repeat(64));
    let pm = |s: &str| Path::Postmaster(s.into());
    #[rustfmt::skip]
    let rows: Vec<Row<'_>> = vec![
        ("<a@b.com> SIZE=1000 BODY=8BITMIME", R, Ok(("", mb("a", "b.com"), "SIZE=1000 BODY=8BITMIME"))),
        ("<a@b.com>", F, Ok(("", mb("a", "b.com"), ""))),
        ("<>", R, Ok(("", Path::Null, ""))),
        ("<> SIZE=10", R, Ok(("", Path::Null, "SIZE=10"))),
        ("<postmaster>", F, Ok(("", pm("postmaster"), ""))),
        ("<PostMaster>", F, Ok(("", pm("PostMaster"), ""))),
        ("<Postmaster@x.org>", R, Ok(("", mb("Postmaster", "x.org"), ""))),
        ("Joe Bloggs <joe@x.org>", R, Ok(("Joe Bloggs", mb("joe", "x.org"), ""))),
        ("\"Joe <x>\" <joe@x.org>", R, Ok(("\"Joe <x>\"", mb("joe", "x.org"), ""))),
        ("<@relay.a,@relay.b:joe@x.org>", F, Ok(("", mb("joe", "x.org"), ""))),
        ("<@relay.a:joe@x.org>", F, Ok(("", mb("joe", "x.org"), ""))),
        ("<\"john doe\"@x.org>", F, Ok(("", mb("\"john doe\"", "x.org"), ""))),
        ("<\"a@b\"@c.org>", F, Ok(("", mb("\"a@b\"", "c.org"), ""))),
        ("<\"a>b\"@c.org> X", F, Ok(("", mb("\"a>b\"", "c.org"), "X"))),
        ("<\"a\\\"b\"@c.org>", F, Ok(("", mb("\"a\\\"b\"", "c.org"), ""))),
        ("<\"\"@c.org>", F, Ok(("", mb("\"\"", "c.org"), ""))),
        ("<пользователь@почта.рф> SMTPUTF8", F, Ok(("", mb("пользователь", "почта.рф"), "SMTPUTF8"))),
        ("<a,b@c.org>", F, Ok(("", mb("a,b", "c.org"), ""))),
        ("<.a..b.@c.org>", F, Ok(("", mb(".a..b.", "c.org"), ""))),
        ("<a@b.com>>", F, Ok(("", mb("a", "b.com"), ">"))),
        ("<a@b.com>junk", F, Ok(("", mb("a", "b.com"), "junk"))),
        ("<a@b.com>\t SIZE=1", F, Ok(("", mb("a", "b.com"), "SIZE=1"))),
        ("<a@x-1.b2.com>", F, Ok(("", mb("a", "x-1.b2.com"), ""))),
        ("<a@localhost>", F, Ok(("", mb("a", "localhost"), ""))),
        ("<a@[192.0.2.1]>", F, Ok(("", mb("a", "[192.0.2.1]"), ""))),
        ("<a@[IPv6:2001:db8::1]>", F, Ok(("", mb("a", "[IPv6:2001:db8::1]"), ""))),
        ("<a@[ipv6:::ffff:192.0.2.1]>", F, Ok(("", mb("a", "[ipv6:::ffff:192.0.2.1]"), ""))),
        ("<a@[x-tag:some;thing]>", F, Ok(("", mb("a", "[x-tag:some;thing]"), ""))),
        (&ok_local, F, Ok(("", mb(&ok_local[1..65], "x.org"), ""))),
        (&long_local, F, Err(TooLong)),
        (&long_domain, F, Err(TooLong)),
        (&max_path, F, Ok(("", mb(&max_path[1..65], &max_path[66..255]), ""))),
        (&too_long_domain, F, Err(TooLong)),
        (&long_path, F, Err(TooLong)),
    ];
    // (input, kind) → Err(Syntax)
    #[rustfmt::skip]
    let syntax_errors = [
        ("<>", F), ("<postmaster>", R), ("<joe>", F), ("<\"postmaster\">", F),
        ("<@r.a:postmaster>", F), ("Joe> <joe@x.org>", R), ("<@relay.a,relay.b:joe@x.org>", F),
        ("<@relay.a joe@x.org>", F), ("<@-bad:joe@x.org>", F), ("<@:joe@x.org>", F),
        ("<@a.b:>", R), ("<@b.com>", F), ("<\"ab\\\"@c.org>", F), ("<\"ab@c.org>", F),
        ("<\"a\"b@c.org>", F), ("a@b.com", F), ("", F), ("<a@b.com", F), ("a@b.com>", F),
        ("<<a@b.com>>", F), ("<a<b@c.com>", F), ("<a@b.com> SIZE=1\0", F), ("<a@@b.com>", F),
        ("<a@b@c.com>", F), ("<@>", F), ("<a@>", F), ("<@b.com>", R), ("<a@b..com>", F),
        ("<a@.b.com>", F), ("<a@-b.com>", F), ("<a@b-.com>", F), ("<a@b.com.>", F),
        ("<a@b_c.com>", F), ("<a b@c.com>", F), ("< a@c.com>", F), ("<a@c.com >", F),
        ("< >", R), ("<a\tb@c.com>", F), ("<a\0b@c.com>", F), ("<a\r\n@c.com>", F),
        ("<\"a\u{7f}\"@c.com>", F), ("<a@c\u{85}d.com>", F), ("Jo\0e <a@c.com>", F),
        ("<a@[192.0.2.256]>", F), ("<a@[192.0.2]>", F), ("<a@[192.0.2.1>", F),
        ("<a@[192.0.2.1]x>", F), ("<a@[]>", F), ("<a@[IPv6:2001:db8::g]>", F),
        ("<a@[IPv6:192.0.2.1]>", F), ("<a@[2001:db8::1]>", F), ("<a@[fe80::1]>", F),
        ("<a@[tag-:x]>", F), ("<a@[tag:]>", F), ("<a@[tag:a b]>", F), (&long_label, F),
    ];
    let errors = syntax_errors.into_iter().map(|(i, k)| (i, k, Err(Syntax)));
    for (input, kind, expected) in rows.into_iter().chain(errors) {
        let got = parse_path_argument(input, kind).map(|a| (a.name, a.path, a.parameters));
        assert_eq!(got, expected, "input {input:?} kind {kind:?}");
    }
}

#[test]
fn address_joins_parts() {
    let m = Mailbox {
        local_part: "\"john doe\"".into(),
        domain: "x.org".into(),
    };
    assert_eq!(m.address(), "\"john doe\"@x.org");
}

#[test]
fn analysis_table() {
    #[rustfmt::skip]
    let rows = [
        // (local part, bad_characters, wrong_dot_usage)
        ("john.doe", false, false), ("", false, false), (".john", false, true),
        ("john.", false, true), ("jo..hn", false, true), ("a,b", true, false),
        ("a=b", false, false), ("ü", false, false), ("пользователь", false, false),
        ("!#$%&'*+-/=?^_`{|}~", false, false), ("a(b)", true, false), ("a\"b", true, false),
        ("\"", true, false), ("a\u{1}", true, false), ("a\u{85}", true, false),
        ("\"a b\"", false, false), ("\".a..b.\"", false, false),
        ("\"a@b,c\\\"d\"", false, false), ("\"a\u{1}\"", true, false),
        ("\"a\"b\"", true, false), ("\"ab\\\"", true, false), ("\"\"", false, false),
    ];
    for (input, bad_characters, wrong_dot_usage) in rows {
        let expected = LocalPartAnalysis {
            bad_characters,
            wrong_dot_usage,
        };
        assert_eq!(analyze_local_part(input), expected, "input {input:?}");
    }
}
#[test]
fn parameters_table() {
    let p = |keyword, value| Ok(Parameter { keyword, value });
    #[rustfmt::skip]
    let rows: Vec<(&str, Vec<Result<Parameter<'_>, AddressError>>)> = vec![
        ("SIZE=100 BODY=8BITMIME", vec![p("SIZE", Some("100")), p("BODY", Some("8BITMIME"))]),
        ("SMTPUTF8", vec![p("SMTPUTF8", None)]),
        ("  SIZE=1  ", vec![p("SIZE", Some("1"))]),
        ("A\t\tB-2", vec![p("A", None), p("B-2", None)]),
        ("", vec![]),
        ("   ", vec![]),
        ("junk", vec![p("junk", None)]),
        ("ENVID=ü<x>", vec![p("ENVID", Some("ü<x>"))]),
        ("=x", vec![Err(Syntax)]),
        ("SIZE=", vec![Err(Syntax)]),
        ("A=b=c", vec![Err(Syntax)]),
        ("-A", vec![Err(Syntax)]),
        ("A_B", vec![Err(Syntax)]),
        (">", vec![Err(Syntax)]),
        ("A=b\u{0}", vec![Err(Syntax)]),
        ("BAD=x\u{a0}y OK", vec![Err(Syntax), p("OK", None)]),
    ];
    for (input, expected) in rows {
        let got: Vec<_> = parameters(input).collect();
        assert_eq!(got, expected, "input {input:?}");
    }
}

#[test]
fn non_ascii_table() {
    for (input, expected) in [
        ("", false),
        ("a@b.com", false),
        ("ü@x", true),
        ("a\u{7f}", false),
    ] {
        assert_eq!(is_non_ascii(input), expected, "input {input:?}");
    }
}

#[test]
fn error_display() {
    assert!(Syntax.to_string().contains("syntax"));
    assert!(TooLong.to_string().contains("too long"));
}

fn local_part() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~ü-]{1,15}(\\.[a-zA-Z0-9_ю-]{1,10}){0,2}",
        "\"([ !#-\\[\\]-~é@<>]|\\\\[ -~]){0,20}\"",
    ]
}

fn domain() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9ä]([a-z0-9ä-]{0,10}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?){0,3}",
        any::<Ipv4Addr>().prop_map(|ip| format!("[{ip}]")),
        any::<Ipv6Addr>().prop_map(|ip| format!("[IPv6:{ip}]")),
    ]
}

proptest! {
    #[test]
    fn never_panics(s in any::<String>(), t in "[<>@\"\\\\ a-z.\\[\\]:,=\t\u{0}é-]{0,40}") {
        for input in [&s, &t] {
            for kind in [R, F] {
                let _ = parse_path_argument(input, kind);
            }
            let _ = parameters(input).count();
            let _ = analyze_local_part(input);
        }
    }

    #[test]
    fn valid_mailbox_round_trips(
        local in local_part(),
        domain in domain(),
        name in "[A-Za-z ]{0,10}",
        params in "( [A-Z0-9]{1,8}(=[!-<>-~]{1,8})?){0,3}",
    ) {
        let input = format!("{name}<{local}@{domain}>{params}");
        let arg = parse_path_argument(&input, F).unwrap();
        prop_assert_eq!(arg.name, name.trim());
        prop_assert_eq!(arg.path, mb(&local, &domain));
        prop_assert_eq!(arg.parameters, params.trim_start());
        prop_assert!(parameters(arg.parameters).all(|p| p.is_ok()));
    }
}
