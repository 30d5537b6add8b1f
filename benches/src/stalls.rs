//! Write latency while something heavy runs beside it, as a Kubernetes API
//! server makes it run: clients listing a whole resource in a loop, the
//! compaction of a long history, and an operator's defragmentation of a large
//! store. Each system runs alone, one after the other.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use cairn_testkit::Cluster;

use crate::compare;
use crate::load::{self, LoadOptions, Workload};
use crate::report::{log_buckets, summarize, Summary};
use crate::svg;

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
    /// The phases to run, of idle, reading, compacting and defragmenting.
    #[arg(long, value_delimiter = ',', default_value = "idle,reading,compacting,defragmenting")]
    pub phases: Vec<String>,
    /// MiB of 4 KiB values written (each key four times); the store is then
    /// compacted and defragmented beside the writer, which runs --seconds.
    #[arg(long, default_value_t = 1024)]
    pub defrag_mib: u64,
    /// Where the chart of write latencies while defragmenting goes.
    #[arg(long, default_value = "docs/benchmarks/defrag.svg")]
    pub chart: PathBuf,
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
    /// Reads completed beside the writer, or the compaction's or defragmentation's own duration in ms.
    pub beside: f64,
    /// Writes by latency: (upper bound in ms, count), on a log scale.
    pub buckets: Vec<(f64, u64)>,
}

/// One writer's puts: their summary and their log-scale buckets.
type Writes = (Summary, Vec<(f64, u64)>);

/// The value size of the defragmentation's store.
const DEFRAG_VALUE_BYTES: usize = 4096;

pub async fn run(options: &StallOptions) -> Result<Vec<Phase>> {
    let work = tempfile::tempdir().context("work dir")?;
    let wants = |phase: &str| options.phases.iter().any(|wanted| wanted == phase);
    let mut phases = Vec::new();
    for system in &options.systems {
        let (name, binary) = system.split_once('=').context("--system takes NAME=BINARY")?;
        eprintln!("{name}:");
        let cluster = compare::start(name, &PathBuf::from(binary), 1, work.path()).await?;
        let mut phase = |phase: &str, (writes, buckets): Writes, beside: f64| {
            eprintln!("  {phase}: write p99 {:.2} ms, max {:.2} ms", p99(&writes), writes.slowest_ms);
            phases.push(Phase { system: name.to_string(), phase: phase.to_string(), writes, beside, buckets });
        };

        if wants("idle") || wants("reading") {
            eprintln!(" writing {} keys", options.keys);
            // Small values: a whole range must fit the client's 4 MiB response limit.
            fill(&cluster, options.keys, options.keys, 8).await?;
        }
        if wants("idle") {
            phase("idle", writer(&cluster, options.seconds).await?, 0.0);
        }
        if wants("reading") {
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
        }
        let mut client = etcd_client::Client::connect(cluster.endpoints(), None).await?;
        if wants("compacting") && options.revisions > 0 {
            eprintln!(" writing {} revisions", options.revisions);
            fill(&cluster, options.revisions, 1000, 256).await?;
            let (writes, took) = beside_writer(&cluster, options.seconds, "compacting", compact(&mut client)).await?;
            phase("compacting", writes, took);
        }
        if wants("defragmenting") && options.defrag_mib > 0 {
            let puts = options.defrag_mib * 1024 * 1024 / DEFRAG_VALUE_BYTES as u64;
            eprintln!(" writing {} MiB: {puts} puts of 4 KiB on {} keys", options.defrag_mib, puts / 4);
            fill(&cluster, puts, puts / 4, DEFRAG_VALUE_BYTES).await?;
            let before = client.status().await?.db_size();
            let mut maintaining = client.clone();
            // What an operator runs on a store whose history a compaction leaves mostly free.
            let maintain = async move {
                compact(&mut maintaining).await?;
                let started = Instant::now();
                maintaining.defragment().await?;
                eprintln!("  the defragmentation alone took {} ms", started.elapsed().as_millis());
                Ok(())
            };
            let (writes, took) =
                beside_writer(&cluster, options.seconds, "compacting and defragmenting", maintain).await?;
            let after = client.status().await?.db_size();
            eprintln!("  the store went from {} MiB to {} MiB", before >> 20, after >> 20);
            phase("defragmenting", writes, took);
        }
        drop(cluster);
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&phases)?)
        .with_context(|| format!("writing {}", options.out.display()))?;
    let defrags: Vec<&Phase> = phases.iter().filter(|phase| phase.phase == "defragmenting").collect();
    if !defrags.is_empty() {
        std::fs::write(&options.chart, chart(&defrags, options.defrag_mib))
            .with_context(|| format!("writing {}", options.chart.display()))?;
    }
    Ok(phases)
}

/// Compacts everything written so far, physically.
async fn compact(client: &mut etcd_client::Client) -> Result<()> {
    let revision = client.status().await?.header().map_or(0, |header| header.revision());
    eprintln!(" compacting at revision {revision}");
    client.compact(revision, Some(etcd_client::CompactionOptions::new().with_physical())).await?;
    Ok(())
}

/// Runs `work` two seconds into a writer's run: the writes, and how long `work` took in ms.
async fn beside_writer(
    cluster: &Cluster,
    seconds: u64,
    what: &str,
    work: impl std::future::Future<Output = Result<()>>,
) -> Result<(Writes, f64)> {
    let writing = writer_task(cluster, seconds);
    tokio::time::sleep(Duration::from_secs(2)).await;
    eprintln!("  {what} beside the writer");
    let started = Instant::now();
    work.await?;
    let took = started.elapsed().as_secs_f64() * 1000.0;
    Ok((writing.await.context("writer")??, took))
}

/// Each system's write latencies while defragmenting, as grouped bars on a log scale.
fn chart(phases: &[&Phase], mib: u64) -> String {
    let labels: Vec<String> = phases[0].buckets.iter().map(|(upper, _)| bucket_label(*upper)).collect();
    let series: Vec<(String, Vec<u64>)> = phases
        .iter()
        .map(|phase| (phase.system.clone(), phase.buckets.iter().map(|(_, count)| *count).collect()))
        .collect();
    svg::bar_chart(
        &format!("One client's puts while a {mib} MiB store is compacted, then defragmented"),
        "put latency, up to",
        "puts",
        &labels,
        &series,
    )
}

fn bucket_label(upper_ms: f64) -> String {
    match upper_ms {
        ms if ms.is_infinite() => "more".to_string(),
        ms if ms >= 1000.0 => format!("{} s", ms / 1000.0),
        ms => format!("{ms} ms"),
    }
}

fn p99(summary: &Summary) -> f64 {
    summary.percentiles_ms.iter().find(|(percentile, _)| *percentile == 99.0).map_or(0.0, |(_, ms)| *ms)
}

fn load_options(cluster: &Cluster) -> LoadOptions {
    LoadOptions { key_space_size: 1, ..LoadOptions::puts(cluster.endpoints(), 1, 0) }
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
fn writer_task(cluster: &Cluster, seconds: u64) -> tokio::task::JoinHandle<Result<Writes>> {
    let writes = LoadOptions { duration: Some(seconds), key_size: 12, key_space_size: 1000, ..load_options(cluster) };
    tokio::spawn(async move {
        let outcome = load::run(Workload::Put, &writes, false).await?;
        Ok((summarize(&outcome), log_buckets(&outcome.latencies)))
    })
}

async fn writer(cluster: &Cluster, seconds: u64) -> Result<Writes> {
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
            "defragmenting" => format!("compaction and defragmentation took {:.0} ms", phase.beside),
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
