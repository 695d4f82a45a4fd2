//! The store's capabilities, one trait each, combined as [`Store`]. A backend implements every
//! trait; callers hold an `Arc<dyn Store>` and never know which backend they talk to.

use crate::{
    AccessPass, Answered, AuditEvent, AuditFilter, Blocked, ChallengeRecord, Client, Device,
    DeviceRow, Group, Method, NewChallenge, NewDevice, NewFamily, NewUser, OidcGrant, OutboxItem,
    PinOutcome, PolicyRead, Redeemed, Result, Rotated, SessionLimits, SessionRecord, SignInRecord,
    SigningKey, StoreError, User,
};
use async_trait::async_trait;
use sesame_core::guessing::Throttle;
use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::{MethodKind, PhoneSlot};
use sesame_core::policy::MethodsPolicy;
use sesame_core::push::{ChallengeKind, ChallengeState};
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{CompletedSignIn, SignInChoice, SignInState};
use sesame_core::{ChallengeId, DeviceId, GroupId, MethodId, TenantId, UnixTime, UserId};

/// Everything Sesame stores, on one backend.
pub trait Store:
    TenantStore
    + UserStore
    + GroupStore
    + MethodStore
    + AttemptStore
    + GuessStore
    + SignInStore
    + SessionStore
    + SetupStore
    + DeviceStore
    + ApprovalStore
    + PolicyStore
    + AuditStore
    + OidcStore
    + PhoneStore
    + AccessPassStore
    + Send
    + Sync
    + 'static
{
}

impl<T> Store for T where
    T: TenantStore
        + UserStore
        + GroupStore
        + MethodStore
        + AttemptStore
        + GuessStore
        + SignInStore
        + SessionStore
        + SetupStore
        + DeviceStore
        + ApprovalStore
        + PolicyStore
        + AuditStore
        + OidcStore
        + PhoneStore
        + AccessPassStore
        + Send
        + Sync
        + 'static
{
}

#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Whether the store can serve requests now (`/readyz`): reachable, and its tables
    /// readable.
    async fn check_ready(&self) -> Result<()>;
    /// Puts everything committed into the main database file (the embedded database: a full
    /// checkpoint of its write-ahead log), so that a stopped server leaves one whole file.
    /// Called at shutdown, after the last request.
    async fn flush(&self) -> Result<()>;
    async fn default_tenant(&self) -> Result<TenantId>;
    /// How the nodes sharing this database tell each other about sign-in events; None for a
    /// database only one node uses (the embedded one).
    fn events(&self) -> Option<&dyn EventBus> {
        None
    }
    /// A new, empty tenant (organisation).
    async fn create_tenant(&self, name: &str, now: UnixTime) -> Result<TenantId>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User>;
    async fn find_user(&self, id: UserId) -> Result<Option<User>>;
    /// Usernames are matched case-insensitively.
    async fn find_user_by_username(&self, tenant: TenantId, username: &str)
        -> Result<Option<User>>;
    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>>;
    async fn count_admins(&self, tenant: TenantId) -> Result<i64>;
    async fn update_user_password(&self, id: UserId, hash: Option<&str>) -> Result<()>;
    /// Blocks the user in one write: the flag, the end of every session and the cancellation
    /// of pending requests; a crash leaves all of it or none. None: no such user.
    async fn block_user(&self, id: UserId, now: UnixTime) -> Result<Option<Blocked>>;
    /// Unblocks the user and lifts a fraud report's block on phone requests. False: no such
    /// user.
    async fn unblock_user(&self, id: UserId) -> Result<bool>;
    /// Sets (or lifts) the block on requests to the user's phone that a fraud report sets.
    async fn update_user_push_blocked(&self, id: UserId, at: Option<UnixTime>) -> Result<()>;
    /// The method must belong to the user (None clears the default).
    async fn update_default_method(&self, id: UserId, method: Option<MethodId>) -> Result<()>;
    async fn update_signin_preference(
        &self,
        user: UserId,
        choice: Option<SignInChoice>,
    ) -> Result<()>;
    async fn delete_user(&self, id: UserId) -> Result<bool>;
}

