//! Users, devices and the in-process server.
//!
//! The only module of the benchmarks that uses the store's and the server's Rust API
//! (`sesame_store`, `sesame_server`): when that API changes, this file is the one to adapt.

use crate::phone::Phone;
use crate::unix_now;
use anyhow::{bail, Result};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use sesame_authenticator::device::DeviceKey;
use sesame_core::secret::SecretBytes;
use sesame_core::TenantId;
use sesame_proto::device::{DeviceEvent, ALG_ES256};
use sesame_server::{AppState, ServerConfig, SystemClock};
use sesame_store::{MasterKey, NewChallenge, NewDevice, NewUser, Store, User};
use std::future::Future;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A new Sesame database to fill with users before the server starts.
///
/// The embedded database in the data directory, or, when `SESAME_BENCH_DATABASE_URL` names a
/// PostgreSQL database, a fresh schema of this run in it (dropped by nobody: the benchmark's
/// database is a scratch one). The URL the server must use is written to
/// `DIR/database-url`, which [`crate::process::ServerProcess`] passes on.
pub struct Db {
    store: Arc<dyn Store>,
    key: MasterKey,
    url: String,
}

/// The environment variable that runs the benchmarks on PostgreSQL.
pub const DATABASE_URL_ENV: &str = "SESAME_BENCH_DATABASE_URL";

/// The file in a data directory naming the database of this run (absent: the embedded one).
pub const URL_FILE: &str = "database-url";

/// A fresh schema of this run on the PostgreSQL server `base` names; the URL that selects it.
async fn fresh_postgres_schema(base: &str) -> Result<String> {
    let schema = format!("bench_{}", hex(&random_bytes(6)));
    let (client, conn) = sesame_store::postgres::parse_url(base)?
        .connect(tokio_postgres::NoTls)
        .await?;
    let task = tokio::spawn(conn);
    client
        .batch_execute(&format!("CREATE SCHEMA {schema}"))
        .await?;
    drop(client);
    let _ = task.await;
    let sep = if base.contains('?') { '&' } else { '?' };
    Ok(format!("{base}{sep}options=-csearch_path%3D{schema}"))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Which backend the benchmarks run on, for their summaries.
pub fn backend_name() -> &'static str {
    match std::env::var(DATABASE_URL_ENV) {
        Ok(u) if !u.is_empty() => "postgresql",
        _ => "sqlite",
    }
}

/// A user with a password and a TOTP method (an authenticator app's secret).
pub struct CodeUser {
    pub username: String,
    pub secret: SecretBytes,
}

/// What [`Db::add_phones`] registers besides the device.
#[derive(Clone, Default)]
pub struct PhoneSetup {
    /// The user's password, as a PHC string (none: a passwordless user).
    pub password_hash: Option<String>,
    /// A PIN key and phone sign-in on, as the app sets up for passwordless sign-in.
    pub phone_sign_in: bool,
}

impl Db {
    /// `sesame.db` in the data directory `dir`, encrypted with the `master.key` there (created
    /// if missing): what `sesame --data-dir DIR serve` opens.
    pub async fn in_data_dir(dir: &Path) -> Result<Db> {
        let key = MasterKey::load_or_create(&dir.join("master.key"))?;
        Self::open(&dir.join("sesame.db"), key).await
    }

    /// `sesame.db` in `dir` with a new master key held in memory, for [`Db::serve`].
    pub async fn in_memory_key(dir: &Path) -> Result<Db> {
        Self::open(&dir.join("sesame.db"), MasterKey::generate()).await
    }

    async fn open(db: &Path, key: MasterKey) -> Result<Db> {
        let url = match std::env::var(DATABASE_URL_ENV) {
            Ok(base) if !base.is_empty() => {
                let url = fresh_postgres_schema(&base).await?;
                if let Some(dir) = db.parent() {
                    std::fs::write(dir.join(URL_FILE), &url)?;
                }
                url
            }
            _ => sesame_store::Backend::sqlite_url(db),
        };
        let store = sesame_store::open(&url, key.clone()).await?;
        Ok(Db { store, key, url })
    }

    /// Another in-process node on the same database (a store of its own: its own connections
    /// and, on PostgreSQL, its own event bus), as a second `sesame serve` would be.
    pub async fn node(&self) -> Result<InProcessServer> {
        let store = sesame_store::open(&self.url, self.key.clone()).await?;
        serve_store(store, &self.key).await
    }

    /// Users `{prefix}000000`, ... with the password of `phc` (one hash for all) and a TOTP
    /// method with a random secret as their default method.
    pub async fn add_code_users(&self, prefix: &str, n: usize, phc: &str) -> Result<Vec<CodeUser>> {
        let tenant = self.store.default_tenant().await?;
        let (store, prefix, phc) = (self.store.clone(), prefix.to_string(), phc.to_string());
        let now = unix_now();
        in_parallel(n, move |i| {
            let (store, phc) = (store.clone(), phc.clone());
            let username = format!("{prefix}{i:06}");
            async move {
                let user = create_user(&*store, tenant, &username, Some(phc), now).await?;
                let secret = SecretBytes::new(random_bytes(sesame_core::totp::SECRET_LEN));
                let m = store
                    .create_totp_method(user.id, "Authenticator app", &secret, 0, now)
                    .await?;
                store.update_default_method(user.id, Some(m.id)).await?;
                Ok(CodeUser { username, secret })
            }
        })
        .await
    }

