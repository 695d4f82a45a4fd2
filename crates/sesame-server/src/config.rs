//! Server settings. Loading them (TOML, environment, flags) is the binary's job; the server
//! only receives the result. No global configuration.

use serde::{Deserialize, Serialize};
use sesame_core::guessing::GuessingPolicy;
use sesame_core::lockout::LockoutPolicy;
use sesame_core::push::PushPolicy;
use std::net::IpAddr;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// The service's name as people see it: in authenticator apps, on requests to the phone,
    /// in `otpauth://` links. (Not the OpenID Connect issuer, which is a URL.)
    pub service_name: String,
    /// The old name of `service_name`, still read so existing configuration files work.
    /// [`ServerConfig::apply_deprecated`] moves it over and says so.
    #[serde(skip_serializing)]
    pub issuer: Option<String>,
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
    /// Of those, how many one client address may hold (clients are served in turn).
    pub hashing_per_client: usize,
    /// Wrong second-step codes and numbers: per user and method.
    pub lockout: LockoutPolicy,
    /// Wrong passwords: per account name, per known browser, per client address.
    pub guessing: GuessingPolicy,
    /// Sign-in requests to the authenticator app: digits, lifetime, rate limit.
    pub push: PushPolicy,
    /// Timeouts and caps on connections, and how long a shutdown may take.
    pub connections: crate::serve::ConnectionLimits,
    /// Texts and calls: gateways, send limits, allowed countries.
    pub telephony: crate::delivery::telephony::TelephonyConfig,
    /// Client addresses that may read `/metrics` (loopback by default; add the Prometheus
    /// server's address).
    pub metrics_allow: Vec<IpAddr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            service_name: "Sesame".into(),
            issuer: None,
            public_base_url: None,
            trusted_proxies: Vec::new(),
            session_idle_secs: 3600,
            session_absolute_secs: 24 * 3600,
            signin_lifetime_secs: 600,
            recent_auth_secs: 600,
            hashing_concurrency: 0,
            hashing_queue: 1024,
            hashing_per_client: 64,
            lockout: LockoutPolicy::default(),
            guessing: GuessingPolicy::default(),
            push: PushPolicy::default(),
            connections: crate::serve::ConnectionLimits::default(),
            telephony: Default::default(),
            metrics_allow: vec![
                IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
            ],
        }
    }
}

impl ServerConfig {
    /// Moves deprecated settings to their new names; returns a warning for each one used.
    pub fn apply_deprecated(&mut self) -> Vec<String> {
        let mut warnings = Vec::new();
        if let Some(name) = self.issuer.take() {
            warnings.push(
                "the setting server.issuer is deprecated: call it server.service_name".into(),
            );
            self.service_name = name;
        }
        warnings
    }

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_issuer_key_still_names_the_service_with_a_warning() {
        let mut old: ServerConfig = serde_json::from_str(r#"{"issuer": "Acme"}"#).unwrap();
        assert_eq!(old.apply_deprecated().len(), 1);
        assert_eq!(old.service_name, "Acme");
        assert!(old.issuer.is_none());
        let mut new: ServerConfig = serde_json::from_str(r#"{"service_name": "Acme"}"#).unwrap();
        assert!(new.apply_deprecated().is_empty());
        assert_eq!(new.service_name, "Acme");
        assert!(serde_json::from_str::<ServerConfig>(r#"{"isuer": "x"}"#).is_err());
    }
}
