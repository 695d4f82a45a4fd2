//! The raw Argon2id rate of this machine: what a password sign-in costs the server at least.

use sesame_core::password;
use sesame_core::secret::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A PHC string of `password` with the server's parameters, as stored for a user.
pub fn phc(password: &str) -> anyhow::Result<String> {
    Ok(password::hash(
        &SecretString::new(password.into()),
        &mut rand::rngs::OsRng,
    )?)
}

pub struct HashRate {
    pub threads: usize,
    pub hashes: u64,
    pub per_sec: f64,
}

/// Runs `password::verify` of `password` against `phc` (what the server does per password
/// sign-in) on `threads` threads for `secs`.
pub fn hash_rate(threads: usize, secs: f64, phc: &str, password: &str) -> HashRate {
    let barrier = Arc::new(std::sync::Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let phc = phc.to_string();
            let pw = SecretString::new(password.into());
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                let deadline = start + Duration::from_secs_f64(secs);
                let mut n = 0u64;
                while Instant::now() < deadline {
                    assert!(password::verify(Some(&phc), &pw), "hash must verify");
                    n += 1;
                }
                (n, start.elapsed().as_secs_f64())
            })
        })
        .collect();
    let mut hashes = 0;
    let mut per_sec = 0.0;
    for h in handles {
        let (n, el) = h.join().expect("hash thread");
        hashes += n;
        per_sec += n as f64 / el;
    }
    HashRate {
        threads,
        hashes,
        per_sec,
    }
}

/// The rate on one core and on all `cores`.
pub struct HashRates {
    pub one: HashRate,
    pub all: HashRate,
}

impl HashRates {
    /// Says `step` on stderr, then measures `secs` on one core and `secs` on all `cores`.
    pub fn measure(step: &str, secs: f64, cores: usize, phc: &str, password: &str) -> Self {
        eprintln!(
            "{step} raw Argon2id (m={} KiB, t={}, p={}): {secs:.0} s on 1 core, then {secs:.0} s on {cores} cores ...",
            password::MEMORY_KIB,
            password::ITERATIONS,
            password::PARALLELISM,
        );
        HashRates {
            one: hash_rate(1, secs, phc, password),
            all: hash_rate(cores, secs, phc, password),
        }
    }

    /// Milliseconds one hash takes on one core.
    pub fn ms_per_hash(&self) -> f64 {
        1000.0 / self.one.per_sec.max(1e-9)
    }

    /// "N hashes/s on 1 core (N ms/hash), N hashes/s on N cores", for the summaries.
    pub fn describe(&self) -> String {
        format!(
            "{:.1} hashes/s on 1 core ({:.1} ms/hash), {:.1} hashes/s on {} cores",
            self.one.per_sec,
            self.ms_per_hash(),
            self.all.per_sec,
            self.all.threads
        )
    }

    /// The server's Argon2id parameters: "m=N KiB, t=N, p=N".
    pub fn parameters() -> String {
        format!(
            "m={} KiB, t={}, p={}",
            password::MEMORY_KIB,
            password::ITERATIONS,
            password::PARALLELISM
        )
    }
}
