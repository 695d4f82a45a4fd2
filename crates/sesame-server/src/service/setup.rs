//! First-run set-up: while a tenant has no administrator, `sesame serve` prints a one-time
//! link to a page where the first administrator is created. Only the newest link works until
//! it is used, and none once an administrator exists.

use super::{Line, Origin, Services};
use crate::error::Error;
use sesame_core::audit::Event;
use sesame_core::password::PasswordError;
use sesame_core::secret::SecretString;
use sesame_core::TenantId;
use sesame_store::{NewUser, StoreError, User};

/// How long a printed set-up link works.
pub const SETUP_LINK_SECS: i64 = 24 * 3600;

/// If the tenant has no administrator yet, makes a fresh one-time set-up token and returns the
/// path (`/setup?token=...`) to print.
pub async fn ensure_setup_link(
    svc: &Services,
    tenant: TenantId,
) -> Result<Option<String>, StoreError> {
    if svc.store.count_admins(tenant).await? > 0 {
        return Ok(None);
    }
    let token = crate::token::random();
    svc.store
        .create_setup_token(&crate::token::hash(&token), svc.now() + SETUP_LINK_SECS)
        .await?;
    Ok(Some(format!("/setup?token={token}")))
}

/// Whether `token` is the newest set-up link, unused and unexpired, and nobody administers the
/// tenant yet (an administrator made with `sesame user add --admin` ends every link).
pub async fn link_is_valid(
    svc: &Services,
    tenant: TenantId,
    token: &str,
) -> Result<bool, StoreError> {
    Ok(svc.store.count_admins(tenant).await? == 0
        && svc
            .store
            .is_setup_token_valid(&crate::token::hash(token), svc.now())
            .await?)
}

/// The set-up form as submitted.
pub struct FirstAdmin {
    pub token: String,
    pub username: String,
    pub display_name: String,
    pub password: SecretString,
    pub confirm: SecretString,
}

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("the set-up link is not valid")]
    InvalidLink,
    #[error("enter a username (at most 256 characters)")]
    BadUsername,
    /// The username or display name is refused (hidden characters, look-alikes...).
    #[error(transparent)]
    Name(super::users::UserError),
    #[error("the passwords do not match")]
    Mismatch,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("that username is taken")]
    Taken,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Server(#[from] Error),
}

pub async fn create_first_admin(
    svc: &Services,
    origin: &Origin,
    tenant: TenantId,
    f: FirstAdmin,
) -> Result<User, SetupError> {
    let hash = crate::token::hash(&f.token);
    if !link_is_valid(svc, tenant, &f.token).await? {
        return Err(SetupError::InvalidLink);
    }
    let username = match super::users::check_username(&f.username) {
        Ok(u) => u,
        Err(super::users::UserError::BadUsername) => return Err(SetupError::BadUsername),
        Err(e) => return Err(SetupError::Name(e)),
    };
    let display_name = super::users::check_display_name(Some(&f.display_name))
        .map_err(SetupError::Name)?
        .unwrap_or_else(|| username.clone());
    // Users made on the command line before the set-up link was used are there already.
    super::users::refuse_look_alike(svc, tenant, &username)
        .await
        .map_err(SetupError::Name)?;
    if f.password.expose() != f.confirm.expose() {
        return Err(SetupError::Mismatch);
    }
    let hashed = match super::users::hash_new_password(svc, f.password).await {
        Ok(h) => h,
        Err(super::users::UserError::Password(e)) => return Err(e.into()),
        Err(super::users::UserError::Server(e)) => return Err(e.into()),
        Err(e) => return Err(Error::internal(e.to_string()).into()),
    };
    // Consuming the token is the single-use point; a second submission finds it used. An
    // administrator made meanwhile (the hash above takes a while) ends the link too.
    if svc.store.count_admins(tenant).await? > 0
        || !svc.store.consume_setup_token(&hash, svc.now()).await?
    {
        return Err(SetupError::InvalidLink);
    }
    let new = NewUser {
        tenant,
        username,
        display_name,
        password_hash: Some(hashed),
        is_admin: true,
    };
    let user = match svc.store.create_user(new, svc.now()).await {
        Ok(u) => u,
        Err(StoreError::Conflict(_)) => return Err(SetupError::Taken),
        Err(e) => return Err(e.into()),
    };
    svc.audit(
        origin,
        Line::of(&user, Event::AdminCreated).reason("setup_link"),
    )
    .await;
    Ok(user)
}

/// Signs the administrator just created in (they typed the password a moment ago): a session
/// as a password sign-in makes, which lands on the console's welcome. Returns the finished
/// transaction and the session token.
pub async fn sign_in_first_admin(
    svc: &Services,
    origin: &Origin,
    tenant: TenantId,
    user: &User,
) -> Result<Option<(sesame_store::SignInRecord, String)>, crate::error::Error> {
    use sesame_core::audit::AuditMethod;
    use sesame_core::signin::SignInEvent;
    let started = super::signin::start(
        svc,
        tenant,
        &user.username,
        Some(user),
        Some("/admin?done=welcome".into()),
        false,
    )
    .await?;
    let rec = started.record;
    let Ok(done) = super::signin::advance(
        svc,
        &rec,
        SignInEvent::PasswordAccepted {
            user: user.id,
            second_factors: Vec::new(),
        },
    )
    .await
    else {
        return Ok(None);
    };
    let token = super::signin::finish(
        svc,
        origin,
        &rec,
        &done,
        user,
        AuditMethod::Password,
        None,
        None,
    )
    .await?;
    Ok(token.map(|t| (rec, t)))
}
