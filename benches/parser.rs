//! Throughput of the command-line parser (`protocol::command::parse_command`) and
//! the MAIL/RCPT path parser (`protocol::address::parse_path_argument`, plus the
//! ESMTP parameters), in bytes of input per second, on the lines a typical
//! session sends.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use net_receiver::protocol::address::{PathKind, parameters, parse_path_argument};
use net_receiver::protocol::command::parse_command;

/// Command lines (without CRLF) in the mix of one pipelined transaction and its
/// session, with a few verbs in lower case.
const COMMANDS: &[&[u8]] = &[
    b"EHLO client.example.com",
    b"MAIL FROM:<sender.name+tag@mail.example.com> SIZE=4096 BODY=8BITMIME",
    b"RCPT TO:<recipient@example.org>",
    b"rcpt to:<second.recipient@sub.example.org> NOTIFY=NEVER",
    b"DATA",
    b"BDAT 65536 LAST",
    b"RSET",
    b"NOOP",
    b"HELP mail",
    b"VRFY postmaster",
    b"AUTH PLAIN AGpvZQBzZWNyZXQ=",
    b"QUIT",
];

/// Arguments of MAIL FROM: / RCPT TO: as the command parser hands them on.
const PATHS: &[(&str, PathKind)] = &[
    (
        "<sender.name+tag@mail.example.com> SIZE=4096 BODY=8BITMIME",
        PathKind::Reverse,
    ),
    ("<>", PathKind::Reverse),
    ("<recipient@example.org>", PathKind::Forward),
    ("<\"john doe\"@example.org> NOTIFY=NEVER", PathKind::Forward),
    (
        "<@relay.example,@hop.example:user@example.net>",
        PathKind::Forward,
    ),
    ("<user@[IPv6:2001:db8::1]>", PathKind::Forward),
    ("<Postmaster>", PathKind::Forward),
];

fn bench_commands(c: &mut Criterion) {
    let bytes: usize = COMMANDS.iter().map(|line| line.len()).sum();
    let mut group = c.benchmark_group("parse_command");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("session_mix", |b| {
        b.iter(|| {
            let mut ok = 0usize;
            for line in COMMANDS {
                ok += usize::from(parse_command(black_box(line)).is_ok());
            }
            assert_eq!(ok, COMMANDS.len());
            ok
        })
    });
    let mail = COMMANDS[1];
    group.throughput(Throughput::Bytes(mail.len() as u64));
    group.bench_function("mail_from", |b| {
        b.iter(|| parse_command(black_box(mail)).is_ok())
    });
    group.finish();
}

fn bench_paths(c: &mut Criterion) {
    let bytes: usize = PATHS.iter().map(|(arg, _)| arg.len()).sum();
    let mut group = c.benchmark_group("parse_path_argument");
    group.throughput(Throughput::Bytes(bytes as u64));
    group.bench_function("path_mix_with_parameters", |b| {
        b.iter(|| {
            let mut params = 0usize;
            for (arg, kind) in PATHS {
                let Ok(parsed) = parse_path_argument(black_box(arg), *kind) else {
                    panic!("{arg} did not parse");
                };
                params += parameters(parsed.parameters).filter(Result::is_ok).count();
            }
            params
        })
    });
    let (plain, kind) = PATHS[2];
    group.throughput(Throughput::Bytes(plain.len() as u64));
    group.bench_function("plain_recipient", |b| {
        b.iter(|| parse_path_argument(black_box(plain), kind).is_ok())
    });
    group.finish();
}

criterion_group!(benches, bench_commands, bench_paths);
criterion_main!(benches);
