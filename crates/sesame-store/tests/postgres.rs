//! The PostgreSQL backend: the conformance suite, against the server `SESAME_TEST_DATABASE_URL`
//! names (`scripts/test.sh` starts one). Each test works in schemas of its own, so tests run
//! in parallel on one database without seeing each other.
//!
//! Without the variable these tests say so and pass, so that `cargo test` works on a machine
//! without PostgreSQL; `scripts/test.sh` sets `SESAME_REQUIRE_POSTGRES=1`, which makes a
//! missing server a failure instead of a quiet skip.

use async_trait::async_trait;
use sesame_store::conformance::Backend;
use sesame_store::{MasterKey, Store, StoreError};
use std::sync::Arc;

struct Pg {
    url: String,
    /// This test's schemas start with it.
    prefix: String,
}

fn database_url() -> Option<String> {
    match std::env::var("SESAME_TEST_DATABASE_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            assert!(
                std::env::var_os("SESAME_REQUIRE_POSTGRES").is_none(),
                "SESAME_REQUIRE_POSTGRES is set but SESAME_TEST_DATABASE_URL is not"
            );
            eprintln!("skipped: SESAME_TEST_DATABASE_URL is not set (no PostgreSQL to test)");
            None
        }
    }
}

impl Pg {
    fn from_env() -> Option<Self> {
        let url = database_url()?;
        let mut b = [0u8; 6];
        rand_bytes(&mut b);
        let prefix = format!(
            "t_{}",
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        );
        Some(Pg { url, prefix })
    }

    fn schema(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    /// The URL of the database with `search_path` set to the schema, created if needed.
    async fn url_of(&self, name: &str) -> String {
        let schema = self.schema(name);
        let (client, conn) = tokio_postgres::connect(&self.url, tokio_postgres::NoTls)
            .await
            .expect("connect to SESAME_TEST_DATABASE_URL");
        let task = tokio::spawn(conn);
        client
            .batch_execute(&format!("CREATE SCHEMA IF NOT EXISTS {schema}"))
            .await
            .unwrap();
        drop(client);
        let _ = task.await;
        let sep = if self.url.contains('?') { '&' } else { '?' };
        format!("{}{sep}options=-csearch_path%3D{schema}", self.url)
    }
}

fn rand_bytes(b: &mut [u8]) {
    use std::hash::{BuildHasher, Hasher};
    for chunk in b.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos(),
        );
        let v = h.finish().to_le_bytes();
        chunk.copy_from_slice(&v[..chunk.len()]);
    }
}

#[async_trait]
impl Backend for Pg {
    async fn open(&self, name: &str, key: MasterKey) -> Arc<dyn Store> {
        let url = self.url_of(name).await;
        sesame_store::open(&url, key).await.unwrap()
    }
}