#[async_trait]
pub trait GroupStore: Send + Sync {
    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group>;
    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>>;
    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>>;
    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>>;
    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>>;
    /// False when the user already was a member.
    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool>;
    /// False when the user was not a member.
    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool>;
    /// Removes the group and its memberships; false if there was no such group.
    async fn delete_group(&self, group: GroupId) -> Result<bool>;
}

#[async_trait]
pub trait MethodStore: Send + Sync {
    /// Keeps a secret being set up (sealed) until it is confirmed; returns its id.
    async fn create_totp_enrollment(
        &self,
        user: UserId,
        secret: &SecretBytes,
        expires_at: UnixTime,
    ) -> Result<String>;
    async fn find_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>>;
    /// Removes and returns an unexpired enrolment: of two concurrent confirmations one wins.
    async fn take_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>>;
    /// `used_step` is the step of the code that confirmed the enrolment; it cannot sign in.
    async fn create_totp_method(
        &self,
        user: UserId,
        label: &str,
        secret: &SecretBytes,
        used_step: i64,
        now: UnixTime,
    ) -> Result<Method>;
    async fn list_methods(&self, user: UserId) -> Result<Vec<Method>>;
    async fn delete_method(&self, user: UserId, method: MethodId) -> Result<bool>;
    /// Deletes every method and failure counter of the user; returns how many methods.
    async fn delete_all_methods(&self, user: UserId) -> Result<u64>;
    /// Atomically records `step` as used if it is later than every step used before.
    async fn claim_totp_step(&self, method: MethodId, step: i64, now: UnixTime) -> Result<bool>;
}

/// Failed-attempt counters, per user and method kind, shared by every node.
#[async_trait]
pub trait AttemptStore: Send + Sync {
    /// Consecutive failures and the moment of the last one.
    async fn find_failures(
        &self,
        user: UserId,
        kind: MethodKind,
    ) -> Result<(u32, Option<UnixTime>)>;
    /// Compare-and-set: counts one more failure at `now` only if the count is still `seen`
    /// (0 for a counter that does not exist yet). False: someone else counted first.
    async fn count_failure_if(
        &self,
        user: UserId,
        kind: MethodKind,
        seen: u32,
        now: UnixTime,
    ) -> Result<bool>;
    async fn clear_failures(&self, user: UserId, kind: MethodKind) -> Result<()>;

    /// Decides whether an attempt may be evaluated and, if so, counts it as a failure up front
    /// (cleared by [`AttemptStore::clear_failures`] on success), so that parallel attempts can
    /// never evaluate more than the policy allows. The database orders racing attempts: each
    /// is counted by a compare-and-set on the count it was judged by.
    async fn reserve_attempt(
        &self,
        user: UserId,
        kind: MethodKind,
        policy: &LockoutPolicy,
        now: UnixTime,
    ) -> Result<AttemptGate> {
        reserve_attempt_by_compare_and_set(self, user, kind, policy, now).await
    }
}

/// [`AttemptStore::reserve_attempt`] from its parts: read the counter, judge, count by a
/// compare-and-set on the count judged, again if another attempt counted first. (A backend
/// may answer the common case in fewer statements and fall back to this.)
pub async fn reserve_attempt_by_compare_and_set<S: AttemptStore + ?Sized>(
    store: &S,
    user: UserId,
    kind: MethodKind,
    policy: &LockoutPolicy,
    now: UnixTime,
) -> Result<AttemptGate> {
    // Bounded: each lost round means another attempt was counted, and the gate closes after
    // the policy's limit, so this settles long before the bound.
    for _ in 0..10_000 {
        let (failures, last) = store.find_failures(user, kind).await?;
        let gate = policy.gate(failures, last, now);
        if gate != AttemptGate::Open {
            return Ok(gate);
        }
        if store.count_failure_if(user, kind, failures, now).await? {
            return Ok(AttemptGate::Open);
        }
    }
    Err(StoreError::Database(
        "attempt counter contention did not settle".into(),
    ))
}

