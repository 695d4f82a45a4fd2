//! STUB: to be ported from ../sqlite/methods.rs (every method fails until then).
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
impl MethodStore for PgStore {
    async fn create_totp_enrollment(
        &self,
        user: UserId,
        secret: &SecretBytes,
        expires_at: UnixTime,
    ) -> Result<String> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn take_totp_enrollment(
        &self,
        user: UserId,
        id: &str,
        now: UnixTime,
    ) -> Result<Option<SecretBytes>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn create_totp_method(
        &self,
        user: UserId,
        label: &str,
        secret: &SecretBytes,
        used_step: i64,
        now: UnixTime,
    ) -> Result<Method> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_methods(&self, user: UserId) -> Result<Vec<Method>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn delete_method(&self, user: UserId, method: MethodId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn delete_all_methods(&self, user: UserId) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn claim_totp_step(&self, method: MethodId, step: i64, now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}

#[async_trait]
impl AttemptStore for PgStore {
    async fn find_failures(
        &self,
        user: UserId,
        kind: MethodKind,
    ) -> Result<(u32, Option<UnixTime>)> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn count_failure_if(
        &self,
        user: UserId,
        kind: MethodKind,
        seen: u32,
        now: UnixTime,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn clear_failures(&self, user: UserId, kind: MethodKind) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
