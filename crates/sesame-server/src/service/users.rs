//! Administrators' actions on users, for the admin console and `sesame user ...` alike: each
//! makes the same change and writes the same audit line, whichever door it came through.

use super::{Admin, Services};
use crate::error::Error;
use sesame_core::audit::Event;
use sesame_core::method::MethodKind;
use sesame_core::names::{self, NameError};
use sesame_core::password::{self, PasswordError};
use sesame_core::secret::SecretString;
use sesame_core::TenantId;
use sesame_store::{Blocked, NewUser, StoreError, User};

/// Longest username or display name.
pub const MAX_NAME: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a username must have 1 to 256 characters")]
    BadUsername,
    /// Refused by the username rules (RFC 8265, one script, nothing hidden).
    #[error("that username cannot be used: {0}")]
    Username(NameError),
    /// Another user's name looks the same (Unicode TR39 confusables).
    #[error("the username {0:?} looks like the existing user {1:?}; choose another")]
    LooksLike(String, String),
    #[error("the display name can have at most 256 characters")]
    DisplayNameTooLong,
    #[error("that display name cannot be used: {0}")]
    DisplayName(NameError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("a user named {0:?} already exists")]
    Exists(String),
    #[error("{0} is the last administrator; add another administrator first")]
    LastAdministrator(String),
    #[error("you cannot block your own account")]
    OwnAccount,
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The hashing queue is full, or hashing failed.
    #[error(transparent)]
    Server(#[from] Error),
}

/// The username as it will be stored, if it is acceptable: PRECIS UsernameCasePreserved
/// (full-width letters mapped, NFC; it is found by its case-mapped form), in one script,
/// with no control or invisible character.
pub fn check_username(username: &str) -> Result<String, UserError> {
    let u = username.trim();
    if u.is_empty() || u.len() > MAX_NAME {
        return Err(UserError::BadUsername);
    }
    let name = names::username(u).map_err(UserError::Username)?;
    if name.shown.len() > MAX_NAME {
        return Err(UserError::BadUsername);
    }
    Ok(name.shown)
}

/// Refuses a new username that looks like another user's (`аlice` with a Cyrillic `а` beside
/// `alice`): people, and administrators reading the log, could not tell them apart. The same
/// name is left to the store's unique key ("already exists").
pub async fn refuse_look_alike(
    svc: &Services,
    tenant: TenantId,
    username: &str,
) -> Result<(), UserError> {
    let key = sesame_store::name_key(username);
    let skeleton = names::skeleton(username);
    for other in svc.store.list_users(tenant).await? {
        if sesame_store::name_key(&other.username) != key
            && names::skeleton(&other.username) == skeleton
        {
            return Err(UserError::LooksLike(username.to_string(), other.username));
        }
    }
    Ok(())
}

/// A display name as it will be stored: `None` (or blank) means the username.
pub fn check_display_name(display_name: Option<&str>) -> Result<Option<String>, UserError> {
    match display_name.map(str::trim) {
        None | Some("") => Ok(None),
        Some(d) if d.len() > MAX_NAME => Err(UserError::DisplayNameTooLong),
        Some(d) => Ok(Some(
            names::label(d).map_err(UserError::DisplayName)?.to_string(),
        )),
    }
}

/// Validates a new password and hashes it (off the async runtime, bounded).
pub async fn hash_new_password(svc: &Services, pw: SecretString) -> Result<String, UserError> {
    password::validate_new(&pw)?;
    Ok(svc
        .hasher
        // New passwords are set by administrators and signed-in users: a line of their own,
        // apart from sign-ins.
        .run("new-password", move || {
            password::hash(&pw, &mut rand::rngs::OsRng)
        })
        .await??)
}

/// A user to create.
pub struct NewAccount {
    pub username: String,
    /// Defaults to the username.
    pub display_name: Option<String>,
    /// None: the user cannot sign in with a password (until one is set).
    pub password: Option<SecretString>,
    pub admin: bool,
}

pub async fn create(
    svc: &Services,
    admin: &Admin,
    tenant: TenantId,
    new: NewAccount,
) -> Result<User, UserError> {
    let username = check_username(&new.username)?;
    let display_name =
        check_display_name(new.display_name.as_deref())?.unwrap_or_else(|| username.clone());
    refuse_look_alike(svc, tenant, &username).await?;
    let password_hash = match new.password {
        Some(pw) => Some(hash_new_password(svc, pw).await?),
        None => None,
    };
    let record = NewUser {
        tenant,
        username: username.clone(),
        display_name,
        password_hash,
        is_admin: new.admin,
    };
    let user = match svc.store.create_user(record, svc.now()).await {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => return Err(UserError::Exists(username)),
        Err(e) => return Err(e.into()),
    };
    let detail = match (user.is_admin, user.has_password) {
        (true, true) => "administrator, with a password",
        (true, false) => "administrator, without a password",
        (false, true) => "with a password",
        (false, false) => "without a password",
    };
    svc.audit(
        &admin.origin,
        admin.line(tenant, Some(&user), Event::AdminUserCreated, Some(detail)),
    )
    .await;
    Ok(user)
}

