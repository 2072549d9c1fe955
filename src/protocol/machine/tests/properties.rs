//! Properties over random input: nothing panics in any chunking, and any body,
//! dot-stuffed, arrives byte-exact.

use super::*;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Any byte soup in any chunking never panics and never consumes more than given.
    #[test]
    fn random_input_never_panics(data in proptest::collection::vec(any::<u8>(), 0..2048),
                                 cuts in proptest::collection::vec(0usize..2048, 0..8)) {
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut last = 0;
        for c in cuts { chunks.push(&data[last..c]); last = c; }
        chunks.push(&data[last..]);
        let mut input = HELLO.to_vec();
        input.extend_from_slice(b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n");
        let mut all: Vec<&[u8]> = vec![&input];
        all.extend(chunks.iter().copied());
        let _ = drive_chunks(limits(), &all);
        let _ = drive_chunks(limits(), &chunks);
    }

    /// Any body, dot-stuffed and sent with DATA, arrives byte-exact.
    #[test]
    fn dot_stuffed_bodies_arrive_exact(lines in proptest::collection::vec(
        proptest::collection::vec(any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'), 0..80), 0..30),
        split in 0usize..4096) {
        let body: Vec<u8> = lines.iter().flat_map(|l| l.iter().copied().chain(*b"\r\n")).collect();
        let mut input = script(&[HELLO, b"MAIL FROM:<a@b.c>\r\nRCPT TO:<d@e.f>\r\nDATA\r\n"]);
        for line in &lines {
            if line.first() == Some(&b'.') { input.push(b'.'); }
            input.extend_from_slice(line);
            input.extend_from_slice(b"\r\n");
        }
        input.extend_from_slice(b".\r\n");
        let split = split % (input.len() + 1);
        let (a, b) = input.split_at(split);
        let t = drive_chunks(limits(), &[a, b]);
        prop_assert_eq!(t.messages, vec![body]);
    }
}
