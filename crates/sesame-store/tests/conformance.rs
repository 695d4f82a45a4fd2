//! The store conformance suite. Every backend must pass it; it runs against SQLite always.

use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::{Amr, MethodKind};
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{CompletedSignIn, SignInState};
use sesame_core::{TenantId, UserId};
use sesame_store::sqlite::SqliteStore;
use sesame_store::{
    AuditEvent, AuditFilter, AuditResult, MasterKey, NewUser, SessionLimits, SignInRecord, Store,
    StoreError,
};
use std::sync::Arc;

const NOW: i64 = 1_700_000_000;

async fn sqlite() -> (tempfile::TempDir, Arc<SqliteStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(
        &dir.path().join("sesame.db"),
        MasterKey::from_bytes([7; 32]),
    )
    .await
    .unwrap();
    (dir, Arc::new(store))
}

/// An audit line; tests set the fields they look at with `..audit_line(..)`.
fn audit_line(tenant: TenantId, user: Option<UserId>, event: &str) -> AuditEvent {
    AuditEvent {
        id: 0,
        at: NOW,
        tenant,
        user,
        username: "a".into(),
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        event: event.into(),
        method: None,
        result: AuditResult::Success,
        reason: None,
    }
}

const LIMITS: SessionLimits = SessionLimits {
    idle_secs: 3600,
    absolute_secs: 86_400,
};

/// A finished password sign-in of `user`, as a session is made from.
fn password_sign_in(user: UserId) -> CompletedSignIn {
    SignInState::Done {
        user,
        amr: vec![Amr::Pwd],
    }
    .completed()
    .unwrap()
}

async fn user(store: &dyn Store, name: &str) -> UserId {
    let t = store.default_tenant().await.unwrap();
    let new = NewUser {
        tenant: t,
        username: name.into(),
        display_name: name.into(),
        password_hash: None,
        is_admin: false,
    };
    store.create_user(new, NOW).await.unwrap().id
}

#[tokio::test]
async fn usernames_are_unique_ignoring_case() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let id = user(&*s, "Alice").await;
    let found = s.find_user_by_username(t, "aLICE").await.unwrap().unwrap();
    assert_eq!(found.id, id);
    assert_eq!(found.username, "Alice");
    let dup = NewUser {
        tenant: t,
        username: "alice".into(),
        display_name: "x".into(),
        password_hash: None,
        is_admin: false,
    };
    assert!(matches!(
        s.create_user(dup, NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.find_user_by_username(t, "bob").await.unwrap().is_none());
}

#[tokio::test]
async fn groups_and_membership() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    let g = s.create_group(t, "Pilot", NOW).await.unwrap();
    assert!(matches!(
        s.create_group(t, "pilot", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(s.add_group_member(g.id, a).await.unwrap());
    assert!(!s.add_group_member(g.id, a).await.unwrap());
    assert_eq!(s.list_groups(t).await.unwrap()[0].member_count, 1);
    assert_eq!(s.list_user_groups(a).await.unwrap()[0].name, "Pilot");
    assert_eq!(s.list_group_members(g.id).await.unwrap()[0].id, a);
    assert!(s.remove_group_member(g.id, a).await.unwrap());
    assert!(!s.remove_group_member(g.id, a).await.unwrap());
}

#[tokio::test]
async fn totp_secret_is_encrypted_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sesame.db");
    let s = SqliteStore::open(&path, MasterKey::from_bytes([1; 32]))
        .await
        .unwrap();
    let u = user(&s, "a").await;
    let secret = SecretBytes::new(b"PLAINTEXT-SEED-0123456789".to_vec());
    s.create_totp_method(u, "Phone", &secret, 0, NOW)
        .await
        .unwrap();
    assert_eq!(
        s.list_methods(u).await.unwrap()[0]
            .totp_secret
            .as_ref()
            .unwrap(),
        &secret
    );
    drop(s);
    let raw = std::fs::read(&path).unwrap();
    let wal = std::fs::read(dir.path().join("sesame.db-wal")).unwrap_or_default();
    let needle = b"PLAINTEXT-SEED";
    for bytes in [&raw, &wal] {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle),
            "seed found in clear on disk"
        );
    }
    // Another master key cannot read it.
    let other = SqliteStore::open(&path, MasterKey::from_bytes([2; 32]))
        .await
        .unwrap();
    assert!(matches!(
        other.list_methods(u).await,
        Err(StoreError::Decrypt)
    ));
}

