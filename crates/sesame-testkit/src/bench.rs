//! Measurement pieces shared by the benchmark binaries.

use sesame_core::password;
use sesame_core::secret::SecretString;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Linux exports process CPU times in USER_HZ, which is 100 on every supported platform.
pub const USER_HZ: f64 = 100.0;

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

/// The name and utime + stime in seconds, from a `/proc/.../stat` line.
pub fn stat_cpu(text: &str) -> Option<(String, f64)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = text[open + 1..close].to_string();
    let f: Vec<&str> = text[close + 2..].split_whitespace().collect();
    // After "pid (comm) ": state is field 0; utime and stime are fields 11 and 12.
    let ut: f64 = f.get(11)?.parse().ok()?;
    let st: f64 = f.get(12)?.parse().ok()?;
    Some((comm, (ut + st) / USER_HZ))
}

/// The value at fraction `p` (0..=1) of sorted samples; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_parse() {
        let line = "42 (tokio rt) S 1 2 3 4 5 6 7 8 9 10 250 150 0 0";
        assert_eq!(stat_cpu(line), Some(("tokio rt".into(), 4.0)));
        assert_eq!(stat_cpu("garbage"), None);
    }

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert!(percentile(&[], 0.5).is_nan());
    }
}
