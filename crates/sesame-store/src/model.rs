//! The records the store reads and writes.

use serde::Serialize;
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::method::{Amr, MethodKind};
use sesame_core::policy::MethodsPolicy;
use sesame_core::push::{ApprovalChannel, ChallengeKind, ChallengeState};
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{SignInChoice, SignInState};
use sesame_core::{ChallengeId, DeviceId, GroupId, MethodId, TenantId, UnixTime, UserId};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct User {
    pub id: UserId,
    pub tenant: TenantId,
    pub username: String,
    pub display_name: String,
    #[serde(skip)]
    pub password_hash: Option<String>,
    pub has_password: bool,
    pub is_admin: bool,
    pub is_blocked: bool,
    pub default_method: Option<MethodId>,
    pub created_at: UnixTime,
    /// Set when the user chose "Deny and report": no pushes until an administrator unblocks.
    pub push_blocked_at: Option<UnixTime>,
    pub last_signin_at: Option<UnixTime>,
    /// The user's last choice on the sign-in page.
    pub signin_preference: Option<SignInChoice>,
}

#[derive(Debug, Clone)]
pub struct NewUser {
    pub tenant: TenantId,
    pub username: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Group {
    pub id: GroupId,
    pub tenant: TenantId,
    pub name: String,
    pub member_count: i64,
    pub created_at: UnixTime,
}

/// A registered authentication method, with its secret decrypted.
#[derive(Debug, Clone, Serialize)]
pub struct Method {
    pub id: MethodId,
    pub user: UserId,
    pub kind: MethodKind,
    pub label: String,
    #[serde(skip)]
    pub totp_secret: Option<SecretBytes>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// The device a method belongs to (the authenticator app's push and codes).
    pub device: Option<DeviceId>,
    /// The number (E.164) of a text or call method; personal data, never serialised.
    #[serde(skip)]
    pub phone: Option<String>,
    /// Digits dialled after an office phone answers.
    #[serde(skip)]
    pub extension: Option<String>,
}

/// A text or call kept by the embedded outbox instead of being sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxItem {
    pub id: i64,
    /// `sms` or `call`.
    pub kind: String,
    pub reference: String,
    pub to: String,
    pub extension: Option<String>,
    /// The text of a message, or the words a call says.
    pub body: String,
    /// A message: `delivered`. A call: `ringing`, then how it ended (`approved`, `fraud`,
    /// `not_answered`, `rejected`, `no_key`).
    pub state: String,
    pub created_at: UnixTime,
    pub answered_at: Option<UnixTime>,
}

/// A device's row in its backend: what the device API's hot path works with, once the
/// device has been found by its public [`DeviceId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DeviceRow(pub i64);

/// A registered authenticator app.
#[derive(Debug, Clone, Serialize)]
pub struct Device {
    #[serde(skip)]
    pub row_id: DeviceRow,
    pub id: DeviceId,
    pub tenant: TenantId,
    pub user: UserId,
    pub name: String,
    pub alg: String,
    #[serde(skip)]
    pub public_key: Vec<u8>,
    pub created_at: UnixTime,
    pub last_used_at: Option<UnixTime>,
    /// The PIN key (SEC1 P-256 point) registered by the app, if any.
    #[serde(skip)]
    pub pin_key: Option<Vec<u8>>,
    pub pin_key_failures: i64,
    /// Set when 10 consecutive invalid PIN signatures turned the PIN key off.
    pub pin_key_disabled_at: Option<UnixTime>,
    /// Set while the user has phone sign-in turned on for this device.
    pub phone_sign_in_at: Option<UnixTime>,
    /// When the app asked to turn phone sign-in on; it waits for the person to confirm.
    pub phone_sign_in_requested_at: Option<UnixTime>,
    /// The random code of that request (`XXXX-XXXX`), which the app and My security info
    /// show; only the owner sees it, on My security info while the request waits.
    #[serde(skip)]
    pub phone_sign_in_code: Option<String>,
}

impl Device {
    pub fn has_pin_key(&self) -> bool {
        self.pin_key.is_some()
    }

