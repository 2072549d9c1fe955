//! A no-op HTTP stage hook in Rust for benchmarks (`bench/hooks.sh`): answers
//! every call `204` (continue) over keep-alive HTTP/1.1 without reading the
//! JSON. With `--never-for ADDRESS` it reads each call and never answers one
//! whose `command.url` is ADDRESS (a hook that hangs for some sessions only).
//!
//! Usage: noop_hook [PORT] [--never-for ADDRESS]   (127.0.0.1; PORT 0 picks
//! one; prints `listening on http://127.0.0.1:PORT/` once ready)

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

async fn answer(
    never_for: Arc<Option<String>>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let body = request.into_body().collect().await.map(|b| b.to_bytes());
    if let (Some(address), Ok(body)) = (never_for.as_deref(), body) {
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
        if json["command"]["url"] == address {
            std::future::pending::<()>().await;
        }
    }
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    Ok(response)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut port = 0u16;
    let mut never_for = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--never-for" => never_for = args.next(),
            other => {
                port = other.parse().map_err(|_| {
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        format!("bad port {other:?}"),
                    )
                })?;
            }
        }
    }
    let never_for = Arc::new(never_for);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    println!("listening on http://{}/", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        stream.set_nodelay(true)?;
        let never_for = Arc::clone(&never_for);
        tokio::spawn(async move {
            let service = service_fn(move |request| answer(Arc::clone(&never_for), request));
            // A broken connection ends only itself.
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
