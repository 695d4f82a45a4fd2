//! The embedded backend: the conformance suite, and what only a file on disk can show.

use async_trait::async_trait;
use sesame_core::audit::Event;
use sesame_core::push::ChallengeKind;
use sesame_core::secret::SecretBytes;
use sesame_core::signin::SignInState;
use sesame_store::conformance::Backend;
use sesame_store::sqlite::SqliteStore;
use sesame_store::{MasterKey, NewUser, SignInRecord, Store, StoreError, TenantStore};
use std::path::PathBuf;
use std::sync::Arc;

const NOW: i64 = 1_700_000_000;

/// Databases in a temporary directory of the test's own.
struct Sqlite(tempfile::TempDir);

impl Sqlite {
    fn new() -> Self {
        Sqlite(tempfile::tempdir().unwrap())
    }

    fn path(&self, name: &str) -> PathBuf {
        self.0.path().join(format!("{name}.db"))
    }
}

#[async_trait]
impl Backend for Sqlite {
    async fn open(&self, name: &str, key: MasterKey) -> Arc<dyn Store> {
        let url = sesame_store::Backend::sqlite_url(&self.path(name));
        sesame_store::open(&url, key).await.unwrap()
    }
}

sesame_store::conformance_tests!(Sqlite::new());

/// The suite also runs as one function, as a backend without per-case tests would call it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_suite_runs_as_one_call() {
    sesame_store::conformance::run(Sqlite::new).await;
}

async fn user(s: &dyn Store, name: &str) -> sesame_core::UserId {
    let t = s.default_tenant().await.unwrap();
    let new = NewUser {
        tenant: t,
        username: name.into(),
        display_name: name.into(),
        password_hash: None,
        is_admin: false,
    };
    s.create_user(new, NOW).await.unwrap().id
}

#[tokio::test]
async fn totp_secret_is_never_on_disk_in_clear() {
    let db = Sqlite::new();
    let s = db.open("main", MasterKey::from_bytes([1; 32])).await;
    let u = user(&*s, "a").await;
    let secret = SecretBytes::new(b"PLAINTEXT-SEED-0123456789".to_vec());
    s.create_totp_method(u, "Phone", &secret, 0, NOW)
        .await
        .unwrap();
    s.create_totp_enrollment(u, &secret, NOW + 600)
        .await
        .unwrap();
    drop(s);
    let raw = std::fs::read(db.path("main")).unwrap();
    let wal = std::fs::read(db.0.path().join("main.db-wal")).unwrap_or_default();
    let needle = b"PLAINTEXT-SEED";
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "seed found in clear on disk"
        );
    }
}

/// A read that fails half-way (a stored row that does not decode) must not leave its pooled
/// connection inside a read transaction: the next read on it sees writes committed since.
#[tokio::test]
async fn a_read_that_fails_half_way_keeps_no_snapshot() {
    let db = Sqlite::new();
    let s = db.open("main", MasterKey::from_bytes([7; 32])).await;
    let t = s.default_tenant().await.unwrap();
    let rec = SignInRecord {
        id_hash: vec![5; 32],
        tenant: t,
        username: "a".into(),
        state: SignInState::Identified { user: None },
        version: 0,
        next_path: None,
        created_at: NOW,
        expires_at: NOW + 600,
    };
    s.create_signin(&rec).await.unwrap();
    rusqlite::Connection::open(db.path("main"))
        .unwrap()
        .execute(
            "UPDATE signin_transactions SET state = 'not json' WHERE id_hash = ?",
            [&rec.id_hash],
        )
        .unwrap();
    for round in 0..3 {
        assert!(s.find_signin(&rec.id_hash, NOW).await.is_err());
        let name = format!("late{round}");
        user(&*s, &name).await;
        assert!(
            s.find_user_by_username(t, &name).await.unwrap().is_some(),
            "a pooled reader kept the snapshot of a failed read"
        );
    }
}

