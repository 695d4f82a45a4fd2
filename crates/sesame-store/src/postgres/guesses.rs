//! STUB: to be ported from ../sqlite/guesses.rs (every method fails until then).
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
impl GuessStore for PgStore {
    async fn find_guesses(&self, key: &str) -> Result<(u32, Option<UnixTime>)> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn set_guesses_if(&self, key: &str, seen: u32, to: u32, now: UnixTime) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn clear_guesses(&self, keys: &[String], prefixes: &[String]) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_guesses(&self, prefix: &str) -> Result<Vec<(String, u32, UnixTime)>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn refund_guess(&self, key: &str) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn prune_guesses(&self, before: UnixTime, keep_from: u32) -> Result<u64> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
