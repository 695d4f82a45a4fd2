//! Plain HTTP at a real host name (issue 11): browsers drop Sesame's Secure cookies there, so
//! the pages say that Sesame needs HTTPS and how to set it up, instead of "this form has
//! expired". Raw requests through the real server on port 0, with the Host a browser sends.

use sesame_server::ServerConfig;
use sesame_testkit::TestServer;
use std::net::{IpAddr, SocketAddr};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const WARNING: &str = "Sesame needs HTTPS at this address";
const EXPIRED: &str = "This form has expired or came from another site";

/// Sends one request from `from` (a loopback address) with `headers` and returns the answer.
async fn raw(
    server: SocketAddr,
    from: [u8; 4],
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> String {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(IpAddr::from(from), 0)).unwrap();
    let mut stream = socket.connect(server).await.unwrap();
    let mut request = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    if method == "POST" {
        request.push_str(&format!(
            "Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    String::from_utf8(answer).unwrap()
}

async fn login_page(srv: &TestServer, from: [u8; 4], headers: &[(&str, &str)]) -> String {
    let page = raw(srv.addr, from, "GET", "/login", headers, "").await;
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    page
}

#[tokio::test]
async fn the_sign_in_page_asks_for_https_at_a_real_host_name_over_plain_http() {
    let srv = TestServer::spawn().await;
    let page = login_page(&srv, [127, 0, 0, 1], &[("Host", "sesame.example.com")]).await;
    assert!(page.contains(WARNING), "{page}");
    assert!(
        page.contains("[tls]") && page.contains("trusted_proxies"),
        "and says how to set it up"
    );
    let with_port = login_page(&srv, [127, 0, 0, 1], &[("Host", "192.0.2.7:8080")]).await;
    assert!(with_port.contains(WARNING));
    srv.stop().await;
}

#[tokio::test]
async fn the_sign_in_page_does_not_ask_for_https_at_localhost() {
    let srv = TestServer::spawn().await;
    let port = srv.addr.port().to_string();
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
    ] {
        let page = login_page(&srv, [127, 0, 0, 1], &[("Host", &host)]).await;
        assert!(!page.contains(WARNING), "{host}: {page}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn a_trusted_proxys_forwarded_https_silences_the_warning_and_nobody_elses_does() {
    let srv = TestServer::spawn_with(ServerConfig {
        trusted_proxies: vec![IpAddr::from([127, 0, 0, 1])],
        ..ServerConfig::default()
    })
    .await;
    let forwarded = [
        ("Host", "sesame.example.com"),
        ("X-Forwarded-Proto", "https"),
    ];
    let proxied = login_page(&srv, [127, 0, 0, 1], &forwarded).await;
    assert!(!proxied.contains(WARNING), "{proxied}");
    let stranger = login_page(&srv, [127, 0, 0, 2], &forwarded).await;
    assert!(
        stranger.contains(WARNING),
        "an untrusted client cannot claim HTTPS"
    );
    let plain = login_page(
        &srv,
        [127, 0, 0, 1],
        &[
            ("Host", "sesame.example.com"),
            ("X-Forwarded-Proto", "http"),
        ],
    )
    .await;
    assert!(
        plain.contains(WARNING),
        "the proxy itself served plain HTTP"
    );
    srv.stop().await;
}

#[tokio::test]
async fn a_form_without_its_cookie_over_plain_http_says_https_is_needed_not_expired() {
    let srv = TestServer::spawn().await;
    let body = "csrf=whatever&username=alice";
    let remote = raw(
        srv.addr,
        [127, 0, 0, 1],
        "POST",
        "/login",
        &[("Host", "sesame.example.com")],
        body,
    )
    .await;
    assert!(remote.starts_with("HTTP/1.1 403"), "{remote}");
    assert!(
        remote.contains("HTTPS needed") && remote.contains(WARNING),
        "{remote}"
    );
    assert!(!remote.contains(EXPIRED), "{remote}");
    // At localhost a missing cookie means what it always meant.
    let host = format!("127.0.0.1:{}", srv.addr.port());
    let local = raw(
        srv.addr,
        [127, 0, 0, 1],
        "POST",
        "/login",
        &[("Host", &host)],
        body,
    )
    .await;
    assert!(local.starts_with("HTTP/1.1 403"), "{local}");
    assert!(
        local.contains(EXPIRED) && !local.contains(WARNING),
        "{local}"
    );
    srv.stop().await;
}

#[tokio::test]
async fn the_setup_page_asks_for_https_at_a_real_host_name_over_plain_http() {
    let srv = TestServer::spawn().await;
    let path =
        sesame_server::service::setup::ensure_setup_link(&srv.state, srv.state.default_tenant)
            .await
            .unwrap()
            .expect("no admin yet");
    let remote = raw(
        srv.addr,
        [127, 0, 0, 1],
        "GET",
        &path,
        &[("Host", "sesame.example.com:8080")],
        "",
    )
    .await;
    assert!(remote.starts_with("HTTP/1.1 200"), "{remote}");
    assert!(remote.contains(WARNING), "{remote}");
    let local = raw(
        srv.addr,
        [127, 0, 0, 1],
        "GET",
        &path,
        &[("Host", "localhost")],
        "",
    )
    .await;
    assert!(!local.contains(WARNING), "{local}");
    srv.stop().await;
}
