//! The statistics of a case: percentiles, the hybox/peer ratio and the noise flag.
//!
//! Percentiles interpolate linearly between the two nearest ranks (numpy's default, "type 7"),
//! so the median of an even count is the mean of the two middle samples.

use serde::Serialize;

/// p99 needs enough samples to mean anything: below this it is reported as null.
pub const P99_MIN_RUNS: usize = 100;

/// A case is flagged noisy when its p90 lies more than this fraction above its median.
pub const NOISE_THRESHOLD: f64 = 0.5;

/// The summary of one case's samples, all in the case's unit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    /// How many samples.
    pub n: usize,
    /// 50th percentile.
    pub median: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile, only with at least [`P99_MIN_RUNS`] samples.
    pub p99: Option<f64>,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Arithmetic mean.
    pub mean: f64,
}

/// The `p`-th percentile (0..=100) of samples sorted ascending; `None` for no samples.
#[must_use]
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let last = sorted.len().checked_sub(1)?;
    let p = p.clamp(0.0, 100.0);
    let rank = p / 100.0 * last as f64;
    // rank lies in 0..=last, so the cast neither truncates nor wraps.
    let lo = (rank.floor() as usize).min(last);
    let hi = (lo + 1).min(last);
    let frac = rank - lo as f64;
    Some(sorted[lo] + (sorted[hi] - sorted[lo]) * frac)
}

/// Summarises samples (in any order); `None` for no samples or a non-finite one.
#[must_use]
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.iter().any(|s| !s.is_finite()) {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    let mean = sorted.iter().sum::<f64>() / n.max(1) as f64;
    Some(Summary {
        n,
        median: percentile(&sorted, 50.0)?,
        p90: percentile(&sorted, 90.0)?,
        p99: if n >= P99_MIN_RUNS {
            percentile(&sorted, 99.0)
        } else {
            None
        },
        min: *sorted.first()?,
        max: *sorted.last()?,
        mean,
    })
}

/// hybox's median over the peer's: below 1 hybox is faster. `None` when the peer's median is
/// not a positive finite number (no meaningful ratio).
#[must_use]
pub fn ratio(hybox_median: f64, peer_median: f64) -> Option<f64> {
    (peer_median.is_finite() && peer_median > 0.0 && hybox_median.is_finite())
        .then(|| hybox_median / peer_median)
}

/// How far the p90 lies above the median, as a fraction of the median.
#[must_use]
pub fn spread(s: &Summary) -> f64 {
    if s.median > 0.0 {
        (s.p90 - s.median) / s.median
    } else {
        0.0
    }
}

/// Whether a case's tail is too long for its median to be trusted alone.
#[must_use]
pub fn is_noisy(s: &Summary) -> bool {
    spread(s) > NOISE_THRESHOLD
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn percentiles_interpolate_between_ranks() {
        let s = [1.0, 2.0, 3.0, 4.0];
        assert!(close(percentile(&s, 50.0).expect("p50"), 2.5));
        assert!(close(percentile(&s, 0.0).expect("p0"), 1.0));
        assert!(close(percentile(&s, 100.0).expect("p100"), 4.0));
        // rank 0.9 * 3 = 2.7: 3 + 0.7 * (4 - 3)
        assert!(close(percentile(&s, 90.0).expect("p90"), 3.7));
        assert!(close(percentile(&[7.0], 90.0).expect("one"), 7.0));
        assert_eq!(percentile(&[], 50.0), None);
        // Out-of-range p is clamped rather than indexing past the end.
        assert!(close(percentile(&s, 150.0).expect("clamped"), 4.0));
    }

    #[test]
    fn summary_of_unsorted_samples() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).expect("summary");
        assert_eq!(s.n, 5);
        assert!(close(s.median, 3.0));
        assert!(close(s.p90, 4.6));
        assert!(close(s.min, 1.0));
        assert!(close(s.max, 5.0));
        assert!(close(s.mean, 3.0));
        assert_eq!(s.p99, None, "p99 needs {P99_MIN_RUNS} samples");
        assert_eq!(summarize(&[]), None);
        assert_eq!(summarize(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn p99_from_a_hundred_samples() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        let s = summarize(&samples).expect("summary");
        // rank 0.99 * 99 = 98.01: 99 + 0.01 * (100 - 99)
        assert!(close(s.p99.expect("p99"), 99.01));
        assert!(close(s.median, 50.5));
    }

    #[test]
    fn ratio_of_medians() {
        assert!(close(ratio(10.0, 40.0).expect("ratio"), 0.25));
        assert!(close(ratio(30.0, 15.0).expect("ratio"), 2.0));
        assert_eq!(ratio(1.0, 0.0), None);
        assert_eq!(ratio(1.0, -1.0), None);
        assert_eq!(ratio(f64::NAN, 1.0), None);
    }

    #[test]
    fn noise_flag_past_half_the_median() {
        let mut s = summarize(&[10.0; 10]).expect("summary");
        assert!(!is_noisy(&s));
        s.p90 = 15.0;
        assert!(!is_noisy(&s), "exactly 50% above is not flagged");
        s.p90 = 15.1;
        assert!(is_noisy(&s));
        s.median = 0.0;
        assert!(!is_noisy(&s), "a zero median has no spread to judge");
    }
}