/// A stored name this version does not know (a newer version wrote it) is never read as
/// something else: a request of an unknown kind is an error (it must not pass for a second
/// step), while the audit log shows an unknown event as it was written, and an unknown
/// remembered choice is no choice.
#[tokio::test]
async fn unknown_stored_names_are_refused_not_guessed() {
    let db = Sqlite::new();
    let s = db.open("main", MasterKey::from_bytes([7; 32])).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let (c, _) = s
        .create_challenge(
            sesame_store::NewChallenge {
                tenant: t,
                user: u,
                signin_id_hash: vec![1; 32],
                kind: ChallengeKind::PhoneSignIn,
                channel: sesame_core::push::ApprovalChannel::App,
                number: "12".into(),
                app_name: "Sesame".into(),
                ip: "127.0.0.1".into(),
                location: "This computer".into(),
                user_agent: "t".into(),
                expires_at: NOW + 100,
                browser: None,
                budget: None,
            },
            NOW,
            None,
        )
        .await
        .unwrap();
    s.append_audit(&sesame_store::AuditEvent {
        id: 0,
        at: NOW,
        tenant: t,
        user: Some(u),
        username: "a".into(),
        ip: "-".into(),
        user_agent: "-".into(),
        event: Event::SignIn,
        method: None,
        result: sesame_store::AuditResult::Success,
        reason: None,
    })
    .await
    .unwrap();
    let raw = rusqlite::Connection::open(db.path("main")).unwrap();
    raw.execute("UPDATE challenges SET kind = 'sms_magic'", [])
        .unwrap();
    raw.execute(
        "UPDATE audit_log SET event = 'from_the_future', method = 'carrier_pigeon'",
        [],
    )
    .unwrap();
    raw.execute("UPDATE users SET signin_preference = 'telepathy'", [])
        .unwrap();
    let err = s.find_challenge(&c.id).await.map(|_| ()).unwrap_err();
    assert!(
        matches!(&err, StoreError::Database(m) if m.contains("unknown")),
        "{err}"
    );
    let log = s.list_audit(&Default::default()).await.unwrap();
    assert_eq!(log[0].event.as_str(), "from_the_future");
    assert_eq!(log[0].method.as_ref().unwrap().as_str(), "carrier_pigeon");
    assert_eq!(
        s.find_user(u).await.unwrap().unwrap().signin_preference,
        None
    );
}

#[tokio::test]
async fn open_refuses_urls_of_other_backends_with_a_clear_message() {
    for (url, says) in [
        ("mysql://x", "expected sqlite://FILE or postgres://"),
        ("postgres://sesame@localhost:notaport/db", "not valid"),
    ] {
        let err = sesame_store::open(url, MasterKey::generate())
            .await
            .err()
            .expect("refused");
        assert!(err.to_string().contains(says), "{url}: {err}");
    }
}

#[tokio::test]
async fn the_database_directory_is_created_on_first_open() {
    let db = Sqlite::new();
    let path = db.0.path().join("deeper/still/sesame.db");
    let s = SqliteStore::open(&path, MasterKey::generate())
        .await
        .unwrap();
    assert!(s.default_tenant().await.is_ok());
    assert!(path.exists());
}