#[tokio::test]
async fn totp_step_is_claimed_once_and_never_backwards() {
    let (_d, s) = sqlite().await;
    let u = user(&*s, "a").await;
    let m = s
        .create_totp_method(u, "Phone", &SecretBytes::new(vec![1; 20]), 100, NOW)
        .await
        .unwrap();
    assert!(
        !s.claim_totp_step(m.id, 100, NOW).await.unwrap(),
        "enrolment step cannot sign in"
    );
    assert!(s.claim_totp_step(m.id, 101, NOW).await.unwrap());
    assert!(
        !s.claim_totp_step(m.id, 101, NOW).await.unwrap(),
        "same step twice"
    );
    assert!(
        !s.claim_totp_step(m.id, 100, NOW).await.unwrap(),
        "older after newer"
    );
    assert!(s.claim_totp_step(m.id, 102, NOW).await.unwrap());
}

#[tokio::test]
async fn totp_step_claimed_by_fifty_parallel_requests_once() {
    let (_d, s) = sqlite().await;
    let u = user(&*s, "a").await;
    let m = s
        .create_totp_method(u, "Phone", &SecretBytes::new(vec![1; 20]), 0, NOW)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.claim_totp_step(m.id, 5, NOW).await.unwrap() })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);
}

#[tokio::test]
async fn parallel_attempts_never_evaluate_more_than_the_limit() {
    let (_d, s) = sqlite().await;
    let u = user(&*s, "a").await;
    let policy = LockoutPolicy::default();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.reserve_attempt(u, "totp", &policy, NOW).await.unwrap() })
        })
        .collect();
    let mut open = 0;
    for t in tasks {
        if t.await.unwrap() == AttemptGate::Open {
            open += 1;
        }
    }
    assert_eq!(open, 10, "exactly the soft limit may be evaluated");
    assert_eq!(s.find_failures(u, "totp").await.unwrap(), (10, Some(NOW)));
    // After the lock expires, one more attempt; then the lock doubles.
    assert_eq!(
        s.reserve_attempt(u, "totp", &policy, NOW + 60)
            .await
            .unwrap(),
        AttemptGate::Open
    );
    assert_eq!(
        s.reserve_attempt(u, "totp", &policy, NOW + 61)
            .await
            .unwrap(),
        AttemptGate::SoftLocked {
            until: NOW + 60 + 120
        }
    );
    // Counters are per method kind.
    assert_eq!(
        s.reserve_attempt(u, "sms", &policy, NOW).await.unwrap(),
        AttemptGate::Open
    );
    s.clear_failures(u, "totp").await.unwrap();
    assert_eq!(s.find_failures(u, "totp").await.unwrap().0, 0);
}

#[tokio::test]
async fn failure_counter_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sesame.db");
    let s = SqliteStore::open(&path, MasterKey::from_bytes([1; 32]))
        .await
        .unwrap();
    let u = user(&s, "a").await;
    for _ in 0..3 {
        s.reserve_attempt(u, "totp", &LockoutPolicy::default(), NOW)
            .await
            .unwrap();
    }
    drop(s);
    let s = SqliteStore::open(&path, MasterKey::from_bytes([1; 32]))
        .await
        .unwrap();
    assert_eq!(s.find_failures(u, "totp").await.unwrap().0, 3);
}

