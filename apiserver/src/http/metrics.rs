//! `/metrics`: apiserver_request_total and apiserver_request_duration_seconds
//! by verb and resource, in Prometheus text format.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use parking_lot::Mutex;

/// kube-apiserver's buckets for request durations.
const BUCKETS: &[f64] = &[
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 15.0, 20.0, 30.0,
    45.0, 60.0,
];
/// Label sets kept at most; beyond, requests count under resource="other".
const MAX_SERIES: usize = 2048;

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Labels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
}

#[derive(Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    totals: Mutex<BTreeMap<(Labels, u16), u64>>,
    durations: Mutex<BTreeMap<Labels, Histogram>>,
}

fn render_labels(labels: &Labels) -> String {
    format!(
        "component=\"apiserver\",group=\"{}\",resource=\"{}\",scope=\"{}\",subresource=\"{}\",verb=\"{}\",version=\"{}\"",
        labels.group, labels.resource, labels.scope, labels.subresource, labels.verb, labels.version
    )
}

impl Metrics {
    pub fn observe(&self, mut labels: Labels, code: u16, elapsed: Duration) {
        {
            let mut totals = self.totals.lock();
            if totals.len() >= MAX_SERIES && !totals.contains_key(&(labels.clone(), code)) {
                labels.resource = "other".into();
            }
            *totals.entry((labels.clone(), code)).or_default() += 1;
        }
        // Watches last as long as they are open; kube-apiserver leaves them out too.
        if labels.verb == "WATCH" {
            return;
        }
        let mut durations = self.durations.lock();
        let histogram = durations.entry(labels).or_default();
        if histogram.counts.is_empty() {
            histogram.counts = vec![0; BUCKETS.len()];
        }
        let seconds = elapsed.as_secs_f64();
        for (i, bound) in BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                histogram.counts[i] += 1;
            }
        }
        histogram.sum += seconds;
        histogram.count += 1;
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        out.push_str("# HELP apiserver_request_total Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.\n");
        out.push_str("# TYPE apiserver_request_total counter\n");
        for ((labels, code), value) in self.totals.lock().iter() {
            let _ = writeln!(out, "apiserver_request_total{{code=\"{code}\",{}}} {value}", render_labels(labels));
        }
        out.push_str("# HELP apiserver_request_duration_seconds Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.\n");
        out.push_str("# TYPE apiserver_request_duration_seconds histogram\n");
        for (labels, histogram) in self.durations.lock().iter() {
            let rendered = render_labels(labels);
            for (bound, count) in BUCKETS.iter().zip(&histogram.counts) {
                let _ = writeln!(out, "apiserver_request_duration_seconds_bucket{{{rendered},le=\"{bound}\"}} {count}");
            }
            let _ = writeln!(
                out,
                "apiserver_request_duration_seconds_bucket{{{rendered},le=\"+Inf\"}} {}",
                histogram.count
            );
            let _ = writeln!(out, "apiserver_request_duration_seconds_sum{{{rendered}}} {}", histogram.sum);
            let _ = writeln!(out, "apiserver_request_duration_seconds_count{{{rendered}}} {}", histogram.count);
        }
        out
    }
}
