//! The vault: every account and key of the app in one file, encrypted at rest
//! (XChaCha20-Poly1305), mode 0600, written atomically (temp file, fsync, rename, fsync dir).
//!
//! The encryption key lives in a separate file beside the vault (`<vault>.key`, 0600) and
//! stands for the phone's hardware key store: a vault file copied elsewhere without its key is
//! unreadable. A file that is not a vault, or that does not decrypt, is reported and never
//! overwritten.

use crate::otp::OtpAccount;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use zeroize::Zeroizing;

const MAGIC: &[u8; 8] = b"SSMVLT01";
const KEY_MAGIC: &[u8; 8] = b"SSMVKY01";
const NONCE_LEN: usize = 24;
/// Associated data: a vault decrypts only as a vault of this format.
const AAD: &[u8] = b"sesame-authenticator-vault-v1";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("{0} is not a Sesame Authenticator vault; it was left untouched. Choose another file with --vault.")]
    Foreign(PathBuf),
    #[error("{0} is damaged or belongs to another device key ({1}); it was left untouched.")]
    Damaged(PathBuf, PathBuf),
    #[error("the vault {0} exists but its device key {1} is missing; it was left untouched.")]
    MissingKey(PathBuf, PathBuf),
    #[error("{0}: {1}")]
    Io(PathBuf, std::io::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> VaultError + '_ {
    move |e| VaultError::Io(path.to_path_buf(), e)
}

/// One account in the app.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    /// Local identifier, stable for the account's life in this vault.
    pub id: String,
    pub added_at: u64,
    pub otp: OtpAccount,
    /// Present for Sesame accounts (added with an activation link): what the app needs to
    /// talk to the server as this device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sesame: Option<SesameLink>,
}

/// A Sesame account's device registration.
#[derive(Clone, Serialize, Deserialize)]
pub struct SesameLink {
    pub server: String,
    pub device_id: String,
    pub username: String,
    /// The device key's private scalar (base64url); the vault is encrypted.
    pub device_key: String,
    /// The PIN key, sealed under the app PIN, once registered with the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pin_key: Option<crate::pinkey::SealedKey>,
    /// Whether phone sign-in is turned on for this account (as last confirmed by the server).
    #[serde(default)]
    pub phone_sign_in: bool,
    /// Set once the server answered that this device is not registered (removed on My
    /// security info or by an administrator): its codes and requests no longer work, and
    /// commands that do not ask the server (`list`) can still say so. A removed device never
    /// comes back (adding the account again makes a new one), so this is never cleared.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub removed_on_server: bool,
}

impl std::fmt::Debug for SesameLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SesameLink")
            .field("server", &self.server)
            .field("device_id", &self.device_id)
            .finish()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct VaultData {
    pub version: u32,
    pub accounts: Vec<Account>,
    /// Whether an app PIN was set. There is deliberately no PIN verifier: the PIN only unseals
    /// each Sesame account's PIN key, and only the server can tell a wrong one (see `pinkey`).
    #[serde(default)]
    pub pin_set: bool,
}

pub struct Vault {
    path: PathBuf,
    key: Zeroizing<[u8; 32]>,
    pub data: VaultData,
    /// Digest of the file as this process last read or wrote it (None: not on disk yet), so
    /// a long-running `watch` can tell when another command changed the vault. The content,
    /// not the modification time: two saves within the clock's granularity, or a new file
    /// that reuses the old one's inode, would look unchanged by metadata.
    seen: Option<ring::digest::Digest>,
}

fn digest(raw: &[u8]) -> ring::digest::Digest {
    ring::digest::digest(&ring::digest::SHA256, raw)
}

/// `<vault>.key`
pub fn key_path(vault: &Path) -> PathBuf {
    let mut p = vault.as_os_str().to_owned();
    p.push(".key");
    PathBuf::from(p)
}

