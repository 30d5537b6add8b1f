//! cairn beside etcd at each cluster size, on loopback, with equal settings;
//! the systems alternate so that the machine's drift falls on both.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::Result;
use cairn_testkit::{Cluster, Flavor, Member, Options};
use serde::Serialize;

use crate::load::{self, LoadOptions, Workload};
use crate::report::{summarize, Summary};
use crate::svg;

#[derive(Debug, Clone, clap::Args)]
pub struct CompareOptions {
    /// Cluster sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,3,5")]
    pub sizes: Vec<usize>,
    /// The etcd binary to compare with.
    #[arg(long)]
    pub etcd: PathBuf,
    /// The cairn binary.
    #[arg(long)]
    pub cairn: PathBuf,
    /// Requests per workload.
    #[arg(long, default_value_t = 5000)]
    pub total: u64,
    /// Where results.md, results.json and the charts go.
    #[arg(long, default_value = "docs/benchmarks")]
    pub out: PathBuf,
}

const ROUND_TRIP: &str = "range serializable, 1 client";

/// One workload of the comparison: (name, workload, clients, serializable).
const WORKLOADS: [(&str, Workload, usize, bool); 7] = [
    ("put, 1 client, sequential keys", Workload::Put, 1, false),
    // One client's round trip with no disk: with the fdatasync, the floor of a durable put.
    (ROUND_TRIP, Workload::Range, 1, true),
    ("put, 16 clients", Workload::Put, 16, false),
    ("put, 64 clients", Workload::Put, 64, false),
    ("put, 256 clients", Workload::Put, 256, false),
    ("range linearizable, 64 clients", Workload::Range, 64, false),
    ("range serializable, 64 clients", Workload::Range, 64, true),
];

/// Keys in the store when memory is measured.
const FILL_KEYS: u64 = 100_000;

#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub system: String,
    pub size: usize,
    pub workload: String,
    pub clients: usize,
    pub summary: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Resources {
    pub system: String,
    pub size: usize,
    pub rss_mib_per_member: f64,
    pub cpu_seconds_per_1000_ops: f64,
    pub disk_bytes_written_per_op: f64,
    pub data_dir_mib: f64,
    pub ops: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub date: String,
    pub machine: String,
    pub command: String,
    pub fdatasync_p50_ms: f64,
    pub measurements: Vec<Measurement>,
    pub resources: Vec<Resources>,
}

/// Members with equal settings for both systems, in a fresh folder under `work`.
pub async fn start(name: &str, binary: &Path, size: usize, work: &Path) -> Result<Cluster> {
    let dir = work.join(format!("{name}-{size}"));
    let _ = std::fs::remove_dir_all(&dir);
    let flavor = if name == "etcd" { Flavor::Etcd } else { Flavor::Cairn };
    let mut options = Options::new(flavor, size).args(&[
        "--initial-cluster-token",
        "bench",
        "--heartbeat-interval",
        "100",
        "--election-timeout",
        "1000",
        "--snapshot-count",
        "10000",
        "--quota-backend-bytes",
        "8589934592",
    ]);
    options.binary = Some(binary.to_path_buf());
    options.dir = Some(dir);
    options.start().await
}

/// The member processes' ids, for their figures in /proc.
pub fn pids(cluster: &Cluster) -> Vec<u32> {
    cluster.members.iter().filter_map(Member::pid).collect()
}

fn proc_field(pid: u32, file: &str, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/{file}"))
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|line| line.strip_prefix(field).map(|rest| rest.trim().trim_end_matches(" kB").to_string()))
        })
        .and_then(|value| value.parse().ok())
        .unwrap_or(0)
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |t| t.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    ticks as f64 / 100.0
}

fn dir_size(path: &Path) -> u64 {
    std::fs::read_dir(path).map_or(0, |entries| {
        entries
            .flatten()
            .map(|entry| match entry.metadata() {
                Ok(meta) if meta.is_dir() => dir_size(&entry.path()),
                Ok(meta) => meta.len(),
                Err(_) => 0,
            })
            .sum()
    })
}

