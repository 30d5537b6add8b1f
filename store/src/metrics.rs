//! Prometheus metrics under etcd's names, plus `cairn_`-prefixed ones.
//! One member per process, so one process-wide set.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::LazyLock;
use std::time::Duration;

use parking_lot::Mutex;

/// Distinct gRPC method paths that get their own label (etcd has about 40).
pub const MAX_GRPC_METHODS: usize = 64;

/// A gRPC method's kind, as go-grpc-prometheus labels it (`grpc_type`).
pub fn grpc_type(path: &str) -> &'static str {
    match path {
        "/etcdserverpb.Watch/Watch" | "/etcdserverpb.Lease/LeaseKeepAlive" => "bidi_stream",
        "/etcdserverpb.Maintenance/Snapshot" | "/v3electionpb.Election/Observe" | "/grpc.health.v1.Health/Watch" => {
            "server_stream"
        }
        _ => "unary",
    }
}

/// A gRPC path's labels, `/etcdserverpb.KV/Range` as go-grpc-prometheus
/// writes them, less the code.
fn grpc_labels(path: &str) -> String {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    format!("grpc_method=\"{method}\",grpc_service=\"{service}\",grpc_type=\"{}\"", grpc_type(path))
}

pub static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::default);

/// A cumulative histogram with fixed upper bounds, in seconds.
pub struct Histogram {
    bounds: Vec<f64>,
    counts: Vec<AtomicU64>,
    sum_nanos: AtomicU64,
    count: AtomicU64,
}

impl Histogram {
    /// Prometheus' `ExponentialBuckets(start, factor, count)`, as etcd declares them.
    pub fn exponential(start: f64, factor: f64, count: usize) -> Self {
        let bounds: Vec<f64> = (0..count).map(|i| start * factor.powi(i as i32)).collect();
        let counts = bounds.iter().map(|_| AtomicU64::new(0)).collect();
        Self { bounds, counts, sum_nanos: AtomicU64::new(0), count: AtomicU64::new(0) }
    }

    pub fn observe(&self, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        if let Some(bucket) = self.bounds.iter().position(|bound| seconds <= *bound) {
            self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        }
        self.sum_nanos.fetch_add(elapsed.as_nanos() as u64, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        let sep = if labels.is_empty() { "" } else { "," };
        for (bound, count) in self.bounds.iter().zip(&self.counts) {
            cumulative += count.load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {cumulative}");
        }
        let total = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {total}");
        let sum = self.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
        let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {total}");
    }
}

/// Requests a follower forwarded to the leader, and the RPCs that carried them.
pub struct ForwardCounts {
    pub batches: AtomicU64,
    pub requests: AtomicU64,
}

impl ForwardCounts {
    pub const fn new() -> Self {
        Self { batches: AtomicU64::new(0), requests: AtomicU64::new(0) }
    }
}

impl Default for ForwardCounts {
    fn default() -> Self {
        Self::new()
    }
}

pub struct Metrics {
    pub has_leader: AtomicI64,
    pub is_leader: AtomicI64,
    pub leader_changes: AtomicU64,
    pub proposals_committed: AtomicU64,
    pub proposals_applied: AtomicU64,
    pub proposals_pending: AtomicI64,
    pub proposals_failed: AtomicU64,
    pub wal_fsync: Histogram,
    pub backend_commit: Histogram,
    /// From handing an entry to Raft until it is applied (the leader's share of a write).
    pub proposal_commit: Histogram,
    pub batch_requests: AtomicU64,
    pub batches: AtomicU64,
    pub forwarded_writes: ForwardCounts,
    pub forwarded_reads: ForwardCounts,
    /// Streams opened to a leader for forwarded writes.
    pub forward_streams_opened: AtomicU64,
    /// Of those, on links of their own (`raft::link`).
    pub forward_link_streams_opened: AtomicU64,
    /// Streams opened to a leader for forwarded read-index requests.
    pub read_index_streams_opened: AtomicU64,
    /// Of those, on links of their own.
    pub read_index_link_streams_opened: AtomicU64,
    /// AppendEntries streams opened to peers: replication and heartbeats.
    pub append_streams_opened: AtomicU64,
    /// Of those, replication streams on links of their own.
    pub link_streams_opened: AtomicU64,
    pub snapshots_built: AtomicU64,
    pub snapshots_installed: AtomicU64,
    pub raft_purged_index: AtomicU64,
    peer_rtt: Mutex<BTreeMap<u64, Histogram>>,
    /// Calls by gRPC path; the path is allocated once, not per call.
    grpc_calls: Mutex<BTreeMap<String, GrpcCalls>>,
    pub health_success: AtomicU64,
    pub health_failures: AtomicU64,
    /// The named checks of `/livez` and `/readyz`, by endpoint and name.
    health_checks: Mutex<BTreeMap<(&'static str, &'static str), HealthChecks>>,
}

/// One named health check's runs: whether the last passed, and how many did and did not.
#[derive(Default)]
struct HealthChecks {
    passing: bool,
    success: u64,
    error: u64,
}

/// One gRPC method's calls: started, and handled by code. A stream is
/// handled when it ends, so started less handled is the streams open.
/// And the messages received and sent on them.
#[derive(Default)]
struct GrpcCalls {
    started: u64,
    handled: BTreeMap<&'static str, u64>,
    received: u64,
    sent: u64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            has_leader: AtomicI64::new(0),
            is_leader: AtomicI64::new(0),
            leader_changes: AtomicU64::new(0),
            proposals_committed: AtomicU64::new(0),
            proposals_applied: AtomicU64::new(0),
            proposals_pending: AtomicI64::new(0),
            proposals_failed: AtomicU64::new(0),
            wal_fsync: Histogram::exponential(0.001, 2.0, 14),
            backend_commit: Histogram::exponential(0.001, 2.0, 14),
            proposal_commit: Histogram::exponential(0.0001, 2.0, 16),
            batch_requests: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            forwarded_writes: ForwardCounts::new(),
            forwarded_reads: ForwardCounts::new(),
            forward_streams_opened: AtomicU64::new(0),
            forward_link_streams_opened: AtomicU64::new(0),
            read_index_streams_opened: AtomicU64::new(0),
            read_index_link_streams_opened: AtomicU64::new(0),
            append_streams_opened: AtomicU64::new(0),
            link_streams_opened: AtomicU64::new(0),
            snapshots_built: AtomicU64::new(0),
            snapshots_installed: AtomicU64::new(0),
            raft_purged_index: AtomicU64::new(0),
            peer_rtt: Mutex::new(BTreeMap::new()),
            grpc_calls: Mutex::new(BTreeMap::new()),
            health_success: AtomicU64::new(0),
            health_failures: AtomicU64::new(0),
            health_checks: Mutex::new(BTreeMap::new()),
        }
    }
}

