//! The Sesame HTTP server as a library: [`app`] builds the router, [`serve`] runs it.
//!
//! One sub-router per feature: sign-in pages, My security info, the account page, first-run
//! set-up and health checks. Every state-changing form goes through [`web::CsrfForm`].

pub mod account;
pub mod admin;
pub mod audit;
pub mod config;
pub mod device_api;
pub mod error;
pub mod hashing;
pub mod health;
pub mod hub;
pub mod phone_signin;
pub mod policy;
pub mod push_signin;
pub mod security_info;
pub mod session;
pub mod setup;
pub mod signin;
pub mod web;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use sesame_core::secret::SecretBytes;
use sesame_core::{Clock, TenantId, UnixTime};
use sesame_store::{MasterKey, Store};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

pub use config::ServerConfig;

/// The real clock. Lives here because the core never reads time itself.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0)
    }
}

/// Everything a request handler needs; cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    pub tenant: TenantId,
    pub hasher: hashing::Hasher,
    pub hub: hub::Hub,
    csrf_key: SecretBytes,
    choice_key: SecretBytes,
}

impl std::ops::Deref for AppState {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl AppState {
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master_key: &MasterKey,
        config: ServerConfig,
    ) -> Result<Self, sesame_store::StoreError> {
        let tenant = store.default_tenant().await?;
        let hasher = hashing::Hasher::new(config.hashing_concurrency(), config.hashing_queue);
        Ok(Self(Arc::new(Inner {
            store,
            clock,
            tenant,
            hasher,
            hub: hub::Hub::default(),
            csrf_key: master_key.derive("csrf-v1"),
            choice_key: master_key.derive("signin-choice-v1"),
            config,
        })))
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// A short keyed tag of a user id: lets a browser cookie remember a choice for one user
    /// without naming the user.
    pub fn user_tag(&self, user: sesame_core::UserId) -> String {
        use hmac::{Hmac, Mac};
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(self.choice_key.expose())
            .expect("HMAC takes any key length");
        mac.update(user.0.to_string().as_bytes());
        data_encoding::HEXLOWER.encode(&mac.finalize().into_bytes()[..12])
    }
}

/// Largest request body accepted anywhere (forms are tiny).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole application.
pub fn app(state: AppState) -> Router {
    Router::new()
        .merge(health::routes())
        .merge(signin::routes())
        .merge(account::routes())
        .merge(security_info::routes())
        .merge(setup::routes())
        .merge(device_api::routes())
        .merge(push_signin::routes())
        .merge(phone_signin::routes())
        .merge(admin::routes())
        .fallback(web::not_found)
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until `shutdown` resolves, then finishes in-flight requests.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}
