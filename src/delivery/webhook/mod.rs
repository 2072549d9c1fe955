//! The webhook delivery target: each accepted mail is POSTed as JSON to the
//! user's application, signed per [Standard Webhooks
//! 1.0](https://www.standardwebhooks.com/), and counts as delivered when the
//! application answers 2xx.
//!
//! - The request (`wire.rs`, sans-IO): `Content-Type: application/json`, body
//!   `{"mail": <the mail structure>, "raw_base64": <the message as
//!   delivered>}` — the same keys as the JSON lines; the message is the trace
//!   header(s) then the message as received, base64 — and the headers
//!   `webhook-id` (the mail id: the same on every retry, so the receiving end
//!   can drop a repeat), `webhook-timestamp` (Unix seconds of this attempt)
//!   and `webhook-signature` (`v1,` base64 HMAC-SHA256 of
//!   `{id}.{timestamp}.{body}` with the secret's key).
//! - The answer: 2xx → delivered; 408, 429, 5xx, no answer within `timeout`,
//!   no connection → [`DeliveryError::Temporary`] (retried: by the client
//!   after a `451` without the spool, by the spool on this target's
//!   [`RetrySchedule`] with it); any other status → [`DeliveryError::Permanent`]
//!   (`554` without the spool, a dead letter with it). One answer covers
//!   every recipient of the mail.
//! - The client is the HTTP hooks' pooled keep-alive client
//!   (`crate::policy::http`): at most `max_concurrency` requests in flight,
//!   each under one deadline. `http://` or `https://` (the certificate
//!   verified against the system's CAs and those of `tls_ca`, a PEM file:
//!   [`Webhook::new_trusting`]).
//!
//! No parser of ours reads the wire here (hyper speaks HTTP, the answer's
//! body is ignored), so there is no fuzz target; the request is built and
//! signed by pure functions tested in `wire.rs`.

mod wire;

use std::path::Path;
use std::time::{Duration, SystemTime};

use hyper::Uri;
use hyper::header::HeaderMap;
use ring::hmac;

use super::{CheckFuture, Deliver, DeliverFuture, DeliveryError, RetrySchedule};
use crate::mail::Mail;
use crate::policy::http::{CallError, HookClient};

/// The webhook target (see the module doc).
pub struct Webhook {
    url: String,
    key: hmac::Key,
    client: HookClient,
    timeout: Duration,
    schedule: RetrySchedule,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("url", &self.url)
            .field("schedule", &self.schedule)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// The retry schedule unless [`Webhook::with_retry`] says otherwise: 5 s
    /// doubling to 10 minutes, for 24 hours.
    pub const DEFAULT_RETRY: RetrySchedule = RetrySchedule {
        initial: Duration::from_secs(5),
        max: Duration::from_secs(600),
        give_up_after: Some(Duration::from_secs(24 * 3600)),
    };

    /// A target POSTing to `url` (`http://host:port/path` or
    /// `https://host:port/path`, verified against the system's CAs),
    /// signing with `secret` (`whsec_<base64>`), each request answered within
    /// `timeout`, at most `max_concurrency` at once. Connections are made on
    /// first use.
    pub fn new(
        url: &str,
        secret: &str,
        timeout: Duration,
        max_concurrency: usize,
    ) -> Result<Self, String> {
        Self::new_trusting(url, secret, timeout, max_concurrency, None)
    }