#[tokio::test]
async fn enrollment_is_taken_once_and_expires() {
    let (_d, s) = sqlite().await;
    let u = user(&*s, "a").await;
    let other = user(&*s, "b").await;
    let secret = SecretBytes::new(vec![9; 20]);
    let id = s
        .create_totp_enrollment(u, &secret, NOW + 600)
        .await
        .unwrap();
    assert!(
        s.find_totp_enrollment(other, &id, NOW)
            .await
            .unwrap()
            .is_none(),
        "bound to its user"
    );
    assert_eq!(
        s.find_totp_enrollment(u, &id, NOW).await.unwrap().unwrap(),
        secret
    );
    assert!(
        s.find_totp_enrollment(u, &id, NOW + 600)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
    assert!(s
        .take_totp_enrollment(other, &id, NOW)
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        s.take_totp_enrollment(u, &id, NOW).await.unwrap().unwrap(),
        secret
    );
    assert!(
        s.take_totp_enrollment(u, &id, NOW).await.unwrap().is_none(),
        "single use"
    );
}

#[tokio::test]
async fn signin_state_changes_are_compare_and_set() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let rec = SignInRecord {
        id_hash: vec![1; 32],
        tenant: t,
        username: "a".into(),
        state: SignInState::Identified { user: Some(u) },
        version: 0,
        next_path: None,
        created_at: NOW,
        expires_at: NOW + 600,
    };
    s.create_signin(&rec).await.unwrap();
    let done = SignInState::Done {
        user: u,
        amr: vec![Amr::Pwd],
    };
    assert!(s.update_signin_state(&rec.id_hash, 0, &done).await.unwrap());
    assert!(
        !s.update_signin_state(&rec.id_hash, 0, &done).await.unwrap(),
        "stale version loses"
    );
    let found = s.find_signin(&rec.id_hash, NOW).await.unwrap().unwrap();
    assert_eq!((found.version, found.state), (1, done));
    assert!(
        s.find_signin(&rec.id_hash, NOW + 600)
            .await
            .unwrap()
            .is_none(),
        "expired"
    );
}

#[tokio::test]
async fn sessions_expire_idle_absolute_and_on_revocation() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let done = SignInState::Done {
        user: u,
        amr: vec![Amr::Pwd, Amr::Otp, Amr::Mfa],
    }
    .completed()
    .unwrap();
    let limits = LIMITS;
    s.create_session(b"s1", t, &done, NOW, limits)
        .await
        .unwrap();
    let rec = s.find_session(b"s1", NOW + 10).await.unwrap().unwrap();
    assert_eq!(rec.amr, vec![Amr::Pwd, Amr::Otp, Amr::Mfa]);
    assert!(
        s.find_session(b"s1", NOW + 3600).await.unwrap().is_none(),
        "idle timeout"
    );
    s.touch_session(b"s1", NOW + 3000, limits).await.unwrap();
    assert!(
        s.find_session(b"s1", NOW + 6000).await.unwrap().is_some(),
        "touched"
    );
    let mut t2 = NOW;
    while t2 < NOW + 86_400 {
        t2 += 3000;
        s.touch_session(b"s1", t2, limits).await.unwrap();
    }
    assert!(
        s.find_session(b"s1", NOW + 86_400).await.unwrap().is_none(),
        "absolute timeout"
    );
    s.create_session(b"s2", t, &done, NOW, limits)
        .await
        .unwrap();
    s.revoke_user_sessions(u, NOW).await.unwrap();
    assert!(s.find_session(b"s2", NOW + 1).await.unwrap().is_none());
}

#[tokio::test]
async fn setup_token_is_single_use() {
    let (_d, s) = sqlite().await;
    s.create_setup_token(b"tok", NOW + 100).await.unwrap();
    assert!(s.is_setup_token_valid(b"tok", NOW).await.unwrap());
    assert!(
        !s.consume_setup_token(b"tok", NOW + 100).await.unwrap(),
        "expired"
    );
    assert!(s.consume_setup_token(b"tok", NOW).await.unwrap());
    assert!(!s.consume_setup_token(b"tok", NOW).await.unwrap());
    assert!(!s.is_setup_token_valid(b"tok", NOW).await.unwrap());
}

