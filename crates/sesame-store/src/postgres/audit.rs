//! STUB: to be ported from ../sqlite/audit.rs (every method fails until then).
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
impl AuditStore for PgStore {
    async fn append_audit(&self, event: &AuditEvent) -> Result<()> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

    async fn list_audit(&self, filter: &AuditFilter) -> Result<Vec<AuditEvent>> {
        Err(StoreError::Database("not yet on PostgreSQL".into()))
    }

}
