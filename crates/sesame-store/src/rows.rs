//! Row decoders shared by both backends: each record is read from a row once, over [`Cells`].
//!
//! A decoder asks for each cell with the Rust type it wants, and each backend converts it as its
//! driver always did: SQLite's INTEGER 0/1 becomes a `bool` through rusqlite, PostgreSQL's
//! BOOLEAN through tokio-postgres. So the decoders hold no backend differences; where the two
//! schemas name a record's columns alike, the column list is here too.

use crate::crypto::MasterKey;
use crate::{
    AuditEvent, AuditResult, ChallengeRecord, Client, Device, DeviceRow, Group, Method, OutboxItem,
    Result, SigningKey, StoreError, User,
};
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::method::MethodKind;
use sesame_core::push::{ApprovalChannel, ChallengeKind, ChallengeState};
use sesame_core::signin::SignInChoice;
use sesame_core::{ChallengeId, DeviceId, GroupId, MethodId, TenantId, UserId};

/// A value both drivers can read from a cell.
#[cfg(feature = "postgres")]
pub(crate) trait Value:
    rusqlite::types::FromSql + for<'a> tokio_postgres::types::FromSql<'a>
{
}
/// A value both drivers can read from a cell.
#[cfg(not(feature = "postgres"))]
pub(crate) trait Value: rusqlite::types::FromSql {}

impl Value for i64 {}
impl Value for bool {}
impl Value for String {}
impl Value for Vec<u8> {}
impl<T: Value> Value for Option<T> {}

/// A column by name or by position, as both drivers take it.
#[cfg(feature = "postgres")]
pub(crate) trait Col:
    rusqlite::RowIndex + tokio_postgres::row::RowIndex + std::fmt::Display
{
}
/// A column by name or by position, as both drivers take it.
#[cfg(not(feature = "postgres"))]
pub(crate) trait Col: rusqlite::RowIndex {}

impl Col for &str {}
impl Col for usize {}

/// A row of either backend.
pub(crate) trait Cells {
    /// The cell `col` as a `T`; a cell that is not a `T` is the driver's error.
    fn get<T: Value>(&self, col: impl Col) -> Result<T>;
}

impl Cells for rusqlite::Row<'_> {
    fn get<T: Value>(&self, col: impl Col) -> Result<T> {
        Ok(rusqlite::Row::get(self, col)?)
    }
}

#[cfg(feature = "postgres")]
impl Cells for tokio_postgres::Row {
    fn get<T: Value>(&self, col: impl Col) -> Result<T> {
        Ok(self.try_get(col)?)
    }
}

/// A name the code does not know, found in the database.
pub(crate) fn unknown(what: &str, value: &str) -> StoreError {
    StoreError::Database(format!("unknown {what} {value:?} in the database"))
}

/// Stored JSON that does not read back.
pub(crate) fn bad_json(e: serde_json::Error) -> StoreError {
    StoreError::Database(e.to_string())
}

/// The columns `user` reads.
pub(crate) const USER_COLUMNS: &str =
    "id, tenant_id, username, display_name, password_hash, is_admin, is_blocked, \
     default_method_id, created_at, push_blocked_at, last_signin_at, signin_preference";

/// A user from a row of [`USER_COLUMNS`].
pub(crate) fn user(r: &impl Cells) -> Result<User> {
    let hash: Option<String> = r.get("password_hash")?;
    let choice: Option<String> = r.get("signin_preference")?;
    Ok(User {
        id: UserId(r.get("id")?),
        tenant: TenantId(r.get("tenant_id")?),
        username: r.get("username")?,
        display_name: r.get("display_name")?,
        has_password: hash.is_some(),
        password_hash: hash,
        is_admin: r.get("is_admin")?,
        is_blocked: r.get("is_blocked")?,
        default_method: r.get::<Option<i64>>("default_method_id")?.map(MethodId),
        created_at: r.get("created_at")?,
        push_blocked_at: r.get("push_blocked_at")?,
        last_signin_at: r.get("last_signin_at")?,
        // Only a hint for the sign-in page: one this version does not know is no choice.
        signin_preference: choice.as_deref().and_then(SignInChoice::parse),
    })
}

