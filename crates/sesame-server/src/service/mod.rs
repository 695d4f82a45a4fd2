//! Every state change Sesame makes, with its audit line, written once. The sign-in pages, the
//! device API, the admin console and the `sesame` command line are doors onto these
//! functions; none of them changes the store by itself, so the command line's `user block`
//! and the console's Block cannot drift apart.
//!
//! Services depend on the store and the core only: nothing here knows HTTP. Reads that only
//! show something (a listing for a page) may go to the store directly.

pub mod access_pass;
pub mod approvals;
pub mod audit;
pub mod browsers;
pub mod devices;
pub mod groups;
pub mod guesses;
pub mod oidc;
pub mod phones;
pub mod policy;
pub mod security;
pub mod sessions;
pub mod setup;
pub mod signin;
pub mod users;

pub use audit::{Admin, Line, Origin};
pub use policy::UserPolicy;

use crate::delivery::hub::Hub;
use crate::hashing::Hasher;
use crate::ServerConfig;
use sesame_core::{Clock, TenantId, UnixTime};
use sesame_store::{MasterKey, Store};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

/// What the services work with; cheap to clone.
#[derive(Clone)]
pub struct Services(Arc<Inner>);

pub struct Inner {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub config: ServerConfig,
    /// Password hashing, bounded (Argon2id is slow and large on purpose).
    pub hasher: Hasher,
    /// Wakes device streams and waiting sign-in pages of this process.
    pub hub: Arc<Hub>,
    /// The tenant of this installation (one for now; see [`Services::tenant_for_host`]).
    pub default_tenant: TenantId,
    /// Browsers users signed in with before (device cookies).
    pub browsers: browsers::KnownBrowsers,
    /// When this process last forgot old password guess counts.
    pub guesses_pruned_at: AtomicI64,
    /// OpenID Connect: signing keys, the key that signs waiting authorization requests.
    pub oidc: oidc::Oidc,
    /// Gateways for texts and calls, and the keys that hash numbers and texted codes.
    pub telephony: crate::delivery::telephony::Telephony,
    pub phone_keys: phones::Keys,
    /// The key that hashes Temporary Access Passes.
    pub access_pass_key: access_pass::PassKey,
    /// What `/metrics` reports.
    pub metrics: crate::metrics::Metrics,
    policies: policy::PolicyCache,
}

impl std::ops::Deref for Services {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.0
    }
}

impl Services {
    pub async fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServerConfig,
        master_key: &MasterKey,
    ) -> Result<Self, sesame_store::StoreError> {
        let default_tenant = store.default_tenant().await?;
        let hasher = Hasher::new(
            config.hashing_concurrency(),
            config.hashing_queue,
            config.hashing_per_client,
        );
        let telephony = crate::delivery::telephony::Telephony::new(
            &config.telephony,
            store.clone(),
            clock.clone(),
        )
        .map_err(sesame_store::StoreError::Damaged)?;
        // Several nodes on one database hear each other's events through it.
        let hub = Arc::new(Hub::default());
        hub.connect(store.clone());
        Ok(Services(Arc::new(Inner {
            telephony,
            phone_keys: phones::Keys::new(master_key),
            access_pass_key: access_pass::PassKey::new(master_key),
            metrics: crate::metrics::Metrics::default(),
            store,
            clock,
            config,
            hasher,
            hub,
            default_tenant,
            browsers: browsers::KnownBrowsers::new(master_key.derive("device-cookie-v1")),
            guesses_pruned_at: AtomicI64::new(0),
            oidc: oidc::Oidc::new(master_key.derive("oidc-request-v1")),
            policies: policy::PolicyCache::default(),
        })))
    }

    pub fn now(&self) -> UnixTime {
        self.clock.now()
    }

    /// The tenant a new request is for (the username step, first-run set-up). One tenant per
    /// installation for now: every host name serves the default tenant. Once a request is
    /// signed in, its tenant is the user's (sessions, sign-ins and the console follow the
    /// records), so tenants by host name start here.
    pub fn tenant_for_host(&self, _host: Option<&str>) -> TenantId {
        self.default_tenant
    }
}