fn write_private_new(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

fn read_key(path: &Path) -> Result<Zeroizing<[u8; 32]>, VaultError> {
    let raw = Zeroizing::new(std::fs::read(path).map_err(io(path))?);
    if raw.len() != 40 || &raw[..8] != KEY_MAGIC {
        return Err(VaultError::Foreign(path.to_path_buf()));
    }
    let mut k = Zeroizing::new([0u8; 32]);
    k.copy_from_slice(&raw[8..]);
    Ok(k)
}

/// The data of a vault file's bytes `raw`, under `key`.
fn decrypt(path: &Path, key: &[u8; 32], raw: &[u8]) -> Result<VaultData, VaultError> {
    if raw.len() < MAGIC.len() + NONCE_LEN || &raw[..8] != MAGIC {
        return Err(VaultError::Foreign(path.to_path_buf()));
    }
    let (nonce, ct) = raw[8..].split_at(NONCE_LEN);
    let damaged = || VaultError::Damaged(path.to_path_buf(), key_path(path));
    let plain = Zeroizing::new(
        XChaCha20Poly1305::new(key.into())
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: AAD })
            .map_err(|_| damaged())?,
    );
    serde_json::from_slice(&plain).map_err(|_| damaged())
}

impl Vault {
    /// Opens the vault at `path`, or starts an empty one (written on the first save).
    pub fn open_or_create(path: &Path) -> Result<Self, VaultError> {
        let kpath = key_path(path);
        if path.exists() {
            if !kpath.exists() {
                return Err(VaultError::MissingKey(path.to_path_buf(), kpath));
            }
            let key = read_key(&kpath)?;
            let raw = std::fs::read(path).map_err(io(path))?;
            let data = decrypt(path, &key, &raw)?;
            return Ok(Vault {
                path: path.to_path_buf(),
                key,
                data,
                seen: Some(digest(&raw)),
            });
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io(dir))?;
        }
        let key = if kpath.exists() {
            read_key(&kpath)?
        } else {
            let mut k = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut *k);
            let mut file = Zeroizing::new(KEY_MAGIC.to_vec());
            file.extend_from_slice(&*k);
            write_private_new(&kpath, &file).map_err(io(&kpath))?;
            k
        };
        Ok(Vault {
            path: path.to_path_buf(),
            key,
            data: VaultData {
                version: 1,
                accounts: Vec::new(),
                pin_set: false,
            },
            seen: None,
        })
    }

    /// Reads the vault again if another command changed the file since this process last read
    /// or wrote it; true if it did. A file that is gone, or no longer reads as this vault, is
    /// reported and the data in memory kept (it is never overwritten from here).
    pub fn reload_if_changed(&mut self) -> Result<bool, VaultError> {
        let raw = match std::fs::read(&self.path) {
            Ok(raw) => raw,
            // Not written yet (an empty vault), or deleted: nothing newer to read.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(VaultError::Io(self.path.clone(), e)),
        };
        let d = digest(&raw);
        if self.seen.as_ref().map(|s| s.as_ref()) == Some(d.as_ref()) {
            return Ok(false);
        }
        self.data = decrypt(&self.path, &self.key, &raw)?;
        self.seen = Some(d);
        Ok(true)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Encrypts and replaces the file atomically: a crash leaves the old or the new vault.
    pub fn save(&mut self) -> Result<(), VaultError> {
        let plain = Zeroizing::new(serde_json::to_vec(&self.data).expect("vault data serialises"));
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = XChaCha20Poly1305::new((&*self.key).into())
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: &plain,
                    aad: AAD,
                },
            )
            .expect("encryption of an in-memory buffer cannot fail");
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        let mut suffix = [0u8; 6];
        rand::rngs::OsRng.fill_bytes(&mut suffix);
        let tmp = self
            .path
            .with_extension(format!("tmp-{}", data_encoding::HEXLOWER.encode(&suffix)));
        write_private_new(&tmp, &out).map_err(io(&tmp))?;
        if let Err(e) = std::fs::rename(&tmp, &self.path) {
            let _ = std::fs::remove_file(&tmp);
            return Err(VaultError::Io(self.path.clone(), e));
        }
        // What is on disk now is what this process wrote: not a change to reload.
        self.seen = Some(digest(&out));
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(d) = std::fs::File::open(dir) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }

    /// Finds one account by its label, name or id (case-insensitive), else by a substring
    /// that matches exactly one account.
    pub fn find(&self, query: &str) -> Result<&Account, String> {
        let q = query.trim().to_lowercase();
        let exact: Vec<&Account> = self
            .data
            .accounts
            .iter()
            .filter(|a| {
                a.id == q || a.otp.label().to_lowercase() == q || a.otp.name.to_lowercase() == q
            })
            .collect();
        let candidates = if exact.is_empty() {
            self.data
                .accounts
                .iter()
                .filter(|a| a.otp.label().to_lowercase().contains(&q))
                .collect()
        } else {
            exact
        };
        match candidates.as_slice() {
            [one] => Ok(one),
            [] => Err(format!(
                "no account matches {query:?} (see `sesame-authenticator list`)"
            )),
            many => Err(format!(
                "{query:?} matches {} accounts: {}; be more precise",
                many.len(),
                many.iter()
                    .map(|a| a.otp.label())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn account(name: &str) -> Account {
        Account {
            id: name.into(),
            added_at: 0,
            otp: OtpAccount::from_uri(&format!(
                "otpauth://totp/Site:{name}?secret=GEZDGNBVGY3TQOJQ"
            ))
            .unwrap(),
            sesame: None,
        }
    }

    #[test]
    fn round_trip_private_and_encrypted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut v = Vault::open_or_create(&path).unwrap();
        v.data.accounts.push(account("alice"));
        v.save().unwrap();
        for p in [&path, &key_path(&path)] {
            assert_eq!(
                std::fs::metadata(p).unwrap().permissions().mode() & 0o777,
                0o600,
                "{p:?}"
            );
        }
        let raw = std::fs::read(&path).unwrap();
        assert!(!raw.windows(8).any(|w| w == b"GEZDGNBV"), "secret in clear");
        let again = Vault::open_or_create(&path).unwrap();
        assert_eq!(again.data.accounts[0].otp.name, "alice");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "no temp files left"
        );
    }

    #[test]
    fn foreign_and_damaged_files_are_refused_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, "my shopping list").unwrap();
        assert!(matches!(
            Vault::open_or_create(&path),
            Err(VaultError::MissingKey(..))
        ));
        let vpath = dir.path().join("vault");
        let mut v = Vault::open_or_create(&vpath).unwrap();
        v.data.accounts.push(account("a"));
        v.save().unwrap();
        std::fs::copy(key_path(&vpath), key_path(&path)).unwrap();
        assert!(matches!(
            Vault::open_or_create(&path),
            Err(VaultError::Foreign(_))
        ));
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "my shopping list");
        let mut raw = std::fs::read(&vpath).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        std::fs::write(&vpath, &raw).unwrap();
        assert!(matches!(
            Vault::open_or_create(&vpath),
            Err(VaultError::Damaged(..))
        ));
        assert_eq!(std::fs::read(&vpath).unwrap(), raw);
    }

    #[test]
    fn vault_copied_without_its_key_cannot_be_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut v = Vault::open_or_create(&path).unwrap();
        v.data.accounts.push(account("a"));
        v.save().unwrap();
        let stolen = dir.path().join("stolen");
        std::fs::copy(&path, &stolen).unwrap();
        assert!(matches!(
            Vault::open_or_create(&stolen),
            Err(VaultError::MissingKey(..))
        ));
    }

    #[test]
    fn reloads_only_what_another_process_wrote() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault");
        let mut mine = Vault::open_or_create(&path).unwrap();
        assert!(!mine.reload_if_changed().unwrap(), "nothing on disk yet");
        mine.data.accounts.push(account("a"));
        mine.save().unwrap();
        assert!(
            !mine.reload_if_changed().unwrap(),
            "its own save is no change"
        );
        let mut other = Vault::open_or_create(&path).unwrap();
        other.data.accounts.push(account("b"));
        other.save().unwrap();
        assert!(mine.reload_if_changed().unwrap());
        assert_eq!(mine.data.accounts.len(), 2);
        assert!(!mine.reload_if_changed().unwrap());
        // A damaged file is reported and what was read before kept.
        std::fs::write(&path, b"SSMVLT01 not a vault at all, not even close").unwrap();
        assert!(matches!(
            mine.reload_if_changed(),
            Err(VaultError::Damaged(..))
        ));
        assert_eq!(mine.data.accounts.len(), 2);
    }

    #[test]
    fn find_by_name_or_unique_substring() {
        let dir = tempfile::tempdir().unwrap();
        let mut v = Vault::open_or_create(&dir.path().join("v")).unwrap();
        v.data.accounts.push(account("alice"));
        v.data.accounts.push(account("alina"));
        assert_eq!(v.find("ALICE").unwrap().otp.name, "alice");
        assert_eq!(v.find("Site: alina").unwrap().otp.name, "alina");
        assert!(v.find("ali").unwrap_err().contains("matches 2 accounts"));
        assert!(v.find("bob").unwrap_err().contains("no account"));
    }
}