#[tokio::test]
async fn default_method_must_belong_to_the_user() {
    let (_d, s) = sqlite().await;
    let a = user(&*s, "a").await;
    let b = user(&*s, "b").await;
    let m = s
        .create_totp_method(a, "Phone", &SecretBytes::new(vec![1; 20]), 0, NOW)
        .await
        .unwrap();
    assert!(s.update_default_method(b, Some(m.id)).await.is_err());
    s.update_default_method(a, Some(m.id)).await.unwrap();
    assert_eq!(
        s.find_user(a).await.unwrap().unwrap().default_method,
        Some(m.id)
    );
    assert!(s.delete_method(a, m.id).await.unwrap());
    assert_eq!(s.find_user(a).await.unwrap().unwrap().default_method, None);
    assert_eq!(m.kind, MethodKind::Totp);
}

#[tokio::test]
async fn audit_log_filters() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    for (i, result) in [
        AuditResult::Success,
        AuditResult::Failure,
        AuditResult::Failure,
    ]
    .into_iter()
    .enumerate()
    {
        s.append_audit(&AuditEvent {
            at: NOW + i as i64,
            method: Some("totp".into()),
            result,
            ..audit_line(t, Some(a), "sign_in")
        })
        .await
        .unwrap();
    }
    let all = s
        .list_audit(&AuditFilter {
            user: Some(a),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[0].at, NOW + 2, "newest first");
    let failures = s
        .list_audit(&AuditFilter {
            result: Some(AuditResult::Failure),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failures.len(), 2);
    assert_eq!(
        s.list_audit(&AuditFilter {
            limit: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1
    );
}

#[tokio::test]
async fn complete_signin_writes_session_log_and_ends_the_transaction_together() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let rec = SignInRecord {
        id_hash: vec![3; 32],
        tenant: t,
        username: "a".into(),
        state: SignInState::Identified { user: Some(u) },
        version: 0,
        next_path: None,
        created_at: NOW,
        expires_at: NOW + 600,
    };
    s.create_signin(&rec).await.unwrap();
    let done = password_sign_in(u);
    let event = AuditEvent {
        method: Some("password".into()),
        ..audit_line(t, Some(u), "sign_in")
    };
    let limits = LIMITS;
    assert!(s
        .complete_signin(&rec.id_hash, b"sess", &done, NOW, limits, &event, None)
        .await
        .unwrap());
    // An approval that is not (or no longer) approved writes nothing.
    assert!(!s
        .complete_signin(
            &rec.id_hash,
            b"sess2",
            &done,
            NOW,
            limits,
            &event,
            Some("nope")
        )
        .await
        .unwrap());
    assert!(s.find_session(b"sess2", NOW).await.unwrap().is_none());
    assert!(s.find_session(b"sess", NOW).await.unwrap().is_some());
    assert!(s.find_signin(&rec.id_hash, NOW).await.unwrap().is_none());
    assert_eq!(
        s.find_user(u).await.unwrap().unwrap().last_signin_at,
        Some(NOW)
    );
    assert_eq!(
        s.list_audit(&AuditFilter {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1
    );
    // Same session id twice: the whole second completion fails, writing nothing.
    let err = s
        .complete_signin(b"other", b"sess", &done, NOW + 5, limits, &event, None)
        .await;
    assert!(err.is_err());
    assert_eq!(
        s.list_audit(&AuditFilter {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .len(),
        1
    );
    assert_eq!(
        s.find_user(u).await.unwrap().unwrap().last_signin_at,
        Some(NOW)
    );
}

async fn device(store: &dyn Store, user: UserId, name: &str) -> sesame_store::Device {
    let t = store.default_tenant().await.unwrap();
    let code = format!("code-{name}").into_bytes();
    store
        .create_activation(user, &code, NOW + 600)
        .await
        .unwrap();
    assert_eq!(
        store.consume_activation(&code, NOW).await.unwrap(),
        Some(user)
    );
    let new = sesame_store::NewDevice {
        tenant: t,
        user,
        name: name.into(),
        alg: "ES256".into(),
        public_key: format!("pk-{name}").into_bytes(),
    };
    store
        .create_device(new, &code, &SecretBytes::new(vec![1; 20]), NOW)
        .await
        .unwrap()
}

#[tokio::test]
async fn pin_key_registers_once_and_rotates_only_from_the_current_key() {
    let (_d, s) = sqlite().await;
    let u = user(&*s, "alice").await;
    let d = device(&*s, u, "phone").await;
    assert!(!d.has_pin_key());
    assert!(s.set_pin_key(d.row_id, b"k1", None).await.unwrap());
    // A second "first" registration is refused: only the holder of k1 may replace it.
    assert!(!s.set_pin_key(d.row_id, b"evil", None).await.unwrap());
    assert!(!s.set_pin_key(d.row_id, b"evil", Some(b"k0")).await.unwrap());
    assert!(s.set_pin_key(d.row_id, b"k2", Some(b"k1")).await.unwrap());
    let d = s.find_device(&d.id).await.unwrap().unwrap();
    assert_eq!(d.pin_key.as_deref(), Some(&b"k2"[..]));
    // Phone sign-in is ready only while on, keyed and not disabled.
    assert!(!d.phone_sign_in_ready());
    s.set_phone_sign_in(d.row_id, Some(NOW)).await.unwrap();
    let d = s.find_device(&d.id).await.unwrap().unwrap();
    assert!(d.phone_sign_in_ready());
    assert!(s.disable_pin_key(d.row_id, NOW).await.unwrap());
    assert!(!s.disable_pin_key(d.row_id, NOW).await.unwrap());
    let d = s.find_device(&d.id).await.unwrap().unwrap();
    assert!(!d.phone_sign_in_ready());
    // Disabled: not even the current key can rotate it; only clearing (the user allowing it
    // again on My security info) lets a new key in.
    assert!(!s.set_pin_key(d.row_id, b"k3", Some(b"k2")).await.unwrap());
    assert!(!s.clear_pin_key(UserId(999), &d.id).await.unwrap());
    assert!(s.clear_pin_key(u, &d.id).await.unwrap());
    let d = s.find_device(&d.id).await.unwrap().unwrap();
    assert!(d.pin_key.is_none() && d.pin_key_disabled_at.is_none() && d.phone_sign_in_at.is_none());
    assert!(s.set_pin_key(d.row_id, b"k3", None).await.unwrap());
}

#[tokio::test]
async fn parallel_pin_guesses_count_at_most_ten_in_a_row() {
    use sesame_store::PinOutcome;
    let (_d, s) = sqlite().await;
    let u = user(&*s, "alice").await;
    let d = device(&*s, u, "phone").await;
    assert_eq!(
        s.record_pin_check(d.row_id, b"k1", true, 10, NOW)
            .await
            .unwrap(),
        PinOutcome::NoKey
    );
    s.set_pin_key(d.row_id, b"k1", None).await.unwrap();
    // A check made against a key that was replaced meanwhile does not count.
    assert_eq!(
        s.record_pin_check(d.row_id, b"k0", true, 10, NOW)
            .await
            .unwrap(),
        PinOutcome::NoKey
    );
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.record_pin_check(d.row_id, b"k1", false, 10, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut wrong = Vec::new();
    let mut disabled = 0;
    for t in tasks {
        match t.await.unwrap() {
            PinOutcome::Wrong {
                consecutive,
                disabled: off,
            } => wrong.push((consecutive, off)),
            PinOutcome::Disabled => disabled += 1,
            other => panic!("{other:?}"),
        }
    }
    wrong.sort();
    let want: Vec<(i64, bool)> = (1..=10).map(|n| (n, n == 10)).collect();
    assert_eq!(wrong, want);
    assert_eq!(disabled, 40);
    // Even a valid signature counts for nothing now.
    assert_eq!(
        s.record_pin_check(d.row_id, b"k1", true, 10, NOW)
            .await
            .unwrap(),
        PinOutcome::Disabled
    );
    // A valid one before the limit starts the count again.
    let (_d2, s) = sqlite().await;
    let u = user(&*s, "bob").await;
    let d = device(&*s, u, "phone").await;
    s.set_pin_key(d.row_id, b"k1", None).await.unwrap();
    for _ in 0..9 {
        s.record_pin_check(d.row_id, b"k1", false, 10, NOW)
            .await
            .unwrap();
    }
    assert_eq!(
        s.record_pin_check(d.row_id, b"k1", true, 10, NOW)
            .await
            .unwrap(),
        PinOutcome::Accepted
    );
    assert_eq!(
        s.record_pin_check(d.row_id, b"k1", false, 10, NOW)
            .await
            .unwrap(),
        PinOutcome::Wrong {
            consecutive: 1,
            disabled: false
        }
    );
}

#[tokio::test]
async fn policy_saves_are_compare_and_set_and_logged() {
    use sesame_core::policy::{AuthenticatorMode, MethodsPolicy, Targets};
    use sesame_core::push::PushPolicy;
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    assert!(s.find_policy(t).await.unwrap().is_none());
    let mut p = MethodsPolicy::initial(&PushPolicy::default());
    let audit = |reason: &str| AuditEvent {
        reason: Some(reason.into()),
        ..audit_line(t, None, "policy_changed")
    };
    assert!(s.save_policy(t, &p, 0, NOW, &audit("first")).await.unwrap());
    // A second writer that also read "never saved" loses.
    assert!(!s.save_policy(t, &p, 0, NOW, &audit("lost")).await.unwrap());
    p.authenticator.targets = Targets::All {
        mode: AuthenticatorMode::Push,
    };
    assert!(s
        .save_policy(t, &p, 1, NOW, &audit("second"))
        .await
        .unwrap());
    assert!(!s.save_policy(t, &p, 1, NOW, &audit("stale")).await.unwrap());
    let (got, v) = s.find_policy(t).await.unwrap().unwrap();
    assert_eq!((got, v), (p, 2));
    let log = s
        .list_audit(&AuditFilter {
            tenant: Some(t),
            ..Default::default()
        })
        .await
        .unwrap();
    let reasons: Vec<_> = log.iter().filter_map(|e| e.reason.clone()).collect();
    assert_eq!(reasons, vec!["second".to_string(), "first".to_string()]);
}

/// The policy as each request reads it (with the user's groups) follows every save at once,
/// also when the previous version was read (and kept parsed) just before.
#[tokio::test]
async fn policy_for_user_follows_each_save_and_group_change_at_once() {
    use sesame_core::policy::{AuthenticatorMode, MethodsPolicy, Targets};
    use sesame_core::push::PushPolicy;
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    let (none, groups) = s.find_policy_for_user(t, a).await.unwrap();
    assert!(none.is_none());
    assert!(groups.is_empty());
    let g1 = s.create_group(t, "one", NOW).await.unwrap();
    let g2 = s.create_group(t, "two", NOW).await.unwrap();
    s.add_group_member(g1.id, a).await.unwrap();
    s.add_group_member(g2.id, a).await.unwrap();
    let audit = audit_line(t, None, "policy_changed");
    let mut p = MethodsPolicy::initial(&PushPolicy::default());
    for (version, mode) in [
        (1, AuthenticatorMode::Push),
        (2, AuthenticatorMode::Passwordless),
        (3, AuthenticatorMode::Any),
    ] {
        p.authenticator.targets = Targets::All { mode };
        assert!(s
            .save_policy(t, &p, version - 1, NOW, &audit)
            .await
            .unwrap());
        // Twice: the first read parses the new version, the second comes from the parsed copy.
        for _ in 0..2 {
            let (got, mut groups) = s.find_policy_for_user(t, a).await.unwrap();
            assert_eq!(got, Some((p.clone(), version)));
            groups.sort();
            assert_eq!(groups, vec![g1.id, g2.id]);
        }
    }
    s.remove_group_member(g1.id, a).await.unwrap();
    assert_eq!(s.find_policy_for_user(t, a).await.unwrap().1, vec![g2.id]);
}

/// Writes made at the same moment are committed together (one flush for many): each keeps its
/// own outcome. A write that fails half-way leaves nothing behind and does not take the
/// others with it; the ones that succeeded are on disk when their callers hear so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writes_committed_together_keep_their_own_outcomes() {
    let (dir, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let limits = LIMITS;
    let done = password_sign_in(u);
    let event = AuditEvent {
        method: Some("password".into()),
        ..audit_line(t, Some(u), "sign_in")
    };
    // A session id already taken: completions that reuse it fail on their second statement.
    s.create_session(b"taken", t, &done, NOW, limits)
        .await
        .unwrap();
    for i in 0..40u8 {
        s.create_signin(&SignInRecord {
            id_hash: vec![i; 32],
            tenant: t,
            username: "a".into(),
            state: SignInState::Identified { user: Some(u) },
            version: 0,
            next_path: None,
            created_at: NOW,
            expires_at: NOW + 600,
        })
        .await
        .unwrap();
    }
    let tasks: Vec<_> = (0..40u8)
        .map(|i| {
            let (s, done, event) = (s.clone(), done.clone(), event.clone());
            tokio::spawn(async move {
                let session = if i % 2 == 0 {
                    vec![100 + i; 32]
                } else {
                    b"taken".to_vec()
                };
                s.complete_signin(&[i; 32], &session, &done, NOW, limits, &event, None)
                    .await
                    .is_ok()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), i % 2 == 0, "completion {i}");
    }
    // Another connection (another process, after a crash) sees exactly the successes.
    drop(s);
    let again = SqliteStore::open(
        &dir.path().join("sesame.db"),
        MasterKey::from_bytes([7; 32]),
    )
    .await
    .unwrap();
    for i in 0..40u8 {
        let session = again.find_session(&[100 + i; 32], NOW).await.unwrap();
        let signin = again.find_signin(&[i; 32], NOW).await.unwrap();
        if i % 2 == 0 {
            assert!(session.is_some() && signin.is_none(), "completion {i}");
        } else {
            assert!(
                signin.is_some(),
                "failed completion {i} left its transaction"
            );
        }
    }
    let log = again
        .list_audit(&AuditFilter {
            limit: 100,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(log.len(), 20, "one audit line per successful completion");
}

/// A read that fails half-way (a stored row that does not decode) must not leave its pooled
/// connection inside a read transaction: the next read on it sees writes committed since.
#[tokio::test]
async fn a_read_that_fails_half_way_keeps_no_snapshot() {
    let (d, s) = sqlite().await;
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
    rusqlite::Connection::open(d.path().join("sesame.db"))
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

/// The parsed policy is kept per tenant: two tenants at the same version never see each
/// other's policy, in any order of reads.
#[tokio::test]
async fn policy_for_user_is_kept_per_tenant() {
    use sesame_core::policy::{AuthenticatorMode, MethodsPolicy, Targets};
    use sesame_core::push::PushPolicy;
    use sesame_core::TenantId;
    let (d, s) = sqlite().await;
    let t1 = s.default_tenant().await.unwrap();
    // No Store method creates a tenant yet.
    rusqlite::Connection::open(d.path().join("sesame.db"))
        .unwrap()
        .execute(
            "INSERT INTO tenants (id, name, created_at) VALUES (2, 'other', 0)",
            [],
        )
        .unwrap();
    let t2 = TenantId(2);
    let a = user(&*s, "a").await;
    let audit = |t| audit_line(t, None, "policy_changed");
    let mut p1 = MethodsPolicy::initial(&PushPolicy::default());
    p1.authenticator.targets = Targets::All {
        mode: AuthenticatorMode::Push,
    };
    let mut p2 = p1.clone();
    p2.authenticator.targets = Targets::All {
        mode: AuthenticatorMode::Passwordless,
    };
    assert!(s.save_policy(t1, &p1, 0, NOW, &audit(t1)).await.unwrap());
    assert!(s.save_policy(t2, &p2, 0, NOW, &audit(t2)).await.unwrap());
    for (t, p) in [
        (t1, &p1),
        (t2, &p2),
        (t2, &p2),
        (t1, &p1),
        (t1, &p1),
        (t2, &p2),
    ] {
        let (got, _) = s.find_policy_for_user(t, a).await.unwrap();
        assert_eq!(got, Some((p.clone(), 1)), "tenant {t:?}");
    }
}

/// Reads racing saves: every (policy, version) read is the pair that was saved together, and
/// once a save has returned no read shows an older version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_for_user_racing_saves_is_never_stale_nor_mixed() {
    use sesame_core::policy::MethodsPolicy;
    use sesame_core::push::PushPolicy;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    let audit = audit_line(t, None, "policy_changed");
    // The policy saved as version v has lifetime 1000 + v.
    let at = |v: i64| {
        let mut p = MethodsPolicy::initial(&PushPolicy::default());
        p.authenticator.lifetime_secs = 1000 + v;
        p
    };
    let saved = Arc::new(AtomicI64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (s, saved, stop) = (s.clone(), saved.clone(), stop.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::SeqCst) {
                    let floor = saved.load(Ordering::SeqCst);
                    if let (Some((p, v)), _) = s.find_policy_for_user(t, a).await.unwrap() {
                        assert_eq!(p.authenticator.lifetime_secs, 1000 + v, "mixed pair");
                        assert!(
                            v >= floor,
                            "read version {v} after version {floor} was saved"
                        );
                    } else {
                        assert_eq!(floor, 0, "no policy after a save returned");
                    }
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    for v in 1..=60 {
        assert!(s.save_policy(t, &at(v), v - 1, NOW, &audit).await.unwrap());
        saved.store(v, Ordering::SeqCst);
        let (got, _) = s.find_policy_for_user(t, a).await.unwrap();
        assert_eq!(got, Some((at(v), v)));
    }
    stop.store(true, Ordering::SeqCst);
    for r in readers {
        r.await.unwrap();
    }
}

/// Every filter of the sign-in log, alone and together, against the same rows filtered here.
#[tokio::test]
async fn audit_filters_select_exactly_the_matching_lines() {
    let (_d, s) = sqlite().await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    let b = user(&*s, "b").await;
    let mut all = Vec::new();
    for i in 0..40i64 {
        let e = AuditEvent {
            at: NOW + i * 10,
            method: Some(if i % 2 == 0 { "push" } else { "totp" }.into()),
            result: if i % 5 == 0 {
                AuditResult::Failure
            } else {
                AuditResult::Success
            },
            reason: Some(format!("line {i}")),
            ..audit_line(t, Some(if i % 3 == 0 { a } else { b }), "sign_in")
        };
        s.append_audit(&e).await.unwrap();
        all.push(e);
    }
    let filters = [
        AuditFilter::default(),
        AuditFilter {
            user: Some(a),
            ..Default::default()
        },
        AuditFilter {
            result: Some(AuditResult::Failure),
            ..Default::default()
        },
        AuditFilter {
            method: Some("push".into()),
            ..Default::default()
        },
        AuditFilter {
            since: Some(NOW + 100),
            until: Some(NOW + 250),
            ..Default::default()
        },
        AuditFilter {
            tenant: Some(t),
            user: Some(b),
            result: Some(AuditResult::Success),
            method: Some("totp".into()),
            since: Some(NOW + 50),
            until: Some(NOW + 350),
            limit: 3,
        },
    ];
    for f in filters {
        let want: Vec<String> = all
            .iter()
            .rev()
            .filter(|e| f.tenant.is_none_or(|x| e.tenant == x))
            .filter(|e| f.user.is_none_or(|x| e.user == Some(x)))
            .filter(|e| f.result.is_none_or(|x| e.result == x))
            .filter(|e| f.method.is_none() || e.method == f.method)
            .filter(|e| f.since.is_none_or(|x| e.at >= x))
            .filter(|e| f.until.is_none_or(|x| e.at < x))
            .take(if f.limit > 0 { f.limit as usize } else { 100 })
            .filter_map(|e| e.reason.clone())
            .collect();
        let got: Vec<String> = s
            .list_audit(&f)
            .await
            .unwrap()
            .into_iter()
            .filter_map(|e| e.reason)
            .collect();
        assert!(!want.is_empty(), "{f:?} matches nothing: a weak case");
        assert_eq!(got, want, "{f:?}");
    }
}
