//! `sesame serve` with `[tls]`: HTTPS on its listen address, the certificate re-read on SIGHUP,
//! a broken renewal never taking the server down, a broken start refused. Certificates are
//! made here (rcgen) in a temporary folder: no private key is kept in the repository.

mod common;

use rustls::pki_types::ServerName;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

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

/// A certificate for localhost signed by `ca` with the given serial number: its PEM chain,
/// its key's PEM and its DER (what a client sees).
fn leaf(ca: &Ca, serial: u64) -> (String, String, Vec<u8>) {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params.serial_number = Some(serial.into());
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("sesame {serial}"));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &ca.cert, &ca.key).unwrap();
    (
        cert.pem() + &ca.cert.pem(),
        key.serialize_pem(),
        cert.der().to_vec(),
    )
}

/// Replaces a file whole, as renewal tools do (a reader never sees half of it).
fn replace(path: &Path, text: &str) {
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

struct Files {
    config: PathBuf,
    cert: PathBuf,
    key: PathBuf,
}

fn tls_config(dir: &Path, cert_pem: &str, key_pem: &str) -> Files {
    let files = Files {
        config: dir.join("sesame.toml"),
        cert: dir.join("fullchain.pem"),
        key: dir.join("privkey.pem"),
    };
    std::fs::write(&files.cert, cert_pem).unwrap();
    std::fs::write(&files.key, key_pem).unwrap();
    std::fs::write(
        &files.config,
        format!(
            "[tls]\ncert_file = {:?}\nkey_file = {:?}\n",
            files.cert.to_str().unwrap(),
            files.key.to_str().unwrap()
        ),
    )
    .unwrap();
    files
}

/// A running `sesame serve`, its address, and its log lines as they come.
struct Serve {
    child: Child,
    addr: String,
    running: String,
    log: mpsc::Receiver<String>,
}

impl Serve {
    fn start(dir: &Path, config: &Path) -> Serve {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sesame"))
            .args([
                "--config",
                config.to_str().unwrap(),
                "--data-dir",
                dir.to_str().unwrap(),
                "serve",
                "--listen",
                "127.0.0.1:0",
            ])
            .env_remove("SESAME_DATA_DIR")
            .env("NO_COLOR", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (tx, log) = mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let running = lines.next().unwrap().unwrap();
        // The rest of stdout is not needed, but must not fill its pipe.
        std::thread::spawn(move || for _ in lines.map_while(Result::ok) {});
        let addr = running
            .split("://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        Serve {
            child,
            addr,
            running,
            log,
        }
    }

    fn signal(&self, name: &str) {
        assert!(Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .unwrap()
            .success());
    }

    /// Waits for a log line containing `text`.
    fn wait_for_log(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line with {text:?} within 10 s"),
            }
        }
    }

    fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    fn stop(mut self) {
        self.signal("TERM");
        let exit = self.child.wait().unwrap();
        assert!(exit.success(), "{exit:?}");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

/// A TLS connection to `addr` from a client that trusts only `ca`.
fn connect(ca: &Ca, addr: &str) -> Tls {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap())
            .unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    while tls.conn.is_handshaking() {
        tls.conn
            .complete_io(&mut tls.sock)
            .expect("the handshake succeeds for a client trusting the CA");
    }
    tls
}

/// The leaf certificate the server presented on `tls`.
fn served(tls: &Tls) -> Vec<u8> {
    tls.conn.peer_certificates().unwrap()[0].to_vec()
}

/// Sends `GET /healthz` on a kept-alive connection and returns the status line.
fn healthz(tls: &mut Tls) -> String {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let mut byte = [0u8; 1];
    // Headers, then the body by its length (the connection stays open).
    while !answer.ends_with(b"\r\n\r\n") {
        tls.read_exact(&mut byte).unwrap();
        answer.push(byte[0]);
    }
    let head = String::from_utf8(answer).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    tls.read_exact(&mut body).unwrap();
    head.lines().next().unwrap().to_string()
}

/// The certificate a new connection gets, once it is `want` (within 10 s).
fn wait_for_certificate(ca: &Ca, addr: &str, want: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while served(&connect(ca, addr)) != want {
        assert!(
            Instant::now() < deadline,
            "new connections still get the old certificate"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn serve_with_tls_serves_https_and_sighup_gives_new_connections_the_renewed_certificate() {
    let dir = common::data_dir();
    let ca = ca();
    let (cert1, key1, der1) = leaf(&ca, 1);
    let files = tls_config(dir.path(), &cert1, &key1);
    let serve = Serve::start(dir.path(), &files.config);
    assert!(
        serve
            .running
            .starts_with("Sesame is running at https://127.0.0.1:"),
        "{}",
        serve.running
    );
    let mut before = connect(&ca, &serve.addr);
    assert_eq!(served(&before), der1);
    assert_eq!(healthz(&mut before), "HTTP/1.1 200 OK");

    let (cert2, key2, der2) = leaf(&ca, 2);
    replace(&files.key, &key2);
    replace(&files.cert, &cert2);
    serve.signal("HUP");
    serve.wait_for_log("TLS certificate reloaded");
    wait_for_certificate(&ca, &serve.addr, &der2);
    let mut after = connect(&ca, &serve.addr);
    assert_eq!(served(&after), der2, "new connections get the new one");
    assert_eq!(healthz(&mut after), "HTTP/1.1 200 OK");
    assert_eq!(
        healthz(&mut before),
        "HTTP/1.1 200 OK",
        "a connection opened before the reload goes on"
    );
    assert_eq!(served(&before), der1);
    serve.stop();
}

#[test]
fn a_sighup_with_a_broken_key_keeps_serving_the_old_certificate() {
    let dir = common::data_dir();
    let ca = ca();
    let (cert1, key1, der1) = leaf(&ca, 1);
    let files = tls_config(dir.path(), &cert1, &key1);
    let mut serve = Serve::start(dir.path(), &files.config);
    assert_eq!(served(&connect(&ca, &serve.addr)), der1);

    // A renewal caught half-way: the new certificate beside a key file that is no key.
    let (cert2, key2, der2) = leaf(&ca, 2);
    replace(&files.cert, &cert2);
    replace(&files.key, "-----BEGIN PRIVATE KEY-----\ntruncated");
    serve.signal("HUP");
    let line = serve.wait_for_log("not reloaded");
    assert!(
        line.contains("privkey.pem"),
        "the log names the file: {line}"
    );
    assert!(serve.is_running(), "a failed reload never stops the server");
    let mut tls = connect(&ca, &serve.addr);
    assert_eq!(served(&tls), der1, "the old certificate is still served");
    assert_eq!(healthz(&mut tls), "HTTP/1.1 200 OK");

    // Once the renewal is complete, the next SIGHUP takes it.
    replace(&files.key, &key2);
    serve.signal("HUP");
    wait_for_certificate(&ca, &serve.addr, &der2);
    serve.stop();
}

#[test]
fn serve_refuses_to_start_when_the_certificate_file_is_missing() {
    let dir = common::data_dir();
    let ca = ca();
    let (cert, key, _) = leaf(&ca, 1);
    let files = tls_config(dir.path(), &cert, &key);
    std::fs::remove_file(&files.cert).unwrap();
    let out = common::run(
        dir.path(),
        &[
            "--config",
            files.config.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
        &[],
    );
    assert!(!out.status.success(), "refused, not served over plain HTTP");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("Sesame is running"), "{stdout}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TLS certificate file")
            && stderr.contains(files.cert.to_str().unwrap())
            && stderr.contains("cannot read it"),
        "{stderr}"
    );
}

#[test]
fn serve_refuses_a_key_that_is_not_the_certificates() {
    let dir = common::data_dir();
    let ca = ca();
    let (cert, _, _) = leaf(&ca, 1);
    let (_, other_key, _) = leaf(&ca, 2);
    let files = tls_config(dir.path(), &cert, &other_key);
    let out = common::run(
        dir.path(),
        &[
            "--config",
            files.config.to_str().unwrap(),
            "serve",
            "--listen",
            "127.0.0.1:0",
        ],
        None,
        &[],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(files.key.to_str().unwrap())
            && stderr.contains("not the key of the certificate"),
        "{stderr}"
    );
}
