//! Connections against the real server on raw sockets (SECURITY.md, "Bad input and faults"):
//! half-sent and idle connections are closed, one client holds a bounded share (past twice
//! it, it is closed at once) that does not crowd out other clients, a flood past the cap still
//! gets health checks answered, and a shutdown is bounded.

use sesame_server::ServerConfig;
use sesame_testkit::TestServer;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

fn config(f: impl FnOnce(&mut sesame_server::serve::ConnectionLimits)) -> ServerConfig {
    let mut c = ServerConfig::default();
    f(&mut c.connections);
    c
}

/// A raw connection from `from` (a loopback address).
async fn connect(to: SocketAddr, from: [u8; 4]) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket
        .bind(SocketAddr::from((from, 0)))
        .expect("bind a loopback address");
    socket.connect(to).await.expect("connect")
}

/// Reads until the server closes the connection (or `within` passes); returns what arrived
/// and whether it closed.
async fn read_until_closed(s: &mut TcpStream, within: Duration) -> (String, bool) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (String::from_utf8_lossy(&got).into(), true),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Err(_) => return (String::from_utf8_lossy(&got).into(), false),
        }
    }
}

async fn get(to: SocketAddr, from: [u8; 4], path: &str) -> String {
    let mut s = connect(to, from).await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    read_until_closed(&mut s, Duration::from_secs(5)).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_idle_connections_are_closed() {
    let srv = TestServer::spawn_with(config(|c| c.header_read_secs = 1)).await;
    // Headers that never end.
    let mut slow = connect(srv.addr, [127, 0, 0, 1]).await;
    slow.write_all(b"GET /login HTTP/1.1\r\nHost: localhost\r\nX-Slow: ")
        .await
        .unwrap();
    let t = Instant::now();
    let (_, closed) = read_until_closed(&mut slow, Duration::from_secs(5)).await;
    assert!(closed, "a half-sent request stays open");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
    // A kept-alive connection that goes quiet after its answer.
    let mut idle = connect(srv.addr, [127, 0, 0, 1]).await;
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let t = Instant::now();
    let (answer, closed) = read_until_closed(&mut idle, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle connection stays open");
    assert!(t.elapsed() < Duration::from_secs(4));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_sent_slowly_is_cut_off() {
    let srv = TestServer::spawn_with(config(|c| c.body_read_secs = 1)).await;
    let mut s = connect(srv.addr, [127, 0, 0, 1]).await;
    s.write_all(
        b"POST /login HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nusername=",
    )
    .await
    .unwrap();
    let (answer, closed) = read_until_closed(&mut s, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(closed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_client_holds_a_bounded_share_and_health_checks_survive_a_flood() {
    let srv = TestServer::spawn_with(config(|c| {
        c.per_client = 5;
        c.max = 8;
        c.header_read_secs = 30;
    }))
    .await;
    // One client opens its five half-sent connections; on a sixth, only health checks are
    // answered, and the rest is refused after a wait.
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut s = connect(srv.addr, [127, 0, 0, 2]).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = get(srv.addr, [127, 0, 0, 2], "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let t = Instant::now();
    let page = get(srv.addr, [127, 0, 0, 2], "/login").await;
    assert!(page.starts_with("HTTP/1.1 429"), "{page}");
    assert!(
        page.contains("Too many connections from your address"),
        "{page}"
    );
    assert!(t.elapsed() >= Duration::from_millis(900), "answered slowly");
    // Other clients are served normally.
    assert!(get(srv.addr, [127, 0, 0, 3], "/login")
        .await
        .starts_with("HTTP/1.1 200"));
    // Three more clients fill the server past its cap of 8 in all.
    for from in [4, 5, 6] {
        let mut s = connect(srv.addr, [127, 0, 0, from]).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // Past the cap, health checks are still answered, and everything else is told to wait.
    let health = get(srv.addr, [127, 0, 0, 7], "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let page = get(srv.addr, [127, 0, 0, 7], "/login").await;
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
    assert!(page.contains("too many connections"), "{page}");
    // The flood goes away: back to normal.
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(get(srv.addr, [127, 0, 0, 7], "/login")
        .await
        .starts_with("HTTP/1.1 200"));
}

/// Opens `n` half-sent connections from `from` and waits until the server has taken them.
async fn hold(to: SocketAddr, from: [u8; 4], n: usize) -> Vec<TcpStream> {
    let mut held = Vec::new();
    for _ in 0..n {
        let mut s = connect(to, from).await;
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        held.push(s);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    held
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_share_does_not_push_others_into_overflow() {
    let srv = TestServer::spawn_with(config(|c| {
        c.per_client = 4;
        c.max = 8;
        c.header_read_secs = 30;
    }))
    .await;
    // One client holds twice its share: as many connections as the whole cap.
    let _greedy = hold(srv.addr, [127, 0, 0, 2], 8).await;
    // Only its own share counts toward the cap, so the others are served normally.
    let page = get(srv.addr, [127, 0, 0, 3], "/login").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // Four more clients fill the cap with their own connections: only then is it full.
    let _others = hold(srv.addr, [127, 0, 0, 3], 4).await;
    let page = get(srv.addr, [127, 0, 0, 4], "/login").await;
    assert!(page.starts_with("HTTP/1.1 503"), "{page}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_past_twice_its_share_is_closed_without_an_answer() {
    let srv = TestServer::spawn_with(config(|c| {
        c.per_client = 4;
        c.max = 8;
        c.header_read_secs = 30;
    }))
    .await;
    let mut greedy = hold(srv.addr, [127, 0, 0, 2], 8).await;
    // A ninth connection is closed without an answer, after a pause (a request sent on it
    // could only race the close).
    let mut ninth = connect(srv.addr, [127, 0, 0, 2]).await;
    let (answer, closed) = read_until_closed(&mut ninth, Duration::from_secs(3)).await;
    assert!(closed, "a connection past twice the share stays open");
    assert_eq!(answer, "", "closed without an answer");
    // Others are not affected.
    let page = get(srv.addr, [127, 0, 0, 3], "/login").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    // A place given back lets the client in again (over its share, so health checks only).
    drop(greedy.pop());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let health = get(srv.addr, [127, 0, 0, 2], "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_finishes_within_its_deadline_with_requests_still_open() {
    let srv = TestServer::spawn_with(config(|c| c.shutdown_secs = 2)).await;
    // A half-sent request and a request whose body never comes.
    let mut half = connect(srv.addr, [127, 0, 0, 1]).await;
    half.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut body = connect(srv.addr, [127, 0, 0, 1]).await;
    body.write_all(b"POST /login HTTP/1.1\r\nHost: l\r\nContent-Length: 50\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let t = Instant::now();
    tokio::time::timeout(Duration::from_secs(6), srv.stop())
        .await
        .expect("the shutdown finished");
    assert!(t.elapsed() < Duration::from_secs(4), "{:?}", t.elapsed());
}
