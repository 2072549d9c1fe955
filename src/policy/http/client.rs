//! The HTTP side of one hook: a persistent client (hyper-util's pooled client:
//! keep-alive connections reused across sessions and worker threads), at most
//! `max_concurrency` calls in flight, each under one deadline that covers the
//! wait for a slot, the connection, the request and the whole answer, and an
//! answer body read to at most [`MAX_ANSWER`] bytes. A call is never repeated:
//! the one retry the pool makes is of a request that never left (a kept-alive
//! connection the hook server had closed), so no hook sees one event twice.
//!
//! `https://` URLs go through the same pool over rustls (`tls.rs`: the
//! system's CAs plus the hook's `tls_ca`, ALPN `http/1.1`); `http://` ones
//! are plain TCP as before.
//!
//! The webhook delivery target (`crate::delivery::webhook`) uses the same
//! client, with headers made per request ([`HookClient::post`]: its
//! signature covers the body and the moment it is sent).

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header::{CONTENT_TYPE, HeaderMap, USER_AGENT};
use hyper::{Request, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::ClientConfig;
use tokio::sync::Semaphore;

use super::tls;

/// The largest answer body read from a hook; a bigger one is a hook error.
pub const MAX_ANSWER: usize = 1 << 20;

/// How long an idle kept-alive connection stays in the pool.
const IDLE: Duration = Duration::from_secs(30);

/// Why a hook call failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CallError {
    /// The deadline passed (waiting for a slot, connecting, or for the answer).
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// Connecting or speaking HTTP failed.
    #[error("HTTP request failed: {0}")]
    Http(String),
    /// The answer body was too big or broke off.
    #[error("answer body: {0}")]
    Body(String),
    /// The request could not be made.
    #[error("cannot build the request: {0}")]
    Request(String),
}

/// A hook's pooled client and its limits.
#[derive(Debug)]
pub(crate) struct HookClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    /// The TLS settings of an `https://` URL.
    tls: Option<Arc<ClientConfig>>,
    headers: HeaderMap,
    slots: Semaphore,
    timeout: Duration,
}

impl HookClient {
    /// A client for `url` (http or https) sending `headers` with each call;
    /// an https one also trusts the CA certificates of the PEM file
    /// `tls_ca`. The error (a `tls_ca` that cannot be read, nothing to
    /// trust, `tls_ca` with an http URL) names the file.
    pub(crate) fn new(
        url: Uri,
        headers: HeaderMap,
        max_concurrency: usize,
        timeout: Duration,
        tls_ca: Option<&Path>,
    ) -> Result<Self, String> {
        let tls = tls::client_config(&url, tls_ca)?;
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(timeout));
        // The https connector hands `https://` to it after its own check.
        connector.enforce_http(false);
        // An http client never uses the TLS settings: an empty trust store.
        let tls_settings = match &tls {
            Some(config) => Arc::clone(config),
            None => tls::untrusting()?,
        };
        let connector = HttpsConnector::from((connector, tls_settings));
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(IDLE)
            .pool_max_idle_per_host(max_concurrency)
            .build(connector);
        Ok(Self {
            client,
            url,
            tls,
            headers,
            slots: Semaphore::new(max_concurrency),
            timeout,
        })
    }

    /// A TCP connection to the URL's host and port, for https with a
    /// verified TLS handshake, within `limit`; nothing is sent (see
    /// `tls::reach`).
    pub(crate) async fn reach(&self, limit: Duration) -> Result<String, String> {
        tls::reach(&self.url, self.tls.as_ref(), limit).await
    }

    /// POSTs the JSON that `body` makes and returns the status and the answer
    /// body. `body` is called once a slot is free, so at most `max_concurrency`
    /// request bodies of this hook are in memory, however many sessions wait.
    pub(crate) async fn call(
        &self,
        body: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<(u16, Bytes), CallError> {
        self.post(|| Ok((body()?, HeaderMap::new()))).await
    }

    /// [`HookClient::call`] where `request` makes the body and headers of
    /// this one request (added to the client's own), once a slot is free.
    pub(crate) async fn post(
        &self,
        request: impl FnOnce() -> Result<(Vec<u8>, HeaderMap), String>,
    ) -> Result<(u16, Bytes), CallError> {
        crate::timers::anchor();
        let deadline = crate::timers::coarse_deadline(self.timeout);
        tokio::time::timeout_at(deadline, self.call_unbounded(request))
            .await
            .map_err(|_| CallError::Timeout(self.timeout))?
    }

    async fn call_unbounded(
        &self,
        request: impl FnOnce() -> Result<(Vec<u8>, HeaderMap), String>,
    ) -> Result<(u16, Bytes), CallError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| CallError::Http("the hook is shut down".to_owned()))?;
        let (body, extra_headers) = request().map_err(CallError::Request)?;
        let mut request = Request::post(self.url.clone())
            .header(CONTENT_TYPE, "application/json")
            .header(
                USER_AGENT,
                concat!("net-receiver/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| CallError::Http(e.to_string()))?;
        request.headers_mut().extend(self.headers.clone());
        request.headers_mut().extend(extra_headers);
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| CallError::Http(error_chain(&e)))?;
        let status = response.status().as_u16();
        let answer = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| CallError::Body(e.to_string()))?
            .to_bytes();
        Ok((status, answer))
    }
}

/// An error with its causes, `outer: inner: …` (hyper's own text is terse).
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
