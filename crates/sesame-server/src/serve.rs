//! The HTTP server loop. Sesame accepts its own connections (rather than `axum::serve`) so that
//! what one client can hold is bounded, and stopping is bounded too:
//!
//! - a request's headers must arrive within `header_read_secs`, which also closes a
//!   keep-alive connection idle that long; a request body must arrive within `body_read_secs`;
//! - past `per_client` connections from one client (an IPv4 address or an IPv6 /64, as
//!   [`address_key`] counts them; a reverse proxy in `trusted_proxies` is exempt: it carries
//!   everyone), every request on its further connections is answered 429 after a second's
//!   wait (a flood's connections wait instead of spinning); those connections are its own
//!   problem and do not count toward `max`, so one greedy client cannot push everyone else
//!   past the cap; past twice `per_client`, its new connections are closed unanswered after a
//!   second (at once, they would be reopened as fast as they are closed);
//!   past `max` connections in all, new ones get 503 and are closed; either way `/healthz`
//!   and `/readyz` are answered, so health checks keep working through a flood; past twice
//!   `max` (now counting every connection: the file descriptors must last), new connections
//!   are closed at once;
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
use sesame_core::guessing::address_key;
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

/// Open connections, per client (keyed by [`address_key`]) and in all.
#[derive(Default)]
struct Open {
    /// Every open connection: what the file descriptors must cover.
    total: usize,
    /// The connections within their client's share: what `max` bounds.
    within_share: usize,
    by_client: HashMap<String, usize>,
}

/// One open connection's place in [`Open`], given back on drop.
struct Place {
    open: Arc<Mutex<Open>>,
    client: Option<String>,
    within_share: bool,
}

impl Drop for Place {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.total -= 1;
        if self.within_share {
            open.within_share -= 1;
        }
        if let Some(key) = &self.client {
            if let Some(n) = open.by_client.get_mut(key) {
                *n -= 1;
                if *n == 0 {
                    open.by_client.remove(key);
                }
            }
        }
    }
}

/// How long a connection of a client past twice its share is held, unanswered, before it is
/// closed.
const CLIENT_FULL_PAUSE: Duration = Duration::from_secs(1);

/// Why a connection is closed at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refused {
    /// Twice `max` connections are open in all.
    Full,
    /// Its client already holds twice its share.
    ClientFull,
}

