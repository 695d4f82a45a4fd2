//! Percentiles and latency summaries.

/// The value at fraction `p` (0..=1) of sorted samples (nearest rank); NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Sorts samples that hold no NaN.
pub fn sort(samples: &mut [f64]) {
    samples.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
}

/// The usual percentiles of latency samples in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Latency {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    /// Percentiles of `samples` (milliseconds, any order); NaN when there are none.
    pub fn of(mut samples: Vec<f64>) -> Self {
        sort(&mut samples);
        Latency {
            p50: percentile(&samples, 0.5),
            p90: percentile(&samples, 0.9),
            p99: percentile(&samples, 0.99),
            max: samples.last().copied().unwrap_or(f64::NAN),
        }
    }

    /// The same, with 0 instead of NaN when there were no samples.
    pub fn or_zero(self) -> Self {
        let z = |v: f64| if v.is_nan() { 0.0 } else { v };
        Latency {
            p50: z(self.p50),
            p90: z(self.p90),
            p99: z(self.p99),
            max: z(self.max),
        }
    }

    /// `{"p50": .., "p90": .., "p99": .., "max": ..}`; NaN becomes null.
    pub fn json(&self) -> serde_json::Value {
        serde_json::json!({"p50": self.p50, "p90": self.p90, "p99": self.p99, "max": self.max})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_the_nearest_rank() {
        let v = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&v, 0.0), 1.0);
        assert_eq!(percentile(&v, 0.5), 3.0);
        assert_eq!(percentile(&v, 1.0), 5.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn latency_summarises_unsorted_samples() {
        let l = Latency::of((1..=100).rev().map(f64::from).collect());
        assert_eq!((l.p50, l.p90, l.p99, l.max), (51.0, 90.0, 99.0, 100.0));
        let empty = Latency::of(Vec::new());
        assert!(empty.p50.is_nan() && empty.max.is_nan());
        assert_eq!(
            empty.or_zero(),
            Latency {
                p50: 0.0,
                p90: 0.0,
                p99: 0.0,
                max: 0.0
            }
        );
        assert_eq!(empty.json()["p99"], serde_json::Value::Null);
    }
}
