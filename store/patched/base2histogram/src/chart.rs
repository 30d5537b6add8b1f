//! A text rendering of several histograms, for openraft's runtime statistics.

use std::fmt;

use crate::Histogram;

/// Named histograms drawn as bars, one line per non-empty bucket.
pub struct AsciiChart<T = ()> {
    series: Vec<(String, Histogram<T>)>,
    bar_width: usize,
}

impl<T> Default for AsciiChart<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> AsciiChart<T> {
    pub fn new() -> Self {
        Self { series: Vec::new(), bar_width: 40 }
    }

    pub fn add(mut self, name: &str, histogram: Histogram<T>) -> Self {
        self.series.push((name.to_string(), histogram));
        self
    }

    pub fn bar_width(mut self, width: usize) -> Self {
        self.bar_width = width.max(1);
        self
    }

    pub fn detailed(&self) -> DetailedDisplay<'_, T> {
        DetailedDisplay { chart: self }
    }
}

impl<T> fmt::Display for AsciiChart<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, histogram) in &self.series {
            writeln!(f, "{name}: {}", histogram.percentile_stats())?;
        }
        Ok(())
    }
}

/// Every series with a bar per non-empty bucket.
pub struct DetailedDisplay<'a, T> {
    chart: &'a AsciiChart<T>,
}

impl<T> fmt::Display for DetailedDisplay<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (name, histogram) in &self.chart.series {
            writeln!(f, "{name} ({} samples)", histogram.total())?;
            let most = histogram.buckets().map(|(_, count)| count).max().unwrap_or(0).max(1);
            for (bound, count) in histogram.buckets() {
                let bar = (count as u128 * self.chart.bar_width as u128).div_ceil(most as u128) as usize;
                writeln!(f, "  >= {bound:>12} {count:>10} {}", "#".repeat(bar))?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_detailed_chart_shows_each_bucket_with_a_bar_to_scale() {
        let mut histogram = Histogram::<()>::new();
        histogram.record_n(3, 4);
        histogram.record_n(100, 2);
        let chart = AsciiChart::new().bar_width(8).add("stage", histogram);
        let text = chart.detailed().to_string();
        assert_eq!(
            text,
            "stage (6 samples)\n  >=            3          4 ########\n  >=           96          2 ####\n"
        );
        assert!(chart.to_string().starts_with("stage: [samples: 6,"));
    }
}
