//! Events between nodes through PostgreSQL `LISTEN/NOTIFY`.
//!
//! One connection per node, outside the pool, listens on one channel and sends this node's
//! events on it. A message is `NODE PAYLOAD`: a node ignores its own (it has delivered them
//! already). The database stays the source of truth: an event only wakes someone who then
//! reads the tables, so a lost or repeated event costs a re-read, never a wrong answer.
//!
//! When the connection breaks (the database restarted), the node reconnects with a growing
//! pause, listens again, and then tells its own listeners and every other node to resync
//! ([`BusEvent::Resync`]): whatever was published while it was away is recovered from the
//! tables, not from the channel.

use crate::EventBus;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_postgres::{AsyncMessage, Config, NoTls};

pub use crate::BusEvent;

/// The channel the nodes of one deployment listen on, for tables in the `public` schema. A
/// channel is database-wide, not per schema: deployments kept apart by schemas of one database
/// (`options=-csearch_path=...`) each get a channel of their own ([`channel_for`]), or one
/// would hear the other's events (user ids repeat between schemas).
const CHANNEL: &str = "sesame_events";

/// The channel for the deployment whose tables are in `schema`: [`CHANNEL`] for `public`
/// (what every node of a default set-up computes), else one named after a digest of the
/// schema (channel names are at most 63 bytes, and plain letters, digits and `_` need no
/// quoting).
fn channel_for(schema: &str) -> String {
    use sha2::Digest;
    if schema == "public" {
        return CHANNEL.to_string();
    }
    let digest = sha2::Sha256::digest(schema.as_bytes());
    let tag: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("{CHANNEL}_{tag}")
}
/// What a node sends others to make them resync (after it was away).
const RESYNC: &str = "!resync";
/// Events waiting for a slow listener before it is told to resync instead.
const BUFFER: usize = 4096;
/// Longest pause between reconnection attempts.
const MAX_PAUSE: Duration = Duration::from_secs(5);
/// PostgreSQL refuses payloads of 8000 bytes or more.
const MAX_PAYLOAD: usize = 7900;

pub struct Bus {
    node: String,
    out: mpsc::UnboundedSender<String>,
    events: broadcast::Sender<BusEvent>,
    connected: tokio::sync::watch::Receiver<bool>,
}

impl Bus {
    /// Starts listening in the background (it keeps trying until the database answers).
    pub(super) fn start(config: Config) -> Self {
        let node = super::random_hex(8);
        let (out, out_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(BUFFER);
        let (up, connected) = tokio::sync::watch::channel(false);
        tokio::spawn(run(config, node.clone(), out_rx, events.clone(), up));
        Self {
            node,
            out,
            events,
            connected,
        }
    }

    /// Waits until the bus listens (tests, and the start of a node that must not miss events).
    pub async fn listening(&self) {
        let mut c = self.connected.clone();
        let _ = c.wait_for(|up| *up).await;
    }
}

impl EventBus for Bus {
    fn publish(&self, payload: String) {
        if payload.len() + self.node.len() + 1 > MAX_PAYLOAD {
            tracing::warn!(len = payload.len(), "event too large for NOTIFY; not sent");
            return;
        }
        if payload.contains('\n') {
            tracing::warn!("an event of several lines cannot be sent; not sent");
            return;
        }
        let _ = self.out.send(payload);
    }

    fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.events.subscribe()
    }
}

/// How often a quiet event connection is checked (a connection dropped without a reset, by a
/// failover or a firewall, would otherwise look alive for hours).
const HEARTBEAT: Duration = Duration::from_secs(15);
/// Longest a NOTIFY or a heartbeat may take before the connection is taken for dead.
const ROUND_TRIP_LIMIT: Duration = Duration::from_secs(10);
/// A connection that stayed up this long starts the reconnection pauses from the shortest again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);

