//! Sign-in: username -> password or phone -> second step -> session (DESIGN §3).
//!
//! A transaction lives in the store, keyed by the hash of the token in the browser's sign-in
//! cookie. Each step applies one event of the core state machine by compare-and-set, so two
//! racing requests cannot both move it, and only `Done` mints a session ([`finish`]).

use super::{approvals, Line, Origin, Services, UserPolicy};
use crate::error::{Error, Kind};
use sesame_core::audit::{AuditMethod, Event};
use sesame_core::method::MethodKind;
use sesame_core::policy::Allowed;
use sesame_core::push::{ApprovalChannel, ChallengeKind, ChallengeState};
use sesame_core::secret::SecretString;
use sesame_core::signin::{SignInChoice, SignInEvent, SignInState};
use sesame_core::{ChallengeId, TenantId, UserId};
use sesame_store::{Method, SignInRecord, StoreError, User};

/// Longest username accepted; longer input is refused before any lookup.
pub const MAX_USERNAME: usize = 256;

/// A sign-in just started: the browser keeps `token`, the store its hash.
pub struct Started {
    pub token: String,
    pub record: SignInRecord,
}

/// Starts a sign-in for `username`. Unknown usernames get a transaction too, and go the same
/// way: pages reveal nothing about who has an account. With `phone_first`, a known user goes
/// straight to phone sign-in.
pub async fn start(
    svc: &Services,
    tenant: TenantId,
    username: &str,
    user: Option<&User>,
    next: Option<String>,
    phone_first: bool,
) -> Result<Started, Error> {
    let identified = SignInState::Identified {
        user: user.map(|u| u.id),
    };
    let state = if phone_first {
        identified
            .next(SignInEvent::ChoosePhoneSignIn)
            .map_err(|_| Error::internal("phone sign-in offered to an unknown user"))?
    } else {
        identified
    };
    let token = crate::token::random();
    let now = svc.now();
    let record = SignInRecord {
        id_hash: crate::token::hash(&token),
        tenant,
        username: username.to_string(),
        state,
        version: 0,
        next_path: next,
        created_at: now,
        expires_at: now + svc.config.signin_lifetime_secs,
    };
    svc.store.create_signin(&record).await?;
    Ok(Started { token, record })
}

/// The live transaction of `token`. An expired one is deleted the first time it is refused,
/// so a clock set back later cannot revive it (SECURITY.md: expired things stay expired).
pub async fn load(svc: &Services, token: &str) -> Result<Option<SignInRecord>, StoreError> {
    let id_hash = crate::token::hash(token);
    match svc.store.find_signin(&id_hash, svc.now()).await? {
        Some(rec) => Ok(Some(rec)),
        None => {
            svc.store.delete_signin(&id_hash).await?;
            Ok(None)
        }
    }
}

/// The transaction as stored now (after a step moved it on).
pub async fn reload(
    svc: &Services,
    rec: &SignInRecord,
) -> Result<Option<SignInRecord>, StoreError> {
    svc.store.find_signin(&rec.id_hash, svc.now()).await
}

/// Why a step could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    /// Not a step of the state the transaction is in: go back to its page.
    #[error("This step is not possible now. Start again.")]
    NotNow,
    /// Someone else moved the transaction first (a second tab, a replayed request).
    #[error("This sign-in has already moved on. Start again.")]
    MovedOn,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Applies one event by compare-and-set.
pub async fn advance(
    svc: &Services,
    rec: &SignInRecord,
    event: SignInEvent,
) -> Result<SignInState, StepError> {
    let next = rec.state.next(event).map_err(|_| StepError::NotNow)?;
    if svc
        .store
        .update_signin_state(&rec.id_hash, rec.version, &next)
        .await?
    {
        Ok(next)
    } else {
        Err(StepError::MovedOn)
    }
}

/// The message a blocked user is given (only ever after a right password or an approval).
pub const BLOCKED: &str = "Your account has been blocked. Contact your administrator.";

