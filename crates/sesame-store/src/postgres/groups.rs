//! STUB: to be ported from ../sqlite/groups.rs (every method fails until then).
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
impl GroupStore for PgStore {
    async fn create_group(&self, tenant: TenantId, name: &str, now: UnixTime) -> Result<Group> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn find_group_by_name(&self, tenant: TenantId, name: &str) -> Result<Option<Group>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_groups(&self, tenant: TenantId) -> Result<Vec<Group>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_user_groups(&self, user: UserId) -> Result<Vec<Group>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_group_members(&self, group: GroupId) -> Result<Vec<User>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn add_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn remove_group_member(&self, group: GroupId, user: UserId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn delete_group(&self, group: GroupId) -> Result<bool> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