sesame_store::conformance_tests!(match Pg::from_env() {
    Some(b) => b,
    None => return,
});

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once() {
    let Some(pg) = Pg::from_env() else { return };
    let url = pg.url_of("race").await;
    // Eight nodes at once: one migrates, the others wait for its lock and find it done.
    let opens: Vec<_> = (0..8)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move {
                sesame_store::postgres::PgStore::open(&url, MasterKey::from_bytes([3; 32]))
                    .await
                    .map(|s| Arc::new(s) as Arc<dyn Store>)
            })
        })
        .collect();
    for o in opens {
        let s = o.await.unwrap().expect("every node opens");
        s.default_tenant().await.unwrap();
    }
    let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let n: i64 = client
        .query_one("SELECT count(*) FROM sesame_migrations", &[])
        .await
        .unwrap()
        .get(0);
    // Each migration applied once (the version is the key), and no node failed on the way.
    assert_eq!(n, 5, "every migration is recorded");
    // `sesame migrate` on an up-to-date database has nothing to do.
    assert!(sesame_store::postgres::migrate(&url)
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn an_unreachable_database_is_reported_as_unavailable_without_the_password() {
    // Nothing listens on port 1 of loopback.
    let err = sesame_store::open(
        "postgres://sesame:hunter2@127.0.0.1:1/sesame?connect_timeout=2",
        MasterKey::from_bytes([1; 32]),
    )
    .await
    .err()
    .expect("refused");
    assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(err.to_string().contains("127.0.0.1:1"), "{err}");
}

/// A TCP proxy to the database that, once armed, passes the next `COMMIT` on, waits for the
/// database to apply it, and then cuts the connection before the answer comes back.
struct CutAtCommit {
    port: u16,
    armed: Arc<std::sync::atomic::AtomicBool>,
}

impl CutAtCommit {
    async fn start(host: String, port: u16) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy_port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(false));
        let armed_here = armed.clone();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let Ok(mut server) = tokio::net::TcpStream::connect((host.as_str(), port)).await
                else {
                    continue;
                };
                let armed = armed_here.clone();
                tokio::spawn(async move {
                    let (mut up, mut down) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
                    loop {
                        tokio::select! {
                            n = client.read(&mut up) => {
                                let Ok(n @ 1..) = n else { break };
                                let commit = up[..n].windows(6).any(|w| w == b"COMMIT");
                                if server.write_all(&up[..n]).await.is_err() {
                                    break;
                                }
                                if commit && armed.swap(false, Ordering::SeqCst) {
                                    // Long enough for the database to commit; its answer is
                                    // then dropped with the connection.
                                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                                    break;
                                }
                            }
                            n = server.read(&mut down) => {
                                let Ok(n @ 1..) = n else { break };
                                if client.write_all(&down[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        CutAtCommit {
            port: proxy_port,
            armed,
        }
    }

    /// `url` with the proxy in place of the database's host and port.
    fn url(&self, url: &str, host: &str, port: u16) -> String {
        let at = format!("{host}:{port}");
        assert!(
            url.contains(&at),
            "SESAME_TEST_DATABASE_URL names no {at}: give its port"
        );
        url.replacen(&at, &format!("127.0.0.1:{}", self.port), 1)
    }
}

/// A write whose COMMIT was sent but whose answer never came may be saved: it is reported as
/// uncertain, not as unavailable (which tells people that nothing was changed), and here it
/// was in fact saved.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_commit_answer_is_lost_is_uncertain_not_unavailable() {
    let Some(pg) = Pg::from_env() else { return };
    let url = pg.url_of("cut").await;
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match &config.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        _ => panic!("SESAME_TEST_DATABASE_URL must name a TCP host"),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let proxy = CutAtCommit::start(host.clone(), port).await;
    let key = || MasterKey::from_bytes([4; 32]);
    let store = sesame_store::open(&proxy.url(&url, &host, port), key())
        .await
        .unwrap();
    let tenant = store.default_tenant().await.unwrap();
    let new = sesame_store::NewUser {
        tenant,
        username: "a".into(),
        display_name: "a".into(),
        password_hash: None,
        is_admin: false,
    };
    let user = store.create_user(new, 1_700_000_000).await.unwrap().id;
    proxy.armed.store(true, std::sync::atomic::Ordering::SeqCst);
    let err = store
        .block_user(user, 1_700_000_000)
        .await
        .expect_err("the answer to the commit was cut");
    assert!(matches!(err, StoreError::Uncertain(_)), "{err:?}");
    let direct = sesame_store::open(&url, key()).await.unwrap();
    assert!(
        direct.find_user(user).await.unwrap().unwrap().is_blocked,
        "the commit was applied"
    );
}

/// Deployments kept apart by schemas of one database do not hear each other's events (a
/// channel is database-wide and user ids repeat between schemas), while the nodes of one
/// deployment do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_stay_within_the_schema_of_their_deployment() {
    use sesame_store::{BusEvent, EventBus};
    use std::time::Duration;
    let Some(pg) = Pg::from_env() else { return };
    let key = || MasterKey::from_bytes([4; 32]);
    let (a_url, b_url) = (pg.url_of("bus_a").await, pg.url_of("bus_b").await);
    let a1 = sesame_store::postgres::PgStore::open(&a_url, key())
        .await
        .unwrap();
    let a2 = sesame_store::postgres::PgStore::open(&a_url, key())
        .await
        .unwrap();
    let b = sesame_store::postgres::PgStore::open(&b_url, key())
        .await
        .unwrap();
    for s in [&a1, &a2, &b] {
        s.bus().listening().await;
    }
    let mut heard_a2 = a2.bus().subscribe();
    let mut heard_b = b.bus().subscribe();
    a1.bus().publish("for the nodes of a".into());
    // A node of the same deployment hears it (after the resync each node starts with).
    let message = async {
        loop {
            match heard_a2.recv().await {
                Ok(BusEvent::Message(m)) => return m,
                Ok(BusEvent::Resync) => continue,
                Err(e) => panic!("{e}"),
            }
        }
    };
    let m = tokio::time::timeout(Duration::from_secs(10), message)
        .await
        .expect("the other node of a hears it");
    assert_eq!(m, "for the nodes of a");
    // The other deployment hears nothing of it.
    let other = async {
        loop {
            match heard_b.recv().await {
                Ok(BusEvent::Message(m)) => return m,
                Ok(BusEvent::Resync) => continue,
                Err(e) => panic!("{e}"),
            }
        }
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(1), other)
            .await
            .is_err(),
        "another schema's deployment hears nothing"
    );
}
