//! Fan-out of sign-in events: device streams subscribe per user; sign-in pages wait per
//! challenge. The database stays the source of truth: a woken waiter always re-reads the
//! challenge, so a lost or duplicated wake-up is harmless.
//!
//! With several nodes on one database (PostgreSQL), the hub is connected to the store's event
//! bus ([`Hub::connect`]): what a node publishes goes to its own streams and pages at once and
//! to the other nodes through `LISTEN/NOTIFY`, whose hubs deliver it to theirs. When the bus
//! may have missed events (the database restarted), every stream is ended so that its app
//! reconnects and re-reads what is pending, and every waiting page re-reads its challenge.
//!
//! Nothing here outlives its use: a user's channel goes when their last stream ends, and a
//! challenge's notifier when its last waiter leaves, answered or not. One device keeps at most
//! [`MAX_STREAMS_PER_DEVICE`] streams (a new one ends the oldest), and every stream ends when
//! the server shuts down. A panic elsewhere while
//! a lock was held does not take the hub down: the maps stay consistent at every step, so a
//! poisoned lock is simply taken over.

use serde::{Deserialize, Serialize};
use sesame_core::{ChallengeId, UserId};
use sesame_proto::device::DeviceEvent;
use sesame_store::{BusEvent, Store};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use tokio::sync::{broadcast, watch, Notify};

/// Events buffered per user for slow device streams; a stream that falls further behind
/// re-reads the pending list instead.
const USER_CHANNEL_CAPACITY: usize = 16;

/// Event streams one device may hold at once: its app, and a stale connection it has not
/// noticed is gone yet.
pub const MAX_STREAMS_PER_DEVICE: usize = 2;

pub struct Hub {
    users: Mutex<HashMap<UserId, broadcast::Sender<DeviceEvent>>>,
    challenges: Mutex<HashMap<ChallengeId, Arc<Notify>>>,
    /// Each device's open streams, oldest first.
    streams: Mutex<HashMap<String, VecDeque<OpenStream>>>,
    next_ticket: AtomicU64,
    stopping: watch::Sender<bool>,
    /// Moves on when events may have been missed: every stream ends (its app reconnects and
    /// re-reads what is pending).
    resync: watch::Sender<u64>,
    /// The other nodes, when the store has several (see [`Hub::connect`]).
    remote: OnceLock<Arc<dyn Store>>,
}

impl Default for Hub {
    fn default() -> Self {
        Self {
            users: Mutex::default(),
            challenges: Mutex::default(),
            streams: Mutex::default(),
            next_ticket: AtomicU64::new(0),
            stopping: watch::channel(false).0,
            resync: watch::channel(0).0,
            remote: OnceLock::new(),
        }
    }
}

/// What travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "to", rename_all = "snake_case")]
enum Remote {
    /// For the user's device streams.
    User { user: i64, event: DeviceEvent },
    /// For the pages waiting on a challenge.
    Challenge { id: String },
}

/// One open stream of a device: its ticket, and how to end it.
type OpenStream = (u64, Arc<Notify>);

/// What a device stream receives next.
#[derive(Debug)]
pub enum Received {
    Event(DeviceEvent),
    /// A newer stream of the same device took this one's place.
    Replaced,
    /// The server is shutting down: reconnect in a moment.
    ShuttingDown,
    /// The stream fell behind or its channel closed: reconnect and re-read what is pending.
    Closed,
}

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A device stream's subscription; when the last one of a user is dropped, the user's
/// channel goes too.
pub struct Subscription {
    hub: Arc<Hub>,
    user: UserId,
    device: String,
    ticket: u64,
    replaced: Arc<Notify>,
    stopping: watch::Receiver<bool>,
    resync: watch::Receiver<u64>,
    rx: Option<broadcast::Receiver<DeviceEvent>>,
}

