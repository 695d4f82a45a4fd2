//! Password guessing, slowed down where it is counted (`sesame_core::guessing`): which scopes
//! a password attempt is counted in, the reservation before any Argon2id work, forgetting
//! after a right password, and what administrators see and reset.
//!
//! A browser the user signed in with before (its device cookie) is counted on its own: a
//! guesser elsewhere, however busy, cannot hold it up. Any other browser is counted by the
//! account name typed (whether or not such a user exists, so the counting reveals nothing)
//! and by its client address, across usernames.

use super::{Origin, Services};
use crate::error::Error;
use sesame_core::guessing::{Scope, Throttle};
use sesame_core::lockout::AttemptGate;
use sesame_core::password;
use sesame_core::secret::SecretString;
use sesame_core::{TenantId, UnixTime};
use sesame_store::{StoreError, User};
use std::sync::atomic::Ordering;

/// Counts older than this are forgotten (a name nobody has leaves nothing behind for ever).
const KEEP_SECS: i64 = 30 * 24 * 3600;
/// How often one process prunes old counts.
const PRUNE_EVERY_SECS: i64 = 3600;

/// Where one password attempt is counted: the account name (or the known browser) and, for
/// unknown browsers, the client address. The account's count is taken up front, before the
/// password is checked, so that parallel guesses at one account never check more than allowed,
/// and given back when the password was never checked; the address is held when its count
/// says so and counted after a wrong password (see `Counted::reserve`).
pub struct Counted {
    reserved: (Scope, Throttle),
    address: Option<(Scope, Throttle)>,
}

/// What checking a password came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Right,
    Wrong,
    /// Not checked: too many wrong passwords.
    Held(Held),
}
/// Why a password was not checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// Too many wrong passwords for the account (from browsers it never signed in with),
    /// or from this known browser: wait until then.
    Account { until: UnixTime },
    /// Too many wrong passwords from this network, across usernames.
    Address { until: UnixTime },
    /// Locked until an administrator unlocks it.
    Locked,
}

impl Held {
    /// What the person is told. The same for every account name, known or not.
    pub fn message(self, now: UnixTime) -> String {
        match self {
            Held::Account { until } => format!(
                "Too many wrong passwords. Try again in {}, or sign in from a browser you have used before.",
                wait_text(until - now)
            ),
            Held::Address { until } => format!(
                "Too many wrong passwords from your network. Try again in {}.",
                wait_text(until - now)
            ),
            Held::Locked => "This account is locked after too many wrong passwords. Sign in from a browser you have used before, or ask your administrator to unlock it.".into(),
        }
    }

    /// Seconds until another attempt may be made, if that is known.
    pub fn retry_after(self, now: UnixTime) -> Option<i64> {
        match self {
            Held::Account { until } | Held::Address { until } => Some((until - now).max(1)),
            Held::Locked => None,
        }
    }
}

fn wait_text(secs: i64) -> String {
    let secs = secs.max(1);
    if secs < 60 {
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else {
        let m = (secs + 59) / 60;
        format!("{m} minute{}", if m == 1 { "" } else { "s" })
    }
}

/// The scopes an attempt at `typed` (as the person typed it) from `origin` is counted in.
pub fn scopes(
    svc: &Services,
    origin: &Origin,
    tenant: TenantId,
    typed: &str,
    user: Option<&User>,
) -> Counted {
    let policy = &svc.config.guessing;
    let known = user.and_then(|u| Some((u.id, svc.browsers.recognise(origin, u.id)?)));
    match known {
        Some((user, browser)) => Counted {
            reserved: (
                Scope::Browser {
                    user,
                    id: browser.0,
                },
                policy.account,
            ),
            address: None,
        },
        None => Counted {
            reserved: (
                Scope::Account {
                    tenant,
                    name_key: sesame_store::name_key(typed),
                },
                policy.account,
            ),
            // An address is shared by many: it waits, but is never locked for good.
            address: Some((
                Scope::address(&origin.ip),
                Throttle {
                    hard_after: 0,
                    ..policy.address
                },
            )),
        },
    }
}

impl Counted {
    /// Counts the attempt up front for the account (or known browser), unless a scope holds
    /// it (then nothing stays counted and the password must not be checked).
    ///
    /// The address is only looked at here, and counted after a wrong password: counting it up
    /// front would hold the right passwords of an office behind one address whenever more of
    /// its people sign in at once than the address's free allowance (measured: 10% of 64
    /// parallel sign-ins refused). Parallel guesses sprayed over many names from one address
    /// can therefore pass its allowance by what is in flight at once, which the hashing
    /// queue's share per client bounds.
    async fn reserve(&self, svc: &Services) -> Result<Option<Held>, StoreError> {
        let now = svc.now();
        prune(svc, now).await;
        if let Some((scope, throttle)) = &self.address {
            let (failures, last) = svc.store.find_guesses(&scope.key()).await?;
            // (Never locked for good: see `scopes`.)
            if let AttemptGate::SoftLocked { until } = throttle.gate(failures, last, now) {
                return Ok(Some(Held::Address { until }));
            }
        }
        let (scope, throttle) = &self.reserved;
        let held = match svc.store.reserve_guess(&scope.key(), throttle, now).await? {
            AttemptGate::Open => return Ok(None),
            AttemptGate::SoftLocked { until } => Held::Account { until },
            AttemptGate::HardLocked => Held::Locked,
        };
        Ok(Some(held))
    }

    /// A wrong password counts against the address too.
    async fn count_address(&self, svc: &Services) -> Result<(), StoreError> {
        if let Some((scope, throttle)) = &self.address {
            svc.store
                .reserve_guess(&scope.key(), throttle, svc.now())
                .await?;
        }
        Ok(())
    }

    /// Checks `typed` against `stored` (None: no such user, or no password: wrong, at the
    /// same cost) on the hashing threads, counted (see [`Counted::check_by`]).
    pub async fn check(
        &self,
        svc: &Services,
        origin: &Origin,
        stored: Option<String>,
        typed: SecretString,
    ) -> Result<Verdict, Error> {
        let client = sesame_core::guessing::address_key(&origin.ip);
        self.check_by(svc, async {
            svc.hasher
                .run(&client, move || password::verify(stored.as_deref(), &typed))
                .await
        })
        .await
    }

    /// Runs `check` (whether what was typed is right: a password, a Temporary Access Pass),
    /// counted: held attempts run nothing; a right answer starts the account's (or
    /// browser's) count over and gives the address its count back; an attempt that could not
    /// be checked (the hashing queue was busy, or the client hung up while it waited) is not
    /// counted at all.
    pub async fn check_by(
        &self,
        svc: &Services,
        check: impl std::future::Future<Output = Result<bool, Error>>,
    ) -> Result<Verdict, Error> {
        if let Some(held) = self.reserve(svc).await? {
            return Ok(Verdict::Held(held));
        }
        // Gives the counts back if this request is dropped before the answer (the client hung
        // up while it waited for a hashing slot).
        let mut pending = Refund::new(svc, self);
        let right = match check.await {
            Ok(right) => right,
            Err(e) => {
                pending.now().await;
                return Err(e);
            }
        };
        pending.disarm();
        if right {
            svc.store
                .clear_guesses(&[self.reserved.0.key()], &[])
                .await?;
            Ok(Verdict::Right)
        } else {
            self.count_address(svc).await?;
            Ok(Verdict::Wrong)
        }
    }
}

/// The counts of an attempt that was not checked, to be given back: at once ([`Refund::now`]),
/// or in the background if the request is dropped while it waits.
struct Refund {
    svc: Services,
    keys: Vec<String>,
    armed: bool,
}

impl Refund {
    fn new(svc: &Services, counted: &Counted) -> Self {
        // Only the account's count was taken up front (see `Counted::reserve`).
        let keys = vec![counted.reserved.0.key()];
        Self {
            svc: svc.clone(),
            keys,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }

    async fn now(&mut self) {
        self.armed = false;
        refund_all(&self.svc, &self.keys).await;
    }
}

impl Drop for Refund {
    fn drop(&mut self) {
        if self.armed {
            let (svc, keys) = (self.svc.clone(), std::mem::take(&mut self.keys));
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move { refund_all(&svc, &keys).await });
            }
        }
    }
}

