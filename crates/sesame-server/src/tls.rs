//! Sesame's own HTTPS: a certificate chain and its private key from PEM files (`[tls]` in the
//! configuration), served with rustls on the `ring` provider.
//!
//! The files are read once at start, where any problem stops the server (never a fall back to
//! plain HTTP, which would break every form at a real host name), and again on
//! [`CertStore::reload`] (`sesame serve` calls it on SIGHUP, after certbot and the like renew
//! the certificate). Each handshake asks the store for the current certificate, so new
//! connections get the new one and open connections keep the one they started with; a reload
//! that fails keeps the old certificate.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

/// The PEM files of `[tls]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain: the server's certificate first, then any intermediates.
    pub cert_file: PathBuf,
    /// The private key of the server's certificate (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
}

/// Why a certificate or key file cannot be used, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("TLS {what} file {}: {problem}", path.display())]
pub struct TlsFileError {
    /// "certificate" or "private key".
    pub what: &'static str,
    pub path: PathBuf,
    pub problem: String,
}

impl TlsFileError {
    fn cert(path: &Path, problem: impl Into<String>) -> Self {
        Self {
            what: "certificate",
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }

    fn key(path: &Path, problem: impl Into<String>) -> Self {
        Self {
            what: "private key",
            path: path.to_path_buf(),
            problem: problem.into(),
        }
    }
}

/// The crypto provider of every TLS connection: ring, which the server already uses for
/// signatures (one set of primitives, no C++/CMake build for aws-lc).
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path, error: fn(&Path, String) -> TlsFileError) -> Result<Vec<u8>, TlsFileError> {
    std::fs::read(path).map_err(|e| error(path, format!("cannot read it: {e}")))
}

/// Reads and checks the pair: certificates and key parse, and the key belongs to the first
/// certificate (a renewed certificate beside the old key is caught here, not at a handshake).
pub fn load(files: &TlsFiles, provider: &CryptoProvider) -> Result<CertifiedKey, TlsFileError> {
    let cert_path = &files.cert_file;
    let key_path = &files.key_file;
    let cert_pem = read(cert_path, TlsFileError::cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsFileError::cert(cert_path, format!("it is not valid PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsFileError::cert(
            cert_path,
            "it holds no certificate (a PEM block starting -----BEGIN CERTIFICATE-----)",
        ));
    }
    let key_pem = read(key_path, TlsFileError::key)?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => TlsFileError::key(
            key_path,
            "it holds no private key (a PEM block starting -----BEGIN PRIVATE KEY-----, \
             -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)",
        ),
        e => TlsFileError::key(key_path, format!("it is not valid PEM: {e}")),
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| TlsFileError::key(key_path, format!("the key cannot be used: {e}")))?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::KeyMismatch)) => {
            Err(TlsFileError::key(
                key_path,
                format!(
                    "it is not the key of the certificate in {}",
                    cert_path.display()
                ),
            ))
        }
        // rustls cannot compare a key whose public half it cannot derive; the handshake
        // would still fail visibly, so such a key is let through as rustls itself does.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InvalidCertificate(e)) => Err(TlsFileError::cert(
            cert_path,
            format!("its first certificate is not a valid X.509 certificate ({e:?})"),
        )),
        Err(e) => Err(TlsFileError::cert(
            cert_path,
            format!("its first certificate cannot be used: {e}"),
        )),
    }
}

/// The certificate every new handshake gets, replaceable while the server runs.
#[derive(Debug)]
pub struct CertStore {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn open(files: TlsFiles) -> Result<Arc<Self>, TlsFileError> {
        let provider = provider();
        let key = load(&files, &provider)?;
        Ok(Arc::new(Self {
            files,
            provider,
            current: RwLock::new(Arc::new(key)),
        }))
    }

    pub fn files(&self) -> &TlsFiles {
        &self.files
    }

    /// Reads the files again. On success new handshakes use the new certificate; on error the
    /// current one stays (a half-written renewal never takes the server down).
    pub fn reload(&self) -> Result<(), TlsFileError> {
        let key = load(&self.files, &self.provider)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(key);
        Ok(())
    }

