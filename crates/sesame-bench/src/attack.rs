//! One client flooding wrong passwords: `connections` tasks, each a browser that names an
//! account once and then posts wrong passwords on that one sign-in until told to stop (as
//! the finding did: one sign-in cookie reused for minutes). Accounts are taken in turn from
//! `targets`.

use crate::http::{Browser, Failure};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

/// What the server answered the attacker, by status.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// Count by HTTP status (0: no answer: connection refused, reset or timed out).
    pub by_status: BTreeMap<u16, u64>,
    pub seconds: f64,
}

impl Answers {
    pub fn count(&self, status: u16) -> u64 {
        self.by_status.get(&status).copied().unwrap_or(0)
    }

    pub fn total(&self) -> u64 {
        self.by_status.values().sum()
    }

    /// Per second over the flood.
    pub fn rate(&self, status: u16) -> f64 {
        self.count(status) as f64 / self.seconds.max(1e-9)
    }
}

/// Floods until `stop` is set; returns what the server answered.
pub async fn flood(
    client: reqwest::Client,
    base: Arc<str>,
    targets: Arc<Vec<String>>,
    connections: usize,
    stop: Arc<AtomicBool>,
) -> Answers {
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..connections {
        let (client, base, targets, stop, next) = (
            client.clone(),
            base.clone(),
            targets.clone(),
            stop.clone(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut seen: BTreeMap<u16, u64> = BTreeMap::new();
            let mut guess = 0u64;
            'browser: while !stop.load(Ordering::Relaxed) {
                let target = &targets[next.fetch_add(1, Ordering::Relaxed) % targets.len()];
                let mut b = match Browser::open(&client, &base).await {
                    Ok(b) => b,
                    Err(f) => {
                        *seen.entry(status(&f)).or_insert(0) += 1;
                        continue;
                    }
                };
                if let Err(f) = b.username(target, "/login/password").await {
                    *seen.entry(status(&f)).or_insert(0) += 1;
                    continue;
                }
                while !stop.load(Ordering::Relaxed) {
                    guess += 1;
                    match b.guess(&format!("wrong-{c}-{guess}")).await {
                        Ok(s) => {
                            *seen.entry(s).or_insert(0) += 1;
                            // A sign-in the server ended (it moved on, or expired) starts again.
                            if s != 401 && s != 429 && s != 503 {
                                continue 'browser;
                            }
                        }
                        Err(f) => {
                            *seen.entry(status(&f)).or_insert(0) += 1;
                            continue 'browser;
                        }
                    }
                }
            }
            seen
        });
    }
    let mut answers = Answers::default();
    while let Some(seen) = tasks.join_next().await {
        for (k, v) in seen.unwrap_or_default() {
            *answers.by_status.entry(k).or_insert(0) += v;
        }
    }
    answers.seconds = started.elapsed().as_secs_f64();
    answers
}

fn status(f: &Failure) -> u16 {
    f.status.unwrap_or(0)
}
