//! Online password guessing, slowed down (NIST SP 800-63B §5.2.2, OWASP "Slow down online
//! guessing attacks with device cookies").
//!
//! Wrong passwords are counted in three places, each a [`Scope`] with its own [`Throttle`]:
//! - per **account name** (known or not, so that counting reveals nothing), for browsers the
//!   user never signed in with;
//! - per **known browser** of the user (a device cookie), which keeps its own allowance so
//!   that a guesser elsewhere cannot lock the user out of the browser they use;
//! - per **client address**, across usernames, for browsers that are not known.
//!
//! After `free` wrong passwords in a row, each further attempt must wait: `first_delay_secs`,
//! doubling up to `max_delay_secs`. At `hard_after` (NIST allows at most 100) the scope stops
//! until an administrator unlocks it. A scope with `forget_after_secs` starts over after that
//! long without a wrong password (an address is shared and never "succeeds").

use crate::lockout::AttemptGate;
use crate::{TenantId, UnixTime, UserId};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Throttle {
    /// Wrong passwords in a row before any delay.
    pub free: u32,
    /// The delay after the first wrong password past `free`; it doubles with each further one.
    pub first_delay_secs: i64,
    /// The longest delay.
    pub max_delay_secs: i64,
    /// Wrong passwords in a row after which only an administrator can unlock (0: never).
    pub hard_after: u32,
    /// Seconds without a wrong password after which the count starts over (0: never).
    pub forget_after_secs: i64,
}

impl Default for Throttle {
    fn default() -> Self {
        GuessingPolicy::default().account
    }
}

/// The throttles of the three scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GuessingPolicy {
    /// Per account name, for unknown browsers; also each known browser's own allowance.
    pub account: Throttle,
    /// Per client address, across usernames, for unknown browsers.
    pub address: Throttle,
}

impl Default for GuessingPolicy {
    fn default() -> Self {
        Self {
            // 5 free, then 30 s, 1 min, 2 min ... up to 15 min; NIST's 100 is reached only
            // after about a day of guessing at the slowest pace.
            account: Throttle {
                free: 5,
                first_delay_secs: 30,
                max_delay_secs: 15 * 60,
                hard_after: 100,
                forget_after_secs: 0,
            },
            // An office behind one address makes mistakes too: 50 free, then 10 s doubling
            // up to 15 min, forgotten after an hour without one.
            address: Throttle {
                free: 50,
                first_delay_secs: 10,
                max_delay_secs: 15 * 60,
                hard_after: 0,
                forget_after_secs: 3600,
            },
        }
    }
}

impl Throttle {
    /// The wait that follows the `failures`-th wrong password in a row, if any.
    pub fn delay(&self, failures: u32) -> Option<i64> {
        if failures < self.free.max(1) {
            return None;
        }
        let doublings = (failures - self.free.max(1)).min(40);
        Some(
            self.first_delay_secs
                .max(1)
                .saturating_mul(1i64 << doublings)
                .min(self.max_delay_secs.max(1)),
        )
    }

    /// The count that is still in force (a forgotten one is 0).
    pub fn in_force(&self, failures: u32, last: Option<UnixTime>, now: UnixTime) -> u32 {
        match last {
            Some(last)
                if self.forget_after_secs > 0
                    && now >= last.saturating_add(self.forget_after_secs) =>
            {
                0
            }
            _ => failures,
        }
    }

    /// Whether a password may be checked now, given the stored count. A clock that moved
    /// backwards keeps a wait in force (it ends at a fixed moment after the last failure).
    pub fn gate(&self, failures: u32, last: Option<UnixTime>, now: UnixTime) -> AttemptGate {
        let failures = self.in_force(failures, last, now);
        if self.hard_after > 0 && failures >= self.hard_after {
            return AttemptGate::HardLocked;
        }
        match (self.delay(failures), last) {
            (Some(d), Some(last)) if now < last.saturating_add(d) => AttemptGate::SoftLocked {
                until: last.saturating_add(d),
            },
            _ => AttemptGate::Open,
        }
    }
}

/// Where wrong passwords are counted.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    /// An account name as typed at sign-in, normalised (it need not exist).
    Account { tenant: TenantId, name_key: String },
    /// A browser the user signed in with before (a keyed hash of its device cookie).
    Browser { user: UserId, id: Vec<u8> },
    /// A client address: IPv4 whole, IPv6 by its /64 (one subscriber's network).
    Address(String),
}

impl Scope {
    pub fn address(ip: &str) -> Scope {
        Scope::Address(address_key(ip))
    }

