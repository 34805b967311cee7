//! The HTTP endpoints: `/metrics` (Prometheus text), `/health` and `/ready`.
//!
//! Served on their own ports (9253, 8080, 8181 by default, as node-local-dns and AKS
//! LocalDNS) so probes keep working whatever the DNS listeners are doing.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Metrics;

/// What the endpoints report.
pub struct Endpoints {
    pub metrics: Arc<Metrics>,
    /// Set once the config is loaded and every listener is bound; cleared while draining.
    pub ready: AtomicBool,
    /// Called before `/metrics` is encoded, to refresh gauges read from live state.
    pub refresh: Box<dyn Fn() + Send + Sync>,
}

/// Serves `/metrics`, `/health` and `/ready` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, endpoints: Arc<Endpoints>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let endpoints = endpoints.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| respond(req, endpoints.clone()));
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            // A client that goes away mid-response is not our problem.
            let _ = conn.await;
        });
    }
}

async fn respond(
    req: Request<Incoming>,
    endpoints: Arc<Endpoints>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (status, content_type, body) = match req.uri().path() {
        "/metrics" => {
            (endpoints.refresh)();
            let text = endpoints.metrics.encode();
            (
                StatusCode::OK,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                text,
            )
        }
        "/health" => (StatusCode::OK, "text/plain", "OK".to_string()),
        "/ready" if endpoints.ready.load(Ordering::Acquire) => {
            (StatusCode::OK, "text/plain", "OK".to_string())
        }
        "/ready" => (
            StatusCode::SERVICE_UNAVAILABLE,
            "text/plain",
            "not ready".to_string(),
        ),
        _ => (StatusCode::NOT_FOUND, "text/plain", "not found".to_string()),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    if let Ok(v) = content_type.parse() {
        resp.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    Ok(resp)
}

/// Binds an endpoint address (port 0 allowed) with `SO_REUSEPORT`, so during a rolling update
/// in host-network mode the new pod binds the same ports while the old one drains.
pub async fn bind(addr: SocketAddr) -> std::io::Result<(TcpListener, SocketAddr)> {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    s.set_nonblocking(true)?;
    s.bind(&SockAddr::from(addr))?;
    s.listen(128)?;
    let l = TcpListener::from_std(s.into())?;
    let a = l.local_addr()?;
    Ok((l, a))
}
