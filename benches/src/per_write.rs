//! What one put costs a cluster's members: fdatasync calls, context switches,
//! syscalls and CPU time per write, summed over every member by `perf stat`
//! on their processes (the client is not counted). These are counts, which a
//! noisy machine changes little. A first pass without perf gives the client's
//! mean latency beside the members' own means from `/metrics`: the WAL fsync
//! and, for cairn, the leader's proposal commit (client_write to its answer).

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use cairn_testkit::Cluster;

use crate::compare::{self, pids};
use crate::load::{self, LoadOptions, Workload};
use crate::report::summarize;

const EVENTS: [&str; 4] = ["syscalls:sys_enter_fdatasync", "context-switches", "raw_syscalls:sys_enter", "task-clock"];

#[derive(Debug, Clone, clap::Args)]
pub struct PerWriteOptions {
    /// A system to measure, as NAME=BINARY (cairn or etcd); repeat for each.
    #[arg(long = "system", required = true)]
    pub systems: Vec<String>,
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Client counts to measure, each in its own pass.
    #[arg(long, value_delimiter = ',', default_value = "1,64")]
    pub clients: Vec<usize>,
    /// Puts per pass with one client; ten times as many with more.
    #[arg(long, default_value_t = 2000)]
    pub total: u64,
    /// Which members the clients write through: all (balanced, as etcd's
    /// clients do), the leader, or one follower (which forwards to the leader).
    #[arg(long, value_enum, default_value = "all")]
    pub via: Via,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Via {
    All,
    Leader,
    Follower,
}

#[derive(Debug, Clone, Serialize)]
pub struct PerWrite {
    pub system: String,
    pub via: Via,
    pub clients: usize,
    pub client_mean_ms: f64,
    pub wal_fsync_mean_ms: f64,
    /// cairn only: the leader's `client_write` until its answer.
    pub proposal_commit_mean_ms: Option<f64>,
    pub fdatasyncs: f64,
    pub context_switches: f64,
    pub syscalls: f64,
    pub cpu_ms: f64,
}

pub async fn run(options: &PerWriteOptions) -> Result<Vec<PerWrite>> {
    let work = tempfile::tempdir().context("work dir")?;
    let mut rows = Vec::new();
    for system in &options.systems {
        let (name, binary) = system.split_once('=').context("--system takes NAME=BINARY")?;
        let cluster = compare::start(name, &PathBuf::from(binary), options.members, work.path()).await?;
        load::run(Workload::Put, &LoadOptions::puts(cluster.endpoints(), 16, options.total), false).await?;
        for &clients in &options.clients {
            let total = if clients == 1 { options.total } else { options.total * 10 };
            eprintln!("{name}: {} members, {clients} clients, {total} puts twice", options.members);
            let endpoints = endpoints(&cluster, options.via).await?;
            rows.push(measure(name, &cluster, &endpoints, clients, total, options.via, work.path()).await?);
        }
    }
    Ok(rows)
}

async fn endpoints(cluster: &Cluster, via: Via) -> Result<Vec<String>> {
    let leader = cluster.leader_index().await?;
    Ok(match via {
        Via::All => cluster.endpoints(),
        Via::Leader => vec![cluster.members[leader].endpoint().to_string()],
        Via::Follower => {
            let follower = (leader + 1) % cluster.members.len();
            vec![cluster.members[follower].endpoint().to_string()]
        }
    })
}

async fn measure(
    system: &str,
    cluster: &Cluster,
    endpoints: &[String],
    clients: usize,
    total: u64,
    via: Via,
    work: &Path,
) -> Result<PerWrite> {
    let puts = LoadOptions::puts(endpoints.to_vec(), clients, total);
    let before = Means::of(cluster);
    let timed = summarize(&load::run(Workload::Put, &puts, false).await?);
    let after = Means::of(cluster);

    let counts = work.join("perf-stat.csv");
    let members = pids(cluster).iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    let mut perf = tokio::process::Command::new("perf")
        .args(["stat", "-x", ",", "-e", &EVENTS.join(","), "-p", &members, "-o"])
        .arg(&counts)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("perf (linux-perf) is needed")?;
    // perf stat prints nothing when it has attached; give it a moment.
    tokio::time::sleep(Duration::from_millis(500)).await;
    load::run(Workload::Put, &puts, false).await?;
    let perf_pid = perf.id().context("perf ended early")?;
    std::process::Command::new("kill").args(["-INT", &perf_pid.to_string()]).status()?;
    tokio::time::timeout(Duration::from_secs(10), perf.wait()).await.context("perf did not stop")??;
    let text = std::fs::read_to_string(&counts).context("perf's counts")?;
    let per_write = |event: &str| perf_count(&text, event).map(|count| count / total as f64);

    Ok(PerWrite {
        system: system.to_string(),
        via,
        clients,
        client_mean_ms: timed.average_ms,
        wal_fsync_mean_ms: after.mean_ms(&before, WAL_FSYNC).unwrap_or(0.0),
        proposal_commit_mean_ms: after.mean_ms(&before, PROPOSAL_COMMIT),
        fdatasyncs: per_write(EVENTS[0]).context("no fdatasync count")?,
        context_switches: per_write(EVENTS[1]).context("no context-switch count")?,
        syscalls: per_write(EVENTS[2]).context("no syscall count")?,
        cpu_ms: per_write(EVENTS[3]).context("no task-clock")?,
    })
}

const WAL_FSYNC: &str = "etcd_disk_wal_fsync_duration_seconds";
const PROPOSAL_COMMIT: &str = "cairn_proposal_commit_duration_seconds";

/// Sums and counts of two histograms over every member's `/metrics`.
struct Means(Vec<(&'static str, f64, f64)>);

impl Means {
    fn of(cluster: &Cluster) -> Self {
        let texts: Vec<String> = cluster.members.iter().map(|member| member.metrics()).collect();
        let totals = [WAL_FSYNC, PROPOSAL_COMMIT].map(|name| {
            let field = |suffix: &str| texts.iter().filter_map(|text| metric(text, &format!("{name}{suffix}"))).sum();
            (name, field("_sum"), field("_count"))
        });
        Self(totals.to_vec())
    }

    /// The mean in ms of what was observed between `before` and now; None if nothing was.
    fn mean_ms(&self, before: &Means, name: &str) -> Option<f64> {
        let find =
            |means: &Means| means.0.iter().find(|(metric, ..)| *metric == name).map(|(_, sum, count)| (*sum, *count));
        let ((sum, count), (sum_before, count_before)) = (find(self)?, find(before)?);
        (count > count_before).then(|| (sum - sum_before) * 1000.0 / (count - count_before))
    }
}

/// An unlabelled sample's value in a Prometheus text.
fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// An event's count in `perf stat -x ,` output (value first, event third).
fn perf_count(text: &str, event: &str) -> Option<f64> {
    text.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(',').collect();
        (fields.get(2) == Some(&event)).then(|| fields[0].parse().ok()).flatten()
    })
}

pub fn table(rows: &[PerWrite]) -> String {
    let mut out = String::from(
        "| system | via | clients | client put mean (ms) | WAL fsync mean (ms) | proposal commit mean (ms) | fdatasync/write | context switches/write | syscalls/write | member CPU ms/write |\n|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for row in rows {
        let commit = row.proposal_commit_mean_ms.map_or("-".to_string(), |ms| format!("{ms:.3}"));
        out.push_str(&format!(
            "| {} | {:?} | {} | {:.3} | {:.3} | {commit} | {:.3} | {:.2} | {:.1} | {:.3} |\n",
            row.system,
            row.via,
            row.clients,
            row.client_mean_ms,
            row.wal_fsync_mean_ms,
            row.fdatasyncs,
            row.context_switches,
            row.syscalls,
            row.cpu_ms
        ));
    }
    out
}

/// Checks the options before any cluster starts.
pub fn validate(options: &PerWriteOptions) -> Result<()> {
    if options.clients.is_empty() || options.clients.contains(&0) || options.total == 0 {
        bail!("--clients and --total must be positive");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv_and_prometheus_text_are_read_by_name() {
        let perf = "# started on Thu\n\n6000,,syscalls:sys_enter_fdatasync,1000,100.00,,\n88000,,context-switches,1000,100.00,,\n3120.5,msec,task-clock,1000,100.00,1.0,CPUs utilized\n";
        assert_eq!(perf_count(perf, "syscalls:sys_enter_fdatasync"), Some(6000.0));
        assert_eq!(perf_count(perf, "task-clock"), Some(3120.5));
        assert_eq!(perf_count(perf, "raw_syscalls:sys_enter"), None);
        let prometheus = "x_bucket{le=\"0.001\"} 3\nx_sum 0.25\nx_count 5\nx_sum_other 9\n";
        assert_eq!(metric(prometheus, "x_sum"), Some(0.25));
        assert_eq!(metric(prometheus, "x_count"), Some(5.0));
        assert_eq!(metric(prometheus, "y_sum"), None);
    }

    #[test]
    fn a_mean_covers_only_what_was_observed_between_two_scrapes() {
        let before = Means(vec![(WAL_FSYNC, 1.0, 100.0), (PROPOSAL_COMMIT, 0.0, 0.0)]);
        let after = Means(vec![(WAL_FSYNC, 1.5, 300.0), (PROPOSAL_COMMIT, 0.0, 0.0)]);
        assert_eq!(after.mean_ms(&before, WAL_FSYNC), Some(2.5));
        assert_eq!(after.mean_ms(&before, PROPOSAL_COMMIT), None, "nothing observed");
    }
}
