//! Temporary Access Passes (issue 14): an administrator gives a user a time-limited pass,
//! shown once, to sign in with when they have no other way in (created without a password,
//! or their only phone is lost) and set up their methods. A pass stands for both steps (the
//! session's `amr` is `tap`, `mfa`), so the user can add methods at once.
//!
//! Typing a pass is counted like typing a password (the same throttles per account name,
//! known browser and address), so a pass is guessed no faster than a password; with about 79
//! bits, it is not guessed at all.

use super::guesses::{self, Held, Verdict};
use super::signin::{self, StepError};
use super::{Admin, Line, Origin, Services};
use crate::error::Error;
use hmac::{Hmac, Mac};
use sesame_core::access_pass;
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::secret::SecretBytes;
use sesame_core::signin::{SignInEvent, SignInState};
use sesame_core::UnixTime;
use sesame_store::{MasterKey, SignInRecord, User};

/// The key that hashes passes for the store.
pub struct PassKey(SecretBytes);

impl PassKey {
    pub fn new(master: &MasterKey) -> Self {
        PassKey(master.derive("access-pass-v1"))
    }

    fn hash(&self, user: &User, pass: &str) -> Vec<u8> {
        let mut m = Hmac::<sha2::Sha256>::new_from_slice(self.0.expose()).expect("any key length");
        m.update(&user.id.0.to_be_bytes());
        m.update(pass.as_bytes());
        m.finalize().into_bytes().to_vec()
    }
}

/// A pass just made: shown once, never stored.
#[derive(Debug, Clone)]
pub struct Created {
    pub pass: String,
    pub one_time: bool,
    pub expires_at: UnixTime,
}

/// Gives `user` a new pass (replacing any other), for `lifetime_secs` (10 minutes to 30 days).
pub async fn create(
    svc: &Services,
    admin: &Admin,
    user: &User,
    lifetime_secs: i64,
    one_time: bool,
) -> Result<Created, Error> {
    if !(access_pass::MIN_LIFETIME_SECS..=access_pass::MAX_LIFETIME_SECS).contains(&lifetime_secs) {
        return Err(Error::bad_request(
            "A Temporary Access Pass lasts 10 minutes to 30 days.",
        ));
    }
    let pass = access_pass::generate(&mut rand::rngs::OsRng);
    let stored = access_pass::normalize(&pass).expect("a generated pass reads back");
    let now = svc.now();
    let expires_at = now + lifetime_secs;
    svc.store
        .create_access_pass(
            user.id,
            &svc.access_pass_key.hash(user, &stored),
            one_time,
            now,
            expires_at,
        )
        .await?;
    let detail = format!(
        "{}, valid until {}",
        if one_time { "one-time" } else { "multi-use" },
        crate::web::fmt_time(expires_at)
    );
    svc.audit(
        &admin.origin,
        admin.line(
            user.tenant,
            Some(user),
            Event::AdminAccessPassCreated,
            Some(&detail),
        ),
    )
    .await;
    Ok(Created {
        pass,
        one_time,
        expires_at,
    })
}

/// Ends the user's pass; false if there was none.
pub async fn revoke(svc: &Services, admin: &Admin, user: &User) -> Result<bool, Error> {
    let revoked = svc.store.revoke_access_pass(user.id).await?;
    if revoked {
        svc.audit(
            &admin.origin,
            admin.line(user.tenant, Some(user), Event::AdminAccessPassRevoked, None),
        )
        .await;
    }
    Ok(revoked)
}

/// What typing a pass at sign-in came to.
pub enum PassOutcome {
    /// Not the user's pass (or no such user, or not a pass at all): all look the same.
    Incorrect,
    /// Not checked: too many wrong passwords or passes.
    Held(Held),
    /// Signed in: the transaction is `Done`.
    Done { user: User, state: SignInState },
}

/// Checks a pass typed for an identified sign-in, counted like a password.
pub async fn sign_in(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    typed: &str,
) -> Result<PassOutcome, Error> {
    let SignInState::Identified { user: user_id } = rec.state else {
        return Err(Error::internal("pass step outside its state"));
    };
    let user = match user_id {
        Some(id) => svc.store.find_user(id).await?,
        None => None,
    };
    let counted = guesses::scopes(svc, origin, rec.tenant, &rec.username, user.as_ref());
    let typed = access_pass::normalize(typed);
    let verdict = counted
        .check_by(svc, async {
            match (&user, &typed) {
                (Some(u), Some(pass)) => Ok(svc
                    .store
                    .use_access_pass(u.id, &svc.access_pass_key.hash(u, pass), svc.now())
                    .await?),
                _ => Ok(false),
            }
        })
        .await?;
    let user = match (verdict, user) {
        (Verdict::Held(held), _) => return Ok(PassOutcome::Held(held)),
        (Verdict::Right, Some(u)) => u,
        (_, user) => {
            let line = Line::named(
                rec.tenant,
                user.as_ref().map(|u| u.id),
                &rec.username,
                Event::SignIn,
            )
            .method(AuditMethod::AccessPass)
            .failed(if user.is_none() {
                "unknown_user"
            } else {
                "wrong_pass"
            });
            svc.audit(origin, line).await;
            return Ok(PassOutcome::Incorrect);
        }
    };
    if user.is_blocked {
        return Err(signin::refuse_blocked(svc, origin, rec, &user, AuditMethod::AccessPass).await);
    }
    match signin::advance(svc, rec, SignInEvent::AccessPassAccepted { user: user.id }).await {
        Ok(state) => Ok(PassOutcome::Done { user, state }),
        Err(StepError::NotNow | StepError::MovedOn) => Ok(PassOutcome::Incorrect),
        Err(StepError::Store(e)) => Err(e.into()),
    }
}
