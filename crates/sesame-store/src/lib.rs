//! The `Store` port and its backends. SQLite (embedded, the default) lives in [`sqlite`]; a
//! PostgreSQL backend implements the same trait and passes the same conformance suite.
//!
//! Rules every backend keeps:
//! - single use is enforced by the database (conditional `UPDATE`, `DELETE ... RETURNING`,
//!   compare-and-set on a version), never by a read-then-write in application code;
//! - secrets at rest are sealed with the [`crypto::MasterKey`], the row identity as
//!   associated data;
//! - time comes in as a parameter (`now`), never from the database clock.

pub mod crypto;
pub mod sqlite;

use async_trait::async_trait;
use serde::Serialize;
use sesame_core::lockout::{AttemptGate, LockoutPolicy};
use sesame_core::method::{Amr, MethodKind};
use sesame_core::policy::MethodsPolicy;
use sesame_core::push::ChallengeState;
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{CompletedSignIn, SignInState};
use sesame_core::{GroupId, MethodId, TenantId, UnixTime, UserId};

pub use crypto::MasterKey;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} already exists")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
    #[error("a stored secret could not be decrypted (wrong master key?)")]
    Decrypt,
    #[error("database error: {0}")]
    Database(String),
    #[error("database migration failed: {0}")]
    Migration(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub tenant: TenantId,
    pub username: String,
    pub display_name: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub has_password: bool,
    pub is_admin: bool,
    pub is_blocked: bool,
    pub default_method: Option<MethodId>,
    pub created_at: UnixTime,
    /// Set when the user chose "Deny and report": no pushes until an administrator unblocks.
    pub push_blocked_at: Option<UnixTime>,
    pub last_signin_at: Option<UnixTime>,
    /// "app" or "password": the user's last choice on the sign-in page.
    pub signin_preference: Option<String>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant: TenantId,
    pub username: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub id: GroupId,
    pub tenant: TenantId,
    pub name: String,
    pub member_count: i64,
    pub created_at: UnixTime,
}

/// A registered authentication method, with its secret decrypted.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub id: MethodId,
    pub user: UserId,
    pub kind: MethodKind,
    pub label: String,
    #[serde(skip)]
    pub totp_secret: Option<SecretBytes>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// The device a method belongs to (the authenticator app's push and codes).
    pub device: Option<String>,
}

/// A registered authenticator app.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    #[serde(skip)]
    pub row_id: i64,
    pub id: String,
    pub tenant: TenantId,
    pub user: UserId,
    pub name: String,
    pub alg: String,
    #[serde(skip)]
    pub public_key: Vec<u8>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// The PIN key (SEC1 P-256 point) registered by the app, if any.
    #[serde(skip)]
    pub pin_key: Option<Vec<u8>>,
    pub pin_key_failures: i64,
    /// Set when 10 consecutive invalid PIN signatures turned the PIN key off.
    pub pin_key_disabled_at: Option<UnixTime>,
    /// Set while the user has phone sign-in turned on for this device.
    pub phone_sign_in_at: Option<UnixTime>,
}

impl Device {
    pub fn has_pin_key(&self) -> bool {
        self.pin_key.is_some()
    }

    /// Phone sign-in is on and its key still works (policy is judged separately, at use).
    pub fn phone_sign_in_ready(&self) -> bool {
        self.phone_sign_in_at.is_some()
            && self.pin_key.is_some()
            && self.pin_key_disabled_at.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub tenant: TenantId,
    pub user: UserId,
    pub name: String,
    pub alg: String,
    pub public_key: Vec<u8>,
}

/// A sign-in request waiting for (or answered by) the phone.
#[derive(Debug, Clone, Serialize)]
pub struct ChallengeRecord {
    pub id: String,
    pub tenant: TenantId,
    pub user: UserId,
    #[serde(skip)]
    pub signin_id_hash: Vec<u8>,
    pub kind: String,
    pub nonce: String,
    #[serde(skip)]
    pub number: String,
    pub state: ChallengeState,
    pub app_name: String,
    pub ip: String,
    pub location: String,
    pub user_agent: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub answered_at: Option<UnixTime>,
    /// Row id of the device that answered.
    #[serde(skip)]
    pub answered_by: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct NewChallenge {
    pub tenant: TenantId,
    pub user: UserId,
    pub signin_id_hash: Vec<u8>,
    pub kind: String,
    pub number: String,
    pub app_name: String,
    pub ip: String,
    pub location: String,
    pub user_agent: String,
    pub expires_at: UnixTime,
}

/// A sign-in transaction row; `version` makes every state change a compare-and-set.
#[derive(Debug, Clone)]
pub struct SignInRecord {
    pub id_hash: Vec<u8>,
    pub tenant: TenantId,
    pub username: String,
    pub state: SignInState,
    pub version: i64,
    pub next_path: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub tenant: TenantId,
    pub user: UserId,
    pub amr: Vec<Amr>,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Success,
    Failure,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
        }
    }
}