/// A group from a row of its backend's `GROUP_SELECT` (which counts the members in each
/// backend's own spelling).
pub(crate) fn group(r: &impl Cells) -> Result<Group> {
    Ok(Group {
        id: GroupId(r.get("id")?),
        tenant: TenantId(r.get("tenant_id")?),
        name: r.get("name")?,
        member_count: r.get("member_count")?,
        created_at: r.get("created_at")?,
    })
}

/// A line of the audit log.
pub(crate) fn audit_event(r: &impl Cells) -> Result<AuditEvent> {
    let result: String = r.get("result")?;
    let event: String = r.get("event")?;
    let method: Option<String> = r.get("method")?;
    Ok(AuditEvent {
        id: r.get("id")?,
        at: r.get("at")?,
        tenant: TenantId(r.get("tenant_id")?),
        user: r.get::<Option<i64>>("user_id")?.map(UserId),
        username: r.get("username")?,
        ip: r.get("ip")?,
        user_agent: r.get("user_agent")?,
        // Names a newer version wrote read back as they are: the log never fails to show.
        event: Event::from_stored(&event),
        method: method.as_deref().map(AuditMethod::from_stored),
        result: if result == "success" {
            AuditResult::Success
        } else {
            AuditResult::Failure
        },
        reason: r.get("reason")?,
    })
}

/// The columns `challenge` reads.
pub(crate) const CHALLENGE_COLUMNS: &str =
    "public_id, tenant_id, user_id, signin_id_hash, kind, channel, nonce, number, state, app_name, \
     ip, location, user_agent, created_at, expires_at, answered_at, answered_by_device";

/// A request to the phone from a row of [`CHALLENGE_COLUMNS`].
pub(crate) fn challenge(r: &impl Cells) -> Result<ChallengeRecord> {
    let state: String = r.get("state")?;
    let kind: String = r.get("kind")?;
    let channel: String = r.get("channel")?;
    Ok(ChallengeRecord {
        id: ChallengeId(r.get("public_id")?),
        tenant: TenantId(r.get("tenant_id")?),
        user: UserId(r.get("user_id")?),
        signin_id_hash: r.get("signin_id_hash")?,
        kind: ChallengeKind::parse(&kind).ok_or_else(|| unknown("challenge kind", &kind))?,
        channel: ApprovalChannel::parse(&channel)
            .ok_or_else(|| unknown("approval channel", &channel))?,
        nonce: r.get("nonce")?,
        number: r.get("number")?,
        state: ChallengeState::parse(&state).ok_or_else(|| unknown("challenge state", &state))?,
        app_name: r.get("app_name")?,
        ip: r.get("ip")?,
        location: r.get("location")?,
        user_agent: r.get("user_agent")?,
        created_at: r.get("created_at")?,
        expires_at: r.get("expires_at")?,
        answered_at: r.get("answered_at")?,
        answered_by: r.get::<Option<i64>>("answered_by_device")?.map(DeviceRow),
    })
}

/// The columns `device` reads.
pub(crate) const DEVICE_COLUMNS: &str =
    "id, public_id, tenant_id, user_id, name, alg, public_key, created_at, last_used_at, \
     pin_key, pin_key_failures, pin_key_disabled_at, phone_sign_in_at, phone_sign_in_requested_at, \
     phone_sign_in_code";

/// A device from a row of [`DEVICE_COLUMNS`].
pub(crate) fn device(r: &impl Cells) -> Result<Device> {
    Ok(Device {
        row_id: DeviceRow(r.get("id")?),
        id: DeviceId(r.get("public_id")?),
        tenant: TenantId(r.get("tenant_id")?),
        user: UserId(r.get("user_id")?),
        name: r.get("name")?,
        alg: r.get("alg")?,
        public_key: r.get("public_key")?,
        created_at: r.get("created_at")?,
        last_used_at: r.get("last_used_at")?,
        pin_key: r.get("pin_key")?,
        pin_key_failures: r.get("pin_key_failures")?,
        pin_key_disabled_at: r.get("pin_key_disabled_at")?,
        phone_sign_in_at: r.get("phone_sign_in_at")?,
        phone_sign_in_requested_at: r.get("phone_sign_in_requested_at")?,
        phone_sign_in_code: r.get("phone_sign_in_code")?,
    })
}

/// The columns `method` reads.
pub(crate) const METHOD_COLUMNS: &str =
    "id, public_id, user_id, kind, label, secret_enc, created_at, last_used_at, phone_slot, extension, \
     (SELECT d.public_id FROM devices d WHERE d.id = methods.device_id) AS device_public_id";

