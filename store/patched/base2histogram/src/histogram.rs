//! A log-linear histogram of `u64` values: four buckets per power of two.

use std::fmt;
use std::marker::PhantomData;

/// Sub-buckets per power of two, as the published crate's default width 3.
const SUB_BITS: u32 = 2;
const SUB_BUCKETS: usize = 1 << SUB_BITS;
/// Values below `SUB_BUCKETS` get a bucket each; each power of two from
/// `SUB_BUCKETS` up to `2^63` gets `SUB_BUCKETS`.
pub(crate) const BUCKETS: usize = SUB_BUCKETS + (64 - SUB_BITS as usize) * SUB_BUCKETS;

/// Percentiles of the recorded values, each the lower bound of its bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PercentileStats {
    pub samples: u64,
    pub p0_1: u64,
    pub p1: u64,
    pub p5: u64,
    pub p10: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub p99_9: u64,
}

impl fmt::Display for PercentileStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "[samples: {}, P0.1: {}, P1: {}, P5: {}, P10: {}, P50: {}, P90: {}, P99: {}, P99.9: {}]",
            self.samples, self.p0_1, self.p1, self.p5, self.p10, self.p50, self.p90, self.p99, self.p99_9
        )
    }
}

/// Counts of recorded values by bucket. `T` is the published crate's
/// per-slot metadata; this stand-in keeps one slot and no metadata.
pub struct Histogram<T = ()> {
    counts: Box<[u64; BUCKETS]>,
    samples: u64,
    slot: PhantomData<fn() -> T>,
}

// By hand rather than derived, so that `T` needs none of these traits.
impl<T> fmt::Debug for Histogram<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram").field("samples", &self.samples).field("stats", &self.percentile_stats()).finish()
    }
}

impl<T> Clone for Histogram<T> {
    fn clone(&self) -> Self {
        Self { counts: self.counts.clone(), samples: self.samples, slot: PhantomData }
    }
}

impl<T> PartialEq for Histogram<T> {
    fn eq(&self, other: &Self) -> bool {
        self.samples == other.samples && self.counts == other.counts
    }
}

impl<T> Eq for Histogram<T> {}

impl<T> Default for Histogram<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Histogram<T> {
    pub fn new() -> Self {
        Self { counts: Box::new([0; BUCKETS]), samples: 0, slot: PhantomData }
    }

    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    pub fn record_n(&mut self, value: u64, count: u64) {
        let bucket = &mut self.counts[bucket_of(value)];
        *bucket = bucket.saturating_add(count);
        self.samples = self.samples.saturating_add(count);
    }

    /// Values recorded.
    pub fn total(&self) -> u64 {
        self.samples
    }

    /// The lower bound of the bucket holding the value at quantile `q`
    /// (0.0 to 1.0); 0 while nothing is recorded.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.samples == 0 {
            return 0;
        }
        // The rank of the value at `q`, counted from 1.
        let rank = ((q.clamp(0.0, 1.0) * self.samples as f64).ceil() as u64).max(1);
        let mut seen = 0u64;
        for (bucket, count) in self.counts.iter().enumerate() {
            seen = seen.saturating_add(*count);
            if seen >= rank {
                return lower_bound(bucket);
            }
        }
        lower_bound(BUCKETS - 1)
    }

    pub fn percentile_stats(&self) -> PercentileStats {
        PercentileStats {
            samples: self.samples,
            p0_1: self.percentile(0.001),
            p1: self.percentile(0.01),
            p5: self.percentile(0.05),
            p10: self.percentile(0.10),
            p50: self.percentile(0.50),
            p90: self.percentile(0.90),
            p99: self.percentile(0.99),
            p99_9: self.percentile(0.999),
        }
    }

    /// Non-empty buckets, as (lower bound, count), in ascending order.
    pub(crate) fn buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, count)| **count > 0)
            .map(|(bucket, count)| (lower_bound(bucket), *count))
    }
}

/// The bucket of `value`: its power of two, then its next `SUB_BITS` bits.
fn bucket_of(value: u64) -> usize {
    if value < SUB_BUCKETS as u64 {
        return value as usize;
    }
    let power = 63 - value.leading_zeros();
    let sub = (value >> (power - SUB_BITS)) as usize & (SUB_BUCKETS - 1);
    SUB_BUCKETS + (power - SUB_BITS) as usize * SUB_BUCKETS + sub
}

/// The smallest value in `bucket`.
fn lower_bound(bucket: usize) -> u64 {
    if bucket < SUB_BUCKETS {
        return bucket as u64;
    }
    let power = (bucket - SUB_BUCKETS) / SUB_BUCKETS + SUB_BITS as usize;
    let sub = ((bucket - SUB_BUCKETS) % SUB_BUCKETS) as u64;
    (1u64 << power) | (sub << (power - SUB_BITS as usize))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_value_lands_in_the_bucket_whose_bounds_hold_it() {
        let mut values: Vec<u64> = (0..5000).collect();
        values.extend((2..64).flat_map(|power| {
            let base = 1u64 << power;
            [base - 1, base, base + 1, base + base / 2, base.saturating_mul(2).saturating_sub(1)]
        }));
        values.push(u64::MAX);
        for value in values {
            let bucket = bucket_of(value);
            assert!(bucket < BUCKETS, "{value} in bucket {bucket}");
            assert!(lower_bound(bucket) <= value, "{value} below its bucket's bound {}", lower_bound(bucket));
            if bucket + 1 < BUCKETS {
                assert!(value < lower_bound(bucket + 1), "{value} reaches the next bucket");
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
        assert_eq!(BUCKETS, 252, "the published crate's bucket count at its default width");
    }

    #[test]
    fn percentiles_come_from_the_recorded_distribution() {
        let mut histogram = Histogram::<()>::new();
        assert_eq!(histogram.percentile_stats(), PercentileStats::default());
        for value in 1..=1000 {
            histogram.record(value);
        }
        histogram.record_n(1_000_000, 10);
        let stats = histogram.percentile_stats();
        assert_eq!(stats.samples, 1010);
        // The 0.1% rank of 1010 is the 2nd value.
        assert_eq!(stats.p0_1, 2);
        // The 505th value is 505: bucket [448, 512).
        assert_eq!(stats.p50, 448);
        // The 1000th is 1000 in [896, 1024); the 1009th is 1,000,000 in [917504, 1048576).
        assert_eq!(stats.p99, 896);
        assert_eq!(stats.p99_9, 917_504);
        assert!(stats.p1 <= stats.p5 && stats.p5 <= stats.p10 && stats.p10 <= stats.p50 && stats.p50 <= stats.p90);
    }

    #[test]
    fn clones_compare_by_their_counts() {
        let mut a = Histogram::<()>::new();
        a.record(7);
        let mut b = a.clone();
        assert_eq!(a, b);
        b.record(7);
        assert_ne!(a, b);
        assert_eq!(b.total(), 2);
    }
}
