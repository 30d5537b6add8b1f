//! Write latency while something heavy runs beside it, as a Kubernetes API
//! server makes it run: clients listing a whole resource in a loop, and the
//! compaction of a long history. Each system runs alone, one after the other.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use cairn_testkit::Cluster;

use crate::compare;
use crate::load::{self, LoadOptions, Workload};
use crate::report::{summarize, Summary};

#[derive(Debug, Clone, clap::Args)]
pub struct StallOptions {
    /// A system to measure, as NAME=BINARY (cairn or etcd); repeat for each.
    #[arg(long = "system", required = true)]
    pub systems: Vec<String>,
    /// Keys the readers list on every read (8-byte values).
    #[arg(long, default_value_t = 100_000)]
    pub keys: u64,
    /// Concurrent readers.
    #[arg(long, default_value_t = 8)]
    pub readers: usize,
    /// Revisions the compaction removes; 0 leaves the compaction phase out.
    #[arg(long, default_value_t = 1_000_000)]
    pub revisions: u64,
    /// How long the writer is measured in each phase.
    #[arg(long, default_value_t = 15)]
    pub seconds: u64,
    /// Where the JSON results go.
    #[arg(long, default_value = "docs/benchmarks/stalls.json")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub system: String,
    /// idle, reading, or compacting.
    pub phase: String,
    pub writes: Summary,
    /// Reads completed beside the writer, or the compaction's own duration in ms.
    pub beside: f64,
}

pub async fn run(options: &StallOptions) -> Result<Vec<Phase>> {
    let work = tempfile::tempdir().context("work dir")?;
    let mut phases = Vec::new();
    for system in &options.systems {
        let (name, binary) = system.split_once('=').context("--system takes NAME=BINARY")?;
        eprintln!("{name}:");
        let cluster = compare::start(name, &PathBuf::from(binary), 1, work.path()).await?;
        let mut phase = |phase: &str, writes: Summary, beside: f64| {
            eprintln!("  {phase}: write p99 {:.2} ms, max {:.2} ms", p99(&writes), writes.slowest_ms);
            phases.push(Phase { system: name.to_string(), phase: phase.to_string(), writes, beside });
        };

        eprintln!(" writing {} keys", options.keys);
        // Small values: a whole range must fit the client's 4 MiB response limit.
        fill(&cluster, options.keys, options.keys, 8).await?;
        phase("idle", writer(&cluster, options.seconds).await?, 0.0);

        eprintln!(" {} readers listing every key", options.readers);
        let reading = LoadOptions {
            clients: options.readers,
            conns: options.readers,
            duration: Some(options.seconds + 4),
            whole_range: true,
            ..load_options(&cluster)
        };
        let readers = tokio::spawn(async move { load::run(Workload::Range, &reading, false).await });
        tokio::time::sleep(Duration::from_secs(2)).await;
        let writes = writer(&cluster, options.seconds).await?;
        let reads = readers.await.context("readers")??;
        phase("reading", writes, reads.latencies.len() as f64);

        if options.revisions == 0 {
            continue;
        }
        eprintln!(" writing {} revisions", options.revisions);
        fill(&cluster, options.revisions, 1000, 256).await?;
        let mut client = etcd_client::Client::connect(cluster.endpoints(), None).await?;
        let revision = client.status().await?.header().map_or(0, |header| header.revision());
        let writing = writer_task(&cluster, options.seconds);
        tokio::time::sleep(Duration::from_secs(2)).await;
        eprintln!(" compacting at revision {revision}");
        let compacting = Instant::now();
        client.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await?;
        let compaction_ms = compacting.elapsed().as_secs_f64() * 1000.0;
        let writes = writing.await.context("writer")??;
        phase("compacting", writes, compaction_ms);
        drop(cluster);
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&phases)?)
        .with_context(|| format!("writing {}", options.out.display()))?;
    Ok(phases)
}

fn p99(summary: &Summary) -> f64 {
    summary.percentiles_ms.iter().find(|(percentile, _)| *percentile == 99.0).map_or(0.0, |(_, ms)| *ms)
}

fn load_options(cluster: &Cluster) -> LoadOptions {
    LoadOptions {
        endpoints: cluster.endpoints(),
        conns: 1,
        clients: 1,
        total: 0,
        duration: None,
        key_size: 8,
        val_size: 256,
        key_space_size: 1,
        sequential_keys: false,
        rate: 0.0,
        serializable: false,
        whole_range: false,
        user: None,
    }
}

/// `total` puts of `val_size` bytes over `key_space` keys, in order, from 64 clients.
async fn fill(cluster: &Cluster, total: u64, key_space: u64, val_size: usize) -> Result<()> {
    let fill = LoadOptions {
        val_size,
        clients: 64,
        conns: 16,
        total,
        key_space_size: key_space,
        sequential_keys: true,
        ..load_options(cluster)
    };
    load::run(Workload::Put, &fill, true).await?;
    Ok(())
}

/// One client's puts for `seconds`, on keys of their own.
fn writer_task(cluster: &Cluster, seconds: u64) -> tokio::task::JoinHandle<Result<Summary>> {
    let writes = LoadOptions { duration: Some(seconds), key_size: 12, key_space_size: 1000, ..load_options(cluster) };
    tokio::spawn(async move { Ok(summarize(&load::run(Workload::Put, &writes, false).await?)) })
}

async fn writer(cluster: &Cluster, seconds: u64) -> Result<Summary> {
    writer_task(cluster, seconds).await.context("writer")?
}

/// The results as a markdown table.
pub fn table(phases: &[Phase]) -> String {
    let mut out = String::from(
        "| system | beside the writer | write p50 (ms) | write p99 (ms) | write max (ms) | beside |\n|---|---|---|---|---|---|\n",
    );
    for phase in phases {
        let p50 = phase.writes.percentiles_ms.iter().find(|(p, _)| *p == 50.0).map_or(0.0, |(_, ms)| *ms);
        let beside = match phase.phase.as_str() {
            "reading" => format!("{:.0} whole reads", phase.beside),
            "compacting" => format!("compaction took {:.0} ms", phase.beside),
            _ => String::new(),
        };
        out.push_str(&format!(
            "| {} | {} | {p50:.2} | {:.2} | {:.2} | {beside} |\n",
            phase.system,
            phase.phase,
            p99(&phase.writes),
            phase.writes.slowest_ms
        ));
    }
    out
}