async fn refund_all(svc: &Services, keys: &[String]) {
    for k in keys {
        if let Err(e) = svc.store.refund_guess(k).await {
            tracing::warn!(%e, "cannot give back a password guess count");
        }
    }
}

/// Forgets old counts, at most once an hour per process. A failure only delays it.
async fn prune(svc: &Services, now: UnixTime) {
    let last = svc.guesses_pruned_at.load(Ordering::Relaxed);
    if now - last < PRUNE_EVERY_SECS
        || svc
            .guesses_pruned_at
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
    {
        return;
    }
    // A lock that lasts until an administrator lifts it is kept however old.
    let keep_from = match svc.config.guessing.account.hard_after {
        0 => u32::MAX,
        n => n,
    };
    if let Err(e) = svc.store.prune_guesses(now - KEEP_SECS, keep_from).await {
        tracing::warn!(%e, "cannot forget old password guess counts");
    }
}

/// Wrong passwords counted for a user, as administrators see them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Standing {
    /// From browsers the user never signed in with (by the account name).
    pub failures: u32,
    pub last_failure_at: Option<UnixTime>,
    /// "open", "waiting" (until `until`) or "locked".
    pub state: &'static str,
    pub until: Option<UnixTime>,
    /// Known browsers with wrong passwords counted: (failures, last).
    pub browsers: Vec<(u32, UnixTime)>,
}

pub async fn standing(svc: &Services, user: &User) -> Result<Standing, StoreError> {
    let key = account_key(user);
    let (failures, last) = svc.store.find_guesses(&key).await?;
    let (state, until) = match svc.config.guessing.account.gate(failures, last, svc.now()) {
        AttemptGate::Open => ("open", None),
        AttemptGate::SoftLocked { until } => ("waiting", Some(until)),
        AttemptGate::HardLocked => ("locked", None),
    };
    let browsers = svc
        .store
        .list_guesses(&Scope::browsers_of(user.id))
        .await?
        .into_iter()
        .map(|(_, n, at)| (n, at))
        .collect();
    Ok(Standing {
        failures,
        last_failure_at: last,
        state,
        until,
        browsers,
    })
}

/// Forgets every wrong password counted for the user (by name and in each known browser).
pub async fn forget(svc: &Services, user: &User) -> Result<u64, StoreError> {
    svc.store
        .clear_guesses(&[account_key(user)], &[Scope::browsers_of(user.id)])
        .await
}

fn account_key(user: &User) -> String {
    Scope::Account {
        tenant: user.tenant,
        name_key: sesame_store::name_key(&user.username),
    }
    .key()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_are_said_in_plain_words() {
        assert_eq!(wait_text(1), "1 second");
        assert_eq!(wait_text(30), "30 seconds");
        assert_eq!(wait_text(60), "1 minute");
        assert_eq!(wait_text(61), "2 minutes");
        assert_eq!(wait_text(-5), "1 second");
        assert!(Held::Locked.message(0).contains("administrator"));
        assert_eq!(Held::Account { until: 100 }.retry_after(40), Some(60));
    }
}