async fn run(
    mut config: Config,
    node: String,
    mut out: mpsc::UnboundedReceiver<String>,
    events: broadcast::Sender<BusEvent>,
    up: tokio::sync::watch::Sender<bool>,
) {
    // The kernel finds a dead peer too (keepalives after 30 s idle); the heartbeat below is
    // what bounds it whatever the network does.
    config
        .keepalives(true)
        .keepalives_idle(Duration::from_secs(30));
    let mut pause = Duration::from_millis(100);
    // Events of ours that may not have reached the other nodes (a NOTIFY failed, or events
    // were dropped while we were away): they are told to resync when we are back.
    let mut others_missed = false;
    loop {
        if events.receiver_count() == 0 && out.is_closed() {
            return;
        }
        match config.connect(NoTls).await {
            Ok((client, mut conn)) => {
                // The connection must be driven for the client to work; its notifications
                // come out of the same stream.
                let (notes_tx, mut notes) = mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    let mut stream = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
                    use futures_util::StreamExt;
                    while let Some(m) = stream.next().await {
                        match m {
                            Ok(AsyncMessage::Notification(n)) => {
                                if notes_tx.send(n.payload().to_string()).is_err() {
                                    return;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "event connection to the database failed");
                                return;
                            }
                        }
                    }
                });
                // The deployment's channel, from the schema its tables are in.
                let listening = tokio::time::timeout(ROUND_TRIP_LIMIT, async {
                    let schema: String = client
                        .query_one("SELECT current_schema()::TEXT", &[])
                        .await?
                        .try_get(0)?;
                    let channel = channel_for(&schema);
                    client.batch_execute(&format!("LISTEN {channel}")).await?;
                    Ok::<_, tokio_postgres::Error>(channel)
                })
                .await;
                let channel = match &listening {
                    Ok(Ok(c)) => c.clone(),
                    _ => String::new(),
                };
                if channel.is_empty() {
                    tracing::warn!(?listening, "cannot listen for other nodes' events");
                    driver.abort();
                } else {
                    let since = tokio::time::Instant::now();
                    up.send_replace(true);
                    // Sent while away: the resyncs below cover them.
                    while out.try_recv().is_ok() {
                        others_missed = true;
                    }
                    // Ours, always (the first time too: events made before this node listened
                    // are in the tables); the other nodes', only if they may have missed ours.
                    let _ = events.send(BusEvent::Resync);
                    if others_missed {
                        tracing::info!("event connection to the database is back; telling the other nodes to resync");
                        let told = tokio::time::timeout(
                            ROUND_TRIP_LIMIT,
                            client.execute(
                                "SELECT pg_notify($1, $2)",
                                &[&channel, &format!("{node} {RESYNC}")],
                            ),
                        )
                        .await;
                        others_missed = !matches!(told, Ok(Ok(_)));
                    }
                    let mut heartbeat = tokio::time::interval(HEARTBEAT);
                    heartbeat.tick().await;
                    loop {
                        tokio::select! {
                            note = notes.recv() => match note {
                                Some(p) => deliver(&node, &p, &events),
                                None => break,
                            },
                            _ = heartbeat.tick() => {
                                let alive = tokio::time::timeout(ROUND_TRIP_LIMIT, client.simple_query("SELECT 1")).await;
                                if !matches!(alive, Ok(Ok(_))) {
                                    tracing::warn!("the event connection to the database stopped answering");
                                    break;
                                }
                            },
                            msg = out.recv() => match msg {
                                Some(first) => {
                                    // Everything else waiting goes in the same NOTIFY: under
                                    // load one statement (and one commit, which PostgreSQL
                                    // serialises for all notifying transactions) carries many
                                    // events.
                                    let mut carry = Some(first);
                                    while let Some(lead) = carry.take() {
                                        let batch = batch_after(lead, &mut out, &mut carry, &node);
                                        let sent = tokio::time::timeout(
                                            ROUND_TRIP_LIMIT,
                                            client.execute("SELECT pg_notify($1, $2)", &[&channel, &batch]),
                                        )
                                        .await;
                                        if !matches!(sent, Ok(Ok(_))) {
                                            tracing::warn!(?sent, "could not send events to the other nodes");
                                            others_missed = true;
                                            break;
                                        }
                                    }
                                    if others_missed {
                                        break;
                                    }
                                }
                                None => { driver.abort(); return; }
                            },
                        }
                    }
                    up.send_replace(false);
                    driver.abort();
                    // Our own listeners missed whatever came while the connection broke.
                    let _ = events.send(BusEvent::Resync);
                    if since.elapsed() >= HEALTHY_AFTER {
                        pause = Duration::from_millis(100);
                    }
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_in_ms = pause.as_millis() as u64, "event connection to the database failed");
            }
        }
        // A random part, so that nodes cut off together do not come back in step.
        let jitter =
            Duration::from_millis(rand::random::<u64>() % (pause.as_millis() as u64 / 2 + 1));
        tokio::time::sleep(pause + jitter).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// `NODE` and a first event, then every event already waiting, one per line, while the whole