/// Ends a sign-in of a blocked user: audited, the transaction fails.
pub async fn refuse_blocked(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    user: &User,
    method: AuditMethod,
) -> Error {
    svc.audit(
        origin,
        Line::of(user, Event::SignIn)
            .method(method)
            .failed("blocked"),
    )
    .await;
    let _ = advance(svc, rec, SignInEvent::Abort).await;
    Error::forbidden(BLOCKED)
}

/// What the password step decided.
pub enum PasswordOutcome {
    /// Unknown user, no password, or the wrong one: all look the same.
    Incorrect,
    /// Not checked: too many wrong passwords (counted the same for unknown names).
    Held(super::guesses::Held),
    /// The user must sign in with the phone: the password alone is not enough and there is
    /// no second step to add to it.
    UseTheApp,
    /// On to the second step with `method`.
    SecondStep { user: User, method: MethodKind },
    /// Signed in (`setup_required`: only to add a method the policy requires).
    Done {
        user: User,
        state: SignInState,
        setup_required: bool,
    },
}

/// Checks the password of an identified sign-in and moves it on.
pub async fn check_password(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    typed: SecretString,
) -> Result<PasswordOutcome, Error> {
    let SignInState::Identified { user: user_id } = rec.state else {
        return Err(Error::internal("password step outside its state"));
    };
    let user = match user_id {
        Some(id) => svc.store.find_user(id).await?,
        None => None,
    };
    // Counted before anything is hashed, so that a flood of guesses (in parallel too) costs
    // the server no Argon2id work past the allowance; unknown names are counted the same way,
    // and cost the same Argon2id check as a wrong password.
    let counted = super::guesses::scopes(svc, origin, rec.tenant, &rec.username, user.as_ref());
    let stored = user.as_ref().and_then(|u| u.password_hash.clone());
    let verified = match counted.check(svc, origin, stored, typed).await? {
        super::guesses::Verdict::Held(held) => return Ok(PasswordOutcome::Held(held)),
        verdict => verdict == super::guesses::Verdict::Right,
    };
    let line = |reason: &str| {
        Line::named(
            rec.tenant,
            user.as_ref().map(|u| u.id),
            &rec.username,
            Event::SignIn,
        )
        .method(AuditMethod::Password)
        .failed(reason)
    };
    let user = match (verified, user.as_ref()) {
        (true, Some(u)) => u.clone(),
        _ => {
            let reason = if user.is_none() {
                "unknown_user"
            } else {
                "wrong_password"
            };
            svc.audit(origin, line(reason)).await;
            return Ok(PasswordOutcome::Incorrect);
        }
    };
    if user.is_blocked {
        // Said only after the right password, so it reveals nothing to a guesser.
        return Err(refuse_blocked(svc, origin, rec, &user, AuditMethod::Password).await);
    }
    let up = svc.user_policy(&user).await?;
    let methods = svc.store.list_methods(user.id).await?;
    let second_factors = second_factor_kinds(&user, &methods, &up.allowed);
    // A user who registered any method never signs in with the password alone, whatever the
    // policy requires of others: a second step is needed like for those it is required of.
    let second_step_needed = up.mfa_required || !methods.is_empty();
    if second_factors.is_empty()
        && second_step_needed
        && phone_sign_in_available(svc, &user).await?
    {
        // No second step allowed after a password, but phone sign-in is set up: the phone is
        // the way in.
        svc.audit(origin, line("password_not_enough")).await;
        return Ok(PasswordOutcome::UseTheApp);
    }
    let next = advance(
        svc,
        rec,
        SignInEvent::PasswordAccepted {
            user: user.id,
            second_factors,
        },
    )
    .await
    .map_err(step_error)?;
    Ok(match next {
        SignInState::SecondFactor { method, .. } => PasswordOutcome::SecondStep { user, method },
        state => PasswordOutcome::Done {
            user,
            state,
            // Needed but nothing to verify with: signed in only to add a method.
            setup_required: second_step_needed,
        },
    })
}