/// The disk's own floor: 4 KiB written and fdatasync'ed, median of 200.
fn fdatasync_p50_ms(dir: &Path) -> Result<f64> {
    use std::io::Write;
    let path = dir.join("fdatasync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![7u8; 4096];
    let mut samples = Vec::new();
    for _ in 0..200 {
        let start = Instant::now();
        file.write_all(&block)?;
        file.sync_data()?;
        samples.push(start.elapsed().as_secs_f64() * 1000.0);
    }
    let _ = std::fs::remove_file(&path);
    samples.sort_by(f64::total_cmp);
    Ok(samples[samples.len() / 2])
}

pub async fn compare(options: &CompareOptions) -> Result<Results> {
    let work = std::env::temp_dir().join(format!("cairn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let fsync = fdatasync_p50_ms(&work)?;
    eprintln!("disk: fdatasync p50 {fsync:.3} ms");
    let mut measurements = Vec::new();
    let mut resources = Vec::new();
    for (round, size) in options.sizes.iter().enumerate() {
        let mut systems = [("cairn", &options.cairn), ("etcd", &options.etcd)];
        if round % 2 == 1 {
            systems.reverse();
        }
        for (name, binary) in systems {
            eprintln!("{name}, {size} member(s):");
            let cluster = start(name, binary, *size, &work).await?;
            let endpoints = cluster.endpoints();
            let cpu_before: f64 = pids(&cluster).into_iter().map(cpu_seconds).sum();
            let io_before: u64 = pids(&cluster).into_iter().map(|pid| proc_field(pid, "io", "write_bytes:")).sum();
            let mut ops = 0;
            for (workload_name, workload, clients, serializable) in WORKLOADS {
                let load = LoadOptions {
                    endpoints: endpoints.clone(),
                    conns: clients.clamp(1, 16),
                    clients,
                    total: options.total,
                    duration: None,
                    key_size: 8,
                    val_size: 256,
                    key_space_size: 100_000,
                    sequential_keys: clients == 1,
                    rate: 0.0,
                    serializable,
                    whole_range: false,
                };
                eprintln!(" {workload_name}");
                let outcome = load::run(workload, &load, true).await?;
                let summary = summarize(&outcome);
                ops += summary.total;
                measurements.push(Measurement {
                    system: name.to_string(),
                    size: *size,
                    workload: workload_name.to_string(),
                    clients,
                    summary,
                });
            }
            let cpu_after: f64 = pids(&cluster).into_iter().map(cpu_seconds).sum();
            let io_after: u64 = pids(&cluster).into_iter().map(|pid| proc_field(pid, "io", "write_bytes:")).sum();
            // Memory is compared with 100k keys in the store: write every key of the key space once.
            eprintln!(" filling 100k keys for the memory figure");
            let fill = LoadOptions {
                endpoints: endpoints.clone(),
                conns: 16,
                clients: 64,
                total: FILL_KEYS,
                duration: None,
                key_size: 8,
                val_size: 256,
                key_space_size: FILL_KEYS,
                sequential_keys: true,
                rate: 0.0,
                serializable: false,
                whole_range: false,
            };
            load::run(Workload::Put, &fill, false).await?;
            let rss: u64 = pids(&cluster).into_iter().map(|pid| proc_field(pid, "status", "VmRSS:")).sum();
            let data: u64 = cluster.members.iter().map(|member| dir_size(&member.spec.data_dir)).sum();
            resources.push(Resources {
                system: name.to_string(),
                size: *size,
                rss_mib_per_member: rss as f64 / 1024.0 / *size as f64,
                cpu_seconds_per_1000_ops: (cpu_after - cpu_before) * 1000.0 / ops.max(1) as f64,
                disk_bytes_written_per_op: (io_after - io_before) as f64 / ops.max(1) as f64,
                data_dir_mib: data as f64 / 1024.0 / 1024.0 / *size as f64,
                ops,
            });
            drop(cluster);
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    let machine = format!(
        "{} cores, {}",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|info| info
                .lines()
                .find_map(|l| l.strip_prefix("model name").map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())))
            .unwrap_or_default()
    );
    let date = Command::new("date")
        .arg("-u")
        .arg("+%Y-%m-%d %H:%M UTC")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .unwrap_or_default();
    let command = format!(
        "cairn-bench compare --sizes {} --total {} --cairn {} --etcd {}",
        options.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
        options.total,
        "target/release/cairn",
        "~/.cache/cairn/etcd-v3.5.1/etcd"
    );
    let results = Results { date, machine, command, fdatasync_p50_ms: fsync, measurements, resources };
    write_outputs(&results, &options.out)?;
    Ok(results)
}

fn find<'a>(results: &'a Results, system: &str, size: usize, workload: &str) -> Option<&'a Summary> {
    results
        .measurements
        .iter()
        .find(|m| m.system == system && m.size == size && m.workload == workload)
        .map(|m| &m.summary)
}

fn p50(summary: &Summary) -> f64 {
    summary.percentiles_ms.iter().find(|(p, _)| *p == 50.0).map_or(0.0, |(_, v)| *v)
}

/// On one member, a put acknowledged after its fsync cannot beat one client
/// round trip plus one fdatasync; says which system's put p50 is below that.
fn durability_floor(results: &Results, sizes: &[usize]) -> String {
    let mut text = String::new();
    if !sizes.contains(&1) {
        return text;
    }
    for system in ["cairn", "etcd"] {
        let (Some(put), Some(trip)) = (find(results, system, 1, WORKLOADS[0].0), find(results, system, 1, ROUND_TRIP))
        else {
            continue;
        };
        let floor = p50(trip) + results.fdatasync_p50_ms;
        let verdict = if p50(put) < floor {
            "below it: this put was acknowledged before its fsync finished"
        } else {
            "at or above it"
        };
        text.push_str(&format!(
            "\n{system}, 1 member: put p50 {:.3} ms against a floor of {floor:.3} ms (round trip {:.3} + fdatasync {:.3}), {verdict}.",
            p50(put),
            p50(trip),
            results.fdatasync_p50_ms
        ));
    }
    text.push('\n');
    text
}

fn write_outputs(results: &Results, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out)?;
    std::fs::write(out.join("results.json"), serde_json::to_string_pretty(results)?)?;
    let sizes: Vec<usize> = {
        let mut sizes: Vec<usize> = results.measurements.iter().map(|m| m.size).collect();
        sizes.dedup();
        sizes
    };
    let mut md = String::new();
    md.push_str("# Benchmark results: cairn beside etcd 3.5.1\n\n");
    md.push_str(&format!(
        "Measured {} on {}, both systems on loopback in one run, alternating.\n",
        results.date, results.machine
    ));
    md.push_str(&format!("Reproduce with `{}`.\n\n", results.command));
    md.push_str(&format!(
        "The disk's own fdatasync of 4 KiB takes {:.3} ms (p50): the floor for a durable write.\n\n",
        results.fdatasync_p50_ms
    ));
    md.push_str("| size | workload | cairn p50 ms | etcd p50 ms | cairn p99 ms | etcd p99 ms | cairn req/s | etcd req/s | throughput ratio |\n");
    md.push_str("|---|---|---|---|---|---|---|---|---|\n");
    for size in &sizes {
        for (workload, _, _, _) in WORKLOADS {
            let (Some(c), Some(e)) = (find(results, "cairn", *size, workload), find(results, "etcd", *size, workload))
            else {
                continue;
            };
            let p = |s: &Summary, q: f64| s.percentiles_ms.iter().find(|(p, _)| *p == q).map_or(0.0, |(_, v)| *v);
            md.push_str(&format!(
                "| {size} | {workload} | {:.3} | {:.3} | {:.3} | {:.3} | {:.0} | {:.0} | {:.2}x |\n",
                p(c, 50.0),
                p(e, 50.0),
                p(c, 99.0),
                p(e, 99.0),
                c.requests_per_second,
                e.requests_per_second,
                c.requests_per_second / e.requests_per_second.max(1e-9)
            ));
        }
    }
    md.push_str(&durability_floor(results, &sizes));
    md.push_str("\nRSS is measured after every key of a 100k key space has been written (values of 256 bytes); CPU and bytes written cover the workloads above; the data dir size is taken last.\n");
    md.push_str("\n| system | size | RSS MiB/member | CPU s per 1000 ops | disk bytes written/op | data dir MiB/member |\n|---|---|---|---|---|---|\n");
    for r in &results.resources {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.3} | {:.0} | {:.1} |\n",
            r.system,
            r.size,
            r.rss_mib_per_member,
            r.cpu_seconds_per_1000_ops,
            r.disk_bytes_written_per_op,
            r.data_dir_mib
        ));
    }
    md.push_str("\n![p50 and p99 write latency against cluster size](latency-vs-size.svg)\n\n![throughput against cluster size and clients](throughput.svg)\n");
    std::fs::write(out.join("results.md"), md)?;

    let latency_series = |system: &str, q: f64, workload: &str| -> (String, Vec<(f64, f64)>) {
        let points = sizes
            .iter()
            .filter_map(|size| {
                let s = find(results, system, *size, workload)?;
                let value = s.percentiles_ms.iter().find(|(p, _)| *p == q)?.1;
                Some((*size as f64, value))
            })
            .collect();
        (format!("{system} p{q}"), points)
    };
    let single = WORKLOADS[0].0;
    let latency = [
        latency_series("cairn", 50.0, single),
        latency_series("etcd", 50.0, single),
        latency_series("cairn", 99.0, single),
        latency_series("etcd", 99.0, single),
    ];
    std::fs::write(
        out.join("latency-vs-size.svg"),
        svg::line_chart("Put latency, 1 client (ms) against cluster size", "members", "ms", &latency),
    )?;
    let mut throughput = Vec::new();
    for system in ["cairn", "etcd"] {
        for (workload, _, clients, _) in &WORKLOADS[1..4] {
            let points = sizes
                .iter()
                .filter_map(|size| Some((*size as f64, find(results, system, *size, workload)?.requests_per_second)))
                .collect();
            throughput.push((format!("{system} {clients} clients"), points));
        }
    }
    std::fs::write(
        out.join("throughput.svg"),
        svg::line_chart("Put throughput (req/s) against cluster size", "members", "req/s", &throughput),
    )?;
    Ok(())
}
