//! The signed-in user as an extractor. Only a finished sign-in creates a session
//! ([`sesame_core::signin::CompletedSignIn`]); here we only read them.

use crate::web::{cookie, see_other, token_hash, SESSION_COOKIE};
use crate::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Response;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use sesame_core::method::Amr;
use sesame_store::{SessionRecord, User};

pub struct SignedIn {
    pub user: User,
    pub session: SessionRecord,
    pub id_hash: Vec<u8>,
}

impl SignedIn {
    /// Signed in within the last `secs` seconds.
    pub fn is_recent(&self, state: &AppState) -> bool {
        state.now() - self.session.auth_time < state.config.recent_auth_secs
    }

    /// Signed in recently and with a second step.
    pub fn has_fresh_second_factor(&self, state: &AppState) -> bool {
        self.is_recent(state) && self.session.amr.contains(&Amr::Mfa)
    }
}

/// Where a user who must add a second step is sent.
pub const SETUP_REQUIRED: &str = "/security-info?setup=required";

impl SignedIn {
    /// The policy requires a second step for this user, this session had none, and the user
    /// has no method to give one (no method the policy allows, no phone sign-in).
    pub async fn must_set_up_second_step(
        &self,
        state: &AppState,
    ) -> Result<bool, sesame_store::StoreError> {
        if self.session.amr.contains(&Amr::Mfa) {
            return Ok(false);
        }
        let up = crate::policy::for_user(state, &self.user).await?;
        if !up.mfa_required {
            return Ok(false);
        }
        let usable = state
            .store
            .list_methods(self.user.id)
            .await?
            .iter()
            .any(|m| match m.kind {
                sesame_core::method::MethodKind::Push => up.allowed.push,
                sesame_core::method::MethodKind::Totp => up.allowed.codes,
            });
        Ok(!usable)
    }
}

/// Where to send someone who must sign in (again) before going to `path`.
pub fn reauth_redirect(path: &str, reauth: bool) -> Response {
    let next = utf8_percent_encode(path, NON_ALPHANUMERIC);
    let flag = if reauth { "reauth=1&" } else { "" };
    see_other(&format!("/login?{flag}next={next}"))
}

impl FromRequestParts<AppState> for SignedIn {
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let to_login = || reauth_redirect(parts.uri.path(), false);
        let Some(token) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let id_hash = token_hash(&token);
        let now = state.now();
        let lookup = async {
            let Some(session) = state.store.find_session(&id_hash, now).await? else {
                // An expired session is marked revoked the first time it is refused, so a clock
                // set back later cannot revive it (SECURITY.md: expired things stay expired).
                // A no-op for unknown or already revoked ids.
                state.store.revoke_session(&id_hash, now).await?;
                return Ok(None);
            };
            let Some(user) = state.store.find_user(session.user).await? else {
                return Ok(None);
            };
            if user.is_blocked {
                state.store.revoke_session(&id_hash, now).await?;
                return Ok(None);
            }
            state
                .store
                .touch_session(&id_hash, now, state.config.session_limits())
                .await?;
            Ok::<_, sesame_store::StoreError>(Some((session, user)))
        };
        match lookup.await {
            Ok(Some((session, user))) => {
                let me = SignedIn {
                    user,
                    session,
                    id_hash,
                };
                // Signed in with the password alone while the organisation requires a second
                // step: only My security info (to add one) and signing out are open.
                let path = parts.uri.path();
                if !path.starts_with("/security-info") {
                    match me.must_set_up_second_step(state).await {
                        Ok(true) => return Err(see_other(SETUP_REQUIRED)),
                        Ok(false) => {}
                        Err(e) => {
                            return Err(axum::response::IntoResponse::into_response(
                                crate::error::AppError::from(e),
                            ))
                        }
                    }
                }
                Ok(me)
            }
            Ok(None) => Err(to_login()),
            Err(e) => Err(axum::response::IntoResponse::into_response(
                crate::error::AppError::from(e),
            )),
        }
    }
}