    /// Phone sign-in is on and its key still works (policy is judged separately, at use).
    pub fn phone_sign_in_ready(&self) -> bool {
        self.phone_sign_in_at.is_some()
            && self.pin_key.is_some()
            && self.pin_key_disabled_at.is_none()
    }
}

#[derive(Debug, Clone)]
pub struct NewDevice {
    pub tenant: TenantId,
    pub user: UserId,
    pub name: String,
    pub alg: String,
    pub public_key: Vec<u8>,
}

/// An out-of-band approval: a sign-in request waiting for (or answered by) the person, on
/// whichever channel reaches them.
#[derive(Debug, Clone, Serialize)]
pub struct ChallengeRecord {
    pub id: ChallengeId,
    pub tenant: TenantId,
    pub user: UserId,
    #[serde(skip)]
    pub signin_id_hash: Vec<u8>,
    pub kind: ChallengeKind,
    pub channel: ApprovalChannel,
    pub nonce: String,
    #[serde(skip)]
    pub number: String,
    pub state: ChallengeState,
    pub app_name: String,
    pub ip: String,
    pub location: String,
    pub user_agent: String,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    pub answered_at: Option<UnixTime>,
    /// The device that answered.
    #[serde(skip)]
    pub answered_by: Option<DeviceRow>,
}

#[derive(Debug, Clone)]
pub struct NewChallenge {
    pub tenant: TenantId,
    pub user: UserId,
    pub signin_id_hash: Vec<u8>,
    pub kind: ChallengeKind,
    pub channel: ApprovalChannel,
    pub number: String,
    pub app_name: String,
    pub ip: String,
    pub location: String,
    pub user_agent: String,
    pub expires_at: UnixTime,
    /// A keyed hash of the browser's device cookie, when it showed the user signed in there
    /// before: the push budget is counted per such browser, apart from unknown browsers.
    pub browser: Option<Vec<u8>>,
    /// The request budget, checked in the same write that creates the request (so racing
    /// sign-ins on several nodes cannot all pass a check made before): refused with
    /// [`crate::StoreError::Refused`] while the user's phone is blocked by a fraud report, or
    /// when `limit` requests of this kind from this browser were made since `since`.
    pub budget: Option<Budget>,
}

/// See [`NewChallenge::budget`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub limit: u32,
    pub since: UnixTime,
}

/// What an answer to a challenge did (see [`crate::ApprovalStore::answer_challenge`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answered {
    /// False: the challenge was no longer pending (or had expired); nothing was written.
    pub answered: bool,
    /// For a fraud report: the user's other pending requests, cancelled in the same write.
    pub cancelled: Vec<ChallengeId>,
}

/// A sign-in transaction row; `version` makes every state change a compare-and-set.
#[derive(Debug, Clone)]
pub struct SignInRecord {
    pub id_hash: Vec<u8>,
    pub tenant: TenantId,
    pub username: String,
    pub state: SignInState,
    pub version: i64,
    pub next_path: Option<String>,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
}

#[derive(Debug, Clone)]
pub struct SessionRecord {
    pub tenant: TenantId,
    pub user: UserId,
    pub amr: Vec<Amr>,
    pub auth_time: UnixTime,
    pub created_at: UnixTime,
    pub last_seen_at: UnixTime,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    pub idle_secs: i64,
    pub absolute_secs: i64,
}

/// What blocking a user did, all in one write (see [`crate::UserStore::block_user`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocked {
    pub sessions_ended: u64,
    /// Pending requests to the user's phone, cancelled.
    pub cancelled: Vec<ChallengeId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditResult {
    Success,
    Failure,
}

impl AuditResult {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditResult::Success => "success",
            AuditResult::Failure => "failure",
        }
    }
}

/// One line of the audit log: every sign-in attempt and every security-info change.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEvent {
    pub id: i64,
    pub at: UnixTime,
    pub tenant: TenantId,
    pub user: Option<UserId>,
    pub username: String,
    pub ip: String,
    pub user_agent: String,
    pub event: Event,
    pub method: Option<AuditMethod>,
    pub result: AuditResult,
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub tenant: Option<TenantId>,
    pub user: Option<UserId>,
    pub result: Option<AuditResult>,
    pub method: Option<AuditMethod>,
    pub since: Option<UnixTime>,
    pub until: Option<UnixTime>,
    pub limit: i64,
}

