//! Sessions: what a session cookie stands for, how fresh it is, and signing out. Only a
//! finished sign-in creates one (see `signin::finish`).

use super::{Line, Origin, Services};
use sesame_core::audit::Event;
use sesame_core::method::Amr;
use sesame_store::{SessionRecord, StoreError, User};

/// A live session and its user.
#[derive(Clone)]
pub struct Session {
    pub user: User,
    pub record: SessionRecord,
    pub id_hash: Vec<u8>,
}

/// The live session of `token`, if any. Expired sessions and sessions of blocked users are
/// revoked on the spot (so a clock set back later cannot revive them); a live one is touched
/// (its idle timeout starts again).
pub async fn find(svc: &Services, token: &str) -> Result<Option<Session>, StoreError> {
    let id_hash = crate::token::hash(token);
    let now = svc.now();
    let Some(record) = svc.store.find_session(&id_hash, now).await? else {
        // A no-op for unknown or already revoked ids.
        svc.store.revoke_session(&id_hash, now).await?;
        return Ok(None);
    };
    let Some(user) = svc.store.find_user(record.user).await? else {
        return Ok(None);
    };
    if user.is_blocked {
        svc.store.revoke_session(&id_hash, now).await?;
        return Ok(None);
    }
    svc.store
        .touch_session(&id_hash, now, svc.config.session_limits())
        .await?;
    Ok(Some(Session {
        user,
        record,
        id_hash,
    }))
}

impl Session {
    /// Signed in within the last `recent_auth_secs`.
    pub fn is_recent(&self, svc: &Services) -> bool {
        svc.now() - self.record.auth_time < svc.config.recent_auth_secs
    }

    /// Signed in recently and with a second step.
    pub fn has_fresh_second_factor(&self, svc: &Services) -> bool {
        self.is_recent(svc) && self.record.amr.contains(&Amr::Mfa)
    }

    /// This session had no second step although one is needed (the policy requires it, or
    /// the user registered a method), and the user has no method the policy allows to give
    /// one: only My security info is open, to add one.
    pub async fn must_set_up_second_step(&self, svc: &Services) -> Result<bool, StoreError> {
        if self.record.amr.contains(&Amr::Mfa) {
            return Ok(false);
        }
        let methods = svc.store.list_methods(self.user.id).await?;
        let up = svc.user_policy(&self.user).await?;
        if !up.mfa_required && methods.is_empty() {
            return Ok(false);
        }
        Ok(!methods.iter().any(|m| up.allowed.permits(m.kind)))
    }
}

/// Ends the session of `token` (if it is one) and records it.
pub async fn sign_out(svc: &Services, origin: &Origin, token: &str) -> Result<(), StoreError> {
    let hash = crate::token::hash(token);
    if let Ok(Some(s)) = svc.store.find_session(&hash, svc.now()).await {
        let line = match svc.store.find_user(s.user).await {
            Ok(Some(user)) => Line::of(&user, Event::SignOut),
            // The user was removed meanwhile: the line still names the account by its id.
            _ => Line::named(s.tenant, Some(s.user), "", Event::SignOut),
        };
        svc.audit(origin, line).await;
    }
    svc.store.revoke_session(&hash, svc.now()).await
}
