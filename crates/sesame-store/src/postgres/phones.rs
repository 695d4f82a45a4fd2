//! STUB: to be ported from ../sqlite/phones.rs (every method fails until then).
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
impl PhoneStore for PgStore {
    async fn save_phone(
        &self,
        user: UserId,
        slot: PhoneSlot,
        number: &str,
        extension: Option<&str>,
        now: UnixTime,
    ) -> Result<Vec<Method>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn touch_method(&self, method: MethodId, now: UnixTime) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn put_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
        expires_at: UnixTime,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn take_phone_code(
        &self,
        user: UserId,
        purpose: &str,
        number_tag: &[u8],
        code_hash: &[u8],
        now: UnixTime,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn drop_phone_code(&self, user: UserId, purpose: &str) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn reserve_phone_send(
        &self,
        keys: &[String],
        limit: u32,
        since: UnixTime,
        now: UnixTime,
    ) -> Result<Option<String>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn record_message(
        &self,
        reference: &str,
        user: Option<UserId>,
        status: &str,
        now: UnixTime,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_message_status(
        &self,
        reference: &str,
        status: &str,
        detail: Option<&str>,
        now: UnixTime,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn last_message_status(&self, user: UserId) -> Result<Option<String>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn outbox_add(&self, item: &OutboxItem) -> Result<i64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn outbox_list(&self, limit: u32) -> Result<Vec<OutboxItem>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn outbox_find(&self, id: i64) -> Result<Option<OutboxItem>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn outbox_answer(&self, id: i64, state: &str, now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
