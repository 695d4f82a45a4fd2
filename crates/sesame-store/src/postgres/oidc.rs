//! STUB: to be ported from ../sqlite/oidc.rs (every method fails until then).
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
impl OidcStore for PgStore {
    async fn add_signing_key(&self, key: &SigningKey) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_signing_keys(&self) -> Result<Vec<SigningKey>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn retire_signing_keys(&self, alg: &str, keep: &str, now: UnixTime) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn remove_signing_keys_retired_before(&self, before: UnixTime) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn create_client(&self, client: &Client) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_client(&self, client_id: &str) -> Result<Option<Client>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_clients(&self, tenant: TenantId) -> Result<Vec<Client>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn update_client(&self, client: &Client) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn remove_client(&self, client_id: &str) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn create_code(
        &self,
        code_hash: &[u8],
        grant: &OidcGrant,
        expires_at: UnixTime,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn redeem_code(
        &self,
        code_hash: &[u8],
        client_id: &str,
        family: &NewFamily,
        refresh_hash: &[u8],
        now: UnixTime,
    ) -> Result<Redeemed> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn rotate_refresh(
        &self,
        old_hash: &[u8],
        client_id: &str,
        new_hash: &[u8],
        now: UnixTime,
    ) -> Result<Rotated> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn family_active(&self, family: &str, now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_family(&self, family: &str, now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_refresh_token(
        &self,
        hash: &[u8],
        client_id: &str,
        now: UnixTime,
    ) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_user_families(&self, user: UserId, now: UnixTime) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn revoke_access_token(&self, jti: &str, expires_at: UnixTime) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn access_token_revoked(&self, jti: &str) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_consent(&self, user: UserId, client_id: &str) -> Result<Option<String>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn save_consent(
        &self,
        user: UserId,
        client_id: &str,
        scope: &str,
        now: UnixTime,
    ) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn prune_oidc(&self, now: UnixTime) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