/// The result of one PIN-key signature check (see [`crate::DeviceStore::record_pin_check`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// Valid: the consecutive count starts again.
    Accepted,
    /// Invalid, the `consecutive`-th in a row; `disabled` when this one turned the key off.
    Wrong { consecutive: i64, disabled: bool },
    /// Turned off already: nothing was judged.
    Disabled,
    /// The device has no PIN key, or another one than the signature was checked against.
    NoKey,
}

/// What deciding the policy for one user reads, in one snapshot (see
/// [`crate::PolicyStore::find_policy_for_user`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRead {
    /// The tenant's policy version; None while nobody has saved a policy.
    pub version: Option<i64>,
    /// The policy at `version`, unless that is the version the caller already holds.
    pub policy: Option<MethodsPolicy>,
    /// The user's groups.
    pub groups: Vec<GroupId>,
}

/// A key that signs OpenID Connect tokens. The private half is sealed at rest (associated
/// data: the kid); a retired key signs nothing more but stays published for a while.
#[derive(Debug, Clone)]
pub struct SigningKey {
    pub kid: String,
    /// `RS256`, `ES256` or `EdDSA`.
    pub alg: String,
    /// PKCS#8 DER.
    pub private_key: SecretBytes,
    /// The public JWK, as published (JSON).
    pub public_jwk: String,
    pub created_at: UnixTime,
    pub retired_at: Option<UnixTime>,
}

/// An application that signs its users in through Sesame (an OpenID Connect client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Client {
    pub client_id: String,
    pub tenant: TenantId,
    /// What people are shown: on the sign-in pages and on the phone ("the application asking").
    pub name: String,
    /// SHA-256 of the secret; None for a public client (which must use PKCE).
    #[serde(skip)]
    pub secret_hash: Option<Vec<u8>>,
    pub redirect_uris: Vec<String>,
    pub post_logout_redirect_uris: Vec<String>,
    /// Skips the consent page.
    pub first_party: bool,
    /// Every sign-in for this application completes a second step.
    pub require_mfa: bool,
    pub id_token_alg: String,
    /// May use the client credentials grant (needs a secret).
    pub client_credentials: bool,
    pub created_at: UnixTime,
    pub secret_set_at: Option<UnixTime>,
}

/// What an authorization code or a refresh token grants: to which application, for whom, and
/// how that person signed in. Written once, with the code; carried to each refresh token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct OidcGrant {
    pub tenant: TenantId,
    pub user: UserId,
    pub client_id: String,
    pub scope: String,
    pub redirect_uri: String,
    pub nonce: Option<String>,
    /// The PKCE S256 challenge.
    pub code_challenge: Option<String>,
    pub auth_time: UnixTime,
    pub amr: Vec<String>,
    pub acr: String,
    /// The session the sign-in made (its public id), for logout.
    pub sid: Option<String>,
}

/// A new refresh token family: what one authorization code issued.
#[derive(Debug, Clone)]
pub struct NewFamily {
    pub id: String,
    pub expires_at: UnixTime,
}

/// What redeeming an authorization code came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The code was good: its grant, and the family it now heads.
    Issued(Box<OidcGrant>),
    /// Already used: what it issued is revoked now.
    Replayed,
    /// No such code for this client, or expired.
    Unknown,
}

/// What presenting a refresh token came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rotated {
    /// A new refresh token replaces it, in the same family.
    Rotated {
        grant: Box<OidcGrant>,
        family: String,
    },
    /// Used before: the whole family is revoked now.
    Reused,
    /// No such token for this client, or its family ended.
    Unknown,
}

/// A user's Temporary Access Pass, without the pass itself (only its hash is stored).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AccessPass {
    pub one_time: bool,
    pub created_at: UnixTime,
    pub expires_at: UnixTime,
    /// When it was last used to sign in.
    pub used_at: Option<UnixTime>,
}
