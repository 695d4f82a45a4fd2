//! STUB: to be ported from ../sqlite/devices.rs (every method fails until then).
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
impl DeviceStore for PgStore {
    async fn create_activation(
        &self,
        user: UserId,
        code_hash: &[u8],
        expires_at: UnixTime,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn consume_activation(&self, code_hash: &[u8], now: UnixTime) -> Result<Option<UserId>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_activation_device(
        &self,
        user: UserId,
        code_hash: &[u8],
    ) -> Result<Option<Option<DeviceId>>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn create_device(
        &self,
        new: NewDevice,
        activation_hash: &[u8],
        totp_secret: &SecretBytes,
        now: UnixTime,
    ) -> Result<Device> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_device(&self, id: &DeviceId) -> Result<Option<Device>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_devices(&self, user: UserId) -> Result<Vec<Device>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn delete_device(&self, user: UserId, id: &DeviceId) -> Result<Option<Vec<ChallengeId>>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn touch_device(&self, row: DeviceRow, now: UnixTime) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn claim_device_nonce(
        &self,
        row: DeviceRow,
        nonce: &str,
        expires_at: UnixTime,
        now: UnixTime,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn set_pin_key(
        &self,
        row: DeviceRow,
        key: &[u8],
        replacing: Option<&[u8]>,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn record_pin_check(
        &self,
        row: DeviceRow,
        key: &[u8],
        valid: bool,
        max: i64,
        now: UnixTime,
    ) -> Result<PinOutcome> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn disable_pin_key(&self, row: DeviceRow, now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn clear_pin_key(&self, user: UserId, id: &DeviceId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn set_phone_sign_in(&self, row: DeviceRow, at: Option<UnixTime>) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn request_phone_sign_in(&self, row: DeviceRow, now: UnixTime, code: &str) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn confirm_phone_sign_in(
        &self,
        row: DeviceRow,
        requested_since: UnixTime,
        now: UnixTime,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