/// stays within PostgreSQL's payload limit; an event that would not fit is left in `carry`, to
/// lead the next batch (so the order is kept).
fn batch_after(
    first: String,
    out: &mut mpsc::UnboundedReceiver<String>,
    carry: &mut Option<String>,
    node: &str,
) -> String {
    let mut batch = format!("{node} {first}");
    while let Ok(next) = out.try_recv() {
        if batch.len() + 1 + next.len() > MAX_PAYLOAD {
            *carry = Some(next);
            break;
        }
        batch.push('\n');
        batch.push_str(&next);
    }
    batch
}

fn deliver(node: &str, payload: &str, events: &broadcast::Sender<BusEvent>) {
    let Some((from, body)) = payload.split_once(' ') else {
        return;
    };
    if from == node {
        return;
    }
    for line in body.lines() {
        let _ = events.send(if line == RESYNC {
            BusEvent::Resync
        } else {
            BusEvent::Message(line.to_string())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schema_of_its_own_has_a_channel_of_its_own() {
        assert_eq!(channel_for("public"), "sesame_events");
        let a = channel_for("t_alpha");
        assert_ne!(a, channel_for("t_beta"));
        assert_eq!(a, channel_for("t_alpha"), "every node computes the same");
        assert!(a.len() <= 63);
        assert!(
            a.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
            "{a}"
        );
    }

    #[test]
    fn waiting_events_share_one_notify_in_order_and_a_big_one_leads_the_next() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        tx.send("b".to_string()).unwrap();
        tx.send("c".to_string()).unwrap();
        tx.send("x".repeat(MAX_PAYLOAD - 3)).unwrap();
        tx.send("d".to_string()).unwrap();
        let mut carry = None;
        let first = batch_after("a".into(), &mut rx, &mut carry, "n1");
        assert_eq!(first, "n1 a\nb\nc");
        let big = carry
            .take()
            .expect("the big event waits for the next batch");
        let second = batch_after(big, &mut rx, &mut carry, "n1");
        assert!(second.len() <= MAX_PAYLOAD);
        assert!(carry.is_some(), "d does not fit beside it");
    }

    #[test]
    fn a_node_hears_each_line_of_others_and_nothing_of_its_own() {
        let (events, mut rx) = broadcast::channel(16);
        deliver("me", "me a\nb", &events);
        deliver("me", "other a\n!resync\nc", &events);
        deliver("me", "garbage-without-space", &events);
        assert_eq!(rx.try_recv().unwrap(), BusEvent::Message("a".into()));
        assert_eq!(rx.try_recv().unwrap(), BusEvent::Resync);
        assert_eq!(rx.try_recv().unwrap(), BusEvent::Message("c".into()));
        assert!(rx.try_recv().is_err());
    }
}