    /// [`Webhook::new`] where an `https://` endpoint's certificate may also
    /// chain to a CA of the PEM file `tls_ca` (a private CA). A `tls_ca`
    /// that cannot be read or holds no certificate is an error naming it.
    pub fn new_trusting(
        url: &str,
        secret: &str,
        timeout: Duration,
        max_concurrency: usize,
        tls_ca: Option<&Path>,
    ) -> Result<Self, String> {
        let uri: Uri = url
            .parse()
            .map_err(|e| format!("webhook url {url:?}: {e}"))?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
            return Err(format!(
                "webhook url {url:?}: use http://host:port/path or https://host:port/path"
            ));
        }
        if timeout.is_zero() || max_concurrency == 0 {
            return Err("a webhook needs a positive timeout and max_concurrency".to_owned());
        }
        let client = HookClient::new(uri, HeaderMap::new(), max_concurrency, timeout, tls_ca)
            .map_err(|e| format!("webhook tls_ca: {e}"))?;
        Ok(Self {
            url: url.to_owned(),
            key: wire::signing_key(secret)?,
            client,
            timeout,
            schedule: Self::DEFAULT_RETRY,
        })
    }

    /// The same target, retried by the spool on `schedule`.
    pub fn with_retry(mut self, schedule: RetrySchedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Where it POSTs.
    pub fn url(&self) -> &str {
        &self.url
    }
}

/// Unix seconds now (0 for a clock before 1970).
fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Deliver for Webhook {
    /// One signed POST; its status decides for every recipient.
    fn deliver<'a>(&'a self, mail: &'a Mail) -> DeliverFuture<'a> {
        Box::pin(async move {
            let request = || {
                let body = wire::body(mail)?;
                let headers = wire::headers(&self.key, &mail.id, unix_now(), &body)?;
                Ok((body, headers))
            };
            match self.client.post(request).await {
                Ok((status, _answer)) => wire::outcome(status, &self.url),
                Err(CallError::Request(reason)) => Err(DeliveryError::Permanent(format!(
                    "webhook {}: {reason}",
                    self.url
                ))),
                Err(error) => Err(DeliveryError::Temporary(format!(
                    "webhook {}: {error}",
                    self.url
                ))),
            }
        })
    }

    fn retry_schedule(&self) -> Option<RetrySchedule> {
        Some(self.schedule)
    }

    /// A TCP connection to the URL's host and port (for https with a
    /// verified TLS handshake), closed at once: nothing is POSTed (an
    /// endpoint may act on any request).
    fn check(&self) -> CheckFuture<'_> {
        Box::pin(async move {
            let limit = self.timeout.min(super::checks::CHECK_LIMIT);
            self.client.reach(limit).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    #[test]
    fn only_http_and_https_urls_and_good_settings_make_a_webhook() {
        let ok = Webhook::new(
            "http://127.0.0.1:8080/mail",
            SECRET,
            Duration::from_secs(1),
            4,
        );
        assert_eq!(ok.unwrap().url(), "http://127.0.0.1:8080/mail");
        for (url, secret, timeout, slots, want) in [
            (
                "ftp://example.com/",
                SECRET,
                1,
                4,
                "or https://host:port/path",
            ),
            ("/mail", SECRET, 1, 4, "use http://host:port/path"),
            ("http://[::1", SECRET, 1, 4, "webhook url"),
            ("http://127.0.0.1/", "whsec_?", 1, 4, "not whsec_"),
            ("http://127.0.0.1/", SECRET, 0, 4, "positive timeout"),
            ("http://127.0.0.1/", SECRET, 1, 0, "max_concurrency"),
        ] {
            let error = Webhook::new(url, secret, Duration::from_secs(timeout), slots).unwrap_err();
            assert!(error.contains(want), "{url}: {error}");
        }
    }

    #[tokio::test]
    async fn check_connects_and_names_what_it_could_not_reach() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/mail");
        let webhook = Webhook::new(&url, SECRET, Duration::from_secs(5), 1).unwrap();
        let text = webhook.check().await.unwrap();
        assert_eq!(text, format!("TCP connection to 127.0.0.1:{port} made"));
        drop(listener);
        let error = webhook.check().await.unwrap_err();
        assert!(
            error.starts_with(&format!("cannot connect to 127.0.0.1:{port}")),
            "{error}"
        );
        assert_eq!(webhook.retry_schedule(), Some(Webhook::DEFAULT_RETRY));
    }
}