impl Subscription {
    pub async fn recv(&mut self) -> Received {
        let Some(rx) = &mut self.rx else {
            return Received::Closed;
        };
        tokio::select! {
            biased;
            _ = self.stopping.wait_for(|s| *s) => Received::ShuttingDown,
            () = self.replaced.notified() => Received::Replaced,
            // Events may have been missed: the app reconnects and re-reads what is pending.
            _ = self.resync.changed() => Received::Closed,
            r = rx.recv() => match r {
                Ok(ev) => Received::Event(ev),
                Err(_) => Received::Closed,
            },
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        drop(self.rx.take());
        {
            let mut streams = locked(&self.hub.streams);
            if let Some(list) = streams.get_mut(&self.device) {
                list.retain(|(t, _)| *t != self.ticket);
                if list.is_empty() {
                    streams.remove(&self.device);
                }
            }
        }
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
    /// A receiver of the user's events for one of their devices. A device that already holds
    /// [`MAX_STREAMS_PER_DEVICE`] streams loses its oldest.
    pub fn subscribe(self: &Arc<Self>, user: UserId, device: &str) -> Subscription {
        let ticket = self.next_ticket.fetch_add(1, Ordering::Relaxed);
        let replaced = Arc::new(Notify::new());
        {
            let mut streams = locked(&self.streams);
            let list = streams.entry(device.to_string()).or_default();
            while list.len() >= MAX_STREAMS_PER_DEVICE {
                if let Some((_, oldest)) = list.pop_front() {
                    // A stored permit: the oldest ends even if it is not waiting right now.
                    oldest.notify_one();
                }
            }
            list.push_back((ticket, replaced.clone()));
        }
        let rx = locked(&self.users)
            .entry(user)
            .or_insert_with(|| broadcast::channel(USER_CHANNEL_CAPACITY).0)
            .subscribe();
        Subscription {
            hub: self.clone(),
            user,
            device: device.to_string(),
            ticket,
            replaced,
            stopping: self.stopping.subscribe(),
            resync: self.resync.subscribe(),
            rx: Some(rx),
        }
    }

    /// Connects this hub to the other nodes of the store, if it has any: from now on what is
    /// published here reaches their streams and pages too, and theirs reach ours.
    pub fn connect(self: &Arc<Self>, store: Arc<dyn Store>) {
        let Some(bus) = store.events() else {
            return;
        };
        let mut rx = bus.subscribe();
        if self.remote.set(store.clone()).is_err() {
            return;
        }
        // Holds the hub weakly: the task ends with the server.
        let hub = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                let event = rx.recv().await;
                let Some(hub) = hub.upgrade() else { return };
                match event {
                    Ok(BusEvent::Message(m)) => match serde_json::from_str::<Remote>(&m) {
                        Ok(Remote::User { user, event }) => hub.publish_here(UserId(user), event),
                        Ok(Remote::Challenge { id }) => hub.changed_here(&ChallengeId(id)),
                        Err(e) => {
                            tracing::warn!(error = %e, "an event from another node could not be read")
                        }
                    },
                    // Fell behind, or the bus reconnected: recover from the tables.
                    Ok(BusEvent::Resync) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        hub.resync_here();
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
    }

    fn send_remote(&self, what: &Remote) {
        if let Some(store) = self.remote.get() {
            if let Some(bus) = store.events() {
                match serde_json::to_string(what) {
                    Ok(m) => bus.publish(m),
                    Err(e) => tracing::warn!(error = %e, "an event could not be written"),
                }
            }
        }
    }

    /// Ends every stream (each app reconnects and re-reads what is pending) and wakes every
    /// waiting page (each re-reads its challenge): events may have been missed.
    fn resync_here(&self) {
        self.resync.send_modify(|g| *g = g.wrapping_add(1));
        let waiting: Vec<_> = locked(&self.challenges).drain().map(|(_, n)| n).collect();
        for n in waiting {
            n.notify_waiters();
        }
    }

    /// Ends every stream (the server is shutting down): each is told to reconnect.
    pub fn shut_down(&self) {
        self.stopping.send_replace(true);
    }

    /// Open streams of a device (for tests and metrics).
    pub fn streams_of(&self, device: &str) -> usize {
        locked(&self.streams).get(device).map_or(0, VecDeque::len)
    }

    /// Sends to every connected device of the user, on every node (none connected: nothing
    /// to do).
    pub fn publish(&self, user: UserId, event: DeviceEvent) {
        if self.remote.get().is_some() {
            self.send_remote(&Remote::User {
                user: user.0,
                event: event.clone(),
            });
        }
        self.publish_here(user, event);
    }

    fn publish_here(&self, user: UserId, event: DeviceEvent) {
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

    /// Open device event streams, over every device (metrics).
    pub fn open_streams(&self) -> usize {
        locked(&self.streams).values().map(VecDeque::len).sum()
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

    /// Wakes everyone waiting on the challenge, on every node, and forgets it.
    pub fn challenge_changed(&self, id: &ChallengeId) {
        self.send_remote(&Remote::Challenge { id: id.0.clone() });
        self.changed_here(id);
    }

    fn changed_here(&self, id: &ChallengeId) {
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
        let mut a = hub.subscribe(UserId(1), "d1");
        let mut b = hub.subscribe(UserId(2), "d2");
        hub.closed(UserId(1), "x".into(), "superseded");
        assert!(matches!(
            a.recv().await,
            Received::Event(DeviceEvent::Closed { .. })
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
        let s1 = hub.subscribe(UserId(7), "d7");
        let s2 = hub.subscribe(UserId(7), "d8");
        drop(s1);
        assert_eq!(hub.connected_users(), 1);
        drop(s2);
        assert_eq!(hub.connected_users(), 0);
        assert!(locked(&hub.users).is_empty());
        assert!(locked(&hub.streams).is_empty());
    }

    #[tokio::test]
    async fn a_device_keeps_two_streams_and_a_new_one_ends_the_oldest() {
        let hub = Arc::new(Hub::default());
        let mut first = hub.subscribe(UserId(1), "d");
        let mut second = hub.subscribe(UserId(1), "d");
        let _other_device = hub.subscribe(UserId(1), "e");
        assert_eq!(hub.streams_of("d"), 2);
        let mut third = hub.subscribe(UserId(1), "d");
        assert_eq!(hub.streams_of("d"), 2);
        assert!(matches!(first.recv().await, Received::Replaced));
        hub.publish(
            UserId(1),
            DeviceEvent::Closed {
                id: "x".into(),
                reason: "r".into(),
            },
        );
        assert!(matches!(second.recv().await, Received::Event(_)));
        assert!(matches!(third.recv().await, Received::Event(_)));
        drop(first);
        assert_eq!(hub.streams_of("d"), 2, "the replaced one was already gone");
        drop(third);
        assert_eq!(hub.streams_of("d"), 1);
    }

    #[tokio::test]
    async fn shutting_down_ends_every_stream_even_new_ones() {
        let hub = Arc::new(Hub::default());
        let mut a = hub.subscribe(UserId(1), "d");
        let waiting = tokio::spawn(async move { a.recv().await });
        tokio::task::yield_now().await;
        hub.shut_down();
        assert!(matches!(waiting.await.unwrap(), Received::ShuttingDown));
        let mut late = hub.subscribe(UserId(2), "e");
        assert!(matches!(late.recv().await, Received::ShuttingDown));
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
        let _s = hub.subscribe(UserId(1), "d");
        assert_eq!(hub.connected_users(), 1);
    }
}
