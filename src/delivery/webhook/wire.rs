//! What a webhook delivery sends and how its answer is read, without any I/O:
//! the JSON body, the Standard Webhooks 1.0 signature and headers, and the
//! meaning of an HTTP status.
//!
//! ```text
//! body      = {"mail": <the mail structure, the JSON lines' keys>,
//!              "raw_base64": base64(trace header(s) + message as received)}
//! signature = "v1," base64(HMAC-SHA256(secret, id "." timestamp "." body))
//! secret    = "whsec_" base64(key octets)      (the prefix may be left out)
//! ```

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use ring::hmac;

use crate::delivery::DeliveryError;
use crate::mail::Mail;

/// The header carrying the message id (the mail id: the same on every retry).
pub(crate) const ID_HEADER: &str = "webhook-id";
/// The header carrying the Unix time of the attempt, in seconds.
pub(crate) const TIMESTAMP_HEADER: &str = "webhook-timestamp";
/// The header carrying the signature(s).
pub(crate) const SIGNATURE_HEADER: &str = "webhook-signature";

/// The signing key of a `secret = "whsec_…"`: the base64 after the prefix,
/// decoded (the Standard Webhooks form; the prefix is optional).
pub(crate) fn signing_key(secret: &str) -> Result<hmac::Key, String> {
    let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
    let octets = STANDARD.decode(encoded.trim()).map_err(|e| {
        format!("the webhook secret is not whsec_ followed by base64 ({e}); make one with: echo whsec_$(head -c 32 /dev/urandom | base64)")
    })?;
    if octets.len() < 16 {
        return Err(format!(
            "the webhook secret has {} octets; use at least 16 (24 to 64 per Standard Webhooks)",
            octets.len()
        ));
    }
    Ok(hmac::Key::new(hmac::HMAC_SHA256, &octets))
}

/// The request body for `mail` (see the module doc), built in one buffer:
/// the structure serialized straight into it, the message base64-encoded
/// into it (never copied whole on the way).
pub(crate) fn body(mail: &Mail) -> Result<Vec<u8>, String> {
    let (received, raw) = match &mail.data {
        Some(data) => (data.received.as_bytes(), &data.raw[..]),
        None => (&b""[..], &b""[..]),
    };
    let message_len = received.len() + raw.len();
    // The structure holds the message's lines once more (data.text).
    let mut body = Vec::with_capacity(message_len * 2 + message_len.div_ceil(3) * 4 + 4096);
    body.extend_from_slice(b"{\"mail\":");
    crate::mail::json::write(&mut body, mail).map_err(|e| format!("mail structure: {e}"))?;
    body.extend_from_slice(b",\"raw_base64\":\"");
    {
        crate::mail::json::append_base64(&mut body, &[received, raw]);
    }
    body.extend_from_slice(b"\"}");
    Ok(body)
}

/// `v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`.
pub(crate) fn signature(key: &hmac::Key, id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(id.as_bytes());
    context.update(format!(".{timestamp}.").as_bytes());
    context.update(body);
    format!("v1,{}", STANDARD.encode(context.sign().as_ref()))
}

/// The three Standard Webhooks headers of one attempt.
pub(crate) fn headers(
    key: &hmac::Key,
    id: &str,
    timestamp: u64,
    body: &[u8],
) -> Result<HeaderMap, String> {
    let value = |text: String| {
        HeaderValue::from_str(&text).map_err(|_| format!("{text:?} cannot be an HTTP header"))
    };
    let mut headers = HeaderMap::with_capacity(3);
    headers.insert(HeaderName::from_static(ID_HEADER), value(id.to_owned())?);
    headers.insert(
        HeaderName::from_static(TIMESTAMP_HEADER),
        value(timestamp.to_string())?,
    );
    headers.insert(
        HeaderName::from_static(SIGNATURE_HEADER),
        value(signature(key, id, timestamp, body))?,
    );
    Ok(headers)
}

/// What an answer's status means: 2xx delivered; 408, 429 and 5xx transient
/// (retried); any other status permanent.
pub(crate) fn outcome(status: u16, url: &str) -> Result<(), DeliveryError> {
    match status {
        200..=299 => Ok(()),
        408 | 429 | 500..=599 => Err(DeliveryError::Temporary(format!(
            "webhook {url} answered {status}"
        ))),
        _ => Err(DeliveryError::Permanent(format!(
            "webhook {url} answered {status}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::Data;

    /// The example of the Standard Webhooks specification.
    #[test]
    fn signs_the_specifications_example() {
        let key = signing_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        let bare = signing_key("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            signature(&bare, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body),
            signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, body)
        );
        let headers = headers(&key, "ID-1", 5, b"{}").unwrap();
        assert_eq!(headers[ID_HEADER], "ID-1");
        assert_eq!(headers[TIMESTAMP_HEADER], "5");
        assert!(
            headers[SIGNATURE_HEADER]
                .to_str()
                .unwrap()
                .starts_with("v1,")
        );
    }

    #[test]
    fn bad_secrets_are_refused_with_the_reason() {
        for (secret, want) in [
            ("whsec_not base64!", "not whsec_ followed by base64"),
            ("whsec_", "has 0 octets"),
            ("whsec_c2hvcnQ=", "has 5 octets"),
        ] {
            let error = signing_key(secret).err().unwrap();
            assert!(error.contains(want), "{secret}: {error}");
        }
    }

    #[test]
    fn the_body_holds_the_mail_and_the_message_as_delivered() {
        let raw = b"Subject: x\r\n\r\n\x00\xff binary\r\n".to_vec();
        let mail = Mail {
            id: "ID-7".into(),
            data: Some(Data::from_message(
                raw.clone(),
                "Received: by test\r\n".into(),
            )),
            ..Mail::default()
        };
        let body: serde_json::Value = serde_json::from_slice(&body(&mail).unwrap()).unwrap();
        assert_eq!(body["mail"]["id"], "ID-7");
        let expected: serde_json::Value = serde_json::from_str(&mail.to_json()).unwrap();
        assert_eq!(body["mail"], expected);
        let decoded = STANDARD
            .decode(body["raw_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(decoded, [&b"Received: by test\r\n"[..], &raw].concat());

        let empty: serde_json::Value =
            serde_json::from_slice(&super::body(&Mail::default()).unwrap()).unwrap();
        assert_eq!(empty["raw_base64"], "");
    }

    #[test]
    fn statuses_map_to_outcomes() {
        for status in [200, 201, 204, 299] {
            assert!(outcome(status, "u").is_ok(), "{status}");
        }
        for status in [408, 429, 500, 502, 503, 599] {
            let error = outcome(status, "u").unwrap_err();
            assert!(!error.is_permanent(), "{status}");
        }
        for status in [100, 301, 400, 401, 404, 410, 413, 422, 600] {
            let error = outcome(status, "u").unwrap_err();
            assert!(error.is_permanent(), "{status}");
        }
    }
}