/// One line of the audit log: every sign-in attempt and every security-info change.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: UnixTime,
    pub tenant: TenantId,
    pub user: Option<UserId>,
    pub username: String,
    pub ip: String,
    pub user_agent: String,
    pub event: String,
    pub method: Option<String>,
    pub result: AuditResult,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<TenantId>,
    pub user: Option<UserId>,
    pub result: Option<AuditResult>,
    pub method: Option<String>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    pub limit: i64,
}

/// The result of one PIN-key signature check (see [`Store::record_pin_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// Valid: the consecutive count starts again.
    Accepted,
    /// Invalid, the `consecutive`-th in a row; `disabled` when this one turned the key off.
    Wrong { consecutive: i64, disabled: bool },
    /// Turned off already: nothing was judged.
    Disabled,
    /// The device has no PIN key, or another one than the signature was checked against.
    NoKey,
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn default_tenant(&self) -> Result<TenantId>;

    // Users.
    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User>;
    async fn find_user(&self, id: UserId) -> Result<Option<User>>;
    /// Usernames are matched case-insensitively.
    async fn find_user_by_username(&self, tenant: TenantId, username: &str)
        -> Result<Option<User>>;
    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>>;
    async fn update_user_password(&self, id: UserId, hash: Option<&str>) -> Result<()>;
    async fn update_user_blocked(&self, id: UserId, blocked: bool) -> Result<()>;
    async fn update_default_method(&self, id: UserId, method: Option<MethodId>) -> Result<()>;
    async fn delete_user(&self, id: UserId) -> Result<bool>;
    async fn count_admins(&self, tenant: TenantId) -> Result<i64>;

    // Groups.
    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group>;
    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>>;
    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>>;
    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>>;
    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>>;
    /// False when the user already was a member.
    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool>;
    /// False when the user was not a member.
    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool>;

    // Methods.
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
    async fn delete_all_methods(&self, user: UserId) -> Result<u64>;
    /// Atomically records `step` as used if it is later than every step used before.
    async fn claim_totp_step(&self, method: MethodId, step: i64, now: UnixTime) -> Result<bool>;

    // Failed-attempt counters, per user and method kind.
    /// Decides whether an attempt may be evaluated and, if so, counts it as a failure up front
    /// (cleared by [`Store::clear_failures`] on success), so that parallel attempts can never
    /// evaluate more than the policy allows.
    async fn reserve_attempt(
        &self,
        user: UserId,
        kind: &str,
        policy: &LockoutPolicy,
        now: UnixTime,
    ) -> Result<AttemptGate>;
    async fn clear_failures(&self, user: UserId, kind: &str) -> Result<()>;
    async fn find_failures(&self, user: UserId, kind: &str) -> Result<(u32, Option<UnixTime>)>;

    // Sign-in transactions.
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

    // Sessions.
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
    /// transaction, and nothing is written unless that succeeds: then the result is false.
    #[allow(clippy::too_many_arguments)]
    async fn complete_signin(
        &self,
        signin_id_hash: &[u8],
        session_id_hash: &[u8],
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
        audit: &AuditEvent,
        approval: Option<&str>,
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

    // First-administrator setup tokens.
    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()>;
    async fn consume_setup_token(&self, token_hash: &[u8], now: UnixTime) -> Result<bool>;
    async fn is_setup_token_valid(&self, token_hash: &[u8], now: UnixTime) -> Result<bool>;

    // Devices (the authenticator app).
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
    ) -> Result<Option<Option<String>>>;
    /// Creates the device with its push method and a TOTP method, all or nothing, and
    /// records it on the activation code.
    async fn create_device(
        &self,
        new: NewDevice,
        activation_hash: &[u8],
        totp_secret: &SecretBytes,
        now: UnixTime,
    ) -> Result<Device>;
    async fn find_device(&self, public_id: &str) -> Result<Option<Device>>;
    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>>;
    /// Deletes the device, its methods, and cancels its user's pending challenges (returned).
    async fn delete_device(&self, user: UserId, public_id: &str) -> Result<Option<Vec<String>>>;
    async fn touch_device(&self, row_id: i64, now: UnixTime) -> Result<()>;
    /// Records a request nonce; false if this device used it before (a replay).
    async fn claim_device_nonce(
        &self,
        row_id: i64,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool>;

    // Challenges.
    /// Creates a pending challenge, superseding the user's other pending ones (their ids are
    /// returned so the phone can be told).
    /// `audit`, if given, is written in the same transaction.
    async fn create_challenge(
        &self,
        new: NewChallenge,
        now: UnixTime,
        audit: Option<&AuditEvent>,
    ) -> Result<(ChallengeRecord, Vec<String>)>;
    async fn count_challenges_since(&self, user: UserId, since: UnixTime) -> Result<u32>;
    async fn find_challenge(&self, public_id: &str) -> Result<Option<ChallengeRecord>>;
    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>>;
    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>>;
    /// The one atomic answer: pending and unexpired -> `to`. Of racing answers exactly one wins.
    /// In the same transaction the audit line is written and, for an approval, the user's
    /// failed approvals (`push` attempt counter) are cleared.
    async fn answer_challenge(
        &self,
        public_id: &str,
        to: ChallengeState,
        device_row: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool>;
    /// approved -> consumed: at most one session per approval.
    async fn consume_challenge(&self, public_id: &str) -> Result<bool>;
    /// Cancels the user's pending challenges; returns their ids.
    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<String>>;
    async fn update_user_push_blocked(&self, user: UserId, at: Option<UnixTime>) -> Result<()>;
    async fn update_user_last_signin(&self, user: UserId, at: UnixTime) -> Result<()>;

    // PIN keys and phone sign-in.
    /// Registers the device's PIN key. With `replacing` = None only a device without one may;
    /// otherwise the stored key must still be exactly `replacing` and not disabled (a
    /// compare-and-set, so a stale or racing rotation fails).
    async fn set_pin_key(&self, row_id: i64, key: &[u8], replacing: Option<&[u8]>) -> Result<bool>;
    /// Records the result of checking a signature against the PIN key `key`, in one
    /// compare-and-set: only while the key is still `key`, not disabled and below `max`
    /// consecutive failures. Racing checks are thus ordered by the database, and no result
    /// counts (nor may be revealed) once `max` invalid ones in a row turned the key off.
    async fn record_pin_check(
        &self,
        row_id: i64,
        key: &[u8],
        valid: bool,
        max: i64,
        now: UnixTime,
    ) -> Result<PinOutcome>;
    /// Turns the PIN key (and so phone sign-in) off; true if this call did.
    async fn disable_pin_key(&self, row_id: i64, now: UnixTime) -> Result<bool>;
    /// Forgets a disabled or unwanted PIN key (the user allows phone sign-in again, or an
    /// administrator resets it); the app registers a new one.
    async fn clear_pin_key(&self, user: UserId, public_id: &str) -> Result<bool>;
    /// Turns phone sign-in on (`Some(now)`) or off for a device.
    async fn set_phone_sign_in(&self, row_id: i64, at: Option<UnixTime>) -> Result<()>;
    async fn update_signin_preference(&self, user: UserId, choice: Option<&str>) -> Result<()>;

    // The authentication methods policy.
    /// The tenant's policy and its version, or None while nobody has set one.
    async fn find_policy(&self, tenant: TenantId) -> Result<Option<(MethodsPolicy, i64)>>;
    /// What deciding the policy for `user` needs, read together (every request of a sign-in
    /// asks): the tenant's policy as `find_policy` gives it, and the ids of the user's groups.
    async fn find_policy_for_user(
        &self,
        tenant: TenantId,
        user: UserId,
    ) -> Result<(Option<(MethodsPolicy, i64)>, Vec<GroupId>)> {
        let policy = self.find_policy(tenant).await?;
        let groups = self.list_user_groups(user).await?;
        Ok((policy, groups.into_iter().map(|g| g.id).collect()))
    }
    /// Saves the policy if it is still at `expected_version` (0: never saved) and appends the
    /// audit line in the same transaction. False: someone else changed it first.
    async fn save_policy(
        &self,
        tenant: TenantId,
        policy: &MethodsPolicy,
        expected_version: i64,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<bool>;

    // Audit log.
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;
}

/// Lower-cases a username or group name for uniqueness and lookup.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}
