//! The store conformance suite: what every backend must do, written once against
//! [`Store`](crate::Store) and run against each backend.
//!
//! A backend's tests provide a [`Backend`] (how to open a database of this test run) and
//! either call [`run`] or expand [`conformance_tests!`](crate::conformance_tests), which makes
//! one test per case, named after the property it guards:
//!
//! ```text
//! sesame_store::conformance_tests!(my_backend_factory());
//! ```
//!
//! The cases use tokio (`tokio::spawn` for races), so the calling crate depends on tokio with
//! the `macros` and `rt-multi-thread` features.

use crate::{
    AuditEvent, AuditFilter, AuditResult, MasterKey, NewChallenge, NewDevice, NewUser, PinOutcome,
    SessionLimits, SignInRecord, Store, StoreError,
};
use async_trait::async_trait;
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::guessing::GuessingPolicy;
use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::{Amr, MethodKind};
use sesame_core::policy::{AuthenticatorMode, MethodsPolicy, Targets};
use sesame_core::push::{ApprovalChannel, ChallengeKind, ChallengeState, PushPolicy};
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{CompletedSignIn, SignInChoice, SignInState};
use sesame_core::{TenantId, UserId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

/// How the suite reaches a backend.
#[async_trait]
pub trait Backend: Send + Sync {
    /// Opens the database `name` of this test run with `key`, creating it empty (and
    /// migrated) on first use. Opening the same name again is a restart: everything committed
    /// before is there, whichever store handle wrote it.
    async fn open(&self, name: &str, key: MasterKey) -> Arc<dyn Store>;
}

const NOW: i64 = 1_700_000_000;

fn key() -> MasterKey {
    MasterKey::from_bytes([7; 32])
}

async fn fresh(b: &dyn Backend) -> Arc<dyn Store> {
    b.open("main", key()).await
}

/// An audit line; cases set the fields they look at with `..audit_line(..)`.
fn audit_line(tenant: TenantId, user: Option<UserId>, event: Event) -> AuditEvent {
    AuditEvent {
        id: 0,
        at: NOW,
        tenant,
        user,
        username: "a".into(),
        ip: "127.0.0.1".into(),
        user_agent: "test".into(),
        event,
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
    .expect("done is complete")
}

async fn user_in(store: &dyn Store, tenant: TenantId, name: &str) -> UserId {
    let new = NewUser {
        tenant,
        username: name.into(),
        display_name: name.into(),
        password_hash: None,
        is_admin: false,
    };
    store.create_user(new, NOW).await.unwrap().id
}

async fn user(store: &dyn Store, name: &str) -> UserId {
    let t = store.default_tenant().await.unwrap();
    user_in(store, t, name).await
}

fn signin(tenant: TenantId, id: u8, user: Option<UserId>) -> SignInRecord {
    SignInRecord {
        id_hash: vec![id; 32],
        tenant,
        username: "a".into(),
        state: SignInState::Identified { user },
        version: 0,
        next_path: None,
        created_at: NOW,
        expires_at: NOW + 600,
    }
}

async fn device(store: &dyn Store, user: UserId, name: &str) -> crate::Device {
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
    let new = NewDevice {
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

fn challenge(tenant: TenantId, user: UserId, signin: u8, kind: ChallengeKind) -> NewChallenge {
    NewChallenge {
        tenant,
        user,
        signin_id_hash: vec![signin; 32],
        kind,
        channel: ApprovalChannel::App,
        number: "42".into(),
        app_name: "Sesame".into(),
        ip: "127.0.0.1".into(),
        location: "This computer".into(),
        user_agent: "test".into(),
        expires_at: NOW + 120,
        browser: None,
        budget: None,
    }
}

pub async fn usernames_are_unique_ignoring_case(b: &dyn Backend) {
    let s = fresh(b).await;
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

/// A removed user's id is never handed out again: the audit log keeps their lines by id, and
/// they must not become the next user's.
pub async fn user_ids_are_never_reused(b: &dyn Backend) {
    let s = fresh(b).await;
    user(&*s, "a").await;
    let bob = user(&*s, "bob").await;
    assert!(s.delete_user(bob).await.unwrap());
    let carol = user(&*s, "carol").await;
    assert!(carol.0 > bob.0, "{carol:?} after removed {bob:?}");
    drop(s);
    let s = fresh(b).await;
    assert!(s.delete_user(carol).await.unwrap());
    assert!(user(&*s, "dave").await.0 > carol.0, "also after a restart");
}

pub async fn tenants_keep_their_users_apart(b: &dyn Backend) {
    let s = fresh(b).await;
    let t1 = s.default_tenant().await.unwrap();
    let t2 = s.create_tenant("other", NOW).await.unwrap();
    assert_ne!(t1, t2);
    assert!(matches!(
        s.create_tenant("other", NOW).await,
        Err(StoreError::Conflict(_))
    ));
    let a1 = user_in(&*s, t1, "alice").await;
    let a2 = user_in(&*s, t2, "alice").await;
    assert_ne!(a1, a2, "one username in two tenants is two users");
    assert_eq!(
        s.find_user_by_username(t2, "ALICE")
            .await
            .unwrap()
            .unwrap()
            .id,
        a2
    );
    let names = |t| {
        let s = s.clone();
        async move {
            s.list_users(t)
                .await
                .unwrap()
                .into_iter()
                .map(|u| (u.id, u.tenant))
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(names(t1).await, vec![(a1, t1)]);
    assert_eq!(names(t2).await, vec![(a2, t2)]);
}

pub async fn groups_and_membership(b: &dyn Backend) {
    let s = fresh(b).await;
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
    // A removed group takes its memberships with it.
    assert!(s.add_group_member(g.id, a).await.unwrap());
    assert!(s.delete_group(g.id).await.unwrap());
    assert!(!s.delete_group(g.id).await.unwrap());
    assert!(s.list_groups(t).await.unwrap().is_empty());
    assert!(s.list_user_groups(a).await.unwrap().is_empty());
    assert!(s.find_group_by_name(t, "Pilot").await.unwrap().is_none());
}

pub async fn totp_secret_opens_only_with_its_master_key(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
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
    let other = b.open("main", MasterKey::from_bytes([2; 32])).await;
    assert!(matches!(
        other.list_methods(u).await,
        Err(StoreError::Decrypt)
    ));
}

pub async fn totp_step_is_claimed_once_and_never_backwards(b: &dyn Backend) {
    let s = fresh(b).await;
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

pub async fn totp_step_claimed_by_fifty_parallel_requests_once(b: &dyn Backend) {
    let s = fresh(b).await;
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

pub async fn parallel_password_guesses_check_at_most_the_free_ones(b: &dyn Backend) {
    let s = fresh(b).await;
    let throttle = GuessingPolicy::default().account;
    let key = "account:1:alice";
    let tasks: Vec<_> = (0..300)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move { s.reserve_guess(key, &throttle, NOW).await.unwrap() })
        })
        .collect();
    let mut open = 0;
    for t in tasks {
        if t.await.unwrap() == AttemptGate::Open {
            open += 1;
        }
    }
    assert_eq!(open, 5, "exactly the free guesses may be checked");
    assert_eq!(s.find_guesses(key).await.unwrap(), (5, Some(NOW)));
    // After the wait, one more; then the wait doubles.
    assert_eq!(
        s.reserve_guess(key, &throttle, NOW + 30).await.unwrap(),
        AttemptGate::Open
    );
    assert_eq!(
        s.reserve_guess(key, &throttle, NOW + 31).await.unwrap(),
        AttemptGate::SoftLocked {
            until: NOW + 30 + 60
        }
    );
    // Other keys are counted apart.
    assert_eq!(s.find_guesses("account:1:bob").await.unwrap(), (0, None));
}

pub async fn a_forgetting_scope_starts_over_after_its_quiet_time(b: &dyn Backend) {
    let s = fresh(b).await;
    let throttle = GuessingPolicy::default().address;
    let key = "address:192.0.2.1";
    for _ in 0..50 {
        assert_eq!(
            s.reserve_guess(key, &throttle, NOW).await.unwrap(),
            AttemptGate::Open
        );
    }
    assert!(matches!(
        s.reserve_guess(key, &throttle, NOW + 1).await.unwrap(),
        AttemptGate::SoftLocked { .. }
    ));
    let later = NOW + throttle.forget_after_secs;
    assert_eq!(
        s.reserve_guess(key, &throttle, later).await.unwrap(),
        AttemptGate::Open
    );
    assert_eq!(s.find_guesses(key).await.unwrap(), (1, Some(later)));
}

pub async fn guess_counts_are_cleared_by_key_and_by_prefix_and_pruned_by_age(b: &dyn Backend) {
    let s = fresh(b).await;
    for (key, at) in [
        ("account:1:a%", NOW),
        ("account:1:ab", NOW),
        ("browser:7:00ff", NOW),
        ("browser:7:11ee", NOW - 100),
        ("browser:70:22dd", NOW),
        ("address:10.0.0.1", NOW - 1000),
    ] {
        assert!(s.set_guesses_if(key, 0, 3, at).await.unwrap());
    }
    // A stale compare-and-set does nothing.
    assert!(!s.set_guesses_if("account:1:ab", 0, 9, NOW).await.unwrap());
    assert!(!s.set_guesses_if("account:1:zz", 2, 3, NOW).await.unwrap());
    let mine = s.list_guesses("browser:7:").await.unwrap();
    assert_eq!(
        mine,
        vec![
            ("browser:7:00ff".to_string(), 3, NOW),
            ("browser:7:11ee".to_string(), 3, NOW - 100)
        ]
    );
    // A prefix with LIKE's wildcards in it matches only itself.
    assert!(s.list_guesses("account:1:a%").await.unwrap().len() == 1);
    assert_eq!(
        s.clear_guesses(&["account:1:a%".to_string()], &["browser:7:".to_string()])
            .await
            .unwrap(),
        3
    );
    assert_eq!(s.find_guesses("account:1:a%").await.unwrap(), (0, None));
    assert_eq!(
        s.find_guesses("account:1:ab").await.unwrap(),
        (3, Some(NOW))
    );
    assert_eq!(
        s.find_guesses("browser:70:22dd").await.unwrap(),
        (3, Some(NOW))
    );
    // A lock that lasts until an administrator lifts it is never pruned.
    assert!(s
        .set_guesses_if("account:1:locked", 0, 100, NOW - 1000)
        .await
        .unwrap());
    assert_eq!(s.prune_guesses(NOW - 500, 100).await.unwrap(), 1);
    assert_eq!(s.find_guesses("address:10.0.0.1").await.unwrap(), (0, None));
    assert_eq!(
        s.find_guesses("account:1:locked").await.unwrap(),
        (100, Some(NOW - 1000))
    );
    // A count taken back keeps the moment of the last wrong password, and never goes below 0.
    s.refund_guess("account:1:ab").await.unwrap();
    assert_eq!(
        s.find_guesses("account:1:ab").await.unwrap(),
        (2, Some(NOW))
    );
    for _ in 0..5 {
        s.refund_guess("account:1:ab").await.unwrap();
    }
    assert_eq!(
        s.find_guesses("account:1:ab").await.unwrap(),
        (0, Some(NOW))
    );
    s.refund_guess("account:1:nobody").await.unwrap();
    assert_eq!(s.find_guesses("account:1:nobody").await.unwrap(), (0, None));
}

pub async fn parallel_attempts_never_evaluate_more_than_the_limit(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let policy = LockoutPolicy::default();
    let tasks: Vec<_> = (0..500)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.reserve_attempt(u, MethodKind::Totp, &policy, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut open = 0;
    for t in tasks {
        if t.await.unwrap() == AttemptGate::Open {
            open += 1;
        }
    }
    assert_eq!(open, 10, "exactly the soft limit may be evaluated");
    assert_eq!(
        s.find_failures(u, MethodKind::Totp).await.unwrap(),
        (10, Some(NOW))
    );
    // After the lock expires, one more attempt; then the lock doubles.
    assert_eq!(
        s.reserve_attempt(u, MethodKind::Totp, &policy, NOW + 60)
            .await
            .unwrap(),
        AttemptGate::Open
    );
    assert_eq!(
        s.reserve_attempt(u, MethodKind::Totp, &policy, NOW + 61)
            .await
            .unwrap(),
        AttemptGate::SoftLocked {
            until: NOW + 60 + 120
        }
    );
    // Counters are per method kind.
    assert_eq!(
        s.reserve_attempt(u, MethodKind::Push, &policy, NOW)
            .await
            .unwrap(),
        AttemptGate::Open
    );
    s.clear_failures(u, MethodKind::Totp).await.unwrap();
    assert_eq!(s.find_failures(u, MethodKind::Totp).await.unwrap().0, 0);
    // A cleared counter counts again from the start.
    assert_eq!(
        s.reserve_attempt(u, MethodKind::Totp, &policy, NOW + 62)
            .await
            .unwrap(),
        AttemptGate::Open
    );
    assert_eq!(s.find_failures(u, MethodKind::Totp).await.unwrap().0, 1);
    assert_eq!(s.find_failures(u, MethodKind::Push).await.unwrap().0, 1);
}

pub async fn failure_counter_survives_a_restart(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    for _ in 0..3 {
        s.reserve_attempt(u, MethodKind::Totp, &LockoutPolicy::default(), NOW)
            .await
            .unwrap();
    }
    drop(s);
    let s = fresh(b).await;
    assert_eq!(s.find_failures(u, MethodKind::Totp).await.unwrap().0, 3);
}

pub async fn enrollment_is_taken_once_and_expires(b: &dyn Backend) {
    let s = fresh(b).await;
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

/// A new password ends the sign-ins in progress that found the user, whatever step they are
/// at, and no other.
pub async fn a_new_password_ends_the_users_sign_ins_in_progress(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let other = user(&*s, "b").await;
    s.create_signin(&signin(t, 1, Some(u))).await.unwrap();
    s.create_signin(&signin(t, 2, None)).await.unwrap();
    s.create_signin(&signin(t, 3, Some(other))).await.unwrap();
    // One that named nobody at first, then passed the password (as a known user would).
    s.create_signin(&signin(t, 4, None)).await.unwrap();
    let second = SignInState::SecondFactor {
        user: u,
        method: MethodKind::Totp,
        available: vec![MethodKind::Totp],
        amr: vec![Amr::Pwd],
    };
    assert!(s.update_signin_state(&[4; 32], 0, &second).await.unwrap());
    assert_eq!(s.end_user_signins(u).await.unwrap(), 2);
    assert!(s.find_signin(&[1; 32], NOW).await.unwrap().is_none());
    assert!(s.find_signin(&[4; 32], NOW).await.unwrap().is_none());
    assert!(s.find_signin(&[2; 32], NOW).await.unwrap().is_some());
    assert!(s.find_signin(&[3; 32], NOW).await.unwrap().is_some());
}

pub async fn signin_state_changes_are_compare_and_set(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let rec = signin(t, 1, Some(u));
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
    s.delete_signin(&rec.id_hash).await.unwrap();
    assert!(s.find_signin(&rec.id_hash, NOW).await.unwrap().is_none());
}

pub async fn sessions_expire_idle_absolute_and_on_revocation(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let done = SignInState::Done {
        user: u,
        amr: vec![Amr::Pwd, Amr::Otp, Amr::Mfa],
    }
    .completed()
    .unwrap();
    s.create_session(b"s1", t, &done, NOW, LIMITS)
        .await
        .unwrap();
    let rec = s.find_session(b"s1", NOW + 10).await.unwrap().unwrap();
    assert_eq!(rec.amr, vec![Amr::Pwd, Amr::Otp, Amr::Mfa]);
    assert!(
        s.find_session(b"s1", NOW + 3600).await.unwrap().is_none(),
        "idle timeout"
    );
    s.touch_session(b"s1", NOW + 3000, LIMITS).await.unwrap();
    assert!(
        s.find_session(b"s1", NOW + 6000).await.unwrap().is_some(),
        "touched"
    );
    let mut t2 = NOW;
    while t2 < NOW + 86_400 {
        t2 += 3000;
        s.touch_session(b"s1", t2, LIMITS).await.unwrap();
    }
    assert!(
        s.find_session(b"s1", NOW + 86_400).await.unwrap().is_none(),
        "absolute timeout"
    );
    s.create_session(b"s2", t, &done, NOW, LIMITS)
        .await
        .unwrap();
    s.create_session(b"s3", t, &done, NOW, LIMITS)
        .await
        .unwrap();
    s.revoke_session(b"s3", NOW).await.unwrap();
    assert!(s.find_session(b"s3", NOW + 1).await.unwrap().is_none());
    // s2, and s1: expired, but never revoked (s3 was).
    assert_eq!(s.revoke_user_sessions(u, NOW).await.unwrap(), 2);
    assert!(s.find_session(b"s2", NOW + 1).await.unwrap().is_none());
}

pub async fn setup_token_is_single_use(b: &dyn Backend) {
    let s = fresh(b).await;
    s.create_setup_token(b"tok", NOW + 100).await.unwrap();
    assert!(s.is_setup_token_valid(b"tok", NOW).await.unwrap());
    assert!(
        !s.consume_setup_token(b"tok", NOW + 100).await.unwrap(),
        "expired"
    );
    assert!(s.consume_setup_token(b"tok", NOW).await.unwrap());
    assert!(!s.consume_setup_token(b"tok", NOW).await.unwrap());
    assert!(!s.is_setup_token_valid(b"tok", NOW).await.unwrap());
    // Only the newest link works.
    s.create_setup_token(b"old", NOW + 100).await.unwrap();
    s.create_setup_token(b"new", NOW + 100).await.unwrap();
    assert!(!s.is_setup_token_valid(b"old", NOW).await.unwrap());
    assert!(!s.consume_setup_token(b"old", NOW).await.unwrap());
    assert!(s.is_setup_token_valid(b"new", NOW).await.unwrap());
}

pub async fn default_method_must_belong_to_the_user(b: &dyn Backend) {
    let s = fresh(b).await;
    let a = user(&*s, "a").await;
    let bob = user(&*s, "b").await;
    let m = s
        .create_totp_method(a, "Phone", &SecretBytes::new(vec![1; 20]), 0, NOW)
        .await
        .unwrap();
    assert!(s.update_default_method(bob, Some(m.id)).await.is_err());
    s.update_default_method(a, Some(m.id)).await.unwrap();
    assert_eq!(
        s.find_user(a).await.unwrap().unwrap().default_method,
        Some(m.id)
    );
    assert!(s.delete_method(a, m.id).await.unwrap());
    assert_eq!(s.find_user(a).await.unwrap().unwrap().default_method, None);
    assert_eq!(m.kind, MethodKind::Totp);
}

/// Setting a default while its method is removed leaves the default on a method that exists, or
/// on none: never on the removed one (on PostgreSQL the setting's check of the method and the
/// removal's clearing of the default can each miss the other under Read Committed; the foreign
/// key decides).
pub async fn a_default_method_never_points_at_a_removed_method(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let kept = s
        .create_totp_method(u, "Kept", &SecretBytes::new(vec![2; 20]), 0, NOW)
        .await
        .unwrap();
    for round in 0..30 {
        let m = s
            .create_totp_method(u, "Phone", &SecretBytes::new(vec![1; 20]), 0, NOW)
            .await
            .unwrap();
        let removed = tokio::spawn({
            let s = s.clone();
            async move { s.delete_method(u, m.id).await }
        });
        let set = tokio::spawn({
            let s = s.clone();
            async move { s.update_default_method(u, Some(m.id)).await }
        });
        assert!(removed.await.unwrap().unwrap(), "round {round}: removed");
        match set.await.unwrap() {
            // Set before the removal (which cleared it), or refused after it.
            Ok(()) | Err(StoreError::NotFound(_)) => {}
            Err(e) => panic!("round {round}: setting the default failed: {e}"),
        }
        let default = s.find_user(u).await.unwrap().unwrap().default_method;
        let methods = s.list_methods(u).await.unwrap();
        assert!(
            default.is_none_or(|d| methods.iter().any(|m| m.id == d)),
            "round {round}: the default {default:?} is a removed method"
        );
        // The next round starts from another default.
        s.update_default_method(u, Some(kept.id)).await.unwrap();
    }
}

pub async fn remembered_choice_round_trips(b: &dyn Backend) {
    let s = fresh(b).await;
    let a = user(&*s, "a").await;
    assert_eq!(
        s.find_user(a).await.unwrap().unwrap().signin_preference,
        None
    );
    for choice in [Some(SignInChoice::App), Some(SignInChoice::Password), None] {
        s.update_signin_preference(a, choice).await.unwrap();
        assert_eq!(
            s.find_user(a).await.unwrap().unwrap().signin_preference,
            choice
        );
    }
}

pub async fn audit_log_filters(b: &dyn Backend) {
    let s = fresh(b).await;
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
            method: Some(AuditMethod::Totp),
            result,
            ..audit_line(t, Some(a), Event::SignIn)
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
    assert_eq!(
        (&all[0].event, &all[0].method),
        (&Event::SignIn, &Some(AuditMethod::Totp))
    );
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

pub async fn complete_signin_writes_session_log_and_ends_the_transaction_together(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let rec = signin(t, 3, Some(u));
    s.create_signin(&rec).await.unwrap();
    let done = password_sign_in(u);
    let event = AuditEvent {
        method: Some(AuditMethod::Password),
        ..audit_line(t, Some(u), Event::SignIn)
    };
    assert!(s
        .complete_signin(&rec.id_hash, b"sess", &done, NOW, LIMITS, &event, None)
        .await
        .unwrap());
    // An approval that is not (or no longer) approved writes nothing.
    assert!(!s
        .complete_signin(
            &rec.id_hash,
            b"sess2",
            &done,
            NOW,
            LIMITS,
            &event,
            Some(&"nope".into())
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
    let lines = |s: Arc<dyn Store>| async move {
        s.list_audit(&AuditFilter {
            limit: 5,
            ..Default::default()
        })
        .await
        .unwrap()
        .len()
    };
    assert_eq!(lines(s.clone()).await, 1);
    // A sign-in ended meanwhile (a new password ends the user's sign-ins) makes no session.
    let ended = signin(t, 8, Some(u));
    s.create_signin(&ended).await.unwrap();
    assert_eq!(s.end_user_signins(u).await.unwrap(), 1);
    assert!(!s
        .complete_signin(&ended.id_hash, b"sess3", &done, NOW, LIMITS, &event, None)
        .await
        .unwrap());
    assert!(s.find_session(b"sess3", NOW).await.unwrap().is_none());
    assert_eq!(lines(s.clone()).await, 1);
    // Same session id twice: the whole second completion fails, writing nothing.
    let other = signin(t, 9, Some(u));
    s.create_signin(&other).await.unwrap();
    let err = s
        .complete_signin(
            &other.id_hash,
            b"sess",
            &done,
            NOW + 5,
            LIMITS,
            &event,
            None,
        )
        .await;
    assert!(err.is_err());
    assert!(
        s.find_signin(&other.id_hash, NOW).await.unwrap().is_some(),
        "its sign-in is still there"
    );
    assert_eq!(lines(s.clone()).await, 1);
    assert_eq!(
        s.find_user(u).await.unwrap().unwrap().last_signin_at,
        Some(NOW)
    );
}

pub async fn an_approval_makes_at_most_one_session(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let d = device(&*s, u, "phone").await;
    let (c, _) = s
        .create_challenge(challenge(t, u, 4, ChallengeKind::PhoneSignIn), NOW, None)
        .await
        .unwrap();
    let answer = AuditEvent {
        method: Some(AuditMethod::Push),
        ..audit_line(t, Some(u), Event::PushAnswer)
    };
    // One wrong answer before: an approval clears it, a denial does not.
    assert!(s
        .count_failure_if(u, MethodKind::Push, 0, NOW)
        .await
        .unwrap());
    // Racing answers: exactly one wins.
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let (s, id, answer) = (s.clone(), c.id.clone(), answer.clone());
            let to = if i % 2 == 0 {
                ChallengeState::Approved
            } else {
                ChallengeState::Denied
            };
            tokio::spawn(async move {
                s.answer_challenge(&id, to, Some(d.row_id), NOW + 1, &answer)
                    .await
                    .unwrap()
                    .answered
            })
        })
        .collect();
    let mut wins = 0;
    for t in tasks {
        wins += t.await.unwrap() as usize;
    }
    assert_eq!(wins, 1);
    let logged = s.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(
        logged.len(),
        1,
        "only the winning answer is logged: {logged:?}"
    );
    let answered = s.find_challenge(&c.id).await.unwrap().unwrap();
    let failures = s.find_failures(u, MethodKind::Push).await.unwrap().0;
    let cleared = if answered.state == ChallengeState::Approved {
        0
    } else {
        1
    };
    assert_eq!(failures, cleared, "{:?}", answered.state);
    assert_eq!(answered.answered_by, Some(d.row_id));
    assert_eq!(answered.kind, ChallengeKind::PhoneSignIn);
    assert_eq!(answered.channel, ApprovalChannel::App);
    if answered.state == ChallengeState::Approved {
        // Two tabs completing one approval: one session.
        for id in [5u8, 6] {
            s.create_signin(&signin(t, id, Some(u))).await.unwrap();
        }
        let done = password_sign_in(u);
        let ok5 = s
            .complete_signin(&[5; 32], b"t5", &done, NOW, LIMITS, &answer, Some(&c.id))
            .await
            .unwrap();
        let ok6 = s
            .complete_signin(&[6; 32], b"t6", &done, NOW, LIMITS, &answer, Some(&c.id))
            .await
            .unwrap();
        assert!(ok5 && !ok6);
        assert!(!s.consume_challenge(&c.id).await.unwrap(), "consumed once");
    } else {
        assert_eq!(answered.state, ChallengeState::Denied);
        assert!(!s.consume_challenge(&c.id).await.unwrap());
    }
    // An expired request cannot be answered.
    let (late, _) = s
        .create_challenge(challenge(t, u, 7, ChallengeKind::Mfa), NOW, None)
        .await
        .unwrap();
    assert!(
        !s.answer_challenge(
            &late.id,
            ChallengeState::Approved,
            Some(d.row_id),
            NOW + 120,
            &answer
        )
        .await
        .unwrap()
        .answered
    );
}

pub async fn a_new_request_supersedes_the_pending_one(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let sent = audit_line(t, Some(u), Event::PushSent);
    let (first, none) = s
        .create_challenge(
            challenge(t, u, 1, ChallengeKind::PhoneSignIn),
            NOW,
            Some(&sent),
        )
        .await
        .unwrap();
    assert!(none.is_empty());
    // A second step after a password replaces every pending request of the user.
    let (second, superseded) = s
        .create_challenge(challenge(t, u, 2, ChallengeKind::Mfa), NOW + 1, None)
        .await
        .unwrap();
    assert_eq!(superseded, vec![first.id.clone()]);
    assert_eq!(
        s.find_challenge(&first.id).await.unwrap().unwrap().state,
        ChallengeState::Superseded
    );
    let pending = s.list_pending_challenges(u, NOW + 2).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].id, second.id);
    assert_eq!(
        s.find_latest_challenge_for_signin(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .id,
        second.id
    );
    assert_eq!(
        s.cancel_pending_challenges(u).await.unwrap(),
        vec![second.id.clone()]
    );
    assert!(s
        .list_pending_challenges(u, NOW + 2)
        .await
        .unwrap()
        .is_empty());
    let log = s.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(log.len(), 1, "the request's audit line came with it");
    assert_eq!(log[0].event, Event::PushSent);
}

/// A phone sign-in starts from a username alone: it replaces only the earlier requests of
/// its own sign-in, never the user's other requests, and a sign-in withdraws only its own.
pub async fn an_unproven_request_replaces_and_withdraws_only_its_own(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let (mfa, _) = s
        .create_challenge(challenge(t, u, 1, ChallengeKind::Mfa), NOW, None)
        .await
        .unwrap();
    let (mine, replaced) = s
        .create_challenge(challenge(t, u, 2, ChallengeKind::PhoneSignIn), NOW, None)
        .await
        .unwrap();
    assert!(replaced.is_empty(), "the second step stays: {replaced:?}");
    let (p1, replaced) = s
        .create_challenge(challenge(t, u, 3, ChallengeKind::PhoneSignIn), NOW, None)
        .await
        .unwrap();
    assert!(replaced.is_empty(), "another sign-in's request stays");
    let (p2, replaced) = s
        .create_challenge(challenge(t, u, 3, ChallengeKind::PhoneSignIn), NOW, None)
        .await
        .unwrap();
    assert_eq!(
        replaced,
        vec![p1.id.clone()],
        "its own earlier request goes"
    );
    assert_eq!(
        s.cancel_signin_challenges(&[3; 32]).await.unwrap(),
        vec![p2.id]
    );
    assert!(s
        .cancel_signin_challenges(&[3; 32])
        .await
        .unwrap()
        .is_empty());
    let mut pending: Vec<_> = s
        .list_pending_challenges(u, NOW)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    pending.sort_by(|a, b| a.0.cmp(&b.0));
    let mut expected = vec![mfa.id, mine.id];
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(pending, expected);
}

/// The request budget is checked in the write that makes the request: of fifty racing
/// requests with a budget of three, three are made; a fraud report refuses the next one.
pub async fn the_push_budget_holds_in_the_write_under_racing_requests(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let budget = Some(crate::Budget {
        limit: 3,
        since: NOW - 60,
    });
    let racing: Vec<_> = (0..50u8)
        .map(|i| {
            let s = s.clone();
            let new = NewChallenge {
                budget,
                ..challenge(t, u, i, ChallengeKind::Mfa)
            };
            tokio::spawn(async move { s.create_challenge(new, NOW, None).await })
        })
        .collect();
    let (mut made, mut refused) = (0, 0);
    for r in racing {
        match r.await.unwrap() {
            Ok(_) => made += 1,
            Err(StoreError::Refused(crate::Refusal::Budget)) => refused += 1,
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!((made, refused), (3, 47));
    // Requests made before the window do not count; another user's budget is their own.
    let v = user(&*s, "b").await;
    let fresh_one = NewChallenge {
        budget: Some(crate::Budget {
            limit: 3,
            since: NOW + 1,
        }),
        ..challenge(t, u, 60, ChallengeKind::Mfa)
    };
    s.create_challenge(fresh_one, NOW + 1, None).await.unwrap();
    let theirs = NewChallenge {
        budget,
        ..challenge(t, v, 61, ChallengeKind::Mfa)
    };
    s.create_challenge(theirs, NOW, None).await.unwrap();
    // A fraud report blocks the next request, budget or not.
    s.update_user_push_blocked(v, Some(NOW)).await.unwrap();
    let after = NewChallenge {
        budget: Some(crate::Budget {
            limit: 100,
            since: NOW,
        }),
        ..challenge(t, v, 62, ChallengeKind::Mfa)
    };
    assert!(matches!(
        s.create_challenge(after, NOW, None).await,
        Err(StoreError::Refused(crate::Refusal::Blocked))
    ));
    // Without a budget (a call, the administrator's own tools) nothing is checked here.
    s.create_challenge(challenge(t, v, 63, ChallengeKind::Mfa), NOW, None)
        .await
        .unwrap();
}

/// The push budget is counted per kind, and per browser the user signed in with before:
/// requests from unknown browsers do not use up a known browser's budget.
pub async fn the_push_budget_is_counted_per_kind_and_known_browser(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let mine = vec![7u8; 32];
    let from = |signin: u8, kind, browser: Option<&Vec<u8>>| NewChallenge {
        browser: browser.cloned(),
        ..challenge(t, u, signin, kind)
    };
    for i in 0..3 {
        s.create_challenge(
            from(i, ChallengeKind::PhoneSignIn, None),
            NOW + i64::from(i),
            None,
        )
        .await
        .unwrap();
    }
    s.create_challenge(from(9, ChallengeKind::PhoneSignIn, Some(&mine)), NOW, None)
        .await
        .unwrap();
    s.create_challenge(from(10, ChallengeKind::Mfa, None), NOW, None)
        .await
        .unwrap();
    let count = |kind, browser: Option<Vec<u8>>, since| {
        let s = &s;
        async move {
            s.count_challenges_since(u, kind, browser.as_deref(), since)
                .await
                .unwrap()
        }
    };
    assert_eq!(count(ChallengeKind::PhoneSignIn, None, NOW).await, 3);
    assert_eq!(count(ChallengeKind::PhoneSignIn, None, NOW + 1).await, 2);
    assert_eq!(
        count(ChallengeKind::PhoneSignIn, Some(mine.clone()), NOW).await,
        1
    );
    assert_eq!(
        count(ChallengeKind::PhoneSignIn, Some(vec![8; 32]), NOW).await,
        0
    );
    assert_eq!(count(ChallengeKind::Mfa, None, NOW).await, 1);
    let other = user(&*s, "b").await;
    assert_eq!(
        s.count_challenges_since(other, ChallengeKind::PhoneSignIn, None, NOW)
            .await
            .unwrap(),
        0
    );
}

pub async fn a_fraud_report_blocks_and_cancels_in_the_same_write(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let d = device(&*s, u, "phone").await;
    let (c, _) = s
        .create_challenge(challenge(t, u, 1, ChallengeKind::Mfa), NOW, None)
        .await
        .unwrap();
    let report = AuditEvent {
        result: AuditResult::Failure,
        ..audit_line(t, Some(u), Event::FraudReported)
    };
    let answered = s
        .answer_challenge(
            &c.id,
            ChallengeState::Reported,
            Some(d.row_id),
            NOW + 1,
            &report,
        )
        .await
        .unwrap();
    assert!(answered.answered);
    let user = s.find_user(u).await.unwrap().unwrap();
    assert_eq!(user.push_blocked_at, Some(NOW + 1));
    let log = s.list_audit(&AuditFilter::default()).await.unwrap();
    assert_eq!(log[0].event, Event::FraudReported);
    // A denial blocks nothing.
    let (c2, _) = s
        .create_challenge(challenge(t, u, 2, ChallengeKind::Mfa), NOW + 2, None)
        .await
        .unwrap();
    let denied = s
        .answer_challenge(
            &c2.id,
            ChallengeState::Denied,
            Some(d.row_id),
            NOW + 3,
            &report,
        )
        .await
        .unwrap();
    assert!(denied.answered && denied.cancelled.is_empty());
    assert!(s.unblock_user(u).await.unwrap());
    assert_eq!(s.find_user(u).await.unwrap().unwrap().push_blocked_at, None);
    assert!(!s.unblock_user(UserId(9999)).await.unwrap());
}

pub async fn blocking_ends_sessions_and_cancels_requests_at_once(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let done = password_sign_in(u);
    for id in [&b"b1"[..], b"b2"] {
        s.create_session(id, t, &done, NOW, LIMITS).await.unwrap();
    }
    let (c, _) = s
        .create_challenge(challenge(t, u, 1, ChallengeKind::Mfa), NOW, None)
        .await
        .unwrap();
    let blocked = s.block_user(u, NOW + 1).await.unwrap().unwrap();
    assert_eq!(blocked.sessions_ended, 2);
    assert_eq!(blocked.cancelled, vec![c.id.clone()]);
    assert!(s.find_user(u).await.unwrap().unwrap().is_blocked);
    assert!(s.find_session(b"b1", NOW + 2).await.unwrap().is_none());
    assert_eq!(
        s.find_challenge(&c.id).await.unwrap().unwrap().state,
        ChallengeState::Cancelled
    );
    assert!(s.block_user(UserId(9999), NOW).await.unwrap().is_none());
    assert!(s.unblock_user(u).await.unwrap());
    assert!(!s.find_user(u).await.unwrap().unwrap().is_blocked);
}

pub async fn a_password_change_ends_every_other_session_of_the_user(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let other = user(&*s, "b").await;
    for id in [&b"here"[..], b"laptop", b"phone"] {
        s.create_session(id, t, &password_sign_in(u), NOW, LIMITS)
            .await
            .unwrap();
    }
    s.create_session(b"theirs", t, &password_sign_in(other), NOW, LIMITS)
        .await
        .unwrap();
    assert_eq!(
        s.revoke_other_sessions(u, b"here", NOW + 1).await.unwrap(),
        2
    );
    assert!(s.find_session(b"here", NOW + 2).await.unwrap().is_some());
    assert!(s.find_session(b"laptop", NOW + 2).await.unwrap().is_none());
    assert!(s.find_session(b"phone", NOW + 2).await.unwrap().is_none());
    assert!(s.find_session(b"theirs", NOW + 2).await.unwrap().is_some());
    assert_eq!(
        s.revoke_other_sessions(u, b"here", NOW + 3).await.unwrap(),
        0
    );
}

pub async fn removing_a_device_cancels_its_users_requests(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let d = device(&*s, u, "phone").await;
    let methods = s.list_methods(u).await.unwrap();
    assert_eq!(
        methods.len(),
        2,
        "a device brings its push and code methods"
    );
    assert!(methods.iter().all(|m| m.device.as_ref() == Some(&d.id)));
    let user = s.find_user(u).await.unwrap().unwrap();
    assert!(user.default_method.is_some(), "the app became the default");
    assert_eq!(
        s.find_activation_device(u, b"code-phone").await.unwrap(),
        Some(Some(d.id.clone()))
    );
    let (c, _) = s
        .create_challenge(challenge(t, u, 1, ChallengeKind::Mfa), NOW, None)
        .await
        .unwrap();
    let other = user_in(&*s, t, "b").await;
    assert_eq!(s.delete_device(other, &d.id).await.unwrap(), None);
    assert_eq!(
        s.delete_device(u, &d.id).await.unwrap(),
        Some(vec![c.id.clone()])
    );
    assert!(s.find_device(&d.id).await.unwrap().is_none());
    assert!(s.list_methods(u).await.unwrap().is_empty());
    assert_eq!(s.find_user(u).await.unwrap().unwrap().default_method, None);
}

/// Removing the device whose method is the default moves the default to the user's first
/// remaining method, rather than leaving the user with none.
pub async fn removing_the_default_device_moves_the_default_to_a_remaining_method(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let code = s
        .create_totp_method(u, "Code", &SecretBytes::new(vec![1; 20]), 0, NOW)
        .await
        .unwrap();
    let d = device(&*s, u, "phone").await;
    let on_device = s.find_user(u).await.unwrap().unwrap().default_method;
    assert!(
        s.list_methods(u)
            .await
            .unwrap()
            .iter()
            .any(|m| Some(m.id) == on_device && m.device.as_ref() == Some(&d.id)),
        "the app became the default"
    );
    assert!(s.delete_device(u, &d.id).await.unwrap().is_some());
    assert_eq!(
        s.find_user(u).await.unwrap().unwrap().default_method,
        Some(code.id)
    );
}

pub async fn device_nonces_are_single_use(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let d = device(&*s, u, "phone").await;
    let nonce = "0123456789abcdef";
    assert!(s
        .claim_device_nonce(d.row_id, nonce, NOW + 60, NOW)
        .await
        .unwrap());
    assert!(!s
        .claim_device_nonce(d.row_id, nonce, NOW + 60, NOW)
        .await
        .unwrap());
    let e = device(&*s, u, "tablet").await;
    assert!(
        s.claim_device_nonce(e.row_id, nonce, NOW + 60, NOW)
            .await
            .unwrap(),
        "nonces are per device"
    );
}

pub async fn pin_key_registers_once_and_rotates_only_from_the_current_key(b: &dyn Backend) {
    let s = fresh(b).await;
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

/// Phone sign-in goes on only when the person confirms a fresh request of the app, for a
/// device whose PIN key is registered and working.
pub async fn phone_sign_in_goes_on_only_when_a_fresh_request_is_confirmed(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "alice").await;
    let d = device(&*s, u, "phone").await;
    // Nothing asked: nothing to confirm.
    assert!(!s
        .confirm_phone_sign_in(d.row_id, NOW - 600, NOW)
        .await
        .unwrap());
    s.request_phone_sign_in(d.row_id, NOW, "1111-1111")
        .await
        .unwrap();
    // No PIN key yet: still nothing to turn on.
    assert!(!s
        .confirm_phone_sign_in(d.row_id, NOW - 600, NOW)
        .await
        .unwrap());
    assert!(s.set_pin_key(d.row_id, b"k1", None).await.unwrap());
    // Too old a request is not confirmed.
    assert!(!s
        .confirm_phone_sign_in(d.row_id, NOW + 1, NOW + 2)
        .await
        .unwrap());
    let asked = s.find_device(&d.id).await.unwrap().unwrap();
    assert_eq!(asked.phone_sign_in_requested_at, Some(NOW));
    assert_eq!(asked.phone_sign_in_code.as_deref(), Some("1111-1111"));
    assert!(!asked.phone_sign_in_ready());
    // The app asks again: the new request, with its own code, replaces the first.
    s.request_phone_sign_in(d.row_id, NOW, "2222-2222")
        .await
        .unwrap();
    let asked = s.find_device(&d.id).await.unwrap().unwrap();
    assert_eq!(asked.phone_sign_in_requested_at, Some(NOW));
    assert_eq!(
        asked.phone_sign_in_code.as_deref(),
        Some("2222-2222"),
        "a new request replaces the code"
    );
    assert!(s
        .confirm_phone_sign_in(d.row_id, NOW - 600, NOW + 5)
        .await
        .unwrap());
    let on = s.find_device(&d.id).await.unwrap().unwrap();
    assert!(on.phone_sign_in_ready());
    assert_eq!(on.phone_sign_in_at, Some(NOW + 5));
    assert_eq!(
        on.phone_sign_in_requested_at, None,
        "a request is confirmed once"
    );
    assert_eq!(on.phone_sign_in_code, None, "its code goes with it");
    assert!(!s
        .confirm_phone_sign_in(d.row_id, NOW - 600, NOW + 6)
        .await
        .unwrap());
    // A request for a disabled PIN key is not confirmed either.
    s.set_phone_sign_in(d.row_id, None).await.unwrap();
    s.request_phone_sign_in(d.row_id, NOW + 10, "3333-3333")
        .await
        .unwrap();
    assert!(s.disable_pin_key(d.row_id, NOW + 11).await.unwrap());
    assert!(!s
        .confirm_phone_sign_in(d.row_id, NOW, NOW + 12)
        .await
        .unwrap());
    // Turning off, and forgetting the PIN key, forget the request too.
    assert!(s.clear_pin_key(u, &d.id).await.unwrap());
    let cleared = s.find_device(&d.id).await.unwrap().unwrap();
    assert_eq!(cleared.phone_sign_in_requested_at, None);
    assert_eq!(cleared.phone_sign_in_code, None);
    s.request_phone_sign_in(d.row_id, NOW + 20, "4444-4444")
        .await
        .unwrap();
    s.set_phone_sign_in(d.row_id, None).await.unwrap();
    let off = s.find_device(&d.id).await.unwrap().unwrap();
    assert_eq!(off.phone_sign_in_requested_at, None);
    assert_eq!(off.phone_sign_in_code, None);
}

pub async fn parallel_pin_guesses_count_at_most_ten_in_a_row(b: &dyn Backend) {
    let s = fresh(b).await;
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
    let u = user(&*s, "bob").await;
    let d = device(&*s, u, "bobs-phone").await;
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

pub async fn policy_saves_are_compare_and_set_and_logged(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    assert!(s.find_policy(t).await.unwrap().is_none());
    let mut p = MethodsPolicy::initial(&PushPolicy::default());
    let audit = |reason: &str| AuditEvent {
        reason: Some(reason.into()),
        ..audit_line(t, None, Event::PolicyChanged)
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

/// What a request reads to decide the policy: the version always, the policy only when the
/// caller does not hold that version, and the user's groups as they are now.
pub async fn policy_for_user_reads_the_policy_only_when_its_version_moved(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    let none = s.find_policy_for_user(t, a, None).await.unwrap();
    assert_eq!(
        (none.version, none.policy, none.groups),
        (None, None, vec![])
    );
    let g1 = s.create_group(t, "one", NOW).await.unwrap();
    let g2 = s.create_group(t, "two", NOW).await.unwrap();
    s.add_group_member(g1.id, a).await.unwrap();
    s.add_group_member(g2.id, a).await.unwrap();
    let audit = audit_line(t, None, Event::PolicyChanged);
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
        for known in [None, Some(version - 1)] {
            let mut read = s.find_policy_for_user(t, a, known).await.unwrap();
            assert_eq!(read.version, Some(version));
            assert_eq!(read.policy.as_ref(), Some(&p), "moved since {known:?}");
            read.groups.sort();
            assert_eq!(read.groups, vec![g1.id, g2.id]);
        }
        let same = s.find_policy_for_user(t, a, Some(version)).await.unwrap();
        assert_eq!((same.version, same.policy), (Some(version), None));
    }
    s.remove_group_member(g1.id, a).await.unwrap();
    assert_eq!(
        s.find_policy_for_user(t, a, Some(3)).await.unwrap().groups,
        vec![g2.id]
    );
    // Each tenant has its own policy and version.
    let t2 = s.create_tenant("second", NOW).await.unwrap();
    let read = s.find_policy_for_user(t2, a, Some(3)).await.unwrap();
    assert_eq!((read.version, read.policy), (None, None));
}

/// Writes made at the same moment keep their own outcomes: a write that fails half-way
/// leaves nothing behind and does not take the others with it; the ones that succeeded are
/// there for the next process.
pub async fn writes_committed_together_keep_their_own_outcomes(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let done = password_sign_in(u);
    let event = AuditEvent {
        method: Some(AuditMethod::Password),
        ..audit_line(t, Some(u), Event::SignIn)
    };
    // A session id already taken: completions that reuse it fail on their second statement.
    s.create_session(b"taken", t, &done, NOW, LIMITS)
        .await
        .unwrap();
    for i in 0..40u8 {
        s.create_signin(&signin(t, i, Some(u))).await.unwrap();
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
                s.complete_signin(&[i; 32], &session, &done, NOW, LIMITS, &event, None)
                    .await
                    .is_ok()
            })
        })
        .collect();
    for (i, t) in tasks.into_iter().enumerate() {
        assert_eq!(t.await.unwrap(), i % 2 == 0, "completion {i}");
    }
    // Another handle (another process, after a crash) sees exactly the successes.
    drop(s);
    let again = fresh(b).await;
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

/// Every filter of the sign-in log, alone and together, against the same rows filtered here.
pub async fn audit_filters_select_exactly_the_matching_lines(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let a = user(&*s, "a").await;
    let bob = user(&*s, "b").await;
    let mut all = Vec::new();
    for i in 0..40i64 {
        let e = AuditEvent {
            at: NOW + i * 10,
            method: Some(if i % 2 == 0 {
                AuditMethod::Push
            } else {
                AuditMethod::Totp
            }),
            result: if i % 5 == 0 {
                AuditResult::Failure
            } else {
                AuditResult::Success
            },
            reason: Some(format!("line {i}")),
            ..audit_line(t, Some(if i % 3 == 0 { a } else { bob }), Event::SignIn)
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
            method: Some(AuditMethod::Push),
            ..Default::default()
        },
        AuditFilter {
            since: Some(NOW + 100),
            until: Some(NOW + 250),
            ..Default::default()
        },
        AuditFilter {
            tenant: Some(t),
            user: Some(bob),
            result: Some(AuditResult::Success),
            method: Some(AuditMethod::Totp),
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

fn oidc_client(tenant: TenantId, id: &str) -> crate::Client {
    crate::Client {
        client_id: id.into(),
        tenant,
        name: format!("App {id}"),
        secret_hash: Some(vec![1; 32]),
        redirect_uris: vec!["https://app.example/cb".into()],
        post_logout_redirect_uris: vec![],
        first_party: false,
        require_mfa: false,
        id_token_alg: "RS256".into(),
        client_credentials: false,
        created_at: NOW,
        secret_set_at: Some(NOW),
    }
}

fn oidc_grant(tenant: TenantId, user: UserId, client: &str) -> crate::OidcGrant {
    crate::OidcGrant {
        tenant,
        user,
        client_id: client.into(),
        scope: "openid".into(),
        redirect_uri: "https://app.example/cb".into(),
        nonce: Some("n".into()),
        code_challenge: Some("c".into()),
        auth_time: NOW - 5,
        amr: vec!["pwd".into(), "otp".into(), "mfa".into()],
        acr: "mfa".into(),
        sid: None,
    }
}

fn family(id: &str) -> crate::NewFamily {
    crate::NewFamily {
        id: id.into(),
        expires_at: NOW + 3600,
    }
}

pub async fn oidc_signing_keys_are_sealed_and_retire(b: &dyn Backend) {
    let s = fresh(b).await;
    let k = |kid: &str, alg: &str| crate::SigningKey {
        kid: kid.into(),
        alg: alg.into(),
        private_key: SecretBytes::new(format!("pkcs8 of {kid}").into_bytes()),
        public_jwk: format!("{{\"kid\":\"{kid}\"}}"),
        created_at: NOW,
        retired_at: None,
    };
    assert!(s.add_signing_key(&k("r1", "RS256")).await.unwrap());
    assert!(s.add_signing_key(&k("e1", "ES256")).await.unwrap());
    // One current key per algorithm: a second first key does nothing (another node's won).
    assert!(!s.add_signing_key(&k("r0", "RS256")).await.unwrap());
    assert!(matches!(
        s.add_signing_key(&k("e1", "EdDSA")).await,
        Err(StoreError::Conflict(_))
    ));
    // A rotation retires the current key and adds the new one together.
    assert_eq!(
        s.replace_signing_key(&k("r2", "RS256"), NOW + 1)
            .await
            .unwrap(),
        1
    );
    let keys = s.list_signing_keys().await.unwrap();
    let find = |kid: &str| keys.iter().find(|x| x.kid == kid).unwrap().clone();
    assert_eq!(find("r1").retired_at, Some(NOW + 1));
    assert_eq!(find("r2").retired_at, None);
    assert_eq!(
        find("e1").retired_at,
        None,
        "another algorithm's key is left alone"
    );
    assert_eq!(find("r2").private_key.expose(), b"pkcs8 of r2");
    // Sealed: another master key cannot open them.
    let other = b.open("main", MasterKey::from_bytes([8; 32])).await;
    assert!(matches!(
        other.list_signing_keys().await,
        Err(StoreError::Decrypt)
    ));
    assert_eq!(
        s.remove_signing_keys_retired_before(NOW + 2).await.unwrap(),
        1
    );
    assert_eq!(s.list_signing_keys().await.unwrap().len(), 2);
    // Nodes making their first EdDSA key at the same moment: exactly one is kept.
    let racing: Vec<_> = (0..20)
        .map(|i| {
            let s = s.clone();
            let key = k(&format!("d{i}"), "EdDSA");
            tokio::spawn(async move { s.add_signing_key(&key).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in racing {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
    let current = s.list_signing_keys().await.unwrap();
    assert_eq!(
        current
            .iter()
            .filter(|x| x.alg == "EdDSA" && x.retired_at.is_none())
            .count(),
        1
    );
}

pub async fn oidc_clients_round_trip_and_removal_takes_their_grants(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    let mut c = oidc_client(t, "app1");
    s.create_client(&c).await.unwrap();
    assert!(matches!(
        s.create_client(&c).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.find_client("app1").await.unwrap(), Some(c.clone()));
    c.redirect_uris.push("http://127.0.0.1:9/cb".into());
    c.secret_hash = None;
    c.require_mfa = true;
    assert!(s.update_client(&c).await.unwrap());
    assert_eq!(s.find_client("app1").await.unwrap(), Some(c.clone()));
    assert_eq!(s.list_clients(t).await.unwrap(), vec![c]);
    s.create_code(&[1; 32], &oidc_grant(t, u, "app1"), NOW + 60)
        .await
        .unwrap();
    s.save_consent(u, "app1", "openid", NOW).await.unwrap();
    assert!(s.remove_client("app1").await.unwrap());
    assert!(!s.remove_client("app1").await.unwrap());
    assert_eq!(s.find_client("app1").await.unwrap(), None);
    assert_eq!(s.find_consent(u, "app1").await.unwrap(), None);
    s.create_client(&oidc_client(t, "app1")).await.unwrap();
    assert_eq!(
        s.redeem_code(&[1; 32], "app1", &family("f"), &[2; 32], NOW)
            .await
            .unwrap(),
        crate::Redeemed::Unknown,
        "a code of the removed client is gone with it"
    );
}

pub async fn an_authorization_code_is_redeemed_once_and_a_replay_revokes_what_it_issued(
    b: &dyn Backend,
) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    s.create_client(&oidc_client(t, "app1")).await.unwrap();
    s.create_client(&oidc_client(t, "app2")).await.unwrap();
    let g = oidc_grant(t, u, "app1");
    s.create_code(&[1; 32], &g, NOW + 60).await.unwrap();
    // Another client cannot redeem it, and trying does not use it up.
    assert_eq!(
        s.redeem_code(&[1; 32], "app2", &family("x"), &[9; 32], NOW)
            .await
            .unwrap(),
        crate::Redeemed::Unknown
    );
    // Fifty at once: one wins.
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..50u8 {
        let s = s.clone();
        tasks.spawn(async move {
            s.redeem_code(
                &[1; 32],
                "app1",
                &family(&format!("f{i}")),
                &[100 + i; 32],
                NOW,
            )
            .await
            .unwrap()
        });
    }
    let outcomes = tasks.join_all().await;
    let issued: Vec<_> = outcomes
        .iter()
        .filter(|o| matches!(o, crate::Redeemed::Issued(_)))
        .collect();
    assert_eq!(issued.len(), 1, "{outcomes:?}");
    assert_eq!(issued[0], &crate::Redeemed::Issued(Box::new(g)));
    assert!(outcomes
        .iter()
        .all(|o| matches!(o, crate::Redeemed::Issued(_) | crate::Redeemed::Replayed)));
    // Every replay revoked the family the code issued: none is active.
    let mut active = 0;
    for i in 0..50u8 {
        if s.family_active(&format!("f{i}"), NOW).await.unwrap() {
            active += 1;
        }
    }
    assert_eq!(active, 0, "the replays revoked the family the code started");
    // Expired codes are not redeemed.
    s.create_code(&[2; 32], &oidc_grant(t, u, "app1"), NOW + 60)
        .await
        .unwrap();
    assert_eq!(
        s.redeem_code(&[2; 32], "app1", &family("late"), &[3; 32], NOW + 60)
            .await
            .unwrap(),
        crate::Redeemed::Unknown
    );
}

pub async fn refresh_tokens_rotate_and_reuse_revokes_the_family(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    s.create_client(&oidc_client(t, "app1")).await.unwrap();
    s.create_client(&oidc_client(t, "app2")).await.unwrap();
    let g = oidc_grant(t, u, "app1");
    s.create_code(&[1; 32], &g, NOW + 60).await.unwrap();
    assert_eq!(
        s.redeem_code(&[1; 32], "app1", &family("f"), &[10; 32], NOW)
            .await
            .unwrap(),
        crate::Redeemed::Issued(Box::new(g.clone()))
    );
    assert!(s.family_active("f", NOW).await.unwrap());
    // Another client's token is not this client's to use.
    assert_eq!(
        s.rotate_refresh(&[10; 32], "app2", &[11; 32], NOW)
            .await
            .unwrap(),
        crate::Rotated::Unknown
    );
    assert_eq!(
        s.rotate_refresh(&[10; 32], "app1", &[11; 32], NOW)
            .await
            .unwrap(),
        crate::Rotated::Rotated {
            grant: Box::new(g.clone()),
            family: "f".into()
        }
    );
    assert!(matches!(
        s.rotate_refresh(&[11; 32], "app1", &[12; 32], NOW)
            .await
            .unwrap(),
        crate::Rotated::Rotated { .. }
    ));
    // The first token again: reuse. The whole family ends, the newest token too.
    assert_eq!(
        s.rotate_refresh(&[10; 32], "app1", &[13; 32], NOW)
            .await
            .unwrap(),
        crate::Rotated::Reused
    );
    assert!(!s.family_active("f", NOW).await.unwrap());
    assert_eq!(
        s.rotate_refresh(&[12; 32], "app1", &[14; 32], NOW)
            .await
            .unwrap(),
        crate::Rotated::Unknown
    );
    // A family ends when it expires, and by revocation through any of its tokens.
    s.create_code(&[2; 32], &g, NOW + 60).await.unwrap();
    s.redeem_code(&[2; 32], "app1", &family("g"), &[20; 32], NOW)
        .await
        .unwrap();
    assert!(!s.family_active("g", NOW + 3600).await.unwrap());
    assert!(!s
        .revoke_refresh_token(&[20; 32], "app2", NOW)
        .await
        .unwrap());
    assert!(s
        .revoke_refresh_token(&[20; 32], "app1", NOW)
        .await
        .unwrap());
    assert!(!s.family_active("g", NOW).await.unwrap());
    // A user's families all end at once.
    s.create_code(&[3; 32], &g, NOW + 60).await.unwrap();
    s.redeem_code(&[3; 32], "app1", &family("h"), &[30; 32], NOW)
        .await
        .unwrap();
    assert_eq!(s.revoke_user_families(u, NOW).await.unwrap(), 1);
    assert!(!s.family_active("h", NOW).await.unwrap());
}

pub async fn revoked_access_tokens_and_consent_are_remembered(b: &dyn Backend) {
    let s = fresh(b).await;
    let t = s.default_tenant().await.unwrap();
    let u = user(&*s, "a").await;
    s.create_client(&oidc_client(t, "app1")).await.unwrap();
    assert!(!s.access_token_revoked("j1").await.unwrap());
    s.revoke_access_token("j1", NOW + 60).await.unwrap();
    s.revoke_access_token("j1", NOW + 60).await.unwrap();
    assert!(s.access_token_revoked("j1").await.unwrap());
    assert_eq!(s.find_consent(u, "app1").await.unwrap(), None);
    s.save_consent(u, "app1", "openid", NOW).await.unwrap();
    s.save_consent(u, "app1", "openid profile", NOW)
        .await
        .unwrap();
    assert_eq!(
        s.find_consent(u, "app1").await.unwrap().as_deref(),
        Some("openid profile")
    );
    // Pruning forgets what expired.
    s.prune_oidc(NOW + 61).await.unwrap();
    assert!(!s.access_token_revoked("j1").await.unwrap());
}

type Case = for<'a> fn(&'a dyn Backend) -> Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

// ---- Phones, texted codes, send limits, delivery reports, outbox (issue 13).

pub async fn a_phone_is_sealed_and_changing_it_replaces_its_methods_and_keeps_the_default(
    b: &dyn Backend,
) {
    use sesame_core::method::PhoneSlot;
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let first = s
        .save_phone(u, PhoneSlot::Mobile, "+31612345678", None, NOW)
        .await
        .unwrap();
    let kinds: Vec<MethodKind> = first.iter().map(|m| m.kind).collect();
    assert_eq!(kinds, vec![MethodKind::Sms, MethodKind::Voice]);
    assert!(first
        .iter()
        .all(|m| m.phone.as_deref() == Some("+31612345678")));
    let voice = first.iter().find(|m| m.kind == MethodKind::Voice).unwrap();
    s.update_default_method(u, Some(voice.id)).await.unwrap();
    let office = s
        .save_phone(u, PhoneSlot::Office, "+31201234567", Some("123"), NOW)
        .await
        .unwrap();
    assert_eq!(office.len(), 1);
    assert_eq!(office[0].extension.as_deref(), Some("123"));
    // A new mobile number: both its methods are new, the office phone stays, and the default
    // follows to the new call method.
    let second = s
        .save_phone(u, PhoneSlot::Mobile, "+31612345679", None, NOW + 1)
        .await
        .unwrap();
    let all = s.list_methods(u).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|m| !first.iter().any(|f| f.id == m.id)));
    let new_voice = second.iter().find(|m| m.kind == MethodKind::Voice).unwrap();
    let user = s.find_user(u).await.unwrap().unwrap();
    assert_eq!(user.default_method, Some(new_voice.id));
    // The number is sealed with the master key: another key cannot read it.
    drop(s);
    let other = b.open("main", MasterKey::from_bytes([2; 32])).await;
    assert!(matches!(
        other.list_methods(u).await,
        Err(StoreError::Decrypt)
    ));
}

pub async fn a_texted_code_is_taken_once_for_its_purpose_number_and_time(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let (tag, other_tag, hash) = (vec![1u8; 32], vec![2u8; 32], vec![3u8; 32]);
    s.put_phone_code(u, "signin", &tag, &hash, NOW, NOW + 600)
        .await
        .unwrap();
    assert!(
        !s.take_phone_code(u, "enrol:mobile", &tag, &hash, NOW)
            .await
            .unwrap(),
        "another purpose"
    );
    assert!(
        !s.take_phone_code(u, "signin", &other_tag, &hash, NOW)
            .await
            .unwrap(),
        "another number"
    );
    assert!(
        !s.take_phone_code(u, "signin", &tag, &[9; 32], NOW)
            .await
            .unwrap(),
        "another code"
    );
    assert!(
        !s.take_phone_code(u, "signin", &tag, &hash, NOW + 600)
            .await
            .unwrap(),
        "expired"
    );
    assert!(s
        .take_phone_code(u, "signin", &tag, &hash, NOW + 599)
        .await
        .unwrap());
    assert!(
        !s.take_phone_code(u, "signin", &tag, &hash, NOW + 599)
            .await
            .unwrap(),
        "used"
    );
    // A resend replaces the live code: the old one stops working.
    s.put_phone_code(u, "signin", &tag, &hash, NOW, NOW + 600)
        .await
        .unwrap();
    s.put_phone_code(u, "signin", &tag, &[4; 32], NOW + 1, NOW + 601)
        .await
        .unwrap();
    assert!(!s
        .take_phone_code(u, "signin", &tag, &hash, NOW + 2)
        .await
        .unwrap());
    s.drop_phone_code(u, "signin").await.unwrap();
    assert!(
        !s.take_phone_code(u, "signin", &tag, &[4; 32], NOW + 2)
            .await
            .unwrap(),
        "dropped"
    );
}

pub async fn a_texted_code_taken_by_fifty_parallel_requests_works_once(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    s.put_phone_code(u, "signin", &[1; 32], &[3; 32], NOW, NOW + 600)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.take_phone_code(u, "signin", &[1; 32], &[3; 32], NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

pub async fn send_limits_count_every_key_and_hold_under_parallel_sends(b: &dyn Backend) {
    let s = fresh(b).await;
    let keys = |n: &str| vec![format!("sms:user:{n}"), "sms:number:x".to_string()];
    // 3 per window: the number's count holds a second user too.
    for _ in 0..2 {
        assert_eq!(
            s.reserve_phone_send(&keys("1"), 3, NOW - 900, NOW)
                .await
                .unwrap(),
            None
        );
    }
    assert_eq!(
        s.reserve_phone_send(&keys("2"), 3, NOW - 900, NOW)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.reserve_phone_send(&keys("2"), 3, NOW - 900, NOW)
            .await
            .unwrap(),
        Some("sms:number:x".to_string())
    );
    // Refused sends count nothing: user 2 has used one.
    assert_eq!(
        s.reserve_phone_send(&["sms:user:2".to_string()], 1, NOW - 900, NOW)
            .await
            .unwrap(),
        Some("sms:user:2".to_string())
    );
    // The window moves on.
    assert_eq!(
        s.reserve_phone_send(&keys("2"), 3, NOW, NOW + 901)
            .await
            .unwrap(),
        None
    );
    // Fifty at once against a limit of 3: exactly 3 pass.
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            tokio::spawn(async move {
                s.reserve_phone_send(&["call:address:a".to_string()], 3, NOW - 900, NOW)
                    .await
                    .unwrap()
                    .is_none()
            })
        })
        .collect();
    let mut passed = 0;
    for t in tasks {
        passed += usize::from(t.await.unwrap());
    }
    assert_eq!(passed, 3);
}

pub async fn delivery_reports_keep_the_final_status(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    assert_eq!(s.last_message_status(u).await.unwrap(), None);
    s.record_message("r1", Some(u), "queued", NOW)
        .await
        .unwrap();
    assert!(s
        .update_message_status("r1", "delivered", None, NOW + 1)
        .await
        .unwrap());
    // A late "sent" does not undo "delivered".
    assert!(s
        .update_message_status("r1", "sent", None, NOW + 2)
        .await
        .unwrap());
    assert_eq!(
        s.last_message_status(u).await.unwrap().as_deref(),
        Some("delivered")
    );
    assert!(!s
        .update_message_status("nobody-sent-this", "failed", None, NOW)
        .await
        .unwrap());
    s.record_message("r2", Some(u), "queued", NOW + 3)
        .await
        .unwrap();
    s.update_message_status("r2", "failed", Some("30003"), NOW + 4)
        .await
        .unwrap();
    assert_eq!(
        s.last_message_status(u).await.unwrap().as_deref(),
        Some("failed")
    );
    // A resend in the same second (references are random: this one sorts first) is the last.
    s.record_message("a0", Some(u), "queued", NOW + 3)
        .await
        .unwrap();
    assert_eq!(
        s.last_message_status(u).await.unwrap().as_deref(),
        Some("queued")
    );
}

pub async fn an_outbox_call_is_answered_once(b: &dyn Backend) {
    let s = fresh(b).await;
    let item = |kind: &str, reference: &str, state: &str| crate::OutboxItem {
        id: 0,
        kind: kind.into(),
        reference: reference.into(),
        to: "+31612345678".into(),
        extension: None,
        body: "words".into(),
        state: state.into(),
        created_at: NOW,
        answered_at: None,
    };
    let text = s.outbox_add(&item("sms", "t1", "delivered")).await.unwrap();
    let call = s.outbox_add(&item("call", "c1", "ringing")).await.unwrap();
    let listed = s.outbox_list(10).await.unwrap();
    assert_eq!(
        listed.iter().map(|i| i.id).collect::<Vec<_>>(),
        vec![call, text],
        "newest first"
    );
    assert!(
        !s.outbox_answer(text, "approved", NOW).await.unwrap(),
        "a text is not a call"
    );
    assert!(s.outbox_answer(call, "approved", NOW + 1).await.unwrap());
    assert!(
        !s.outbox_answer(call, "fraud", NOW + 2).await.unwrap(),
        "answered once"
    );
    let c = s.outbox_find(call).await.unwrap().unwrap();
    assert_eq!(
        (c.state.as_str(), c.answered_at),
        ("approved", Some(NOW + 1))
    );
}

pub async fn an_access_pass_is_one_per_user_one_time_or_until_it_expires(b: &dyn Backend) {
    let s = fresh(b).await;
    let u = user(&*s, "a").await;
    let other = user(&*s, "b").await;
    let (h1, h2) = (vec![1u8; 32], vec![2u8; 32]);
    assert_eq!(s.find_access_pass(u, NOW).await.unwrap(), None);
    s.create_access_pass(u, &h1, true, NOW, NOW + 600)
        .await
        .unwrap();
    let found = s.find_access_pass(u, NOW).await.unwrap().unwrap();
    assert!(found.one_time);
    assert_eq!(found.expires_at, NOW + 600);
    assert!(
        !s.use_access_pass(other, &h1, NOW).await.unwrap(),
        "another user's pass"
    );
    assert!(
        !s.use_access_pass(u, &h2, NOW).await.unwrap(),
        "another pass"
    );
    assert!(
        !s.use_access_pass(u, &h1, NOW + 600).await.unwrap(),
        "expired"
    );
    assert!(s.use_access_pass(u, &h1, NOW + 599).await.unwrap());
    assert!(
        !s.use_access_pass(u, &h1, NOW + 599).await.unwrap(),
        "one-time: used"
    );
    assert_eq!(s.find_access_pass(u, NOW).await.unwrap(), None);
    // Multi-use until it expires; a new pass replaces the old; revoking ends it.
    s.create_access_pass(u, &h1, false, NOW, NOW + 600)
        .await
        .unwrap();
    assert!(s.use_access_pass(u, &h1, NOW + 1).await.unwrap());
    assert!(s.use_access_pass(u, &h1, NOW + 2).await.unwrap());
    assert_eq!(
        s.find_access_pass(u, NOW + 3)
            .await
            .unwrap()
            .unwrap()
            .used_at,
        Some(NOW + 2)
    );
    s.create_access_pass(u, &h2, false, NOW + 3, NOW + 900)
        .await
        .unwrap();
    assert!(
        !s.use_access_pass(u, &h1, NOW + 4).await.unwrap(),
        "replaced"
    );
    assert!(s.revoke_access_pass(u).await.unwrap());
    assert!(!s.revoke_access_pass(u).await.unwrap());
    assert!(
        !s.use_access_pass(u, &h2, NOW + 5).await.unwrap(),
        "revoked"
    );
    // Fifty parallel uses of a one-time pass: one wins.
    s.create_access_pass(u, &h1, true, NOW, NOW + 600)
        .await
        .unwrap();
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let s = s.clone();
            let h = h1.clone();
            tokio::spawn(async move { s.use_access_pass(u, &h, NOW + 1).await.unwrap() })
        })
        .collect();
    let mut won = 0;
    for t in tasks {
        won += usize::from(t.await.unwrap());
    }
    assert_eq!(won, 1);
}

macro_rules! cases {
    ($($name:ident,)+) => {
        /// Every case, by name.
        pub const CASES: &[(&str, Case)] = &[$((stringify!($name), |b| Box::pin($name(b))),)+];

        /// One `#[tokio::test]` per case, each on a backend of its own made by `$backend`.
        #[macro_export]
        macro_rules! conformance_tests {
            ($backend:expr) => {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $name() {
                        let backend = $backend;
                        $crate::conformance::$name(&backend).await;
                    }
                )+
            };
        }
    };
}

cases!(
    usernames_are_unique_ignoring_case,
    user_ids_are_never_reused,
    tenants_keep_their_users_apart,
    groups_and_membership,
    totp_secret_opens_only_with_its_master_key,
    totp_step_is_claimed_once_and_never_backwards,
    totp_step_claimed_by_fifty_parallel_requests_once,
    parallel_attempts_never_evaluate_more_than_the_limit,
    parallel_password_guesses_check_at_most_the_free_ones,
    a_forgetting_scope_starts_over_after_its_quiet_time,
    guess_counts_are_cleared_by_key_and_by_prefix_and_pruned_by_age,
    failure_counter_survives_a_restart,
    enrollment_is_taken_once_and_expires,
    signin_state_changes_are_compare_and_set,
    a_new_password_ends_the_users_sign_ins_in_progress,
    sessions_expire_idle_absolute_and_on_revocation,
    setup_token_is_single_use,
    default_method_must_belong_to_the_user,
    a_default_method_never_points_at_a_removed_method,
    remembered_choice_round_trips,
    audit_log_filters,
    complete_signin_writes_session_log_and_ends_the_transaction_together,
    an_approval_makes_at_most_one_session,
    a_new_request_supersedes_the_pending_one,
    an_unproven_request_replaces_and_withdraws_only_its_own,
    the_push_budget_is_counted_per_kind_and_known_browser,
    the_push_budget_holds_in_the_write_under_racing_requests,
    a_fraud_report_blocks_and_cancels_in_the_same_write,
    blocking_ends_sessions_and_cancels_requests_at_once,
    a_password_change_ends_every_other_session_of_the_user,
    removing_a_device_cancels_its_users_requests,
    removing_the_default_device_moves_the_default_to_a_remaining_method,
    device_nonces_are_single_use,
    pin_key_registers_once_and_rotates_only_from_the_current_key,
    phone_sign_in_goes_on_only_when_a_fresh_request_is_confirmed,
    parallel_pin_guesses_count_at_most_ten_in_a_row,
    policy_saves_are_compare_and_set_and_logged,
    policy_for_user_reads_the_policy_only_when_its_version_moved,
    writes_committed_together_keep_their_own_outcomes,
    audit_filters_select_exactly_the_matching_lines,
    oidc_signing_keys_are_sealed_and_retire,
    oidc_clients_round_trip_and_removal_takes_their_grants,
    an_authorization_code_is_redeemed_once_and_a_replay_revokes_what_it_issued,
    refresh_tokens_rotate_and_reuse_revokes_the_family,
    revoked_access_tokens_and_consent_are_remembered,
    a_phone_is_sealed_and_changing_it_replaces_its_methods_and_keeps_the_default,
    a_texted_code_is_taken_once_for_its_purpose_number_and_time,
    a_texted_code_taken_by_fifty_parallel_requests_works_once,
    send_limits_count_every_key_and_hold_under_parallel_sends,
    delivery_reports_keep_the_final_status,
    an_outbox_call_is_answered_once,
    an_access_pass_is_one_per_user_one_time_or_until_it_expires,
);

/// Runs every case against backends made by `make` (one each), one after another, and
/// panics naming the cases that failed.
pub async fn run<B: Backend + 'static>(make: impl Fn() -> B) {
    let mut failed = Vec::new();
    for (name, case) in CASES {
        let backend = make();
        // Each case in its own task, so that one panic is reported and the rest still run.
        let outcome = tokio::spawn(async move {
            case(&backend).await;
        })
        .await;
        if outcome.is_err() {
            failed.push(*name);
        }
    }
    assert!(failed.is_empty(), "conformance cases failed: {failed:?}");
}
