//! Lockout arithmetic for failed second-step attempts, counted per user and method.
//!
//! After `soft_after` consecutive failures the method is locked for `base_lock_secs`, doubling
//! with each further failure; at `hard_after` it stops until an administrator resets it. The
//! counter lives in the store so that new sessions, new codes and other nodes never reset it.

use crate::UnixTime;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockoutPolicy {
    pub soft_after: u32,
    pub base_lock_secs: i64,
    pub hard_after: u32,
}

impl Default for LockoutPolicy {
    fn default() -> Self {
        Self {
            soft_after: 10,
            base_lock_secs: 60,
            hard_after: 100,
        }
    }
}

/// Whether an attempt may be evaluated now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptGate {
    Open,
    /// Locked until this moment; the attempt is refused without being evaluated or counted.
    SoftLocked {
        until: UnixTime,
    },
    /// Too many failures: only an administrator can reset the method.
    HardLocked,
}

/// The longest single soft lock, so the doubling cannot overflow (one day).
const MAX_LOCK_SECS: i64 = 24 * 60 * 60;

impl LockoutPolicy {
    /// Length of the soft lock that follows the `failures`-th consecutive failure, if any.
    pub fn lock_duration(&self, failures: u32) -> Option<i64> {
        if failures < self.soft_after {
            return None;
        }
        let doublings = (failures - self.soft_after).min(30);
        Some(
            self.base_lock_secs
                .saturating_mul(1i64 << doublings)
                .min(MAX_LOCK_SECS),
        )
    }

    /// The gate given the stored counter. A clock that moved backwards keeps a lock in force
    /// (the lock ends at a fixed moment after the last failure, never earlier).
    pub fn gate(
        &self,
        failures: u32,
        last_failure_at: Option<UnixTime>,
        now: UnixTime,
    ) -> AttemptGate {
        if failures >= self.hard_after {
            return AttemptGate::HardLocked;
        }
        match (self.lock_duration(failures), last_failure_at) {
            (Some(d), Some(last)) if now < last.saturating_add(d) => AttemptGate::SoftLocked {
                until: last.saturating_add(d),
            },
            _ => AttemptGate::Open,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_table() {
        let p = LockoutPolicy::default();
        let t = 1_000_000;
        // (failures so far, seconds since last failure, expected gate)
        let table: &[(u32, i64, AttemptGate)] = &[
            (0, 0, AttemptGate::Open),
            (9, 0, AttemptGate::Open),
            (10, 0, AttemptGate::SoftLocked { until: t + 60 }),
            (10, 59, AttemptGate::SoftLocked { until: t + 60 }),
            (10, 60, AttemptGate::Open),
            (11, 60, AttemptGate::SoftLocked { until: t + 120 }),
            (11, 120, AttemptGate::Open),
            (12, 200, AttemptGate::SoftLocked { until: t + 240 }),
            (13, 480, AttemptGate::Open),
            (40, 86_399, AttemptGate::SoftLocked { until: t + 86_400 }),
            (99, 86_400, AttemptGate::Open),
            (100, 0, AttemptGate::HardLocked),
            (100, 10_000_000, AttemptGate::HardLocked),
            (5_000, 0, AttemptGate::HardLocked),
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
    fn clock_moved_back_keeps_the_lock() {
        let p = LockoutPolicy::default();
        assert_eq!(
            p.gate(10, Some(1000), 500),
            AttemptGate::SoftLocked { until: 1060 }
        );
    }

    #[test]
    fn doubling_never_overflows() {
        let p = LockoutPolicy {
            soft_after: 1,
            base_lock_secs: i64::MAX / 2,
            hard_after: u32::MAX,
        };
        assert_eq!(p.lock_duration(u32::MAX - 1), Some(MAX_LOCK_SECS));
    }
}