    /// The certificate new handshakes get.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The rustls configuration of the listener: this store chooses the certificate at each
    /// handshake; HTTP/1.1 is the only protocol offered (the server speaks nothing else).
    pub fn server_config(self: &Arc<Self>) -> Arc<rustls::ServerConfig> {
        let mut config = rustls::ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .expect("the ring provider supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }
}

impl ResolvesServerCert for CertStore {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Serves HTTPS on `listener` with the certificate of `certs` (see [`crate::serve_with`]:
/// the handshake must finish within `header_read_secs`, and the limits and shutdown are the
/// same as for plain HTTP). A client that does not complete a TLS handshake (plain HTTP
/// sent to this port, for one) is disconnected without an answer.
pub async fn serve_tls(
    listener: tokio::net::TcpListener,
    state: crate::AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    certs: Arc<CertStore>,
) -> std::io::Result<()> {
    let acceptor = tokio_rustls::TlsAcceptor::from(certs.server_config());
    crate::serve_with(listener, state, shutdown, move |stream| {
        acceptor.accept(stream)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Pair {
        cert: String,
        key: String,
    }

    fn self_signed(name: &str) -> Pair {
        let c = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Pair {
            cert: c.cert.pem(),
            key: c.key_pair.serialize_pem(),
        }
    }

    /// Writes a pair of files in a new folder under `dir`.
    fn write(dir: &Path, cert: &str, key: &str) -> TlsFiles {
        let dir = tempfile::tempdir_in(dir).unwrap().keep();
        let files = TlsFiles {
            cert_file: dir.join("cert.pem"),
            key_file: dir.join("key.pem"),
        };
        std::fs::write(&files.cert_file, cert).unwrap();
        std::fs::write(&files.key_file, key).unwrap();
        files
    }

    fn leaf(store: &CertStore) -> Vec<u8> {
        store.current().cert[0].to_vec()
    }

    #[test]
    fn each_broken_file_is_refused_naming_the_file_and_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let good = self_signed("localhost");
        let other = self_signed("localhost");
        let missing = TlsFiles {
            cert_file: dir.path().join("nope.pem"),
            key_file: dir.path().join("key.pem"),
        };
        let cases: Vec<(TlsFiles, &str, &str)> = vec![
            (missing, "certificate file", "nope.pem: cannot read it"),
            (
                write(dir.path(), "hello", &good.key),
                "certificate file",
                "holds no certificate",
            ),
            (
                write(dir.path(), "-----BEGIN CERTIFICATE-----\nMIIB\n", &good.key),
                "certificate file",
                "not valid PEM",
            ),
            (
                write(dir.path(), &good.cert, &good.cert),
                "private key file",
                "holds no private key",
            ),
            (
                write(dir.path(), &good.cert, &other.key),
                "private key file",
                "not the key of the certificate",
            ),
            (
                write(
                    dir.path(),
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
                    &good.key,
                ),
                "certificate file",
                "not a valid X.509 certificate",
            ),
        ];
        for (files, what, problem) in cases {
            let e = CertStore::open(files).unwrap_err().to_string();
            assert!(
                e.contains(what) && e.contains(problem),
                "{e} (expected {problem})"
            );
        }
    }

    #[test]
    fn a_reload_takes_the_new_certificate_and_a_failed_one_keeps_the_old() {
        let dir = tempfile::tempdir().unwrap();
        let first = self_signed("localhost");
        let files = write(dir.path(), &first.cert, &first.key);
        let store = CertStore::open(files.clone()).unwrap();
        let before = leaf(&store);
        let second = self_signed("localhost");
        std::fs::write(&files.cert_file, &second.cert).unwrap();
        std::fs::write(&files.key_file, &second.key).unwrap();
        store.reload().unwrap();
        let after = leaf(&store);
        assert_ne!(before, after, "the new certificate is served");
        std::fs::write(&files.key_file, "not a key").unwrap();
        assert!(store.reload().is_err());
        assert_eq!(leaf(&store), after, "a failed reload keeps the old one");
    }
}