/// Takes a place for a connection from `peer` and says how to serve it, or why it is closed
/// at once.
fn enter(
    open: &Arc<Mutex<Open>>,
    limits: &ConnectionLimits,
    peer: IpAddr,
    proxies: &[IpAddr],
) -> Result<(Place, Mode), Refused> {
    // A dual-stack listener sees an IPv4 client as ::ffff:a.b.c.d: without this, a v4 proxy
    // would lose its exemption and count as one client.
    let peer = peer.to_canonical();
    let proxy = proxies.iter().any(|p| p.to_canonical() == peer);
    let mut o = open.lock().unwrap_or_else(PoisonError::into_inner);
    let max = limits.max.max(1);
    if o.total >= max.saturating_mul(2) {
        return Err(Refused::Full);
    }
    let share = limits.per_client.max(1);
    let client = (!proxy).then(|| address_key(&peer.to_string()));
    let mut mode = Mode::Normal;
    if let Some(key) = &client {
        let n = o.by_client.get(key).copied().unwrap_or(0) + 1;
        if n > share.saturating_mul(2) {
            return Err(Refused::ClientFull);
        }
        o.by_client.insert(key.clone(), n);
        if n > share {
            mode = Mode::OverShare;
        }
    }
    o.total += 1;
    let within_share = mode == Mode::Normal;
    if within_share {
        o.within_share += 1;
        if o.within_share > max {
            mode = Mode::OverCap;
        }
    }
    Ok((
        Place {
            open: open.clone(),
            client,
            within_share,
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
    // Connections of a client past twice its share, held a moment before they are closed.
    let held = Arc::new(std::sync::atomic::AtomicUsize::new(0));
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
        // Handlers compare the peer with `trusted_proxies` and log it: give them the IPv4
        // address a dual-stack listener reports as ::ffff:a.b.c.d.
        let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
        let (place, mode) = match enter(&open, &limits, peer.ip(), &proxies) {
            Ok(entered) => entered,
            Err(refused) => {
                if refused == Refused::ClientFull {
                    // Per connection and at debug: a flood would otherwise flood the log too.
                    tracing::debug!(client = %peer.ip(), "a client holds twice its share: closing its new connection");
                    // Closed after a pause, not at once: a client that reconnects the moment
                    // it is refused would otherwise keep this loop accepting and closing as
                    // fast as it can, and starve everyone else (measured: p99 of others' sign-
                    // ins 3.5x). The pause costs a descriptor per held connection, so at most
                    // `max` are held; past that they are closed at once.
                    use std::sync::atomic::Ordering::Relaxed;
                    if held.fetch_add(1, Relaxed) < limits.max.max(1) {
                        let held = held.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(CLIENT_FULL_PAUSE).await;
                            drop(stream);
                            held.fetch_sub(1, Relaxed);
                        });
                    } else {
                        held.fetch_sub(1, Relaxed);
                        drop(stream);
                    }
                    continue;
                } else if !refused_logged {
                    tracing::warn!(
                        max = limits.max,
                        "twice the connection cap is open: closing new connections at once"
                    );
                    refused_logged = true;
                }
                drop(stream);
                continue;
            }
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn mode(r: Result<(Place, Mode), Refused>) -> Result<Mode, Refused> {
        r.map(|(_, m)| m)
    }

    #[test]
    fn a_client_past_its_share_or_the_cap_is_served_apart_and_places_come_back() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            max: 3,
            per_client: 2,
            ..ConnectionLimits::default()
        };
        let (a, b, proxy) = (ip("10.0.0.1"), ip("10.0.0.2"), ip("10.0.0.9"));
        let proxies = [proxy];
        let (p1, m1) = enter(&open, &limits, a, &proxies).unwrap();
        let (_p2, m2) = enter(&open, &limits, a, &proxies).unwrap();
        assert_eq!((m1, m2), (Mode::Normal, Mode::Normal));
        let (p3, m3) = enter(&open, &limits, a, &proxies).unwrap();
        assert_eq!(m3, Mode::OverShare, "a's share is full");
        drop(p3);
        let (pb, mb) = enter(&open, &limits, b, &proxies).unwrap();
        assert_eq!(mb, Mode::Normal);
        // A fourth connection in all is past the cap; a trusted proxy has no share to fill.
        let (_p4, m4) = enter(&open, &limits, proxy, &proxies).unwrap();
        assert_eq!(m4, Mode::OverCap);
        let (_p5, _) = enter(&open, &limits, proxy, &proxies).unwrap();
        let (_p6, _) = enter(&open, &limits, proxy, &proxies).unwrap();
        assert_eq!(
            mode(enter(&open, &limits, proxy, &proxies)),
            Err(Refused::Full),
            "twice the cap: closed at once"
        );
        drop(p1);
        assert_eq!(mode(enter(&open, &limits, a, &proxies)), Ok(Mode::OverCap));
        drop(pb);
        assert!(
            !open.lock().unwrap().by_client.contains_key("10.0.0.2"),
            "b's entry went with its last connection"
        );
    }

    #[test]
    fn connections_past_a_clients_share_leave_the_cap_to_others_and_twice_the_share_is_closed() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            max: 4,
            per_client: 2,
            ..ConnectionLimits::default()
        };
        let (a, b) = (ip("10.0.0.1"), ip("10.0.0.2"));
        let mut held = Vec::new();
        for want in [Mode::Normal, Mode::Normal, Mode::OverShare, Mode::OverShare] {
            let (p, m) = enter(&open, &limits, a, &[]).unwrap();
            assert_eq!(m, want);
            held.push(p);
        }
        assert_eq!(
            mode(enter(&open, &limits, a, &[])),
            Err(Refused::ClientFull),
            "twice a's share: closed at once"
        );
        // a holds four connections, the cap is four, yet b is served: a's two extra
        // connections are not b's problem.
        let (_pb1, mb1) = enter(&open, &limits, b, &[]).unwrap();
        let (_pb2, mb2) = enter(&open, &limits, b, &[]).unwrap();
        assert_eq!((mb1, mb2), (Mode::Normal, Mode::Normal));
        // A place given back lets a in again, over its share still.
        held.pop();
        assert_eq!(mode(enter(&open, &limits, a, &[])), Ok(Mode::OverShare));
    }

    #[test]
    fn an_ipv6_client_is_one_client_per_64_and_a_mapped_ipv4_address_is_the_ipv4_address() {
        let open = Arc::new(Mutex::new(Open::default()));
        let limits = ConnectionLimits {
            per_client: 1,
            ..ConnectionLimits::default()
        };
        let (_p1, m1) = enter(&open, &limits, ip("2001:db8:1:2::1"), &[]).unwrap();
        let (_p2, m2) = enter(&open, &limits, ip("2001:db8:1:2:ffff::9"), &[]).unwrap();
        assert_eq!(
            (m1, m2),
            (Mode::Normal, Mode::OverShare),
            "one /64, one share"
        );
        assert_eq!(
            mode(enter(&open, &limits, ip("2001:db8:1:2::3"), &[])),
            Err(Refused::ClientFull)
        );
        let (_p3, m3) = enter(&open, &limits, ip("2001:db8:1:3::1"), &[]).unwrap();
        assert_eq!(m3, Mode::Normal, "another /64 is another client");

        let (_p4, m4) = enter(&open, &limits, ip("192.0.2.7"), &[]).unwrap();
        let (_p5, m5) = enter(&open, &limits, ip("::ffff:192.0.2.7"), &[]).unwrap();
        assert_eq!((m4, m5), (Mode::Normal, Mode::OverShare));
        // A v4 proxy seen through a dual-stack listener, or listed in its mapped form, is
        // still a proxy: exempt from the share.
        let proxy = ip("192.0.2.1");
        let mut held = Vec::new();
        for _ in 0..3 {
            let (p, m) = enter(&open, &limits, ip("::ffff:192.0.2.1"), &[proxy]).unwrap();
            assert_eq!(m, Mode::Normal);
            held.push(p);
            let (p, m) = enter(&open, &limits, proxy, &[ip("::ffff:192.0.2.1")]).unwrap();
            assert_eq!(m, Mode::Normal);
            held.push(p);
        }
    }
}
