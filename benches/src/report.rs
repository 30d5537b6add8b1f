//! The summary etcd's benchmark tool prints: totals, a histogram, percentiles.

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::load::Outcome;

pub const PERCENTILES: [f64; 8] = [10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9];

#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub total: u64,
    pub errors: u64,
    pub seconds: f64,
    pub requests_per_second: f64,
    pub slowest_ms: f64,
    pub fastest_ms: f64,
    pub average_ms: f64,
    pub stddev_ms: f64,
    /// (percentile, milliseconds)
    pub percentiles_ms: Vec<(f64, f64)>,
    /// (upper bound in ms, count)
    pub histogram: Vec<(f64, u64)>,
}

fn ms(nanos: f64) -> f64 {
    nanos / 1e6
}

pub fn summarize(outcome: &Outcome) -> Summary {
    let latencies: &Histogram<u64> = &outcome.latencies;
    let seconds = outcome.elapsed.as_secs_f64();
    let total = latencies.len();
    let (min, max) = (latencies.min() as f64, latencies.max() as f64);
    let buckets = 10;
    let width = ((max - min) / buckets as f64).max(1.0);
    let mut histogram = Vec::new();
    for bucket in 0..buckets {
        let low = min + width * bucket as f64;
        let high = if bucket == buckets - 1 { max } else { low + width };
        let count = latencies.count_between(low as u64, high as u64);
        histogram.push((ms(high), count));
    }
    Summary {
        total,
        errors: outcome.errors,
        seconds,
        requests_per_second: total as f64 / seconds.max(1e-9),
        slowest_ms: ms(max),
        fastest_ms: ms(min),
        average_ms: ms(latencies.mean()),
        stddev_ms: ms(latencies.stdev()),
        percentiles_ms: PERCENTILES.iter().map(|p| (*p, ms(latencies.value_at_percentile(*p) as f64))).collect(),
        histogram,
    }
}

/// Upper bounds of [`log_buckets`], in ms; the last takes the rest.
const LOG_BOUNDS_MS: [f64; 14] =
    [0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0, 2000.0, 5000.0, f64::INFINITY];

/// Latencies counted on a log scale, so that one stall of seconds shows
/// beside thousands of sub-millisecond writes: (upper bound in ms, count).
pub fn log_buckets(latencies: &Histogram<u64>) -> Vec<(f64, u64)> {
    let mut low = 0u64;
    LOG_BOUNDS_MS
        .iter()
        .map(|&upper| {
            let high = if upper.is_infinite() { u64::MAX } else { (upper * 1e6) as u64 };
            let count = if latencies.is_empty() || low > latencies.max() {
                0
            } else {
                latencies.count_between(low, high.min(latencies.max()))
            };
            low = high.saturating_add(1);
            (upper, count)
        })
        .collect()
}

pub fn print(summary: &Summary) {
    println!("\nSummary:");
    println!("  Total:\t{:.4} secs.", summary.seconds);
    println!("  Slowest:\t{:.4} ms.", summary.slowest_ms);
    println!("  Fastest:\t{:.4} ms.", summary.fastest_ms);
    println!("  Average:\t{:.4} ms.", summary.average_ms);
    println!("  Stddev:\t{:.4} ms.", summary.stddev_ms);
    println!("  Requests/sec:\t{:.4}", summary.requests_per_second);
    println!("  Errors:\t{}", summary.errors);
    println!("\nResponse time histogram:");
    let most = summary.histogram.iter().map(|(_, count)| *count).max().unwrap_or(1).max(1);
    for (bound, count) in &summary.histogram {
        let bar = "∎".repeat((*count * 40 / most) as usize);
        println!("  {bound:.4} [{count}]\t|{bar}");
    }
    println!("\nLatency distribution:");
    for (percentile, value) in &summary.percentiles_ms {
        println!("  {percentile}% in {value:.4} ms.");
    }
}
