//! What a density run measured, and how it is judged: pod timelines,
//! percentiles, scheduler throughput, quantiles from the API server's
//! Prometheus histograms, and the SLO table. Pure: no I/O, no clock.

use std::collections::BTreeMap;

use serde::Serialize;

/// One pod's life as the bench's watch saw it, in Unix seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct PodTimes {
    /// `metadata.creationTimestamp`: whole seconds, as ClusterLoader2 uses it.
    pub created: f64,
    /// When the watch first delivered the pod.
    pub watched: f64,
    pub scheduled: Option<f64>,
    /// When the watch first saw it Running with Ready=True.
    pub running: Option<f64>,
}

/// The nearest-rank percentile of unsorted samples; None when there are none.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Distribution {
    pub count: usize,
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    pub fn of(samples: &[f64]) -> Distribution {
        let at = |p| percentile(samples, p).unwrap_or(0.0);
        Distribution { count: samples.len(), p50: at(50.0), p90: at(90.0), p99: at(99.0), max: at(100.0) }
    }
}

/// Pod startup as ClusterLoader2 defines it (creationTimestamp until watched
/// running), and as watched alone (first watched until watched running).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Startup {
    pub create_to_running: Distribution,
    pub watched_to_running: Distribution,
    pub create_to_scheduled: Distribution,
    pub scheduled_to_running: Distribution,
}

pub fn startup<'a>(pods: impl Iterator<Item = &'a PodTimes>) -> Startup {
    let (mut create_run, mut watch_run, mut create_sched, mut sched_run) = (vec![], vec![], vec![], vec![]);
    for pod in pods {
        if let Some(running) = pod.running {
            create_run.push(running - pod.created);
            watch_run.push(running - pod.watched);
        }
        if let Some(scheduled) = pod.scheduled {
            create_sched.push(scheduled - pod.created);
            if let Some(running) = pod.running {
                sched_run.push(running - scheduled);
            }
        }
    }
    Startup {
        create_to_running: Distribution::of(&create_run),
        watched_to_running: Distribution::of(&watch_run),
        create_to_scheduled: Distribution::of(&create_sched),
        scheduled_to_running: Distribution::of(&sched_run),
    }
}

/// Pods bound in each whole second, from the first binding to the last.
pub fn per_second(times: &[f64]) -> Vec<u64> {
    let Some(first) = times.iter().copied().reduce(f64::min) else { return Vec::new() };
    let last = times.iter().copied().fold(first, f64::max);
    let mut counts = vec![0u64; (last - first) as usize + 1];
    for t in times {
        counts[(t - first) as usize] += 1;
    }
    counts
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Throughput {
    /// Pods over the seconds from the first binding to the last.
    pub average: f64,
    /// Percentiles of the per-second counts, as ClusterLoader2 reports them.
    pub p50: f64,
    pub p90: f64,
    pub max: f64,
}

pub fn throughput(times: &[f64]) -> Throughput {
    let counts: Vec<f64> = per_second(times).into_iter().map(|c| c as f64).collect();
    if counts.is_empty() {
        return Throughput::default();
    }
    Throughput {
        average: times.len() as f64 / counts.len() as f64,
        p50: percentile(&counts, 50.0).unwrap_or(0.0),
        p90: percentile(&counts, 90.0).unwrap_or(0.0),
        max: percentile(&counts, 100.0).unwrap_or(0.0),
    }
}

/// One series of `apiserver_request_duration_seconds`.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct ServerLatency {
    pub verb: String,
    pub resource: String,
    pub subresource: String,
    pub scope: String,
    pub count: u64,
    /// histogram_quantile(0.99), interpolated inside its bucket; infinite
    /// when it falls past the last bucket.
    pub p99: f64,
}

fn label<'a>(labels: &'a str, name: &str) -> &'a str {
    let needle = format!("{name}=\"");
    labels
        .split(',')
        .find_map(|pair| pair.strip_prefix(needle.as_str()))
        .and_then(|rest| rest.strip_suffix('"'))
        .unwrap_or("")
}

