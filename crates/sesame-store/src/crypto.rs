//! The server master key: encrypts secrets at rest (XChaCha20-Poly1305 with the row identity
//! as associated data, so a ciphertext moved to another row does not decrypt) and derives
//! purpose-bound subkeys (HKDF-SHA256).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use rand::RngCore;
use sesame_core::secret::SecretBytes;
use sha2::Sha256;
use std::fmt;
use std::io::Write;
use std::path::Path;
use zeroize::{Zeroize, ZeroizeOnDrop};

const FILE_PREFIX: &str = "sesame-master-key-v1:";
const NONCE_LEN: usize = 24;

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct MasterKey([u8; 32]);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey([redacted])")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read master key file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot write master key file {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("master key file {0} is not a Sesame master key (expected one line starting with {FILE_PREFIX})")]
    Format(String),
}

impl MasterKey {
    pub fn generate() -> Self {
        let mut k = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut k);
        Self(k)
    }

    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }

    /// Reads a key file written by [`MasterKey::write_new`].
    pub fn read(path: &Path) -> Result<Self, KeyError> {
        let text = std::fs::read_to_string(path).map_err(|source| KeyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let b64 = text
            .trim()
            .strip_prefix(FILE_PREFIX)
            .ok_or_else(|| KeyError::Format(path.display().to_string()))?;
        let mut raw = STANDARD
            .decode(b64)
            .map_err(|_| KeyError::Format(path.display().to_string()))?;
        let result = <[u8; 32]>::try_from(raw.as_slice())
            .map(Self)
            .map_err(|_| KeyError::Format(path.display().to_string()));
        raw.zeroize();
        result
    }

    /// Writes a new key to a file that must not exist yet, readable by its owner only. The
    /// file appears whole or not at all: the key is written to a temporary file beside it and
    /// flushed to disk, then linked to `path` (which fails, overwriting nothing, if `path`
    /// exists), and the directory is flushed. A full disk leaves no half-written key behind to
    /// block the next start.
    pub fn write_new(path: &Path) -> Result<Self, KeyError> {
        Self::write_new_with(path, |f, bytes| f.write_all(bytes))
    }

    /// [`MasterKey::write_new`], with the writing of the bytes given (tests make it fail).
    fn write_new_with(
        path: &Path,
        write: impl FnOnce(&mut std::fs::File, &[u8]) -> std::io::Result<()>,
    ) -> Result<Self, KeyError> {
        use std::os::unix::fs::OpenOptionsExt;
        let key = Self::generate();
        let werr = |source| KeyError::Write {
            path: path.display().to_string(),
            source,
        };
        if path.exists() {
            return Err(werr(std::io::Error::from(
                std::io::ErrorKind::AlreadyExists,
            )));
        }
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut suffix = [0u8; 8];
        rand::rngs::OsRng.fill_bytes(&mut suffix);
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "master.key".into());
        let tmp = dir.join(format!(
            ".{name}.{}.tmp",
            suffix
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        ));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            let mut line = format!("{FILE_PREFIX}{}\n", STANDARD.encode(key.0));
            let written = write(&mut f, line.as_bytes()).and_then(|_| f.sync_all());
            line.zeroize();
            written?;
            drop(f);
            std::fs::hard_link(&tmp, path)?;
            std::fs::File::open(dir)?.sync_all()
        })();
        // The temporary name goes in every case; on success `path` holds the key.
        let _ = std::fs::remove_file(&tmp);
        result.map_err(werr)?;
        Ok(key)
    }

    /// Reads the key at `path`, creating it on first use.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        if path.exists() {
            Self::read(path)
        } else {
            match Self::write_new(path) {
                // Another process created it between the check and the create: use theirs.
                Err(KeyError::Write { source, .. })
                    if source.kind() == std::io::ErrorKind::AlreadyExists =>
                {
                    Self::read(path)
                }
                other => other,
            }
        }
    }

    /// A 32-byte subkey for one purpose (e.g. "csrf").
    pub fn derive(&self, purpose: &str) -> SecretBytes {
        let hk = Hkdf::<Sha256>::new(Some(b"sesame-subkey-v1"), &self.0);
        let mut out = vec![0u8; 32];
        hk.expand(purpose.as_bytes(), &mut out)
            .expect("32 bytes is a valid HKDF length");
        SecretBytes::new(out)
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&self.0).into())
    }

    /// Encrypts `plaintext` bound to `aad` (the row identity). Output: nonce || ciphertext.
    pub fn seal(&self, aad: &str, plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .cipher()
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: aad.as_bytes(),
                },
            )
            .expect("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        out
    }

    /// Decrypts what [`MasterKey::seal`] produced for the same `aad`.
    pub fn open(&self, aad: &str, sealed: &[u8]) -> Option<SecretBytes> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, ct) = sealed.split_at(NONCE_LEN);
        self.cipher()
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: aad.as_bytes(),
                },
            )
            .ok()
            .map(SecretBytes::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sealed_secret_opens_only_with_its_row_identity() {
        let k = MasterKey::generate();
        let sealed = k.seal("method:1", b"seed");
        assert_eq!(k.open("method:1", &sealed).unwrap().expose(), b"seed");
        assert!(k.open("method:2", &sealed).is_none());
        assert!(MasterKey::generate().open("method:1", &sealed).is_none());
        assert!(k.open("method:1", &sealed[..10]).is_none());
    }

    #[test]
    fn key_file_is_private_and_reloads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let k = MasterKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(k.derive("csrf"), again.derive("csrf"));
        assert_ne!(k.derive("csrf"), k.derive("other"));
        assert!(
            MasterKey::write_new(&path).is_err(),
            "never overwrites a key"
        );
        std::fs::write(&path, "garbage").unwrap();
        assert!(matches!(MasterKey::read(&path), Err(KeyError::Format(_))));
    }

    /// A write that fails half-way (a full disk) leaves neither a key file nor a temporary
    /// one: the next start writes a key as if nothing happened.
    #[test]
    fn a_key_is_written_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("master.key");
        let full = MasterKey::write_new_with(&path, |f, bytes| {
            f.write_all(&bytes[..7])?;
            Err(std::io::Error::other("No space left on device"))
        });
        assert!(matches!(full, Err(KeyError::Write { .. })));
        assert!(!path.exists(), "no half key");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temporary file"
        );
        let k = MasterKey::load_or_create(&path).unwrap();
        assert_eq!(MasterKey::read(&path).unwrap().derive("x"), k.derive("x"));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
}

/// The associated data that binds each sealed secret to its row, the same on every backend (a
/// secret moved to another row, or another user's, does not open).
pub(crate) mod aad {
    use sesame_core::UserId;

    /// A method's secret (a TOTP seed, a phone number).
    pub(crate) fn method(public_id: &str, user: UserId) -> String {
        format!("sesame:method:{public_id}:user:{user}")
    }

    /// A TOTP secret being set up.
    pub(crate) fn enrollment(id: &str, user: UserId) -> String {
        format!("sesame:totp-enrollment:{id}:user:{user}")
    }

    /// An OpenID Connect signing key.
    pub(crate) fn signing_key(kid: &str) -> String {
        format!("oidc-key:{kid}")
    }
}