/// Values read from the member when metrics are scraped.
pub struct Snapshot {
    pub db_size_bytes: u64,
    pub keys: u64,
    pub process: Option<ProcessStats>,
}

/// The Prometheus process collector's figures, which etcd exports and
/// `etcdctl check datascale` reads.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub open_fds: u64,
    pub max_fds: u64,
}

impl ProcessStats {
    /// From `/proc/self/stat`, `/proc/stat`'s boot time and `/proc/self/limits`,
    /// with the kernel's clock tick and page size (100 and 4096 on Linux).
    pub fn parse(stat: &str, boot_time: &str, limits: &str, open_fds: u64) -> Option<ProcessStats> {
        const TICKS_PER_SECOND: f64 = 100.0;
        const PAGE_BYTES: u64 = 4096;
        // The command name may hold spaces: the fields start after its closing parenthesis.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        let field = |number: usize| fields.get(number - 3)?.parse::<u64>().ok();
        let boot = boot_time.lines().find_map(|line| line.strip_prefix("btime "))?.trim().parse::<f64>().ok()?;
        let max_fds = limits.lines().find(|line| line.starts_with("Max open files"))?.split_whitespace().nth(3)?;
        Some(ProcessStats {
            resident_bytes: field(24)? * PAGE_BYTES,
            virtual_bytes: field(23)?,
            cpu_seconds: (field(14)? + field(15)?) as f64 / TICKS_PER_SECOND,
            start_time_seconds: boot + field(22)? as f64 / TICKS_PER_SECOND,
            open_fds,
            max_fds: max_fds.parse().ok()?,
        })
    }
}

impl Metrics {
    pub fn observe_peer_rtt(&self, to: u64, elapsed: Duration) {
        let mut rtt = self.peer_rtt.lock();
        rtt.entry(to).or_insert_with(|| Histogram::exponential(0.0001, 2.0, 16)).observe(elapsed);
    }

    /// A call starts. Its one request message, unless the client streams,
    /// has been received by the time go-grpc-prometheus counts it.
    pub fn start_grpc(&self, path: &str) {
        let one_request = grpc_type(path) != "bidi_stream";
        self.with_grpc_calls(path, |calls| {
            calls.started += 1;
            calls.received += u64::from(one_request);
        });
    }