/// A data directory made by the previous release (its `sesame` CLI, server and authenticator:
/// users, a group, a saved policy, a verification-code method, a registered phone, a session,
/// the audit log; migrations recorded by sqlx) opens, migrates forward and keeps everything.
#[tokio::test]
async fn a_data_directory_of_the_previous_release_opens_and_keeps_its_data() {
    use sesame_core::method::MethodKind;
    use sesame_core::policy::{AuthenticatorMode, GroupTarget, Targets};
    use sesame_core::secret::SecretString;
    let fixture =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data-0.1.0");
    let dir = tempfile::tempdir().unwrap();
    for f in ["sesame.db", "master.key"] {
        std::fs::copy(fixture.join(f), dir.path().join(f)).unwrap();
    }
    let key = MasterKey::read(&dir.path().join("master.key")).unwrap();
    let url = sesame_store::Backend::sqlite_url(&dir.path().join("sesame.db"));
    let s = sesame_store::open(&url, key.clone()).await.unwrap();
    let t = s.default_tenant().await.unwrap();

    let users = s.list_users(t).await.unwrap();
    let names: Vec<_> = users.iter().map(|u| u.username.as_str()).collect();
    assert_eq!(names, ["alice", "carol", "root"]);
    let alice = users.iter().find(|u| u.username == "alice").unwrap();
    assert_eq!(alice.display_name, "Alice A.");
    assert!(sesame_core::password::verify(
        alice.password_hash.as_deref(),
        &SecretString::new("correct horse battery".into())
    ));
    assert!(
        users
            .iter()
            .find(|u| u.username == "root")
            .unwrap()
            .is_admin
    );
    assert!(
        !users
            .iter()
            .find(|u| u.username == "carol")
            .unwrap()
            .has_password
    );

    let groups = s.list_user_groups(alice.id).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].name, "Pilot");
    let (policy, version) = s.find_policy(t).await.unwrap().unwrap();
    assert_eq!(version, 1);
    assert_eq!(policy.authenticator.digits, 3);
    assert_eq!(
        policy.authenticator.targets,
        Targets::Groups {
            groups: vec![GroupTarget {
                group: groups[0].id,
                mode: AuthenticatorMode::Any
            }]
        }
    );

    // Secrets sealed by the old release open with its master key.
    let methods = s.list_methods(alice.id).await.unwrap();
    assert_eq!(methods.len(), 3);
    let codes: Vec<_> = methods
        .iter()
        .filter(|m| m.kind == MethodKind::Totp)
        .collect();
    assert_eq!(codes.len(), 2);
    assert!(codes.iter().all(|m| m
        .totp_secret
        .as_ref()
        .is_some_and(|k| k.expose().len() == 20)));
    let devices = s.list_devices(alice.id).await.unwrap();
    assert_eq!(devices.len(), 1);
    assert_eq!(devices[0].name, "Alice's phone");
    assert_eq!(
        methods
            .iter()
            .filter(|m| m.device.as_ref() == Some(&devices[0].id))
            .count(),
        2
    );

    // The log reads back with every event and method name known.
    let log = s.list_audit(&Default::default()).await.unwrap();
    let events: Vec<_> = log.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        events,
        [
            "device_added",
            "method_added",
            "sign_in",
            "sign_in",
            "policy_changed"
        ]
    );

    // The new migration applied: requests now carry their channel.
    s.create_challenge(
        sesame_store::NewChallenge {
            tenant: t,
            user: alice.id,
            signin_id_hash: vec![9; 32],
            kind: ChallengeKind::Mfa,
            channel: sesame_core::push::ApprovalChannel::App,
            number: "123".into(),
            app_name: "Sesame".into(),
            ip: "127.0.0.1".into(),
            location: "This computer".into(),
            user_agent: "t".into(),
            expires_at: NOW + 100,
            browser: None,
            budget: None,
        },
        NOW,
        None,
    )
    .await
    .unwrap();
    let applied: i64 = rusqlite::Connection::open(dir.path().join("sesame.db"))
        .unwrap()
        .query_row("SELECT MAX(version) FROM _sqlx_migrations", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(applied, 16, "every migration applied");
    // Ids stay, and a removed user's id is not handed out again (the rebuilt users table
    // kept every row its neighbours point at).
    assert_eq!(
        s.find_user(alice.id).await.unwrap().unwrap().username,
        "alice"
    );
    assert_eq!(s.list_methods(alice.id).await.unwrap().len(), 3);
    let carol = users.iter().find(|u| u.username == "carol").unwrap().id;
    assert!(s.delete_user(carol).await.unwrap());
    let next = s
        .create_user(
            NewUser {
                tenant: t,
                username: "erin".into(),
                display_name: "erin".into(),
                password_hash: None,
                is_admin: false,
            },
            NOW,
        )
        .await
        .unwrap();
    assert!(next.id.0 > carol.0);
    // And it opens again (a restart), migrations already done.
    drop(s);
    let again = sesame_store::open(&url, key).await.unwrap();
    assert_eq!(again.list_users(t).await.unwrap().len(), 3);
}

/// Overwrites the first page of `table` in the database file with garbage.
fn damage_table(db: &std::path::Path, table: &str) {
    use std::io::{Seek, SeekFrom, Write};
    let raw = rusqlite::Connection::open(db).unwrap();
    raw.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let page: u64 = raw.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let root: u64 = raw
        .query_row(
            "SELECT rootpage FROM sqlite_master WHERE name = ?",
            [table],
            |r| r.get(0),
        )
        .unwrap();
    drop(raw);
    let mut f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.seek(SeekFrom::Start((root - 1) * page)).unwrap();
    f.write_all(&vec![0xA5; page as usize]).unwrap();
    f.sync_all().unwrap();
}

/// A damaged table is found at start, before any migration or sign-in touches it, and the
/// message says what to restore.
#[tokio::test]
async fn a_damaged_database_is_refused_at_start() {
    let db = Sqlite::new();
    let s = db.open("main", MasterKey::from_bytes([7; 32])).await;
    user(&*s, "alice").await;
    drop(s);
    damage_table(&db.path("main"), "users");
    let url = sesame_store::Backend::sqlite_url(&db.path("main"));
    let err = sesame_store::open(&url, MasterKey::from_bytes([7; 32]))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("main.db") && msg.contains("restore"), "{msg}");
}

/// Readiness checks the database's structure (at most once a minute), so a table damaged
/// while the server runs makes `/readyz` fail instead of waiting for a sign-in to hit it.
#[tokio::test]
async fn readiness_finds_a_table_damaged_while_running() {
    let db = Sqlite::new();
    let path = db.path("main");
    let s = sesame_store::sqlite::SqliteStore::open(&path, MasterKey::from_bytes([7; 32]))
        .await
        .unwrap();
    user(&s, "alice").await;
    damage_table(&path, "audit_log");
    let err = s.check_ready().await.unwrap_err();
    assert!(matches!(err, StoreError::Damaged(_)), "{err}");
    assert!(err.to_string().contains("restore"), "{err}");
}