/// A step error as people see it (for steps that cannot simply go back to their page).
pub fn step_error(e: StepError) -> Error {
    match e {
        StepError::NotNow | StepError::MovedOn => {
            Error::bad_request(StepError::MovedOn.to_string())
        }
        StepError::Store(e) => e.into(),
    }
}

/// The kinds of `methods` the policy allows as a second step, the default method's first.
pub fn second_factor_kinds(user: &User, methods: &[Method], allowed: &Allowed) -> Vec<MethodKind> {
    let usable: Vec<&Method> = methods.iter().filter(|m| allowed.permits(m.kind)).collect();
    let mut kinds: Vec<MethodKind> = Vec::new();
    if let Some(d) = user
        .default_method
        .and_then(|d| usable.iter().find(|m| m.id == d))
    {
        kinds.push(d.kind);
    }
    for m in &usable {
        if !kinds.contains(&m.kind) {
            kinds.push(m.kind);
        }
    }
    kinds
}

/// Whether phone sign-in can be used by `user` right now: a device with phone sign-in on and a
/// working PIN key, a policy that allows it, and requests not blocked by a fraud report.
pub async fn phone_sign_in_available(svc: &Services, user: &User) -> Result<bool, StoreError> {
    phone_sign_in_offered(svc, user.tenant, Some(user)).await
}

/// [`phone_sign_in_available`] for whoever a sign-in named, known or not. The same reads are
/// made for an unknown username (and for a blocked user) as for a user who has phone sign-in,
/// so the answer's timing does not tell them apart: what the pages then show is the same for
/// unknown users and users without phone sign-in.
pub async fn phone_sign_in_offered(
    svc: &Services,
    tenant: TenantId,
    user: Option<&User>,
) -> Result<bool, StoreError> {
    Ok(phone_sign_in_offer(svc, tenant, user).await?.0)
}

/// [`phone_sign_in_offered`], with the policy it read: a request that goes on to send the
/// phone a sign-in request uses it again rather than read it twice.
pub async fn phone_sign_in_offer(
    svc: &Services,
    tenant: TenantId,
    user: Option<&User>,
) -> Result<(bool, UserPolicy), StoreError> {
    // An id no user has: AUTOINCREMENT ids start at 1.
    let id = user.map_or(UserId(0), |u| u.id);
    let up = svc.policy_of(tenant, id).await?;
    let ready = svc
        .store
        .list_devices(id)
        .await?
        .iter()
        .any(|d| d.phone_sign_in_ready());
    let usable = user.is_some_and(|u| !u.is_blocked && u.push_blocked_at.is_none());
    Ok((usable && up.allowed.phone_sign_in && ready, up))
}

/// Records the user's choice between the app and the password, offered first next time.
pub async fn remember_choice(
    svc: &Services,
    user: &User,
    choice: SignInChoice,
) -> Result<(), StoreError> {
    if user.signin_preference != Some(choice) {
        svc.store
            .update_signin_preference(user.id, Some(choice))
            .await?;
    }
    Ok(())
}

/// Mints the session for a finished transaction and ends the transaction, in one write with
/// the user's last sign-in and the audit line (and, for an approval, approved -> consumed:
/// two tabs or two nodes cannot both use one approval). Returns the new session's token, or
/// None if the approval was used meanwhile. Any previous session of this browser ends.
#[allow(clippy::too_many_arguments)] // each is one fact about this sign-in
pub async fn finish(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    done: &SignInState,
    user: &User,
    method: AuditMethod,
    approval: Option<&ChallengeId>,
    previous_session: Option<&str>,
) -> Result<Option<String>, Error> {
    let completed = done
        .completed()
        .ok_or_else(|| Error::internal("finish called before Done"))?;
    let now = svc.now();
    // The session id is new at every sign-in (no fixation).
    if let Some(old) = previous_session {
        svc.store
            .revoke_session(&crate::token::hash(old), now)
            .await?;
    }
    let token = crate::token::random();
    let success = svc.audit_event(origin, Line::of(user, Event::SignIn).method(method.clone()));
    let started = std::time::Instant::now();
    let completed = svc
        .store
        .complete_signin(
            &rec.id_hash,
            &crate::token::hash(&token),
            &completed,
            now,
            svc.config.session_limits(),
            &success,
            approval,
        )
        .await?;
    svc.metrics
        .sign_in_commit
        .observe(started.elapsed().as_secs_f64());
    if completed {
        svc.metrics.sign_in(method.as_str(), true);
    }
    Ok(completed.then_some(token))
}

