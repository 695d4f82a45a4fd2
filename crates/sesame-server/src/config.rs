//! Server settings. Loading them (TOML, environment, flags) is the binary's job; the server
//! only receives the result. No global configuration.

use serde::{Deserialize, Serialize};
use sesame_core::lockout::LockoutPolicy;
use sesame_core::push::PushPolicy;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Name shown in authenticator apps and on pages.
    pub issuer: String,
    /// Public base URL (e.g. `https://login.example.com`); printed links use it.
    pub public_base_url: Option<String>,
    /// Reverse proxies whose `X-Forwarded-For` is believed. Nobody else's is.
    pub trusted_proxies: Vec<IpAddr>,
    pub session_idle_secs: i64,
    pub session_absolute_secs: i64,
    /// How long a sign-in may take from username to done.
    pub signin_lifetime_secs: i64,
    /// How recent a sign-in must be to add or remove methods.
    pub recent_auth_secs: i64,
    /// Password hashes computed at once; 0 means one per CPU core.
    pub hashing_concurrency: usize,
    /// Sign-ins allowed to wait for a hashing slot; beyond this the server answers 503.
    pub hashing_queue: usize,
    pub lockout: LockoutPolicy,
    /// Sign-in requests to the authenticator app: digits, lifetime, rate limit.
    pub push: PushPolicy,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            issuer: "Sesame".into(),
            public_base_url: None,
            trusted_proxies: Vec::new(),
            session_idle_secs: 3600,
            session_absolute_secs: 24 * 3600,
            signin_lifetime_secs: 600,
            recent_auth_secs: 600,
            hashing_concurrency: 0,
            hashing_queue: 1024,
            lockout: LockoutPolicy::default(),
            push: PushPolicy::default(),
        }
    }
}

impl ServerConfig {
    pub fn hashing_concurrency(&self) -> usize {
        if self.hashing_concurrency > 0 {
            self.hashing_concurrency
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }

    pub fn session_limits(&self) -> sesame_store::SessionLimits {
        sesame_store::SessionLimits {
            idle_secs: self.session_idle_secs,
            absolute_secs: self.session_absolute_secs,
        }
    }
}
