//! In-process fan-out of sign-in events: device streams subscribe per user; sign-in pages
//! wait per challenge. The database stays the source of truth: a woken waiter always re-reads
//! the challenge, so a lost or duplicated wake-up is harmless. (Several nodes will feed this
//! hub from PostgreSQL `LISTEN/NOTIFY`.)

use sesame_core::UserId;
use sesame_proto::device::DeviceEvent;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, Notify};

/// Events buffered per user for slow device streams; a stream that falls further behind
/// re-reads the pending list instead.
const USER_CHANNEL_CAPACITY: usize = 16;

#[derive(Default)]
pub struct Hub {
    users: Mutex<HashMap<UserId, broadcast::Sender<DeviceEvent>>>,
    challenges: Mutex<HashMap<String, Arc<Notify>>>,
}

impl Hub {
    /// A receiver of the user's device events.
    pub fn subscribe(&self, user: UserId) -> broadcast::Receiver<DeviceEvent> {
        let mut users = self.users.lock().expect("hub lock");
        users
            .entry(user)
            .or_insert_with(|| broadcast::channel(USER_CHANNEL_CAPACITY).0)
            .subscribe()
    }

    /// Sends to every connected device of the user (none connected: nothing to do).
    pub fn publish(&self, user: UserId, event: DeviceEvent) {
        let mut users = self.users.lock().expect("hub lock");
        if let Some(tx) = users.get(&user) {
            if tx.send(event).is_err() {
                // No receivers left: drop the channel so idle users cost nothing.
                users.remove(&user);
            }
        }
    }

    /// Number of users with at least one connected device (for metrics and tests).
    pub fn connected_users(&self) -> usize {
        self.users
            .lock()
            .expect("hub lock")
            .values()
            .filter(|tx| tx.receiver_count() > 0)
            .count()
    }

    fn challenge_notify(&self, id: &str) -> Arc<Notify> {
        let mut map = self.challenges.lock().expect("hub lock");
        map.entry(id.to_string()).or_default().clone()
    }

    /// The notifier of a challenge. Callers register (`enable`) the notified future, then
    /// re-read the challenge, then wait: a change in between is never missed.
    pub fn waiter(&self, id: &str) -> Arc<Notify> {
        self.challenge_notify(id)
    }

    /// Wakes everyone waiting on the challenge and forgets it.
    pub fn challenge_changed(&self, id: &str) {
        let n = self.challenges.lock().expect("hub lock").remove(id);
        if let Some(n) = n {
            n.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn events_reach_subscribers_of_that_user_only() {
        let hub = Hub::default();
        let mut a = hub.subscribe(UserId(1));
        let mut b = hub.subscribe(UserId(2));
        hub.publish(
            UserId(1),
            DeviceEvent::Closed {
                id: "x".into(),
                reason: "superseded".into(),
            },
        );
        assert!(matches!(
            a.recv().await.unwrap(),
            DeviceEvent::Closed { .. }
        ));
        assert!(b.try_recv().is_err());
    }

    #[tokio::test]
    async fn challenge_waiters_wake() {
        let hub = Arc::new(Hub::default());
        let n = hub.waiter("c1");
        let fut = n.notified();
        tokio::pin!(fut);
        fut.as_mut().enable();
        hub.challenge_changed("c1");
        tokio::time::timeout(std::time::Duration::from_secs(1), fut)
            .await
            .expect("woken");
    }
}