/// Wrong passwords in a row, per scope (`sesame_core::guessing::Scope::key`: an account name,
/// a known browser, a client address), shared by every node.
#[async_trait]
pub trait GuessStore: Send + Sync {
    /// The stored count of `key` and the moment of its last wrong password (absent: 0).
    async fn find_guesses(&self, key: &str) -> Result<(u32, Option<UnixTime>)>;
    /// Compare-and-set: sets the count of `key` to `to` at `now` only if it is still `seen`
    /// (0 for a key with no row). False: someone else counted first.
    async fn set_guesses_if(&self, key: &str, seen: u32, to: u32, now: UnixTime) -> Result<bool>;
    /// Forgets the counts of `keys` and of every key starting with one of `prefixes`; returns
    /// how many counts were forgotten.
    async fn clear_guesses(&self, keys: &[String], prefixes: &[String]) -> Result<u64>;
    /// The counts under keys starting with `prefix`: (key, count, last wrong password).
    async fn list_guesses(&self, prefix: &str) -> Result<Vec<(String, u32, UnixTime)>>;
    /// Takes back one wrong password counted against `key` up front (the password turned out
    /// right for a shared scope, or was never checked). The moment of the last one stays.
    async fn refund_guess(&self, key: &str) -> Result<()>;
    /// Forgets counts whose last wrong password is older than `before`, except those at or
    /// past `keep_from` (a lock that lasts until an administrator lifts it). Nothing else ever
    /// removes the counts of names nobody has.
    async fn prune_guesses(&self, before: UnixTime, keep_from: u32) -> Result<u64>;

    /// Decides whether a password may be checked against `key` now and, if so, counts it as
    /// wrong up front (forgotten by [`GuessStore::clear_guesses`] when it was right), so that
    /// parallel guesses never check more than the throttle allows.
    async fn reserve_guess(
        &self,
        key: &str,
        throttle: &Throttle,
        now: UnixTime,
    ) -> Result<AttemptGate> {
        // Bounded: each lost round means another guess was counted, and the gate closes
        // after the throttle's free guesses, so this settles long before the bound.
        for _ in 0..10_000 {
            let (failures, last) = self.find_guesses(key).await?;
            let gate = throttle.gate(failures, last, now);
            if gate != AttemptGate::Open {
                return Ok(gate);
            }
            let to = throttle.in_force(failures, last, now).saturating_add(1);
            if self.set_guesses_if(key, failures, to, now).await? {
                return Ok(AttemptGate::Open);
            }
        }
        Err(StoreError::Database(
            "password guess counter contention did not settle".into(),
        ))
    }

    /// Counts one more wrong password against `key` (after the fact, whatever the gate says).
    async fn count_guess(&self, key: &str, throttle: &Throttle, now: UnixTime) -> Result<()> {
        for _ in 0..10_000 {
            let (failures, last) = self.find_guesses(key).await?;
            let to = throttle.in_force(failures, last, now).saturating_add(1);
            if self.set_guesses_if(key, failures, to, now).await? {
                return Ok(());
            }
        }
        Err(StoreError::Database(
            "password guess counter contention did not settle".into(),
        ))
    }
}

