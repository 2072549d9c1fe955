//! Throughput of the SMTP DATA decoder on a 1 MiB and a 25 MiB dot-stuffed message.
#![allow(missing_docs)] // criterion_group! generates an undocumented pub fn

use criterion::{Criterion, Throughput, black_box, criterion_group, criterion_main};
use net_receiver::protocol::data::{BareLineEnding, DataDecoder, DataLimits};

/// About `size` octets of 78-octet lines (plus CRLF), every 7th one dot-stuffed,
/// then the end marker.
fn message(size: usize) -> Vec<u8> {
    let mut wire = Vec::with_capacity(size + 128);
    let mut i = 0u32;
    while wire.len() < size {
        if i.is_multiple_of(7) {
            wire.extend_from_slice(b"..");
        }
        wire.extend_from_slice(
            format!("{i:08} The quick brown fox jumps over the lazy dog; lorem ipsum dolor s")
                .as_bytes(),
        );
        wire.extend_from_slice(b"\r\n");
        i += 1;
    }
    wire.extend_from_slice(b".\r\n");
    wire
}

fn bench(c: &mut Criterion) {
    let wire = message(1 << 20);
    let limits = DataLimits {
        max_message_size: 64 << 20,
        max_line_length: 1000,
        bare_line_ending: BareLineEnding::Reject,
    };
    let mut out = Vec::with_capacity(wire.len());
    let mut group = c.benchmark_group("data_decoder");
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("1MiB_whole", |b| {
        b.iter(|| {
            out.clear();
            let mut dec = DataDecoder::new(limits);
            let d = dec.decode(black_box(&wire), &mut out);
            assert!(d.finished);
            black_box(out.len())
        })
    });
    group.bench_function("1MiB_16KiB_chunks", |b| {
        b.iter(|| black_box(decode_in_reads(limits, black_box(&wire), &mut out)))
    });
    group.finish();

    // The largest message the default `max_message_size` allows, in the 16 KiB
    // reads the connection makes.
    let wire = message(25 << 20);
    let mut out = Vec::with_capacity(wire.len());
    let mut group = c.benchmark_group("data_decoder");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(wire.len() as u64));
    group.bench_function("25MiB_16KiB_chunks", |b| {
        b.iter(|| black_box(decode_in_reads(limits, black_box(&wire), &mut out)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

/// Decodes `wire` in the 16 KiB reads the connection makes; the decoded length.
fn decode_in_reads(limits: DataLimits, wire: &[u8], out: &mut Vec<u8>) -> usize {
    out.clear();
    let mut decoder = DataDecoder::new(limits);
    let mut finished = false;
    for chunk in wire.chunks(16 << 10) {
        finished = decoder.decode(chunk, out).finished;
    }
    assert!(finished);
    out.len()
}
