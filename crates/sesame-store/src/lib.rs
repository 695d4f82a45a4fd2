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
    pub limit: i64,
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

    // Audit log.
    async fn append_audit(&self, event: &AuditEvent) -> Result<()>;
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>>;
}

/// Lower-cases a username or group name for uniqueness and lookup.
pub fn name_key(name: &str) -> String {
    name.trim().to_lowercase()
}
