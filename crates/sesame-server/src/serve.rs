//! The HTTP server loop. Sesame accepts its own connections (rather than `axum::serve`) so that
//! what one client can hold is bounded, and stopping is bounded too:
//!
//! - a request's headers must arrive within `header_read_secs`, which also closes a
//!   keep-alive connection idle that long; a request body must arrive within `body_read_secs`;
//! - past `per_client` connections from one client address (a reverse proxy in
//!   `trusted_proxies` is exempt: it carries everyone), every request on its further
//!   connections is answered 429 after a second's wait (a flood's connections wait instead of
//!   spinning);
//!   past `max` connections in all, new ones get 503 and are closed; either way `/healthz`
//!   and `/readyz` are answered, so health checks keep working through a flood; past twice
//!   `max`, new connections are closed at once (the file descriptors must last);
//! - on shutdown the listener closes, every connection finishes its request in flight and
//!   closes, device event streams end with a hint to reconnect, and whatever is still open
//!   after `shutdown_secs` is dropped.

use crate::{app, AppState};
use axum::extract::{ConnectInfo, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;
use tower::Service;

/// Bounds on connections, in `[server.connections]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConnectionLimits {
    /// Seconds to send a request's headers; also how long a kept-alive connection may idle.
    pub header_read_secs: u64,
    /// Seconds to send a request's body once its headers arrived.
    pub body_read_secs: u64,
    /// Connections served normally; past this, only health checks are answered.
    pub max: usize,
    /// Connections one client address may hold (not counting trusted proxies).
    pub per_client: usize,
    /// Seconds a shutdown waits for requests in flight before dropping them.
    pub shutdown_secs: u64,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            header_read_secs: 10,
            body_read_secs: 10,
            max: 4096,
            per_client: 256,
            shutdown_secs: 10,
        }
    }
}

/// How a connection is served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Normal,
    /// Its client holds more than its share: health checks only, the rest slowly refused.
    OverShare,
    /// Past the cap in all: health checks only.
    OverCap,
}

/// Open connections, in all and per client address.
#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<IpAddr, usize>,
}

/// One open connection's place in [`Open`], given back on drop.
struct Place {
    open: Arc<Mutex<Open>>,
    client: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if let Some(ip) = self.client {
            if let Some(n) = open.by_client.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    open.by_client.remove(&ip);
                }
            }
        }
    }
}

/// Takes a place for a connection from `peer` and says how to serve it; None past twice the
/// cap (closed at once).
fn enter(
    open: &Arc<Mutex<Open>>,
    limits: &ConnectionLimits,
    peer: IpAddr,
    proxy: bool,
) -> Option<(Place, Mode)> {
    let mut o = open.lock().unwrap_or_else(PoisonError::into_inner);
    let max = limits.max.max(1);
    if o.total >= max.saturating_mul(2) {
        return None;
    }
    let client = (!proxy).then_some(peer);
    let mut mode = Mode::Normal;
    if let Some(ip) = client {
        let n = o.by_client.entry(ip).or_insert(0);
        *n += 1;
        if *n > limits.per_client.max(1) {
            mode = Mode::OverShare;
        }
    }
    o.total += 1;
    if mode == Mode::Normal && o.total > max {
        mode = Mode::OverCap;
    }
    Some((
        Place {
            open: open.clone(),
            client,
        },
        mode,
    ))
}

/// How the browser's connection reached Sesame, as a request extension every request carries:
/// over plain HTTP browsers drop Sesame's Secure cookies (see `web::https`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    /// TLS ended at Sesame itself.
    Https,
}

/// Serves plain HTTP on `listener` until `shutdown` resolves, then stops within the limits'
/// `shutdown_secs`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_streams(
        listener,
        state,
        shutdown,
        |s| async move { Ok(s) },
        Scheme::Http,
    )
    .await
}

/// [`serve`] with every accepted stream first passed through `wrap`, a TLS handshake (its
/// requests count as HTTPS), which must finish within `header_read_secs`. See
/// [`crate::tls::serve_tls`].
pub async fn serve_with<S, F, Fut>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    wrap: F,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<S>> + Send + 'static,
{
    serve_streams(listener, state, shutdown, wrap, Scheme::Https).await
}

