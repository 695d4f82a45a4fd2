//! A user's own changes on My security info: deleting a method and choosing the default.
//! (Adding one is each method's set-up, in `methods/`; devices are in `devices`.)

use super::{Line, Origin, Services};
use sesame_core::audit::Event;
use sesame_core::MethodId;
use sesame_store::{StoreError, User};

/// Deletes one of the user's methods; the default moves to the oldest one left. False: the
/// user has no such method.
pub async fn delete_method(
    svc: &Services,
    origin: &Origin,
    user: &User,
    id: MethodId,
) -> Result<bool, StoreError> {
    let methods = svc.store.list_methods(user.id).await?;
    let Some(m) = methods.iter().find(|m| m.id == id) else {
        return Ok(false);
    };
    if !svc.store.delete_method(user.id, m.id).await? {
        return Ok(false);
    }
    if user.default_method == Some(m.id) {
        let next = methods.iter().find(|x| x.id != m.id).map(|x| x.id);
        svc.store.update_default_method(user.id, next).await?;
    }
    svc.audit(origin, Line::of(user, Event::MethodRemoved).method(m.kind))
        .await;
    Ok(true)
}

/// Makes one of the user's methods the default (the store refuses another user's method).
pub async fn set_default_method(
    svc: &Services,
    origin: &Origin,
    user: &User,
    id: MethodId,
) -> Result<(), StoreError> {
    svc.store.update_default_method(user.id, Some(id)).await?;
    svc.audit(origin, Line::of(user, Event::DefaultMethodChanged))
        .await;
    Ok(())
}

/// What a user's change of their own password came to.
#[derive(Debug)]
pub enum PasswordChange {
    /// Changed; this many of the user's other sessions ended.
    Changed { ended: u64 },
    /// The current password was wrong (counted like a wrong password at sign-in).
    WrongCurrent,
    /// Not checked: too many wrong passwords.
    Held(super::guesses::Held),
    /// The new password is not acceptable.
    Refused(sesame_core::password::PasswordError),
}

/// The user changes their own password on My security info, proving the current one. The
/// current password is counted like a sign-in (a stolen session must not become a way to guess
/// it); on success every other session of the user ends and `session` stays.
pub async fn change_password(
    svc: &Services,
    origin: &Origin,
    session: &super::sessions::Session,
    current: sesame_core::secret::SecretString,
    new: sesame_core::secret::SecretString,
) -> Result<PasswordChange, crate::error::Error> {
    use sesame_core::password;
    let user = &session.user;
    if let Err(e) = password::validate_new(&new) {
        return Ok(PasswordChange::Refused(e));
    }
    let counted = super::guesses::scopes(svc, origin, user.tenant, &user.username, Some(user));
    let line = || Line::of(user, Event::PasswordChanged);
    match counted
        .check(svc, origin, user.password_hash.clone(), current)
        .await?
    {
        super::guesses::Verdict::Held(held) => return Ok(PasswordChange::Held(held)),
        super::guesses::Verdict::Wrong => {
            svc.audit(origin, line().failed("wrong_password")).await;
            return Ok(PasswordChange::WrongCurrent);
        }
        super::guesses::Verdict::Right => {}
    }
    let hash = svc
        .hasher
        .run(&format!("new-password:{}", user.id.0), move || {
            password::hash(&new, &mut rand::rngs::OsRng)
        })
        .await?
        .map_err(|e| crate::error::Error::internal(e.to_string()))?;
    svc.store.update_user_password(user.id, Some(&hash)).await?;
    let ended = svc
        .store
        .revoke_other_sessions(user.id, &session.id_hash, svc.now())
        .await?;
    // Applications signed in with the old password must sign in again, as other sessions do.
    svc.store.revoke_user_families(user.id, svc.now()).await?;
    // Nobody who passed the old password may finish signing in, nor answer a request sent
    // for such a sign-in.
    svc.store.end_user_signins(user.id).await?;
    super::approvals::cancel(svc, user).await?;
    svc.audit(
        origin,
        line().reason(format!("ended {ended} other session(s)")),
    )
    .await;
    Ok(PasswordChange::Changed { ended })
}
