//! STUB: to be ported from ../sqlite/users.rs (every method fails until then).
#![allow(unused)]

use crate::{TenantStore, UserStore, GroupStore, MethodStore, AttemptStore, GuessStore, SignInStore, SessionStore, SetupStore, DeviceStore, ApprovalStore, PolicyStore, AuditStore, OidcStore, PhoneStore, AccessPassStore, 
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


use super::PgStore;

#[async_trait]
impl TenantStore for PgStore {
    async fn check_ready(&self) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn flush(&self) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn default_tenant(&self) -> Result<TenantId> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn create_tenant(&self, name: &str, now: UnixTime) -> Result<TenantId> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}

#[async_trait]
impl UserStore for PgStore {
    async fn create_user(&self, new: NewUser, now: UnixTime) -> Result<User> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_user(&self, id: UserId) -> Result<Option<User>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_user_by_username(&self, tenant: TenantId, username: &str)
        -> Result<Option<User>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_users(&self, tenant: TenantId) -> Result<Vec<User>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn count_admins(&self, tenant: TenantId) -> Result<i64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_user_password(&self, id: UserId, hash: Option<&str>) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn block_user(&self, id: UserId, now: UnixTime) -> Result<Option<Blocked>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn unblock_user(&self, id: UserId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_user_push_blocked(&self, id: UserId, at: Option<UnixTime>) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_default_method(&self, id: UserId, method: Option<MethodId>) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_signin_preference(
        &self,
        user: UserId,
        choice: Option<SignInChoice>,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn delete_user(&self, id: UserId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
