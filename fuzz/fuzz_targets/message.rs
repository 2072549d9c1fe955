//! Fuzz target: a received message into the mail structure — the seed's
//! `headers` map and `text` lines (`Data::from_message`), its JSON and back, and
//! the MIME view (mail-parser). Nothing panics, `text` reads back the same, and
//! the size is the input's.
#![no_main]

use libfuzzer_sys::fuzz_target;
use net_receiver::mail::{Data, Mail, Text};

fuzz_target!(|data: &[u8]| {
    let parsed = Data::from_message(data.to_vec(), String::new());
    assert_eq!(parsed.size, data.len() as u64);
    let lines = parsed.text.to_vec();
    assert_eq!(lines.len(), parsed.text.len());
    let json = serde_json::to_string(&parsed.text).expect("text serializes");
    let back: Text = serde_json::from_str(&json).expect("text reads back");
    assert_eq!(back.to_vec(), lines);
    for value in parsed.headers.values() {
        let _ = value.first();
    }
    let _ = parsed.parsed();
    let mail = Mail {
        id: String::from_utf8_lossy(data).into_owned(),
        data: Some(parsed),
        ..Default::default()
    };
    assert_eq!(
        mail.to_json(),
        serde_json::to_string(&mail).expect("mail serializes")
    );
});
