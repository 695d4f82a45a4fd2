//! Sesame's own HTTPS, through the real accept loop on port 0: a client that trusts the test
//! CA gets pages, plain HTTP to the same port gets none. Certificates are made here (rcgen);
//! no private key is kept in the repository.

use rustls::pki_types::ServerName;
use sesame_server::tls::{CertStore, TlsFiles};
use sesame_server::{AppState, ServerConfig, SystemClock};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Ca {
    cert: rcgen::Certificate,
    key: rcgen::KeyPair,
}

fn ca() -> Ca {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Sesame test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    Ca { cert, key }
}

/// A certificate for localhost signed by `ca`, written as `cert.pem` and `key.pem` in `dir`.
fn leaf_files(ca: &Ca, dir: &std::path::Path) -> TlsFiles {
    let params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    let files = TlsFiles {
        cert_file: dir.join("cert.pem"),
        key_file: dir.join("key.pem"),
    };
    std::fs::write(&files.cert_file, cert.pem() + &ca.cert.pem()).unwrap();
    std::fs::write(&files.key_file, key.serialize_pem()).unwrap();
    files
}

struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    _dir: tempfile::TempDir,
}

async fn serve_https(ca: &Ca) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let key = sesame_store::MasterKey::generate();
    let url = sesame_store::Backend::sqlite_url(&dir.path().join("sesame.db"));
    let store = sesame_store::open(&url, key.clone()).await.unwrap();
    let state = AppState::new(store, Arc::new(SystemClock), &key, ServerConfig::default())
        .await
        .unwrap();
    let certs = CertStore::open(leaf_files(ca, dir.path())).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(sesame_server::serve_tls(
        listener,
        state,
        async {
            let _ = rx.await;
        },
        certs,
    ));
    Server {
        addr,
        stop: Some(tx),
        task,
        _dir: dir,
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

/// Sends one request over TLS to a client that trusts only `ca`; returns the answer and the
/// protocol agreed by ALPN.
async fn https_get(ca: &Ca, addr: SocketAddr, path: &str, host: &str) -> (String, Vec<u8>) {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let mut config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("the handshake succeeds for a client trusting the CA");
    let alpn = tls.get_ref().1.alpn_protocol().unwrap_or_default().to_vec();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut answer))
        .await
        .expect("answered in time")
        .unwrap();
    (String::from_utf8_lossy(&answer).into_owned(), alpn)
}

#[tokio::test]
async fn https_serves_pages_to_a_client_trusting_the_certificate() {
    let ca = ca();
    let server = serve_https(&ca).await;
    let (health, alpn) = https_get(&ca, server.addr, "/healthz", "localhost").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    assert_eq!(alpn, b"http/1.1", "HTTP/1.1 is offered, not h2");
    let (login, _) = https_get(&ca, server.addr, "/login", "sesame.example.com").await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    assert!(
        !login.contains("Sesame needs HTTPS"),
        "a page served over TLS does not ask for HTTPS"
    );
    server.stop().await;
}

#[tokio::test]
async fn plain_http_to_the_https_port_gets_no_page() {
    let ca = ca();
    let server = serve_https(&ca).await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    // Closed (or reset) after the failed handshake, long before the handshake deadline.
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the connection is closed");
    assert!(
        !answer.starts_with(b"HTTP/"),
        "{}",
        String::from_utf8_lossy(&answer)
    );
    server.stop().await;
}