/// The quantile Prometheus' histogram_quantile computes from cumulative buckets.
pub fn bucket_quantile(q: f64, buckets: &[(f64, u64)]) -> f64 {
    let Some(&(_, total)) = buckets.last() else { return 0.0 };
    if total == 0 {
        return 0.0;
    }
    let rank = q * total as f64;
    let (mut lower, mut below) = (0.0, 0u64);
    for &(bound, cumulative) in buckets {
        if cumulative as f64 >= rank {
            if bound.is_infinite() {
                return f64::INFINITY;
            }
            let inside = (cumulative - below) as f64;
            return lower + (bound - lower) * ((rank - below as f64) / inside.max(1.0));
        }
        (lower, below) = (bound, cumulative);
    }
    f64::INFINITY
}

/// Every request-duration series in a `/metrics` text, with its p99.
pub fn server_latencies(metrics: &str) -> Vec<ServerLatency> {
    let mut series: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("apiserver_request_duration_seconds_bucket{") else { continue };
        let Some((labels, value)) = rest.rsplit_once("} ") else { continue };
        let Some((others, le)) = labels.rsplit_once(",le=\"") else { continue };
        let bound = match le.trim_end_matches('"') {
            "+Inf" => f64::INFINITY,
            text => match text.parse() {
                Ok(bound) => bound,
                Err(_) => continue,
            },
        };
        let Ok(count) = value.trim().parse::<u64>() else { continue };
        series.entry(others.to_string()).or_default().push((bound, count));
    }
    series
        .into_iter()
        .map(|(labels, mut buckets)| {
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            ServerLatency {
                verb: label(&labels, "verb").to_string(),
                resource: label(&labels, "resource").to_string(),
                subresource: label(&labels, "subresource").to_string(),
                scope: label(&labels, "scope").to_string(),
                count: buckets.last().map_or(0, |b| b.1),
                p99: bucket_quantile(0.99, &buckets),
            }
        })
        .collect()
}

/// The kinds of API call Kubernetes' API latency SLO tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum CallKind {
    Mutating,
    Get,
    NamespaceList,
    ClusterList,
}

impl CallKind {
    pub fn of(verb: &str, scope: &str) -> Option<CallKind> {
        match verb {
            "POST" | "PUT" | "PATCH" | "DELETE" | "DELETECOLLECTION" | "APPLY" => Some(CallKind::Mutating),
            "GET" => Some(CallKind::Get),
            "LIST" if scope == "cluster" => Some(CallKind::ClusterList),
            "LIST" => Some(CallKind::NamespaceList),
            _ => None,
        }
    }

    /// The SLO's p99 bound in seconds.
    pub fn bound(self) -> f64 {
        match self {
            CallKind::Mutating | CallKind::Get => 1.0,
            CallKind::NamespaceList => 5.0,
            CallKind::ClusterList => 30.0,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            CallKind::Mutating => "mutating API calls",
            CallKind::Get => "single-object reads",
            CallKind::NamespaceList => "namespace lists",
            CallKind::ClusterList => "cluster lists",
        }
    }
}

/// The slowest series of each kind (by p99), ignoring series of fewer than
/// `min_count` requests, whose p99 is one request's luck.
pub fn worst_by_kind(latencies: &[ServerLatency], min_count: u64) -> BTreeMap<CallKind, ServerLatency> {
    let mut worst: BTreeMap<CallKind, ServerLatency> = BTreeMap::new();
    // Non-resource paths (/api, /metrics) are outside the SLO.
    for series in latencies.iter().filter(|s| s.count >= min_count && !s.resource.is_empty()) {
        let Some(kind) = CallKind::of(&series.verb, &series.scope) else { continue };
        let slower = worst.get(&kind).is_none_or(|w| series.p99 > w.p99);
        if slower {
            worst.insert(kind, series.clone());
        }
    }
    worst
}

#[derive(Clone, Debug, Serialize)]
pub struct SloRow {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub pass: bool,
}

impl SloRow {
    /// A row whose measurement must be at most `bound`.
    pub fn at_most(name: impl Into<String>, bound: f64, measured: f64, unit: &str) -> SloRow {
        SloRow {
            name: name.into(),
            target: format!("≤ {bound} {unit}"),
            measured: format!("{measured:.3} {unit}"),
            pass: measured <= bound,
        }
    }

