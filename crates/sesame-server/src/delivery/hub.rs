//! In-process fan-out of sign-in events: device streams subscribe per user; sign-in pages
//! wait per challenge. The database stays the source of truth: a woken waiter always re-reads
//! the challenge, so a lost or duplicated wake-up is harmless. (Several nodes will feed this
//! hub from PostgreSQL `LISTEN/NOTIFY`.)
//!
//! Nothing here outlives its use: a user's channel goes when their last stream ends, and a
//! challenge's notifier when its last waiter leaves, answered or not. A panic elsewhere while
//! a lock was held does not take the hub down: the maps stay consistent at every step, so a
//! poisoned lock is simply taken over.

use sesame_core::{ChallengeId, UserId};
use sesame_proto::device::DeviceEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::{broadcast, Notify};

/// Events buffered per user for slow device streams; a stream that falls further behind
/// re-reads the pending list instead.
const USER_CHANNEL_CAPACITY: usize = 16;

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<UserId, broadcast::Sender<DeviceEvent>>>,
    challenges: Mutex<HashMap<ChallengeId, Arc<Notify>>>,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A device stream's subscription; when the last one of a user is dropped, the user's
/// channel goes too.
pub struct Subscription {
    hub: Arc<Hub>,
    user: UserId,
    rx: Option<broadcast::Receiver<DeviceEvent>>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Result<DeviceEvent, broadcast::error::RecvError> {
        match &mut self.rx {
            Some(rx) => rx.recv().await,
            None => Err(broadcast::error::RecvError::Closed),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        let mut users = locked(&self.hub.users);
        if users
            .get(&self.user)
            .is_some_and(|tx| tx.receiver_count() == 0)
        {
            users.remove(&self.user);
        }
    }
}

/// A sign-in page waiting for a challenge to change. Register it (`notified()` +
/// `enable()`), then re-read the challenge, then wait: a change in between is never missed.
pub struct Waiter {
    hub: Arc<Hub>,
    id: ChallengeId,
    notify: Arc<Notify>,
}

impl Waiter {
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut map = locked(&self.hub.challenges);
        // The map's reference and ours: nobody else waits, so a challenge that expires
        // unanswered leaves nothing behind.
        if map
            .get(&self.id)
            .is_some_and(|n| Arc::ptr_eq(n, &self.notify) && Arc::strong_count(n) == 2)
        {
            map.remove(&self.id);
        }
    }
}

impl Hub {
    /// A receiver of the user's device events.
    pub fn subscribe(self: &Arc<Self>, user: UserId) -> Subscription {
        let rx = locked(&self.users)
            .entry(user)
            .or_insert_with(|| broadcast::channel(USER_CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            user,
            rx: Some(rx),
        }
    }

    /// Sends to every connected device of the user (none connected: nothing to do).
    pub fn publish(&self, user: UserId, event: DeviceEvent) {
        let mut users = locked(&self.users);
        if let Some(tx) = users.get(&user) {
            if tx.send(event).is_err() {
                // No receivers left: drop the channel so idle users cost nothing.
                users.remove(&user);
            }
        }
    }

    /// Number of users with at least one connected device (for metrics and tests).
    pub fn connected_users(&self) -> usize {
        locked(&self.users)
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }

    /// Number of challenges someone is waiting on (for tests: nothing may leak).
    pub fn waited_challenges(&self) -> usize {
        locked(&self.challenges).len()
    }

    /// A waiter on the challenge `id`.
    pub fn waiter(self: &Arc<Self>, id: &ChallengeId) -> Waiter {
        let notify = locked(&self.challenges)
            .entry(id.clone())
            .or_default()
            .clone();
        Waiter {
            hub: self.clone(),
            id: id.clone(),
            notify,
        }
    }

    /// Wakes everyone waiting on the challenge and forgets it.
    pub fn challenge_changed(&self, id: &ChallengeId) {
        let n = locked(&self.challenges).remove(id);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }

    /// Tells the user's devices a request is over (and why), and wakes its waiting pages.
    pub fn closed(&self, user: UserId, id: ChallengeId, reason: &str) {
        self.challenge_changed(&id);
        self.publish(
            user,
            DeviceEvent::Closed {
                id: id.0,
                reason: reason.into(),
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn events_reach_subscribers_of_that_user_only() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscribe(UserId(1));
        let mut b = hub.subscribe(UserId(2));
        hub.closed(UserId(1), "x".into(), "superseded");
        assert!(matches!(
            a.recv().await.unwrap(),
            DeviceEvent::Closed { .. }
        ));
        assert!(tokio::time::timeout(Duration::from_millis(20), b.recv())
            .await
            .is_err());
    }

    #[tokio::test]
    async fn challenge_waiters_wake() {
        let hub = Arc::new(Hub::default());
        let w = hub.waiter(&"c1".into());
        let fut = w.notify().notified();
        tokio::pin!(fut);
        fut.as_mut().enable();
        hub.challenge_changed(&"c1".into());
        tokio::time::timeout(Duration::from_secs(1), fut)
            .await
            .expect("woken");
    }

    #[tokio::test]
    async fn nothing_is_kept_for_challenges_nobody_waits_on_or_users_nobody_streams() {
        let hub = Arc::new(Hub::default());
        // Waiters of a challenge that expires unanswered: nothing stays once they leave.
        let a = hub.waiter(&"expired".into());
        let b = hub.waiter(&"expired".into());
        assert_eq!(hub.waited_challenges(), 1);
        drop(a);
        assert_eq!(hub.waited_challenges(), 1, "one still waits");
        drop(b);
        assert_eq!(hub.waited_challenges(), 0);
        // A waiter that outlives a change, then a new waiter of the same id.
        let old = hub.waiter(&"c".into());
        hub.challenge_changed(&"c".into());
        let new = hub.waiter(&"c".into());
        drop(old);
        assert_eq!(hub.waited_challenges(), 1, "the new waiter's entry stays");
        drop(new);
        assert_eq!(hub.waited_challenges(), 0);
        // Streams that end without any event.
        let s1 = hub.subscribe(UserId(7));
        let s2 = hub.subscribe(UserId(7));
        drop(s1);
        assert_eq!(hub.connected_users(), 1);
        drop(s2);
        assert_eq!(hub.connected_users(), 0);
        assert!(locked(&hub.users).is_empty());
    }

    #[test]
    fn a_poisoned_lock_does_not_take_the_hub_down() {
        let hub = Arc::new(Hub::default());
        let h = hub.clone();
        let _ = std::thread::spawn(move || {
            let _guard = h.users.lock().unwrap();
            panic!("a panic while holding the lock");
        })
        .join();
        assert!(hub.users.is_poisoned());
        hub.publish(
            UserId(1),
            DeviceEvent::Closed {
                id: "x".into(),
                reason: "r".into(),
            },
        );
        let _s = hub.subscribe(UserId(1));
        assert_eq!(hub.connected_users(), 1);
    }
}