/// Where an approval-waiting sign-in stands when the page asks to complete it.
pub enum Completion {
    /// Not approved (yet): back to the page.
    NotApproved,
    /// The user is gone: start again.
    Gone,
    /// Signed in with a new session.
    SignedIn {
        token: String,
        user: User,
        kind: ChallengeKind,
    },
}

/// Turns an approved request of this sign-in into a session, exactly once. Judged again at
/// the last moment: a policy switched off, or a device removed or turned off, between the
/// approval and now stops the sign-in.
pub async fn complete_approval(
    svc: &Services,
    origin: &Origin,
    rec: &SignInRecord,
    previous_session: Option<&str>,
) -> Result<Completion, Error> {
    let (user_id, event, kind, channel, method) = match rec.state {
        SignInState::SecondFactor {
            user,
            method: m @ (MethodKind::Push | MethodKind::Voice | MethodKind::OfficeVoice),
            ..
        } => (
            user,
            SignInEvent::SecondFactorAccepted(m),
            ChallengeKind::Mfa,
            if m == MethodKind::Push {
                ApprovalChannel::App
            } else {
                ApprovalChannel::Voice
            },
            AuditMethod::from(m),
        ),
        SignInState::PhoneSignIn { user } => (
            user,
            SignInEvent::PhoneSignInApproved,
            ChallengeKind::PhoneSignIn,
            ApprovalChannel::App,
            AuditMethod::PhoneSignIn,
        ),
        _ => return Ok(Completion::NotApproved),
    };
    // Only an answer on the channel the sign-in is at counts.
    let Some(c) = approvals::latest(svc, rec)
        .await?
        .filter(|c| c.channel == channel)
    else {
        return Ok(Completion::NotApproved);
    };
    let Some(user) = svc
        .store
        .find_user(user_id)
        .await?
        .filter(|u| u.id == c.user)
    else {
        return Ok(Completion::Gone);
    };
    if user.is_blocked {
        return Err(Error::forbidden(BLOCKED));
    }
    if c.state != ChallengeState::Approved {
        return Ok(Completion::NotApproved);
    }
    if !approvals::still_valid(svc, &user, &c).await? {
        svc.audit(
            origin,
            Line::of(&user, Event::SignIn)
                .method(method)
                .failed("no_longer_allowed"),
        )
        .await;
        approvals::cancel_own(svc, rec, &user).await?;
        let _ = svc.store.consume_challenge(&c.id).await?;
        return Err(Error::new(
            Kind::Forbidden,
            "not_allowed",
            format!(
                "{} Use your password instead.",
                super::policy::PHONE_SIGN_IN_NOT_ALLOWED
            ),
        ));
    }
    // The approval is consumed (approved -> consumed, once) in the same commit as the session
    // that ends the transaction: the Done state need not be stored first.
    let Ok(done) = rec.state.next(event) else {
        return Ok(Completion::NotApproved);
    };
    let Some(token) = finish(
        svc,
        origin,
        rec,
        &done,
        &user,
        method,
        Some(&c.id),
        previous_session,
    )
    .await?
    else {
        return Ok(Completion::NotApproved);
    };
    if kind == ChallengeKind::PhoneSignIn {
        remember_choice(svc, &user, SignInChoice::App).await?;
    }
    // A call has no device to record its use on (the store records the app's): the phone
    // method that was called is "Last used" now.
    if let SignInState::SecondFactor { method: m, .. } = rec.state {
        if channel == ApprovalChannel::Voice {
            if let Some(called) = super::phones::method_of(svc, &user, m).await? {
                svc.store.touch_method(called.id, svc.now()).await?;
            }
        }
    }
    Ok(Completion::SignedIn { token, user, kind })
}
