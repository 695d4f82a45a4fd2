//! STUB: to be ported from ../sqlite/approvals.rs (every method fails until then).
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
impl ApprovalStore for PgStore {
    async fn create_challenge(
        &self,
        new: NewChallenge,
        now: UnixTime,
        audit: Option<&AuditEvent>,
    ) -> Result<(ChallengeRecord, Vec<ChallengeId>)> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn count_challenges_since(
        &self,
        user: UserId,
        kind: ChallengeKind,
        browser: Option<&[u8]>,
        since: UnixTime,
    ) -> Result<u32> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_challenge(&self, id: &ChallengeId) -> Result<Option<ChallengeRecord>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_latest_challenge_for_signin(
        &self,
        signin_id_hash: &[u8],
    ) -> Result<Option<ChallengeRecord>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_pending_challenges(
        &self,
        user: UserId,
        now: UnixTime,
    ) -> Result<Vec<ChallengeRecord>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn answer_challenge(
        &self,
        id: &ChallengeId,
        to: ChallengeState,
        device: Option<DeviceRow>,
        now: UnixTime,
        audit: &AuditEvent,
    ) -> Result<Answered> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn consume_challenge(&self, id: &ChallengeId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn cancel_pending_challenges(&self, user: UserId) -> Result<Vec<ChallengeId>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn cancel_signin_challenges(&self, signin_id_hash: &[u8]) -> Result<Vec<ChallengeId>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