    /// Users `{prefix}00000`, ... each with one device registered as activation does it
    /// (activation code created and used, device created with its push and TOTP methods), and
    /// what `setup` adds.
    pub async fn add_phones(
        &self,
        prefix: &str,
        n: usize,
        setup: &PhoneSetup,
    ) -> Result<Vec<Phone>> {
        let tenant = self.store.default_tenant().await?;
        let (store, prefix, setup) = (self.store.clone(), prefix.to_string(), setup.clone());
        in_parallel(n, move |i| {
            let (store, setup) = (store.clone(), setup.clone());
            let username = format!("{prefix}{i:05}");
            async move { add_phone(&*store, tenant, i, username, &setup).await }
        })
        .await
    }

    /// Starts the server in this process on a free 127.0.0.1 port, on the current runtime,
    /// with the system clock and default settings.
    pub async fn serve(self) -> Result<InProcessServer> {
        serve_store(self.store, &self.key).await
    }
}

async fn serve_store(store: Arc<dyn Store>, key: &MasterKey) -> Result<InProcessServer> {
    {
        // Default settings but one: every simulated browser and phone connects from
        // 127.0.0.1, and a thousand phones' event streams alone pass the per-address cap of
        // 256 connections that guards a real server against one flooding client (whose own
        // benchmark is `sesame-bench --attack`).
        let mut config = ServerConfig::default();
        config.connections.per_client = 1 << 20;
        let state = AppState::new(store.clone(), Arc::new(SystemClock), key, config).await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(sesame_server::serve(listener, state.clone(), async {
            let _ = stopped.await;
        }));
        let policy = sesame_core::policy::MethodsPolicy::initial(&state.config.push);
        Ok(InProcessServer {
            base,
            policy,
            state,
            store,
            stop: Some(stop),
            task,
        })
    }
}

async fn add_phone(
    store: &dyn Store,
    tenant: TenantId,
    i: usize,
    username: String,
    setup: &PhoneSetup,
) -> Result<Phone> {
    let now = unix_now();
    let user = create_user(store, tenant, &username, setup.password_hash.clone(), now).await?;
    let key = DeviceKey::generate();
    let code_hash = random_bytes(32);
    store
        .create_activation(user.id, &code_hash, now + 600)
        .await?;
    if store.consume_activation(&code_hash, now).await? != Some(user.id) {
        bail!("the activation code of {username} did not work");
    }
    let device = store
        .create_device(
            NewDevice {
                tenant,
                user: user.id,
                name: format!("bench phone {i}"),
                alg: ALG_ES256.into(),
                public_key: URL_SAFE_NO_PAD.decode(key.public_key())?,
            },
            &code_hash,
            &SecretBytes::new(random_bytes(sesame_core::totp::SECRET_LEN)),
            now,
        )
        .await?;
    let pin_key = if setup.phone_sign_in {
        let pin_key = DeviceKey::generate();
        let pin_public = URL_SAFE_NO_PAD.decode(pin_key.public_key())?;
        if !store.set_pin_key(device.row_id, &pin_public, None).await? {
            bail!("the PIN key of {username} was not registered");
        }
        store.set_phone_sign_in(device.row_id, Some(now)).await?;
        Some(pin_key)
    } else {
        None
    };
    Ok(Phone {
        user: user.id,
        username,
        device_id: device.id.0,
        key,
        pin_key,
    })
}

/// A user as `sesame user add` creates one; `password_hash` is a PHC string.
async fn create_user(
    store: &dyn Store,
    tenant: TenantId,
    username: &str,
    password_hash: Option<String>,
    now: i64,
) -> Result<User> {
    let new = NewUser {
        tenant,
        username: username.into(),
        display_name: username.into(),
        password_hash,
        is_admin: false,
    };
    Ok(store.create_user(new, now).await?)
}

/// `make(i)` for every i in 0..n, 16 at a time; the results in the order of i.
async fn in_parallel<T, F, Fut>(n: usize, make: F) -> Result<Vec<T>>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send,
{
    let make = Arc::new(make);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let (make, next) = (make.clone(), next.clone());
        tasks.spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    return Ok::<_, anyhow::Error>(mine);
                }
                mine.push((i, make(i).await?));
            }
        });
    }
    let mut all = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        all.extend(r??);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, t)| t).collect())
}

fn random_bytes(n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
    b
}

/// A Sesame server running in this process; it is told to stop when dropped.
pub struct InProcessServer {
    pub base: String,
    /// The policy that requests are shown to devices under (the server's initial one).
    policy: sesame_core::policy::MethodsPolicy,
    state: AppState,
    store: Arc<dyn Store>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl InProcessServer {
    /// Whether the server is still serving.
    pub fn is_running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Creates a sign-in request for `phone` exactly as the sign-in page does (store insert,
    /// then publish to the user's connected devices); `k` tells the requests apart.
    pub async fn send_request(&self, phone: &Phone, k: usize) -> Result<()> {
        let now = unix_now();
        let (c, superseded) = self
            .store
            .create_challenge(
                NewChallenge {
                    tenant: self.state.default_tenant,
                    user: phone.user,
                    signin_id_hash: vec![k as u8; 32],
                    kind: sesame_core::push::ChallengeKind::Mfa,
                    channel: sesame_core::push::ApprovalChannel::App,
                    number: "42".into(),
                    app_name: "bench".into(),
                    ip: "127.0.0.1".into(),
                    location: "This computer".into(),
                    user_agent: "bench".into(),
                    expires_at: now + 120,
                    browser: None,
                    budget: None,
                },
                now,
                None,
            )
            .await?;
        for id in superseded {
            self.state.hub.closed(phone.user, id, "superseded");
        }
        self.state.hub.publish(
            phone.user,
            DeviceEvent::Challenge(sesame_server::service::approvals::challenge_view(
                &c,
                &phone.username,
                &self.policy.authenticator,
            )),
        );
        Ok(())
    }

    /// Tells the server to stop (open event streams may keep it from finishing).
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

impl Drop for InProcessServer {
    fn drop(&mut self) {
        self.stop();
    }
}
