//! STUB: to be ported from ../sqlite/signins.rs (every method fails until then).
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
impl SignInStore for PgStore {
    async fn create_signin(&self, record: &SignInRecord) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_signin(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SignInRecord>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_signin_state(
        &self,
        id_hash: &[u8],
        expected_version: i64,
        state: &SignInState,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn delete_signin(&self, id_hash: &[u8]) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn end_user_signins(&self, user: UserId) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}

#[async_trait]
impl SessionStore for PgStore {
    async fn create_session(
        &self,
        id_hash: &[u8],
        tenant: TenantId,
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn complete_signin(
        &self,
        signin_id_hash: &[u8],
        session_id_hash: &[u8],
        signin: &CompletedSignIn,
        now: UnixTime,
        limits: SessionLimits,
        audit: &AuditEvent,
        approval: Option<&ChallengeId>,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_session(&self, id_hash: &[u8], now: UnixTime) -> Result<Option<SessionRecord>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn touch_session(
        &self,
        id_hash: &[u8],
        now: UnixTime,
        limits: SessionLimits,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_session(&self, id_hash: &[u8], now: UnixTime) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_user_sessions(&self, user: UserId, now: UnixTime) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_other_sessions(&self, user: UserId, keep: &[u8], now: UnixTime) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}

#[async_trait]
impl SetupStore for PgStore {
    async fn create_setup_token(&self, token_hash: &[u8], expires_at: UnixTime) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn consume_setup_token(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn is_setup_token_valid(&self, token_hash: &[u8], now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
