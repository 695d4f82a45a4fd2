//! The sign-in state machine (DESIGN §3).
//!
//! A sign-in transaction moves through these states on the server. Only
//! [`SignInState::Done`] can be turned into a [`CompletedSignIn`], and only a
//! `CompletedSignIn` can mint a session: a half-finished sign-in is a different type.

use crate::method::{Amr, MethodKind};
use crate::UserId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SignInState {
    /// Username given. `user` is `None` for unknown usernames, which go the same way as known
    /// ones so that pages do not reveal who has an account.
    Identified { user: Option<UserId> },
    /// Password accepted; a second step with `method` is required.
    SecondFactor {
        user: UserId,
        method: MethodKind,
        available: Vec<MethodKind>,
        amr: Vec<Amr>,
    },
    /// Waiting for the phone to approve a passwordless sign-in.
    PhoneSignIn { user: UserId },
    /// Finished: may mint exactly one session.
    Done { user: UserId, amr: Vec<Amr> },
    /// Ended without success (too many failures, blocked user, expiry).
    Failed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignInEvent {
    /// The password was checked and is right. `second_factors` lists the user's methods,
    /// default first; empty when no second step is required.
    PasswordAccepted {
        user: UserId,
        second_factors: Vec<MethodKind>,
    },
    /// The user asked for a different verification option.
    ChooseMethod(MethodKind),
    /// The second step with this method succeeded.
    SecondFactorAccepted(MethodKind),
    /// The user chose to sign in with the phone instead of a password.
    ChoosePhoneSignIn,
    /// The user chose "Use your password instead".
    UsePassword,
    /// The phone approved the passwordless sign-in, with a signature only the PIN unlocks.
    PhoneSignInApproved,
    /// The user's Temporary Access Pass was right (and taken, if one-time).
    AccessPassAccepted { user: UserId },
    /// Blocked, locked out or expired.
    Abort,
}

/// The first way offered after the username, as the user (or this browser) last chose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignInChoice {
    /// Phone sign-in: "Use an app instead".
    App,
    /// "Use your password instead".
    Password,
}

impl SignInChoice {
    pub fn as_str(self) -> &'static str {
        match self {
            SignInChoice::App => "app",
            SignInChoice::Password => "password",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(SignInChoice::App),
            "password" => Some(SignInChoice::Password),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("this step is not allowed now")]
pub struct InvalidTransition;

/// Proof that a sign-in finished; the only input that creates a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompletedSignIn {
    user: UserId,
    amr: Vec<Amr>,
}

impl CompletedSignIn {
    pub fn user(&self) -> UserId {
        self.user
    }

    pub fn amr(&self) -> &[Amr] {
        &self.amr
    }
}

impl SignInState {
    /// The user this sign-in has found, if any.
    pub fn user(&self) -> Option<UserId> {
        match self {
            SignInState::Identified { user } => *user,
            SignInState::SecondFactor { user, .. }
            | SignInState::PhoneSignIn { user }
            | SignInState::Done { user, .. } => Some(*user),
            SignInState::Failed => None,
        }
    }

    /// The single transition function: every request goes through here.
    pub fn next(&self, event: SignInEvent) -> Result<SignInState, InvalidTransition> {
        use SignInEvent as E;
        use SignInState as S;
        match (self, event) {
            (S::Failed | S::Done { .. }, _) => Err(InvalidTransition),
            (_, E::Abort) => Ok(S::Failed),
            (
                S::Identified { user: Some(u) },
                E::PasswordAccepted {
                    user,
                    second_factors,
                },
            ) if *u == user => match second_factors.first() {
                None => Ok(S::Done {
                    user,
                    amr: vec![Amr::Pwd],
                }),
                Some(&method) => {
                    let mut available = Vec::new();
                    for k in second_factors {
                        if !available.contains(&k) {
                            available.push(k);
                        }
                    }
                    Ok(S::SecondFactor {
                        user,
                        method,
                        available,
                        amr: vec![Amr::Pwd],
                    })
                }
            },
            (S::Identified { user: Some(u) }, E::ChoosePhoneSignIn) => {
                Ok(S::PhoneSignIn { user: *u })
            }
            (S::PhoneSignIn { user }, E::UsePassword) => Ok(S::Identified { user: Some(*user) }),
            // An administrator's pass stands for both steps: strong enough to set methods up.
            (S::Identified { user: Some(u) }, E::AccessPassAccepted { user }) if *u == user => {
                Ok(S::Done {
                    user,
                    amr: vec![Amr::Tap, Amr::Mfa],
                })
            }
            // Device key, matched number and the PIN-unlocked key: two factors, no second prompt.
            (S::PhoneSignIn { user }, E::PhoneSignInApproved) => Ok(S::Done {
                user: *user,
                amr: vec![Amr::Swk, Amr::Pin, Amr::Mfa],
            }),
            (
                S::SecondFactor {
                    user,
                    available,
                    amr,
                    ..
                },
                E::ChooseMethod(m),
            ) if available.contains(&m) => Ok(S::SecondFactor {
                user: *user,
                method: m,
                available: available.clone(),
                amr: amr.clone(),
            }),
            (
                S::SecondFactor {
                    user, method, amr, ..
                },
                E::SecondFactorAccepted(m),
            ) if *method == m => {
                let mut amr = amr.clone();
                amr.push(m.amr());
                amr.push(Amr::Mfa);
                Ok(S::Done { user: *user, amr })
            }
            _ => Err(InvalidTransition),
        }
    }