    /// The key the store keeps the count under.
    pub fn key(&self) -> String {
        match self {
            Scope::Account { tenant, name_key } => format!("account:{}:{name_key}", tenant.0),
            Scope::Browser { user, id } => {
                let hex: String = id.iter().take(16).map(|b| format!("{b:02x}")).collect();
                format!("browser:{}:{hex}", user.0)
            }
            Scope::Address(a) => format!("address:{a}"),
        }
    }

    /// The prefix of every known-browser key of a user (to show and reset them together).
    pub fn browsers_of(user: UserId) -> String {
        format!("browser:{}:", user.0)
    }
}

/// The address as counted: an IPv6 client usually holds a whole /64, so counting single
/// addresses would let it take 2^64 fresh allowances.
pub fn address_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) if v6.to_ipv4_mapped().is_none() => {
            let s = v6.segments();
            format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
        }
        Ok(IpAddr::V6(v6)) => v6
            .to_ipv4_mapped()
            .map(|v4| v4.to_string())
            .unwrap_or_default(),
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_wait_longer_after_each_wrong_password_and_stop_at_a_hundred() {
        let p = GuessingPolicy::default().account;
        let t = 1_000_000;
        let table: &[(u32, i64, AttemptGate)] = &[
            (0, 0, AttemptGate::Open),
            (4, 0, AttemptGate::Open),
            (5, 0, AttemptGate::SoftLocked { until: t + 30 }),
            (5, 30, AttemptGate::Open),
            (6, 30, AttemptGate::SoftLocked { until: t + 60 }),
            (7, 100, AttemptGate::SoftLocked { until: t + 120 }),
            (9, 479, AttemptGate::SoftLocked { until: t + 480 }),
            (10, 900, AttemptGate::Open),
            (60, 899, AttemptGate::SoftLocked { until: t + 900 }),
            (99, 900, AttemptGate::Open),
            (100, 0, AttemptGate::HardLocked),
            (100, 100_000_000, AttemptGate::HardLocked),
        ];
        for &(failures, since, want) in table {
            assert_eq!(
                p.gate(failures, Some(t), t + since),
                want,
                "failures={failures} since={since}"
            );
        }
    }

    #[test]
    fn an_address_is_forgiven_after_a_quiet_hour_and_never_locked_for_good() {
        let p = GuessingPolicy::default().address;
        let t = 1_000_000;
        assert_eq!(p.gate(49, Some(t), t), AttemptGate::Open);
        assert_eq!(
            p.gate(50, Some(t), t),
            AttemptGate::SoftLocked { until: t + 10 }
        );
        assert_eq!(
            p.gate(10_000, Some(t), t + 899),
            AttemptGate::SoftLocked { until: t + 900 }
        );
        assert_eq!(p.in_force(10_000, Some(t), t + 3599), 10_000);
        assert_eq!(p.in_force(10_000, Some(t), t + 3600), 0);
        assert_eq!(p.gate(10_000, Some(t), t + 3600), AttemptGate::Open);
    }

    #[test]
    fn a_clock_moved_back_keeps_the_wait_and_doubling_never_overflows() {
        let p = GuessingPolicy::default().account;
        assert_eq!(
            p.gate(5, Some(1000), 500),
            AttemptGate::SoftLocked { until: 1030 }
        );
        let huge = Throttle {
            first_delay_secs: i64::MAX / 2,
            max_delay_secs: i64::MAX,
            ..p
        };
        assert_eq!(huge.delay(u32::MAX), Some(i64::MAX));
    }

    #[test]
    fn ipv6_clients_are_counted_by_their_network() {
        assert_eq!(address_key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            address_key("2001:db8:1:2:bbbb::9"),
            address_key("2001:db8:1:2:aaaa::1")
        );
        assert_ne!(
            address_key("2001:db8:1:3::1"),
            address_key("2001:db8:1:2::1")
        );
        assert_eq!(address_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(address_key("192.0.2.7"), "192.0.2.7");
    }

    #[test]
    fn scopes_have_distinct_keys() {
        let a = Scope::Account {
            tenant: TenantId(1),
            name_key: "alice".into(),
        };
        let b = Scope::Browser {
            user: UserId(7),
            id: vec![0xab; 32],
        };
        assert_eq!(a.key(), "account:1:alice");
        assert!(b.key().starts_with(&Scope::browsers_of(UserId(7))));
        assert_eq!(Scope::address("10.0.0.1").key(), "address:10.0.0.1");
    }
}