    pub fn at_least(name: impl Into<String>, bound: f64, measured: f64, unit: &str) -> SloRow {
        SloRow {
            name: name.into(),
            target: format!("≥ {bound} {unit}"),
            measured: format!("{measured:.1} {unit}"),
            pass: measured >= bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), Some(50.0));
        assert_eq!(percentile(&samples, 99.0), Some(99.0));
        assert_eq!(percentile(&samples, 100.0), Some(100.0));
        assert_eq!(percentile(&[3.0], 1.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn startup_is_measured_from_creation_and_from_the_first_watch() {
        let pods = [
            PodTimes { created: 100.0, watched: 100.4, scheduled: Some(100.5), running: Some(101.5) },
            PodTimes { created: 100.0, watched: 100.2, scheduled: Some(100.3), running: None },
        ];
        let startup = startup(pods.iter());
        assert_eq!(startup.create_to_running.count, 1);
        assert!((startup.create_to_running.p99 - 1.5).abs() < 1e-9);
        assert!((startup.watched_to_running.p99 - 1.1).abs() < 1e-9);
        assert_eq!(startup.create_to_scheduled.count, 2);
        assert!((startup.scheduled_to_running.max - 1.0).abs() < 1e-9);
    }

    #[test]
    fn throughput_counts_bindings_per_second() {
        let times = [10.0, 10.1, 10.9, 11.2, 13.5];
        assert_eq!(per_second(&times), vec![3, 1, 0, 1]);
        let throughput = throughput(&times);
        assert!((throughput.average - 1.25).abs() < 1e-9);
        assert_eq!(throughput.max, 3.0);
    }

    #[test]
    fn histogram_quantiles_interpolate_as_prometheus_does() {
        // 100 requests: 90 under 5 ms, 10 between 25 and 50 ms.
        let buckets = [(0.005, 90), (0.025, 90), (0.05, 100), (f64::INFINITY, 100)];
        let p99 = bucket_quantile(0.99, &buckets);
        assert!((p99 - 0.0475).abs() < 1e-9, "{p99}");
        assert!((bucket_quantile(0.5, &buckets) - 0.005 * 50.0 / 90.0).abs() < 1e-9);
        assert!(bucket_quantile(0.99, &[(1.0, 1), (f64::INFINITY, 100)]).is_infinite());
        assert_eq!(bucket_quantile(0.99, &[]), 0.0);
    }

    #[test]
    fn metrics_text_gives_each_series_its_p99_and_the_worst_per_kind() {
        let text = "\
apiserver_request_duration_seconds_bucket{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"0.005\"} 99
apiserver_request_duration_seconds_bucket{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"1\"} 100
apiserver_request_duration_seconds_bucket{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"resource\",subresource=\"\",verb=\"POST\",version=\"v1\",le=\"+Inf\"} 100
apiserver_request_duration_seconds_bucket{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"5\"} 0
apiserver_request_duration_seconds_bucket{component=\"apiserver\",group=\"\",resource=\"pods\",scope=\"cluster\",subresource=\"\",verb=\"LIST\",version=\"v1\",le=\"+Inf\"} 3
apiserver_request_duration_seconds_sum{component=\"apiserver\"} 1
";
        let series = server_latencies(text);
        assert_eq!(series.len(), 2);
        let list = series.iter().find(|s| s.verb == "LIST").expect("list series");
        assert_eq!((list.scope.as_str(), list.count), ("cluster", 3));
        assert!(list.p99.is_infinite());
        let post = series.iter().find(|s| s.verb == "POST").expect("post series");
        assert!((post.p99 - 0.005).abs() < 1e-9, "{}", post.p99);
        let worst = worst_by_kind(&series, 1);
        assert_eq!(worst[&CallKind::Mutating].resource, "pods");
        assert!(!worst_by_kind(&series, 10).contains_key(&CallKind::ClusterList));
    }

    #[test]
    fn slo_rows_pass_or_fail_on_their_bound() {
        assert!(SloRow::at_most("startup", 5.0, 4.9, "s").pass);
        assert!(!SloRow::at_most("startup", 5.0, 5.1, "s").pass);
        assert!(!SloRow::at_least("scheduling", 300.0, 120.0, "pods/s").pass);
    }
}