    /// The finished sign-in, if this state is `Done`.
    pub fn completed(&self) -> Option<CompletedSignIn> {
        match self {
            SignInState::Done { user, amr } => Some(CompletedSignIn {
                user: *user,
                amr: amr.clone(),
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use MethodKind::Totp;

    const U: UserId = UserId(7);
    const OTHER: UserId = UserId(8);

    fn identified() -> SignInState {
        SignInState::Identified { user: Some(U) }
    }
    fn second() -> SignInState {
        SignInState::SecondFactor {
            user: U,
            method: Totp,
            available: vec![Totp],
            amr: vec![Amr::Pwd],
        }
    }
    fn phone() -> SignInState {
        SignInState::PhoneSignIn { user: U }
    }
    fn done(amr: Vec<Amr>) -> SignInState {
        SignInState::Done { user: U, amr }
    }

    #[test]
    fn an_access_pass_finishes_only_its_own_users_identified_sign_in() {
        let identified = SignInState::Identified { user: Some(U) };
        assert_eq!(
            identified.next(SignInEvent::AccessPassAccepted { user: U }),
            Ok(SignInState::Done {
                user: U,
                amr: vec![Amr::Tap, Amr::Mfa]
            })
        );
        assert!(identified
            .next(SignInEvent::AccessPassAccepted { user: OTHER })
            .is_err());
        for state in [
            SignInState::Identified { user: None },
            SignInState::PhoneSignIn { user: U },
            SignInState::Failed,
        ] {
            assert!(state
                .next(SignInEvent::AccessPassAccepted { user: U })
                .is_err());
        }
    }

    #[test]
    fn transition_table() {
        use SignInEvent as E;
        let pwd_ok = |f: Vec<MethodKind>| E::PasswordAccepted {
            user: U,
            second_factors: f,
        };
        let table: Vec<(
            SignInState,
            SignInEvent,
            Result<SignInState, InvalidTransition>,
        )> = vec![
            (identified(), pwd_ok(vec![]), Ok(done(vec![Amr::Pwd]))),
            (identified(), pwd_ok(vec![Totp, Totp]), Ok(second())),
            // A password check for another user than the one identified is refused.
            (
                identified(),
                E::PasswordAccepted {
                    user: OTHER,
                    second_factors: vec![],
                },
                Err(InvalidTransition),
            ),
            // Unknown users can never pass the password step.
            (
                SignInState::Identified { user: None },
                pwd_ok(vec![]),
                Err(InvalidTransition),
            ),
            // Skipping the password is impossible.
            (
                identified(),
                E::SecondFactorAccepted(Totp),
                Err(InvalidTransition),
            ),
            (identified(), E::ChooseMethod(Totp), Err(InvalidTransition)),
            (
                second(),
                E::SecondFactorAccepted(Totp),
                Ok(done(vec![Amr::Pwd, Amr::Otp, Amr::Mfa])),
            ),
            (second(), E::ChooseMethod(Totp), Ok(second())),
            (second(), pwd_ok(vec![]), Err(InvalidTransition)),
            (identified(), E::Abort, Ok(SignInState::Failed)),
            (second(), E::Abort, Ok(SignInState::Failed)),
            // Terminal states accept nothing: a finished transaction cannot mint a second session.
            (
                done(vec![Amr::Pwd]),
                E::SecondFactorAccepted(Totp),
                Err(InvalidTransition),
            ),
            (done(vec![Amr::Pwd]), E::Abort, Err(InvalidTransition)),
            (SignInState::Failed, pwd_ok(vec![]), Err(InvalidTransition)),
            // Phone sign-in: only from a known user, only approved from its own state.
            (identified(), E::ChoosePhoneSignIn, Ok(phone())),
            (
                SignInState::Identified { user: None },
                E::ChoosePhoneSignIn,
                Err(InvalidTransition),
            ),
            (
                phone(),
                E::PhoneSignInApproved,
                Ok(done(vec![Amr::Swk, Amr::Pin, Amr::Mfa])),
            ),
            (phone(), E::UsePassword, Ok(identified())),
            (phone(), pwd_ok(vec![]), Err(InvalidTransition)),
            (
                phone(),
                E::SecondFactorAccepted(Totp),
                Err(InvalidTransition),
            ),
            (phone(), E::Abort, Ok(SignInState::Failed)),
            (identified(), E::PhoneSignInApproved, Err(InvalidTransition)),
            (second(), E::PhoneSignInApproved, Err(InvalidTransition)),
            (second(), E::ChoosePhoneSignIn, Err(InvalidTransition)),
            (
                done(vec![Amr::Pwd]),
                E::PhoneSignInApproved,
                Err(InvalidTransition),
            ),
        ];
        for (i, (state, event, want)) in table.into_iter().enumerate() {
            assert_eq!(
                state.next(event.clone()),
                want,
                "row {i}: {state:?} + {event:?}"
            );
        }
    }

    #[test]
    fn partial_sign_in_is_not_a_session() {
        assert!(identified().completed().is_none());
        assert!(second().completed().is_none());
        assert!(phone().completed().is_none());
        assert!(SignInState::Failed.completed().is_none());
        let c = done(vec![Amr::Pwd, Amr::Otp, Amr::Mfa])
            .completed()
            .unwrap();
        assert_eq!(c.user(), U);
        assert_eq!(c.amr(), &[Amr::Pwd, Amr::Otp, Amr::Mfa]);
    }

    #[test]
    fn choosing_a_method_the_user_lacks_is_refused() {
        let s = SignInState::SecondFactor {
            user: U,
            method: Totp,
            available: vec![],
            amr: vec![Amr::Pwd],
        };
        assert_eq!(
            s.next(SignInEvent::ChooseMethod(Totp)),
            Err(InvalidTransition)
        );
    }

    #[test]
    fn state_survives_a_round_trip_through_json() {
        let s = second();
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<SignInState>(&text).unwrap(), s);
    }
}
