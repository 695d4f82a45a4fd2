//! The phone side: a registered device, its event stream, and signed answers to requests.

use crate::http::Failure;
use sesame_authenticator::client::DeviceClient;
use sesame_authenticator::device::DeviceKey;
use sesame_proto::device::{approval_message, Challenge, Decision, DeviceEvent, RespondRequest};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// A user with one registered device (see [`crate::setup`]).
pub struct Phone {
    pub user: sesame_core::UserId,
    pub username: String,
    pub device_id: String,
    pub key: DeviceKey,
    /// The PIN key as the phone holds it once the PIN unsealed it, if one is registered.
    pub pin_key: Option<DeviceKey>,
}

impl Phone {
    /// A device client of this phone (its own connections) for the server at `base`.
    pub fn client(&self, base: &str) -> DeviceClient<'_> {
        DeviceClient::new(base, &self.device_id, &self.key)
    }

    /// Approves request `c` with the `number` the page shows, signed by the device key (and
    /// the PIN key when there is one); the server must answer "approved".
    pub async fn approve(
        &self,
        device: &DeviceClient<'_>,
        c: &Challenge,
        number: &str,
    ) -> Result<(), Failure> {
        const STAGE: &str = "POST respond";
        let msg = approval_message(&c.id, &c.nonce, Decision::Approve, number, &self.device_id);
        let answer = RespondRequest {
            challenge_id: c.id.clone(),
            decision: Decision::Approve,
            number: number.to_string(),
            signature: self.key.sign(&msg),
            pin_signature: self.pin_key.as_ref().map(|k| k.sign(&msg)),
        };
        let out = device
            .respond(&answer)
            .await
            .map_err(|e| Failure::new(STAGE, None, e))?;
        if out.outcome != "approved" {
            return Err(Failure::new(
                STAGE,
                Some(200),
                format!("outcome {}", out.outcome),
            ));
        }
        Ok(())
    }
}

/// Events seen on the streams, and how often a stream had to be opened again.
#[derive(Default)]
pub struct StreamStats {
    pub reconnects: AtomicU64,
    pub events: AtomicU64,
}

/// What a listener reports once: whether its stream opened (or why not).
pub type Ready = mpsc::Sender<Result<(), String>>;

/// Keeps `device`'s event stream open like the app does and sends `wrap(request)` to `tx` for
/// every sign-in request, as it arrives. Reports on `ready` whether the first connection
/// opened (it gives up if not). When the stream ends it opens it again after 100 ms if
/// `reconnect`, else returns; it also returns once `tx` is closed.
pub async fn listen<T>(
    device: &DeviceClient<'_>,
    tx: mpsc::UnboundedSender<T>,
    wrap: impl Fn(Challenge) -> T,
    ready: Ready,
    reconnect: bool,
    stats: &StreamStats,
) {
    let mut ready = Some(ready);
    loop {
        match device.events().await {
            Ok(mut stream) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(())).await;
                }
                loop {
                    match stream.next().await {
                        Ok(Some(DeviceEvent::Challenge(c))) => {
                            stats.events.fetch_add(1, Ordering::Relaxed);
                            if tx.send(wrap(c)).is_err() {
                                return;
                            }
                        }
                        Ok(Some(DeviceEvent::Closed { .. })) => {}
                        Ok(None) | Err(_) => break,
                    }
                }
            }
            Err(e) => {
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e.to_string())).await;
                    return;
                }
            }
        }
        if !reconnect || tx.is_closed() {
            return;
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Opens `n` event streams, 200 at a time: `start(i, ready)` spawns the listener of stream `i`
/// (see [`listen`]), and each chunk is waited for before the next. Returns how many opened
/// and the first error.
pub async fn open_streams(
    n: usize,
    mut start: impl FnMut(usize, Ready),
) -> (usize, Option<String>) {
    let mut opened = 0;
    let mut first_error = None;
    for chunk in (0..n).collect::<Vec<_>>().chunks(200) {
        let (ready_tx, mut ready_rx) = mpsc::channel(chunk.len());
        for &i in chunk {
            start(i, ready_tx.clone());
        }
        drop(ready_tx);
        while let Some(r) = ready_rx.recv().await {
            match r {
                Ok(()) => opened += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    }
    (opened, first_error)
}
