//! The Sesame Authenticator: a vault of accounts and the codes they generate.
//!
//! This crate depends on `sesame-proto` only, never on server crates: it talks to a server
//! through the wire protocol like any other client would.

pub mod approval;
pub mod client;
pub mod device;
pub mod otp;
pub mod phone;
pub mod pin;
pub mod pinkey;
pub mod qr;
pub mod vault;
pub mod watch;

pub use otp::{OtpAccount, OtpAlgorithm, OtpauthError};
pub use vault::{Vault, VaultError};
