//! Cairn's stand-in for the `base2histogram` crate, which openraft 0.10 uses
//! for its runtime statistics (batch sizes, log stage latencies).
//!
//! The published crate builds the lookup tables of all 16 bucket widths the
//! first time any histogram is made, about 41 MiB that every member then
//! keeps resident, although openraft only ever uses the default width and
//! Cairn reads none of these statistics. This crate keeps the part of the
//! API openraft calls (`Histogram`, `PercentileStats`, `AsciiChart`) with the
//! same bucketing at the default width (four buckets per power of two, 252
//! in all), computed rather than looked up. It is wired in by the
//! workspace's `[patch.crates-io]`; drop it once upstream builds its tables
//! lazily.

mod chart;
mod histogram;

pub use chart::{AsciiChart, DetailedDisplay};
pub use histogram::{Histogram, PercentileStats};