    /// A call ends; a unary call that answered OK sent its one message.
    pub fn count_grpc(&self, path: &str, code: &'static str) {
        let one_answer = code == "OK" && grpc_type(path) == "unary";
        self.with_grpc_calls(path, |calls| {
            *calls.handled.entry(code).or_insert(0) += 1;
            calls.sent += u64::from(one_answer);
        });
    }

    /// Messages a stream received from its client, or sent to it.
    pub fn count_grpc_messages(&self, path: &str, received: u64, sent: u64) {
        self.with_grpc_calls(path, |calls| {
            calls.received += received;
            calls.sent += sent;
        });
    }

    /// A `/health` answer, healthy or not.
    pub fn count_health(&self, healthy: bool) {
        let counter = if healthy { &self.health_success } else { &self.health_failures };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A run of one named check of `/livez` or `/readyz` (`endpoint`).
    pub fn record_health_check(&self, endpoint: &'static str, name: &'static str, passed: bool) {
        let mut checks = self.health_checks.lock();
        let check = checks.entry((endpoint, name)).or_default();
        check.passing = passed;
        *(if passed { &mut check.success } else { &mut check.error }) += 1;
    }

    /// `path` is the gRPC path, `/etcdserverpb.KV/Range`. It comes from the
    /// client, so only the first [`MAX_GRPC_METHODS`] distinct ones get a
    /// label: made-up method names cannot grow the metrics without bound.
    fn with_grpc_calls(&self, path: &str, count: impl FnOnce(&mut GrpcCalls)) {
        let mut calls = self.grpc_calls.lock();
        if let Some(method) = calls.get_mut(path) {
            return count(method);
        }
        if calls.len() < MAX_GRPC_METHODS {
            count(calls.entry(path.to_string()).or_default());
        }
    }

    /// Like etcd's, these appear once a check has run.
    fn render_health_checks(&self, out: &mut String) {
        let checks = self.health_checks.lock();
        if checks.is_empty() {
            return;
        }
        let name = "etcd_server_healthcheck";
        let _ = writeln!(out, "# HELP {name} The result of each kind of healthcheck.\n# TYPE {name} gauge");
        for ((endpoint, check), runs) in checks.iter() {
            let _ = writeln!(out, "{name}{{name=\"{check}\",type=\"{endpoint}\"}} {}", u8::from(runs.passing));
        }
        let name = "etcd_server_healthchecks_total";
        let _ = writeln!(out, "# HELP {name} The total number of each kind of healthcheck.\n# TYPE {name} counter");
        for ((endpoint, check), runs) in checks.iter() {
            for (status, count) in [("error", runs.error), ("success", runs.success)] {
                if count > 0 {
                    let _ = writeln!(out, "{name}{{name=\"{check}\",status=\"{status}\",type=\"{endpoint}\"}} {count}");
                }
            }
        }
    }

    pub fn render(&self, snapshot: &Snapshot) -> String {
        let mut out = String::new();
        let gauge = |out: &mut String, name: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}");
        };
        let counter = |out: &mut String, name: &str, help: &str, value: u64| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
        };
        let load = |value: &AtomicU64| value.load(Ordering::Relaxed);
        gauge(
            &mut out,
            "etcd_server_has_leader",
            "Whether or not a leader exists. 1 is existence, 0 is not.",
            self.has_leader.load(Ordering::Relaxed).to_string(),
        );
        gauge(
            &mut out,
            "etcd_server_is_leader",
            "Whether or not this member is a leader.",
            self.is_leader.load(Ordering::Relaxed).to_string(),
        );
        counter(
            &mut out,
            "etcd_server_leader_changes_seen_total",
            "The number of leader changes seen.",
            load(&self.leader_changes),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_committed_total",
            "The total number of consensus proposals committed.",
            load(&self.proposals_committed).to_string(),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_applied_total",
            "The total number of consensus proposals applied.",
            load(&self.proposals_applied).to_string(),
        );
        gauge(
            &mut out,
            "etcd_server_proposals_pending",
            "The current number of pending proposals to commit.",
            self.proposals_pending.load(Ordering::Relaxed).to_string(),
        );
        counter(
            &mut out,
            "etcd_server_proposals_failed_total",
            "The total number of failed proposals seen.",
            load(&self.proposals_failed),
        );
        for (name, help, histogram) in [
            (
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by WAL.",
                &self.wal_fsync,
            ),
            (
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of commit called by backend.",
                &self.backend_commit,
            ),
            (
                "cairn_proposal_commit_duration_seconds",
                "The time from proposing a Raft entry on the leader until it is applied.",
                &self.proposal_commit,
            ),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
            histogram.render(&mut out, name, "");
        }
        gauge(
            &mut out,
            "etcd_mvcc_db_total_size_in_bytes",
            "Total size of the underlying database physically allocated in bytes.",
            snapshot.db_size_bytes.to_string(),
        );
        gauge(&mut out, "etcd_debugging_mvcc_keys_total", "Total number of keys.", snapshot.keys.to_string());
        let name = "etcd_network_peer_round_trip_time_seconds";
        let _ = writeln!(out, "# HELP {name} Round-Trip-Time histogram between peers\n# TYPE {name} histogram");
        for (to, histogram) in self.peer_rtt.lock().iter() {
            histogram.render(&mut out, name, &format!("To=\"{to:x}\""));
        }
        let name = "grpc_server_started_total";
        let _ = writeln!(out, "# HELP {name} Total number of RPCs started on the server.\n# TYPE {name} counter");
        let calls = self.grpc_calls.lock();
        for (path, method_calls) in calls.iter() {
            let labels = grpc_labels(path);
            let _ = writeln!(out, "{name}{{{labels}}} {}", method_calls.started);
        }
        let name = "grpc_server_handled_total";
        let _ = writeln!(out, "# HELP {name} Total number of RPCs completed on the server, regardless of success or failure.\n# TYPE {name} counter");
        for (path, method_calls) in calls.iter() {
            let labels = grpc_labels(path);
            for (code, count) in &method_calls.handled {
                let _ = writeln!(out, "{name}{{grpc_code=\"{code}\",{labels}}} {count}");
            }
        }
        for (name, help, sent) in [
            ("grpc_server_msg_received_total", "Total number of RPC stream messages received on the server.", false),
            ("grpc_server_msg_sent_total", "Total number of gRPC stream messages sent by the server.", true),
        ] {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (path, method_calls) in calls.iter() {
                let count = if sent { method_calls.sent } else { method_calls.received };
                let _ = writeln!(out, "{name}{{{}}} {count}", grpc_labels(path));
            }
        }
        drop(calls);
        for (name, help, count) in [
            ("etcd_server_health_failures", "The total number of failed health checks", &self.health_failures),
            ("etcd_server_health_success", "The total number of successful health checks", &self.health_success),
        ] {
            counter(&mut out, name, help, load(count));
        }
        self.render_health_checks(&mut out);
        counter(
            &mut out,
            "cairn_proposal_batches_total",
            "Raft entries proposed by group commit.",
            load(&self.batches),
        );
        counter(
            &mut out,
            "cairn_proposal_batched_requests_total",
            "Client writes carried by those entries.",
            load(&self.batch_requests),
        );
        let streams_opened = [
            ("forward", "to a leader to forward writes on", &self.forward_streams_opened),
            (
                "forward_link",
                "to a leader to forward writes on links of their own, of the forward streams",
                &self.forward_link_streams_opened,
            ),
            ("read_index", "to a leader to ask for read indexes on", &self.read_index_streams_opened),
            (
                "read_index_link",
                "to a leader to ask for read indexes on links of their own, of the read-index streams",
                &self.read_index_link_streams_opened,
            ),
            ("append", "to its peers for AppendEntries (replication and heartbeats)", &self.append_streams_opened),
            (
                "link",
                "to its peers for replication on links of their own, of the append streams",
                &self.link_streams_opened,
            ),
        ];
        for (kind, purpose, opened) in streams_opened {
            let (name, help) =
                (format!("cairn_{kind}_streams_opened_total"), format!("Streams this member opened {purpose}."));
            counter(&mut out, &name, &help, load(opened));
        }
        for (kind, counts) in [("write", &self.forwarded_writes), ("read_index", &self.forwarded_reads)] {
            counter(
                &mut out,
                &format!("cairn_forwarded_{kind}_rpcs_total"),
                "RPCs that carried requests this member forwarded to the leader.",
                load(&counts.batches),
            );
            counter(
                &mut out,
                &format!("cairn_forwarded_{kind}_requests_total"),
                "Requests this member forwarded to the leader.",
                load(&counts.requests),
            );
        }
        counter(&mut out, "cairn_snapshots_built_total", "Raft snapshots built.", load(&self.snapshots_built));
        counter(
            &mut out,
            "cairn_snapshots_installed_total",
            "Raft snapshots received from the leader and installed.",
            load(&self.snapshots_installed),
        );
        let purged = load(&self.raft_purged_index).to_string();
        gauge(&mut out, "cairn_raft_log_purged_index", "The last Raft log index purged after a snapshot.", purged);
        if let Some(process) = snapshot.process {
            let _ = writeln!(
                out,
                "# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.\n\
                 # TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {}",
                process.cpu_seconds
            );
            for (name, help, value) in [
                ("process_resident_memory_bytes", "Resident memory size in bytes.", process.resident_bytes as f64),
                ("process_virtual_memory_bytes", "Virtual memory size in bytes.", process.virtual_bytes as f64),
                (
                    "process_start_time_seconds",
                    "Start time of the process since unix epoch in seconds.",
                    process.start_time_seconds,
                ),
                ("process_open_fds", "Number of open file descriptors.", process.open_fds as f64),
                ("process_max_fds", "Maximum number of open file descriptors.", process.max_fds as f64),
            ] {
                gauge(&mut out, name, help, value.to_string());
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_etcd_names_and_cumulative_buckets() {
        let metrics = Metrics::default();
        metrics.wal_fsync.observe(Duration::from_micros(1500));
        metrics.wal_fsync.observe(Duration::from_millis(100));
        metrics.count_grpc("/etcdserverpb.KV/Range", "OK");
        metrics.start_grpc("/etcdserverpb.Watch/Watch");
        metrics.start_grpc("/etcdserverpb.Watch/Watch");
        metrics.count_grpc("/etcdserverpb.Watch/Watch", "Canceled");
        for n in 0..1000 {
            metrics.count_grpc(&format!("/etcdserverpb.KV/Made{n}"), "Unimplemented");
        }
        assert_eq!(metrics.grpc_calls.lock().len(), MAX_GRPC_METHODS, "labels from client paths are bounded");
        metrics.observe_peer_rtt(0xab, Duration::from_micros(300));
        let process = ProcessStats { resident_bytes: 8192, ..Default::default() };
        let text = metrics.render(&Snapshot { db_size_bytes: 10, keys: 3, process: Some(process) });
        assert!(text.contains("process_resident_memory_bytes 8192"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.002\"} 1"));
        assert!(text.contains("etcd_disk_wal_fsync_duration_seconds_bucket{le=\"+Inf\"} 2"));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1"));
        assert!(text.contains("grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 1"));
        assert!(text.contains("grpc_server_started_total{grpc_method=\"Watch\",grpc_service=\"etcdserverpb.Watch\",grpc_type=\"bidi_stream\"} 2"));
        assert!(text.contains("etcd_network_peer_round_trip_time_seconds_count{To=\"ab\"} 1"));
        assert!(text.contains("etcd_debugging_mvcc_keys_total 3"));
        assert!(text.contains("cairn_snapshots_installed_total 0"));
        assert!(text.contains("cairn_raft_log_purged_index 0"));
    }

    #[test]
    fn health_checks_are_counted_as_etcd_counts_them() {
        let metrics = Metrics::default();
        let snapshot = || Snapshot { db_size_bytes: 0, keys: 0, process: None };
        let text = metrics.render(&snapshot());
        assert!(text.contains("etcd_server_health_success 0\n") && text.contains("etcd_server_health_failures 0\n"));
        assert!(!text.contains("etcd_server_healthcheck"), "the named checks appear once one has run");
        metrics.count_health(true);
        metrics.count_health(false);
        metrics.count_health(true);
        metrics.record_health_check("readyz", "linearizable_read", true);
        metrics.record_health_check("readyz", "linearizable_read", false);
        let text = metrics.render(&snapshot());
        assert!(text.contains("etcd_server_health_success 2\n") && text.contains("etcd_server_health_failures 1\n"));
        assert!(
            text.contains("etcd_server_healthcheck{name=\"linearizable_read\",type=\"readyz\"} 0\n"),
            "the last run failed"
        );
        for status in ["error", "success"] {
            let line = format!(
                "etcd_server_healthchecks_total{{name=\"linearizable_read\",status=\"{status}\",type=\"readyz\"}} 1\n"
            );
            assert!(text.contains(&line), "{line}");
        }
    }

    #[test]
    fn process_stats_come_from_proc() {
        let stat =
            "4242 (cairn (m0)) S 1 4242 4242 0 -1 4194560 900 0 0 0 250 50 0 0 20 0 9 0 12000 104857600 2560 rest";
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1048576              1048576              files";
        let stats = ProcessStats::parse(stat, "cpu 1 2 3\nbtime 1700000000\n", limits, 17).expect("parses");
        let expected = ProcessStats {
            resident_bytes: 2560 * 4096,
            virtual_bytes: 104_857_600,
            cpu_seconds: 3.0,
            start_time_seconds: 1_700_000_120.0,
            open_fds: 17,
            max_fds: 1_048_576,
        };
        assert_eq!(stats, expected);
        assert_eq!(ProcessStats::parse("garbage", "", "", 0), None);
    }
}
