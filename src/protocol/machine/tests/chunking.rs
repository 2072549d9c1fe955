//! Chunking invariance as a property: any byte stream — SMTP-shaped pieces
//! (commands, DATA bodies with dots and bare line endings, BDAT chunks, AUTH-less
//! noise) mixed with random bytes — cut at any points gives the same replies,
//! the same delivered messages and the same end as when it arrives whole.

use proptest::prelude::*;

use super::*;

/// Pieces a client stream is made of; `Random` is arbitrary bytes.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    let fixed: Vec<&'static [u8]> = vec![
        b"EHLO client.test\r\n",
        b"HELO client.test\r\n",
        b"MAIL FROM:<a@b.c>\r\n",
        b"MAIL FROM:<a@b.c> SIZE=100 BODY=8BITMIME\r\n",
        b"RCPT TO:<d@e.f>\r\n",
        b"RCPT TO:<reject@e.f>\r\n",
        b"DATA\r\n",
        b"Subject: x\r\n\r\nbody\r\n",
        b"..stuffed\r\n",
        b".\r\n",
        b"\r\n.\r\n",
        b"\n.\n",
        b"\r.\r",
        b"line\nbare\r\n",
        b"BDAT 5\r\nhello",
        b"BDAT 0 LAST\r\n",
        b"BDAT 3 LAST\r\nend",
        b"RSET\r\n",
        b"NOOP\r\n",
        b"VRFY x\r\n",
        b"QUIT\r\n",
        b"STARTTLS\r\n",
        b"AUTH PLAIN\r\n",
        b"\r\n",
    ];
    prop_oneof![
        4 => proptest::sample::select(fixed).prop_map(<[u8]>::to_vec),
        1 => proptest::collection::vec(any::<u8>(), 0..40),
        1 => proptest::collection::vec(b'x'..=b'z', 500..700).prop_map(|mut v| {
            v.extend_from_slice(b"\r\n");
            v
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn any_stream_cut_anywhere_gives_the_same_transcript(
        pieces in proptest::collection::vec(piece(), 0..40),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let stream = pieces.concat();
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (stream.len() + 1)).collect();
        cuts.sort_unstable();
        let mut chunks: Vec<&[u8]> = Vec::new();
        let mut last = 0;
        for cut in cuts {
            chunks.push(&stream[last..cut]);
            last = cut;
        }
        chunks.push(&stream[last..]);
        let limits = Limits { max_message_size: 600, max_header_size: 100, ..limits() };
        let whole = drive_chunks(limits.clone(), &[&stream]);
        let cut = drive_chunks(limits, &chunks);
        prop_assert_eq!(cut, whole);
    }
}
