//! A real HTTP hook server for the hook tests: hyper on `127.0.0.1:<random
//! port>`, on a runtime of its own, answering each POST with what the test's
//! function says for that request (any status, any bytes, after a wait or
//! never). It keeps every request it got (as JSON) and counts its TCP
//! connections, so tests can check what was sent, how often, and that
//! connections are kept alive. [`HookServer::start_tls`] serves the same
//! over TLS (tokio-rustls) with a certificate of a test CA.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::sync::Notify;
use tokio_rustls::TlsAcceptor;

use crate::support::test_ca::TestCa;

/// What the hook answers to one request.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// This status and body (JSON or not).
    Reply(u16, Vec<u8>),
    /// Wait until [`HookServer::release`], then answer with the inner answer.
    Held(Box<Answer>),
    /// Never answer (the connection stays open until the server stops).
    Never,
}

impl Answer {
    /// `200` with this JSON.
    pub(crate) fn json(value: &Value) -> Self {
        Answer::Reply(200, value.to_string().into_bytes())
    }

    /// `200` with `{"action": action}`.
    pub(crate) fn action(action: &str) -> Self {
        Self::json(&serde_json::json!({ "action": action }))
    }
}

type Decide = dyn Fn(&Value) -> Answer + Send + Sync;

struct Shared {
    decide: Box<Decide>,
    requests: Mutex<Vec<Value>>,
    connections: AtomicUsize,
    release: Notify,
    released: std::sync::atomic::AtomicBool,
}

/// The running hook server; stopped when dropped.
pub(crate) struct HookServer {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    scheme: &'static str,
    shared: Arc<Shared>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl HookServer {
    /// Starts a server answering each request with `decide(request JSON)`.
    pub(crate) fn start(decide: impl Fn(&Value) -> Answer + Send + Sync + 'static) -> Self {
        Self::serve(decide, None)
    }

    /// [`HookServer::start`] over TLS, presenting `ca`'s server certificate
    /// (for `127.0.0.1` and `localhost`); a failed handshake is dropped
    /// uncounted.
    pub(crate) fn start_tls(
        ca: &TestCa,
        decide: impl Fn(&Value) -> Answer + Send + Sync + 'static,
    ) -> Self {
        Self::serve(decide, Some(TlsAcceptor::from(ca.server_config())))
    }

    fn serve(
        decide: impl Fn(&Value) -> Answer + Send + Sync + 'static,
        tls: Option<TlsAcceptor>,
    ) -> Self {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("hook runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind hook server");
        let addr = listener.local_addr().expect("hook addr");
        let shared = Arc::new(Shared {
            decide: Box::new(decide),
            requests: Mutex::new(Vec::new()),
            connections: AtomicUsize::new(0),
            release: Notify::new(),
            released: std::sync::atomic::AtomicBool::new(false),
        });
        let serving = Arc::clone(&shared);
        runtime.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let shared = Arc::clone(&serving);
                let tls = tls.clone();
                tokio::spawn(async move {
                    let counted = Arc::clone(&shared);
                    let service = service_fn(move |request| answer(Arc::clone(&shared), request));
                    let http = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            counted.connections.fetch_add(1, Ordering::SeqCst);
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            counted.connections.fetch_add(1, Ordering::SeqCst);
                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                        }
                    }
                });
            }
        });
        Self {
            addr,
            scheme,
            shared,
            runtime: Some(runtime),
        }
    }

    /// The hook's URL (`https://` for [`HookServer::start_tls`]).
    pub(crate) fn url(&self) -> String {
        format!("{}://{}/hook", self.scheme, self.addr)
    }

    /// Every request so far, in arrival order.
    pub(crate) fn requests(&self) -> Vec<Value> {
        self.shared.requests.lock().expect("requests").clone()
    }

    /// The stages of the requests so far.
    pub(crate) fn stages(&self) -> Vec<String> {
        self.requests()
            .iter()
            .map(|r| r["stage"].as_str().unwrap_or("?").to_owned())
            .collect()
    }

    /// TCP connections accepted so far.
    pub(crate) fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// Lets every [`Answer::Held`] request (now and later) answer.
    pub(crate) fn release(&self) {
        self.shared.released.store(true, Ordering::SeqCst);
        self.shared.release.notify_waiters();
    }
}

impl Drop for HookServer {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

async fn answer(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = match request.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut decided = (shared.decide)(&json);
    shared.requests.lock().expect("requests").push(json);
    loop {
        match decided {
            Answer::Reply(status, body) => {
                let mut response = Response::new(Full::new(Bytes::from(body)));
                *response.status_mut() =
                    hyper::StatusCode::from_u16(status).expect("a valid status");
                return Ok(response);
            }
            Answer::Held(inner) => {
                let notified = shared.release.notified();
                if !shared.released.load(Ordering::SeqCst) {
                    notified.await;
                }
                decided = *inner;
            }
            Answer::Never => std::future::pending::<()>().await,
        }
    }
}