/// A method from a row of [`METHOD_COLUMNS`], its secret opened.
pub(crate) fn method(key: &MasterKey, r: &impl Cells) -> Result<Method> {
    let user = UserId(r.get("user_id")?);
    let public_id: String = r.get("public_id")?;
    let kind: String = r.get("kind")?;
    let kind: MethodKind = kind.parse().map_err(|_| unknown("method kind", &kind))?;
    let sealed: Option<Vec<u8>> = r.get("secret_enc")?;
    let secret = match sealed {
        Some(s) => Some(
            key.open(&crate::crypto::aad::method(&public_id, user), &s)
                .ok_or(StoreError::Decrypt)?,
        ),
        None => None,
    };
    // A phone method's sealed secret is its number.
    let slot: Option<String> = r.get("phone_slot")?;
    let (totp_secret, phone) = match (slot, secret) {
        (Some(_), Some(s)) => (
            None,
            Some(String::from_utf8(s.expose().to_vec()).map_err(|_| StoreError::Decrypt)?),
        ),
        (_, s) => (s, None),
    };
    Ok(Method {
        id: MethodId(r.get("id")?),
        user,
        kind,
        label: r.get("label")?,
        totp_secret,
        created_at: r.get("created_at")?,
        last_used_at: r.get("last_used_at")?,
        device: r.get::<Option<String>>("device_public_id")?.map(DeviceId),
        phone,
        extension: r.get("extension")?,
    })
}

/// The columns `client` reads, in its order.
pub(crate) const CLIENT_COLUMNS: &str = "client_id, tenant_id, name, secret_hash, redirect_uris, \
     post_logout_redirect_uris, first_party, require_mfa, id_token_alg, client_credentials, \
     created_at, secret_set_at";

/// An OpenID Connect client from a row of [`CLIENT_COLUMNS`].
pub(crate) fn client(r: &impl Cells) -> Result<Client> {
    let uris = |i: usize| -> Result<Vec<String>> {
        serde_json::from_str(&r.get::<String>(i)?).map_err(bad_json)
    };
    Ok(Client {
        client_id: r.get(0)?,
        tenant: TenantId(r.get(1)?),
        name: r.get(2)?,
        secret_hash: r.get(3)?,
        redirect_uris: uris(4)?,
        post_logout_redirect_uris: uris(5)?,
        first_party: r.get(6)?,
        require_mfa: r.get(7)?,
        id_token_alg: r.get(8)?,
        client_credentials: r.get(9)?,
        created_at: r.get(10)?,
        secret_set_at: r.get(11)?,
    })
}

/// The columns `signing_key` reads, in its order.
pub(crate) const SIGNING_KEY_COLUMNS: &str =
    "kid, alg, private_key, public_jwk, created_at, retired_at";

/// A signing key as stored: its private key still sealed.
pub(crate) type SealedSigningKey = (String, String, Vec<u8>, String, i64, Option<i64>);

/// A signing key from a row of [`SIGNING_KEY_COLUMNS`], still sealed: the rows are all read
/// before any is opened.
pub(crate) fn signing_key(r: &impl Cells) -> Result<SealedSigningKey> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

/// A stored signing key, its private key opened.
pub(crate) fn open_signing_key(key: &MasterKey, row: SealedSigningKey) -> Result<SigningKey> {
    let (kid, alg, sealed, public_jwk, created_at, retired_at) = row;
    let private_key = key
        .open(&crate::crypto::aad::signing_key(&kid), &sealed)
        .ok_or(StoreError::Decrypt)?;
    Ok(SigningKey {
        kid,
        alg,
        private_key,
        public_jwk,
        created_at,
        retired_at,
    })
}

/// The columns `outbox_item` reads, in its order.
pub(crate) const OUTBOX_COLUMNS: &str =
    "id, kind, reference, to_number, extension, body, state, created_at, answered_at";

/// A message of the outbox from a row of [`OUTBOX_COLUMNS`].
pub(crate) fn outbox_item(r: &impl Cells) -> Result<OutboxItem> {
    Ok(OutboxItem {
        id: r.get(0)?,
        kind: r.get(1)?,
        reference: r.get(2)?,
        to: r.get(3)?,
        extension: r.get(4)?,
        body: r.get(5)?,
        state: r.get(6)?,
        created_at: r.get(7)?,
        answered_at: r.get(8)?,
    })
}
