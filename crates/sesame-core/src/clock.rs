//! The clock port. The real clock lives in the server; tests use [`ManualClock`].

use std::sync::atomic::{AtomicI64, Ordering};

/// Seconds since the Unix epoch.
pub type UnixTime = i64;

/// Where the domain gets the current time from.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> UnixTime;
}

/// A clock that only moves when told to; shared between a test and the server it drives.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: UnixTime) -> Self {
        Self(AtomicI64::new(start))
    }

    pub fn set(&self, t: UnixTime) {
        self.0.store(t, Ordering::SeqCst);
    }

    pub fn advance(&self, secs: i64) {
        self.0.fetch_add(secs, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> UnixTime {
        self.0.load(Ordering::SeqCst)
    }
}