#[async_trait]
pub trait SignInStore: Send + Sync {
    async fn create_signin(&self, record: &SignInRecord) -> Result<()>;
    async fn find_signin(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SignInRecord>>;
    /// Compare-and-set: succeeds only if the row is still at `expected_version`.
    async fn update_signin_state(
        &self,
        id_hash: &[u8],
        expected_version: i64,
        state: &SignInState,
    ) -> Result<bool>;
    async fn delete_signin(&self, id_hash: &[u8]) -> Result<()>;
    /// Ends every sign-in in progress that has found the user (a new password: nobody who
    /// passed the old one may finish); returns how many.
    async fn end_user_signins(&self, user: UserId) -> Result<u64>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn create_session(
        &self,
        id_hash: &[u8],
        tenant: TenantId,
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()>;
    /// Ends a finished sign-in in one transaction: creates the session, deletes the sign-in
    /// transaction, records the user's last sign-in and appends the audit line.
    /// With `approval`, the approved challenge is consumed (approved -> consumed) in the same
    /// transaction, and nothing is written unless that succeeds: then the result is false. The
    /// notification method of the device that approved it is then last used `now`.
    /// A sign-in transaction that no longer exists (ended by a new password, or finished by
    /// another tab) makes no session either: false (an approval it carried is spent).
    #[allow(clippy::too_many_arguments)]
    async fn complete_signin(
        &self,
        signin_id_hash: &[u8],
        session_id_hash: &[u8],
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
        audit: &AuditEvent,
        approval: Option<&ChallengeId>,
    ) -> Result<bool>;
    async fn find_session(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SessionRecord>>;
    async fn touch_session(
        &self,
        id_hash: &[u8],
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()>;
    async fn revoke_session(&self, id_hash: &[u8], now: UnixTime) -> Result<()>;
    async fn revoke_user_sessions(&self, user: UserId, now: UnixTime) -> Result<u64>;
    /// Ends every session of the user but the one of `keep` (the user changing their own
    /// password stays signed in where they did it); returns how many ended.
    async fn revoke_other_sessions(&self, user: UserId, keep: &[u8], now: UnixTime) -> Result<u64>;
}

/// First-administrator set-up links.
#[async_trait]
pub trait SetupStore: Send + Sync {
    /// Records a new set-up token; every earlier one stops working in the same write (only the
    /// newest printed link works).
    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()>;
    async fn consume_setup_token(&self, token_hash: &[u8], now: UnixTime) -> Result<bool>;
    async fn is_setup_token_valid(&self, token_hash: &[u8], now: UnixTime) -> Result<bool>;
}

/// The authenticator app's registrations: activation codes, devices, request nonces, PIN keys.
#[async_trait]
pub trait DeviceStore: Send + Sync {
    async fn create_activation(
        &self,
        user: UserId,
        code_hash: &[u8],
        expires_at: UnixTime,
    ) -> Result<()>;
    /// Marks an unexpired, unused activation code used; returns its user. Single use.
    async fn consume_activation(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<UserId>>;
    /// Whether an activation code has been used, and by which device (for the waiting page).
    async fn find_activation_device(
        &self,
        user: UserId,
        code_hash: &[u8],
    ) -> Result<Option<Option<DeviceId>>>;
    /// Creates the device with its push method and a TOTP method, all or nothing, and
    /// records it on the activation code.
    async fn create_device(
        &self,
        new: NewDevice,
        activation_hash: &[u8],
        totp_secret: &SecretBytes,
        now: UnixTime,
    ) -> Result<Device>;
    async fn find_device(&self, id: &DeviceId) -> Result<Option<Device>>;
    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>>;
    /// Deletes the device, its methods, and cancels its user's pending challenges (returned).
    async fn delete_device(&self, user: UserId, id: &DeviceId) -> Result<Option<Vec<ChallengeId>>>;
    async fn touch_device(&self, row: DeviceRow, now: UnixTime) -> Result<()>;
    /// Records a request nonce; false if this device used it before (a replay).
    async fn claim_device_nonce(
        &self,
        row: DeviceRow,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool>;
    /// Registers the device's PIN key. With `replacing` = None only a device without one may;
    /// otherwise the stored key must still be exactly `replacing` and not disabled (a
    /// compare-and-set, so a stale or racing rotation fails).
    async fn set_pin_key(
        &self,
        row: DeviceRow,
        key: &[u8],
        replacing: Option<&[u8]>,
    ) -> Result<bool>;
    /// Records the result of checking a signature against the PIN key `key`, in one
    /// compare-and-set: only while the key is still `key`, not disabled and below `max`
    /// consecutive failures. Racing checks are thus ordered by the database, and no result
    /// counts (nor may be revealed) once `max` invalid ones in a row turned the key off.
    async fn record_pin_check(
        &self,
        row: DeviceRow,
        key: &[u8],
        valid: bool,
        max: i64,
        now: UnixTime,
    ) -> Result<PinOutcome>;
    /// Turns the PIN key (and so phone sign-in) off; true if this call did.
    async fn disable_pin_key(&self, row: DeviceRow, now: UnixTime) -> Result<bool>;
    /// Forgets a disabled or unwanted PIN key (the user allows phone sign-in again, or an
    /// administrator resets it); the app registers a new one.
    async fn clear_pin_key(&self, user: UserId, id: &DeviceId) -> Result<bool>;
    /// Turns phone sign-in on (`Some(now)`) or off for a device; either way a request to turn
    /// it on is forgotten, with its code.
    async fn set_phone_sign_in(&self, row: DeviceRow, at: Option<UnixTime>) -> Result<()>;
    /// Records that the app asked to turn phone sign-in on (it waits for the person), with
    /// the random `code` the app and My security info show for this request; a new request
    /// replaces the code of the one before.
    async fn request_phone_sign_in(&self, row: DeviceRow, now: UnixTime, code: &str) -> Result<()>;
    /// The person confirmed: phone sign-in goes on, if the app asked at or after
    /// `requested_since` and the PIN key is registered and working. False: nothing to confirm.
    async fn confirm_phone_sign_in(
        &self,
        row: DeviceRow,
        requested_since: UnixTime,
        now: UnixTime,
    ) -> Result<bool>;
}

/// Out-of-band approvals (requests to the phone) and their one-winner transitions.
#[async_trait]
pub trait ApprovalStore: Send + Sync {
    /// Creates a pending challenge, superseding the user's pending ones of the kinds
    /// `sesame_core::push::superseded_by` names (their ids are returned so the phone can be
    /// told). `audit`, if given, is written in the same write.
    async fn create_challenge(
        &self,
        new: NewChallenge,
        now: UnixTime,
        audit: Option<&AuditEvent>,
    ) -> Result<(ChallengeRecord, Vec<ChallengeId>)>;
    /// Requests of `kind` sent to the user since `since` from `browser` (None: from browsers
    /// not known to be the user's): the push budget, per kind and per known browser.
    async fn count_challenges_since(
        &self,
        user: UserId,
        kind: ChallengeKind,
        browser: Option<&[u8]>,
        since: UnixTime,
    ) -> Result<u32>;
    async fn find_challenge(&self, id: &ChallengeId) -> Result<Option<ChallengeRecord>>;
    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>>;
    /// The user's pending, unexpired challenges, oldest first.
    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>>;
    /// The one atomic answer: pending and unexpired -> `to`. Of racing answers exactly one
    /// wins. In the same write the audit line is written and:
    /// - for an approval, the user's failed approvals (`push` counter) are cleared;
    /// - for a fraud report, requests to the user's phone are blocked and every other pending
    ///   request of the user is cancelled (returned), so that a crash cannot leave the
    ///   reporter unblocked.
    async fn answer_challenge(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        device: Option<DeviceRow>,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<Answered>;
    /// approved -> consumed: at most one session per approval.
    async fn consume_challenge(&self, id: &ChallengeId) -> Result<bool>;
    /// Cancels the user's pending challenges; returns their ids.
    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<ChallengeId>>;
    /// Cancels the pending challenges of one sign-in (and no other); returns their ids.
    async fn cancel_signin_challenges(&self, signin_id_hash: &[u8]) -> Result<Vec<ChallengeId>>;
}

/// The authentication methods policy of each tenant.
#[async_trait]
pub trait PolicyStore: Send + Sync {
    /// The tenant's policy and its version, or None while nobody has set one.
    async fn find_policy(&self, tenant: TenantId) -> Result<Option<(MethodsPolicy, i64)>>;
    /// What deciding the policy for `user` needs, read in one snapshot (every request of a
    /// sign-in asks): the tenant's policy version, the policy itself unless the caller already
    /// holds `known_version` (so callers can keep the parsed policy and skip reading and
    /// parsing it again), and the user's groups.
    async fn find_policy_for_user(
        &self,
        tenant: TenantId,
        user: UserId,
        known_version: Option<i64>,
    ) -> Result<PolicyRead>;
    /// Saves the policy if it is still at `expected_version` (0: never saved) and appends the
    /// audit line in the same write. False: someone else changed it first.
    async fn save_policy(
        &self,
        tenant: TenantId,
        policy: &MethodsPolicy,
        expected_version: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool>;
}

#[async_trait]
pub trait AuditStore: Send + Sync {
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    /// Newest first, at most `filter.limit` lines (100 when 0).
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;
}

/// OpenID Connect: signing keys, applications, codes, refresh token families, revoked access
/// tokens and remembered consent. Single use is the database's: a code or a refresh token is
/// taken by one conditional update, and a second use revokes what the first issued.
#[async_trait]
pub trait OidcStore: Send + Sync {
    /// Adds a key. A current key (not retired) is added only while its algorithm has none:
    /// false when another one is current already (another node made it first; read it).
    async fn add_signing_key(&self, key: &SigningKey) -> Result<bool>;
    /// Every key, retired ones too, oldest first.
    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>>;
    /// Rotation, in one write: retires every current key of `key`'s algorithm at `now` and
    /// adds `key`, which signs from then on; returns how many were retired.
    async fn replace_signing_key(&self, key: &SigningKey, now: UnixTime) -> Result<u64>;
    /// Forgets keys retired before `before` (their overlap is over).
    async fn remove_signing_keys_retired_before(&self, before: UnixTime) -> Result<u64>;

    async fn create_client(&self, client: &Client) -> Result<()>;
    async fn find_client(&self, client_id: &str) -> Result<Option<Client>>;
    async fn list_clients(&self, tenant: TenantId) -> Result<Vec<Client>>;
    /// Replaces what can change: name, URIs, flags, algorithm, secret.
    async fn update_client(&self, client: &Client) -> Result<bool>;
    /// Removes the client and everything issued to it.
    async fn remove_client(&self, client_id: &str) -> Result<bool>;

    async fn create_code(
        &self,
        code_hash: &[u8],
        grant: &OidcGrant,
        expires_at: UnixTime,
    ) -> Result<()>;
    /// Takes the code for `client_id` and, in the same transaction, starts `family` with its
    /// first refresh token. A code used before revokes the family it issued.
    async fn redeem_code(
        &self,
        code_hash: &[u8],
        client_id: &str,
        family: &NewFamily,
        refresh_hash: &[u8],
        now: UnixTime,
    ) -> Result<Redeemed>;
    /// Takes the refresh token and stores `new_hash` in its family; a token used before
    /// revokes its family.
    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        now: UnixTime,
    ) -> Result<Rotated>;
    /// Whether the family still stands (not revoked, not expired).
    async fn family_active(&self, family: &str, now: UnixTime) -> Result<bool>;
    async fn revoke_family(&self, family: &str, now: UnixTime) -> Result<bool>;
    /// Revokes the family of a refresh token of `client_id` (RFC 7009); false if unknown.
    async fn revoke_refresh_token(
        &self,
        hash: &[u8],
        client_id: &str,
        now: UnixTime,
    ) -> Result<bool>;
    /// Revokes every family of the user (a sign-out, a blocked user, a new password).
    async fn revoke_user_families(&self, user: UserId, now: UnixTime) -> Result<u64>;
    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<()>;
    async fn access_token_revoked(&self, jti: &str) -> Result<bool>;

    async fn find_consent(&self, user: UserId, client_id: &str) -> Result<Option<String>>;
    async fn save_consent(
        &self,
        user: UserId,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<()>;
    /// Forgets expired codes, families and revocations.
    async fn prune_oidc(&self, now: UnixTime) -> Result<u64>;
}

/// Phone numbers (as methods), the codes texted to them, the send limits, delivery reports,
/// and the embedded outbox.
#[async_trait]
pub trait PhoneStore: Send + Sync {
    /// Sets the user's number in `slot` (E.164) in one write: the slot's methods are replaced
    /// by one of each kind the slot gives, and a default method that was one of them becomes
    /// the new method of the same kind. Returns the new methods.
    async fn save_phone(
        &self,
        user: UserId,
        slot: PhoneSlot,
        number: &str,
        extension: Option<&str>,
        now: UnixTime,
    ) -> Result<Vec<Method>>;
    /// Records that a method was used to sign in.
    async fn touch_method(&self, method: MethodId, now: UnixTime) -> Result<()>;

    /// Stores the one live code of (user, purpose), replacing an earlier one (a resend makes
    /// the old code useless).
    async fn put_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()>;
    /// Takes the code if it is the live one of (user, purpose), for this number, unexpired:
    /// true once, then never again.
    async fn take_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
    ) -> Result<bool>;
    /// Forgets the live code of (user, purpose), if any.
    async fn drop_phone_code(&self, user: UserId, purpose: &str) -> Result<()>;

    /// Counts one send against every key in one write, unless a key already has `limit`
    /// sends since `since`; then nothing is counted and that key is returned.
    async fn reserve_phone_send(
        &self,
        keys: &[String],
        limit: u32,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Option<String>>;

    /// Records a text handed to a gateway (`status` is what the gateway said first).
    async fn record_message(
        &self,
        reference: &str,
        user: Option<UserId>,
        status: &str,
        now: UnixTime,
    ) -> Result<()>;
    /// A delivery report; false for a reference Sesame never sent.
    async fn update_message_status(
        &self,
        reference: &str,
        status: &str,
        detail: Option<&str>,
        now: UnixTime,
    ) -> Result<bool>;
    /// The status of the last text sent to the user (`queued`, `sent`, `delivered`,
    /// `failed`), if any.
    async fn last_message_status(&self, user: UserId) -> Result<Option<String>>;

    async fn outbox_add(&self, item: &OutboxItem) -> Result<i64>;
    /// The newest first, at most `limit`.
    async fn outbox_list(&self, limit: u32) -> Result<Vec<OutboxItem>>;
    async fn outbox_find(&self, id: i64) -> Result<Option<OutboxItem>>;
    /// A ringing call ends as `state`; false if it had ended already (answered once).
    async fn outbox_answer(&self, id: i64, state: &str, now: UnixTime) -> Result<bool>;
}

/// Temporary Access Passes: one per user at most.
#[async_trait]
pub trait AccessPassStore: Send + Sync {
    /// Gives `user` a pass (its keyed hash), replacing any other.
    async fn create_access_pass(
        &self,
        user: UserId,
        pass_hash: &[u8],
        one_time: bool,
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()>;
    /// The user's pass, if one is set and unexpired at `now`.
    async fn find_access_pass(&self, user: UserId, now: UnixTime) -> Result<Option<AccessPass>>;
    /// Signs in with a pass: true if `pass_hash` is the user's unexpired pass. A one-time pass
    /// is taken in the same statement (of racing uses, one wins).
    async fn use_access_pass(&self, user: UserId, pass_hash: &[u8], now: UnixTime) -> Result<bool>;
    /// Removes the user's pass; false if there was none.
    async fn revoke_access_pass(&self, user: UserId) -> Result<bool>;
}

/// What a node hears from the others (see [`TenantStore::events`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    /// An event another node published.
    Message(String),
    /// Events may have been missed (the connection to the database broke): re-read what is
    /// pending from the tables.
    Resync,
}

/// Events between the nodes of one database. Only a wake-up: whoever hears one reads the
/// tables, so a lost or repeated event never changes an outcome.
pub trait EventBus: Send + Sync {
    /// Sends to every other node (not this one), in the order published.
    fn publish(&self, payload: String);
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<BusEvent>;
}