async fn serve_streams<S, F, Fut>(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    wrap: F,
    scheme: Scheme,
) -> std::io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    F: Fn(tokio::net::TcpStream) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = std::io::Result<S>> + Send + 'static,
{
    let mut limits = state.config.connections;
    fit_to_file_limit(&mut limits);
    let proxies = state.config.trusted_proxies.clone();
    let router = app(state.clone());
    let open = Arc::new(Mutex::new(Open::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let wrap = Arc::new(wrap);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: wait a moment instead of spinning; the
                // connections already open go on.
                tracing::warn!(%e, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let proxy = proxies.contains(&peer.ip());
        let Some((place, mode)) = enter(&open, &limits, peer.ip(), proxy) else {
            if !refused_logged {
                tracing::warn!(
                    max = limits.max,
                    "twice the connection cap is open: closing new connections at once"
                );
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        if mode != Mode::Normal {
            tracing::debug!(client = %peer.ip(), ?mode, "a connection past its limit");
        } else {
            refused_logged = false;
        }
        let _ = stream.set_nodelay(true);
        let (router, wrap, stop) = (router.clone(), wrap.clone(), stop_rx.clone());
        connections.spawn(async move {
            let _place = place;
            let handshake = Duration::from_secs(limits.header_read_secs);
            let Ok(Ok(io)) = tokio::time::timeout(handshake, wrap(stream)).await else {
                return;
            };
            connection(io, peer, scheme, router, mode, &limits, stop).await;
        });
    }
    // Stop: no new connections; each open one finishes its request in flight; event streams
    // end with a hint to reconnect; at the deadline, whatever is left is dropped.
    drop(listener);
    let _ = stop_tx.send(true);
    state.hub.shut_down();
    let deadline = tokio::time::sleep(Duration::from_secs(limits.shutdown_secs));
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() { break },
            () = &mut deadline => {
                tracing::warn!(left = connections.len(), "shutdown deadline reached: dropping the connections still open");
                connections.abort_all();
                break;
            }
        }
    }
    Ok(())
}

/// Serves one connection until it closes, or gracefully once `stop` turns true.
async fn connection<S>(
    io: S,
    peer: SocketAddr,
    scheme: Scheme,
    router: axum::Router,
    mode: Mode,
    limits: &ConnectionLimits,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.extensions_mut().insert(scheme);
        req.extensions_mut().insert(mode);
        router.clone().call(req)
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(limits.header_read_secs))
        // Past the cap the connection closes after its answer. A client over its share keeps
        // its connection: each request on it waits a second, and reconnecting would only cost
        // both sides more.
        .keep_alive(mode != Mode::OverCap);
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        () = async { let _ = stop.wait_for(|s| *s).await; } => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Past a limit only health checks are served; the rest is told to come back (a client over
/// its share only after a second: its connections then wait rather than spin).
pub async fn overflow_guard(req: Request, next: Next) -> Response {
    let mode = req
        .extensions()
        .get::<Mode>()
        .copied()
        .unwrap_or(Mode::Normal);
    if mode == Mode::Normal || matches!(req.uri().path(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let (status, text) = if mode == Mode::OverShare {
        tokio::time::sleep(Duration::from_secs(1)).await;
        (
            StatusCode::TOO_MANY_REQUESTS,
            "Too many connections from your address. Close some and try again.\n",
        )
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "The server has too many connections right now. Try again in a moment.\n",
        )
    };
    let mut r = (status, text).into_response();
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    if mode == Mode::OverCap {
        r.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    r
}

/// A request body must arrive within the limit: read whole (bodies are small: see
/// `MAX_BODY_BYTES`) before the handler runs, so a body sent a byte at a time cannot hold a
/// connection and a handler open.
pub async fn body_deadline(
    axum::extract::State(secs): axum::extract::State<u64>,
    req: Request,
    next: Next,
) -> Response {
    let (parts, body) = req.into_parts();
    let read = axum::body::to_bytes(body, crate::MAX_BODY_BYTES);
    match tokio::time::timeout(Duration::from_secs(secs), read).await {
        Ok(Ok(bytes)) => next.run(Request::from_parts(parts, bytes.into())).await,
        Ok(Err(_)) => {
            (StatusCode::PAYLOAD_TOO_LARGE, "The request is too large.\n").into_response()
        }
        Err(_) => {
            let mut r = (
                StatusCode::REQUEST_TIMEOUT,
                "The request took too long to arrive.\n",
            )
                .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// Open files this process may have (`Max open files` in `/proc/self/limits`), if known.
fn open_files_limit() -> Option<usize> {
    std::fs::read_to_string("/proc/self/limits")
        .ok()?
        .lines()
        .find(|l| l.starts_with("Max open files"))?
        .split_whitespace()
        .nth(3)?
        .parse()
        .ok()
}

/// Files kept free of connections: the database, its journal, the listener, logs.
const FILES_KEPT_FREE: usize = 64;

/// Keeps the connection cap below the open-file limit, so that past the cap the server can
/// still accept a connection and answer `/healthz` instead of failing to accept at all.
fn fit_to_file_limit(limits: &mut ConnectionLimits) {
    let Some(files) = open_files_limit() else {
        return;
    };
    // Connections past the cap are still accepted (to answer health checks): leave room.
    let fits = files.saturating_sub(FILES_KEPT_FREE) / 2;
    if limits.max > fits {
        tracing::warn!(
            open_files = files,
            configured = limits.max,
            max = fits,
            "the open-file limit is low for [server.connections] max: using {fits} (raise the limit with `ulimit -n` or LimitNOFILE= to serve more)"
        );
        limits.max = fits.max(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_past_its_share_or_the_cap_is_served_apart_and_places_come_back() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            max: 3,
            per_client: 2,
            ..ConnectionLimits::default()
        };
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        let proxy: IpAddr = [10, 0, 0, 9].into();
        let (p1, m1) = enter(&open, &limits, a, false).unwrap();
        let (_p2, m2) = enter(&open, &limits, a, false).unwrap();
        assert_eq!((m1, m2), (Mode::Normal, Mode::Normal));
        let (p3, m3) = enter(&open, &limits, a, false).unwrap();
        assert_eq!(m3, Mode::OverShare, "a's share is full");
        drop(p3);
        let (pb, mb) = enter(&open, &limits, b, false).unwrap();
        assert_eq!(mb, Mode::Normal);
        // A fourth connection in all is past the cap; a trusted proxy has no share to fill.
        let (_p4, m4) = enter(&open, &limits, proxy, true).unwrap();
        assert_eq!(m4, Mode::OverCap);
        let (_p5, _) = enter(&open, &limits, proxy, true).unwrap();
        let (_p6, _) = enter(&open, &limits, proxy, true).unwrap();
        assert!(
            enter(&open, &limits, proxy, true).is_none(),
            "twice the cap: closed at once"
        );
        drop(p1);
        assert_eq!(
            enter(&open, &limits, a, false).map(|p| p.1),
            Some(Mode::OverCap)
        );
        drop(pb);
        assert!(
            !open.lock().unwrap().by_client.contains_key(&b),
            "b's entry went with its last connection"
        );
    }
}
