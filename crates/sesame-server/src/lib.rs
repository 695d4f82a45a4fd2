//! The Sesame HTTP server as a library: [`app`] builds the router, [`serve`] runs it.
//!
//! Modules import in one direction:
//!
//! ```text
//! web/ (pages)   api/ (device API)   methods/ (second steps)      the `sesame` CLI
//!        \             |                  /                         /
//!         '------------+-----------------'-------------------------'
//!                      v
//!                  service/ (every state change and its audit line)
//!                      v
//!        sesame-store (capability traits)  +  sesame-core (the rules)
//! ```
//!
//! `delivery/` (the push hub), `error`, `hashing`, `token` and `config` are plumbing any
//! layer may use. Page handlers never import each other; the web, the device API and the
//! command line meet only in `service/`.

pub mod api;
pub mod config;
pub mod delivery;
pub mod error;
pub mod hashing;
pub mod methods;
pub mod metrics;
pub mod oidc;
pub mod serve;
pub mod service;
pub mod tls;
pub mod token;
pub mod web;

use axum::extract::DefaultBodyLimit;
use axum::Router;
use sesame_core::secret::SecretBytes;
use sesame_core::{Clock, UnixTime};
use sesame_store::{MasterKey, Store};
use std::sync::Arc;

pub use config::ServerConfig;
pub use service::Services;

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

/// Everything a request handler needs; cheap to clone. Derefs to the [`Services`].
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub struct Inner {
    pub services: Services,
    /// The second-step methods, by kind.
    pub methods: methods::Registry,
    pub web: WebKeys,
}

/// Keys only the web pages use.
pub struct WebKeys {
    pub csrf_key: SecretBytes,
    pub choice_key: SecretBytes,
}

impl std::ops::Deref for AppState {
    type Target = Services;
    fn deref(&self) -> &Services {
        &self.0.services
    }
}

impl AppState {
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        master_key: &MasterKey,
        config: ServerConfig,
    ) -> Result<Self, sesame_store::StoreError> {
        let services = Services::new(store, clock, config, master_key).await?;
        Ok(Self::with_services(services, master_key))
    }

    /// The app over services already made (the `sesame serve` command opens them once).
    pub fn with_services(services: Services, master_key: &MasterKey) -> Self {
        Self(Arc::new(Inner {
            services,
            methods: methods::Registry::standard(),
            web: WebKeys {
                csrf_key: master_key.derive("csrf-v1"),
                choice_key: master_key.derive("signin-choice-v1"),
            },
        }))
    }

    pub fn services(&self) -> &Services {
        &self.0.services
    }

    pub fn methods(&self) -> &methods::Registry {
        &self.0.methods
    }

    pub fn web(&self) -> &WebKeys {
        &self.0.web
    }
}

/// Largest request body accepted anywhere (forms are tiny).
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// The whole application.
pub fn app(state: AppState) -> Router {
    let methods = state.methods().routes();
    Router::new()
        .merge(web::routes())
        .merge(api::routes())
        .merge(oidc::routes())
        .merge(methods)
        .fallback(web::not_found)
        .layer(axum::middleware::from_fn(web::security_headers))
        .layer(axum::middleware::from_fn_with_state(
            state.config.connections.body_read_secs,
            serve::body_deadline,
        ))
        .layer(axum::middleware::from_fn(serve::overflow_guard))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

pub use serve::{serve, serve_with};
pub use tls::serve_tls;