/// Sets a new password; every session of the user ends (whoever knew the old password is
/// signed out). Returns how many sessions ended.
pub async fn set_password(
    svc: &Services,
    admin: &Admin,
    user: &User,
    pw: SecretString,
) -> Result<u64, UserError> {
    let hash = hash_new_password(svc, pw).await?;
    svc.store.update_user_password(user.id, Some(&hash)).await?;
    let ended = svc.store.revoke_user_sessions(user.id, svc.now()).await?;
    // Applications signed in with the old password stop being able to refresh.
    svc.store.revoke_user_families(user.id, svc.now()).await?;
    // Nobody who passed the old password may finish signing in, nor answer a request sent
    // for such a sign-in.
    svc.store.end_user_signins(user.id).await?;
    super::approvals::cancel(svc, user).await?;
    let detail = format!("ended {ended} session(s)");
    svc.audit(
        &admin.origin,
        admin.line(
            user.tenant,
            Some(user),
            Event::AdminPasswordSet,
            Some(&detail),
        ),
    )
    .await;
    Ok(ended)
}

/// Refuses every sign-in of the user from now on: their sessions end and the requests
/// pending on their phone are withdrawn, in one write.
pub async fn block(svc: &Services, admin: &Admin, user: &User) -> Result<Blocked, UserError> {
    // An administrator who blocks themselves ends their own session and may leave nobody to
    // undo it; since the acting administrator stays unblocked, one administrator remains.
    if admin.user == Some(user.id) {
        return Err(UserError::OwnAccount);
    }
    let blocked = svc
        .store
        .block_user(user.id, svc.now())
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("user {}", user.id)))?;
    for id in &blocked.cancelled {
        svc.hub.closed(user.id, id.clone(), "cancelled");
    }
    // Applications' refresh tokens (and the access tokens they issued) end too.
    svc.store.revoke_user_families(user.id, svc.now()).await?;
    let detail = format!("ended {} session(s)", blocked.sessions_ended);
    svc.audit(
        &admin.origin,
        admin.line(
            user.tenant,
            Some(user),
            Event::AdminUserBlocked,
            Some(&detail),
        ),
    )
    .await;
    Ok(blocked)
}

/// Lets the user sign in again, and lifts the block on phone requests a fraud report set.
pub async fn unblock(svc: &Services, admin: &Admin, user: &User) -> Result<(), UserError> {
    if !svc.store.unblock_user(user.id).await? {
        return Err(StoreError::NotFound(format!("user {}", user.id)).into());
    }
    svc.audit(
        &admin.origin,
        admin.line(user.tenant, Some(user), Event::AdminUserUnblocked, None),
    )
    .await;
    Ok(())
}

/// Clears every failed-attempt counter of the user: codes and approvals, and wrong
/// passwords by name and in each known browser (lifts soft and hard locks).
pub async fn unlock(svc: &Services, admin: &Admin, user: &User) -> Result<(), UserError> {
    for k in MethodKind::ALL {
        svc.store.clear_failures(user.id, k).await?;
    }
    super::guesses::forget(svc, user).await?;
    svc.audit(
        &admin.origin,
        admin.line(user.tenant, Some(user), Event::AdminUserUnlocked, None),
    )
    .await;
    Ok(())
}

/// What resetting a user's methods removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reset {
    pub methods: u64,
    pub devices: u64,
}

/// For a lost phone: every method goes, and so does every registered device, since a device
/// left behind could still approve requests and sign in with phone sign-in. Pending requests
/// stop at once.
pub async fn reset_methods(svc: &Services, admin: &Admin, user: &User) -> Result<Reset, UserError> {
    // Methods first: removing a device takes its methods with it, and the count should say
    // how many methods the user lost.
    let methods = svc.store.delete_all_methods(user.id).await?;
    let mut devices = 0;
    for d in svc.store.list_devices(user.id).await? {
        if super::devices::remove(svc, &admin.origin, user, &d.id).await? {
            devices += 1;
        }
    }
    super::approvals::cancel(svc, user).await?;
    let detail = format!("{methods} method(s) and {devices} device(s) removed");
    svc.audit(
        &admin.origin,
        admin.line(
            user.tenant,
            Some(user),
            Event::AdminMethodsReset,
            Some(&detail),
        ),
    )
    .await;
    Ok(Reset { methods, devices })
}

/// Deletes the user and everything they own; the last administrator stays.
pub async fn remove(svc: &Services, admin: &Admin, user: &User) -> Result<(), UserError> {
    if user.is_admin && svc.store.count_admins(user.tenant).await? == 1 {
        return Err(UserError::LastAdministrator(user.username.clone()));
    }
    for id in svc.store.cancel_pending_challenges(user.id).await? {
        svc.hub.closed(user.id, id, "cancelled");
    }
    svc.store.revoke_user_families(user.id, svc.now()).await?;
    svc.store.delete_user(user.id).await?;
    svc.audit(
        &admin.origin,
        admin.line(user.tenant, Some(user), Event::AdminUserRemoved, None),
    )
    .await;
    Ok(())
}
