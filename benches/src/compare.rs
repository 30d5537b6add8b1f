//! cairn beside one or more etcd releases at each cluster size, on loopback,
//! with equal settings; the systems take turns going first so that the
//! machine's drift falls on all of them.

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
    /// An etcd binary to compare with; repeat it for more releases
    /// (`--etcd etcd-3.5.1/etcd --etcd etcd-3.6.16/etcd`).
    #[arg(long, required = true)]
    pub etcd: Vec<PathBuf>,
    /// The cairn binary.
    #[arg(long)]
    pub cairn: PathBuf,
    /// An earlier cairn binary, measured beside as "cairn before" for
    /// before/after figures taken in the same minutes.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Each system runs this many times at each size, taking turns; each
    /// workload keeps its best round (the most requests per second).
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
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
    /// "cairn" first, then "cairn before" if measured, then each etcd as "etcd <version>".
    pub systems: Vec<String>,
    pub fdatasync_p50_ms: f64,
    pub measurements: Vec<Measurement>,
    pub resources: Vec<Resources>,
}

/// Members with equal settings for every system, in a fresh folder under `work`.
pub async fn start(name: &str, binary: &Path, size: usize, work: &Path) -> Result<Cluster> {
    let dir = work.join(format!("{}-{size}", name.replace(' ', "-")));
    let _ = std::fs::remove_dir_all(&dir);
    let flavor = if name.starts_with("etcd") { Flavor::Etcd } else { Flavor::Cairn };
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

/// "etcd 3.5.1", from the first line of `etcd --version` ("etcd Version: 3.5.1").
fn etcd_name(binary: &Path) -> Result<String> {
    let out = Command::new(binary).arg("--version").output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .lines()
        .find_map(|line| line.strip_prefix("etcd Version:"))
        .map(str::trim)
        .ok_or_else(|| anyhow::anyhow!("{} --version printed no etcd version", binary.display()))?;
    Ok(format!("etcd {version}"))
}

/// The machine's home folder written as `~`, so that the command reproduces elsewhere.
fn portable(path: &Path) -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let text = path.display().to_string();
    match text.strip_prefix(&home) {
        Some(rest) if !home.is_empty() => format!("~{rest}"),
        _ => text,
    }
}

pub async fn compare(options: &CompareOptions) -> Result<Results> {
    let mut systems = vec![("cairn".to_string(), options.cairn.clone())];
    if let Some(baseline) = &options.baseline {
        systems.push(("cairn before".to_string(), baseline.clone()));
    }
    for binary in &options.etcd {
        systems.push((etcd_name(binary)?, binary.clone()));
    }
    let work = std::env::temp_dir().join(format!("cairn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let fsync = fdatasync_p50_ms(&work)?;
    eprintln!("disk: fdatasync p50 {fsync:.3} ms");
    let mut measurements = Vec::new();
    let mut resources = Vec::new();
    for (turn, size) in options.sizes.iter().enumerate() {
        for round in 0..options.rounds.max(1) {
            let mut order = systems.clone();
            order.rotate_left((turn + round) % systems.len());
            for (name, binary) in &order {
                eprintln!("{name}, {size} member(s), round {}:", round + 1);
                let (measured, used) = measure(name, binary, *size, &work, options.total).await?;
                for measurement in measured {
                    keep_best(&mut measurements, measurement);
                }
                // Resources are taken from each system's first round.
                if round == 0 {
                    resources.push(used);
                }
            }
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
        "cairn-bench compare --sizes {} --total {} --rounds {} --cairn {}{}{}",
        options.sizes.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","),
        options.total,
        options.rounds,
        portable(&options.cairn),
        options.baseline.iter().map(|baseline| format!(" --baseline {}", portable(baseline))).collect::<String>(),
        options.etcd.iter().map(|etcd| format!(" --etcd {}", portable(etcd))).collect::<String>()
    );
    let systems = systems.into_iter().map(|(name, _)| name).collect();
    let results = Results { date, machine, command, systems, fdatasync_p50_ms: fsync, measurements, resources };
    write_outputs(&results, &options.out)?;
    Ok(results)
}

/// One system's workloads at one size on a fresh cluster, and what they cost it.
async fn measure(
    name: &str,
    binary: &Path,
    size: usize,
    work: &Path,
    total: u64,
) -> Result<(Vec<Measurement>, Resources)> {
    let cluster = start(name, binary, size, work).await?;
    let endpoints = cluster.endpoints();
    let cpu_before: f64 = pids(&cluster).into_iter().map(cpu_seconds).sum();
    let io_before: u64 = pids(&cluster).into_iter().map(|pid| proc_field(pid, "io", "write_bytes:")).sum();
    let mut measurements = Vec::new();
    let mut ops = 0;
    for (workload_name, workload, clients, serializable) in WORKLOADS {
        let load = LoadOptions {
            conns: clients.clamp(1, 16),
            sequential_keys: clients == 1,
            serializable,
            ..LoadOptions::puts(endpoints.clone(), clients, total)
        };
        eprintln!(" {workload_name}");
        let outcome = load::run(workload, &load, true).await?;
        let summary = summarize(&outcome);
        ops += summary.total;
        measurements.push(Measurement {
            system: name.to_string(),
            size,
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
        key_space_size: FILL_KEYS,
        sequential_keys: true,
        ..LoadOptions::puts(endpoints.clone(), 64, FILL_KEYS)
    };
    load::run(Workload::Put, &fill, false).await?;
    let rss: u64 = pids(&cluster).into_iter().map(|pid| proc_field(pid, "status", "VmRSS:")).sum();
    let data: u64 = cluster.members.iter().map(|member| dir_size(&member.spec.data_dir)).sum();
    let resources = Resources {
        system: name.to_string(),
        size,
        rss_mib_per_member: rss as f64 / 1024.0 / size as f64,
        cpu_seconds_per_1000_ops: (cpu_after - cpu_before) * 1000.0 / ops.max(1) as f64,
        disk_bytes_written_per_op: (io_after - io_before) as f64 / ops.max(1) as f64,
        data_dir_mib: data as f64 / 1024.0 / 1024.0 / size as f64,
        ops,
    };
    Ok((measurements, resources))
}

/// Adds a round's measurement, or replaces an earlier round's of the same
/// system, size and workload if this one served more requests per second.
fn keep_best(measurements: &mut Vec<Measurement>, measurement: Measurement) {
    let same = |m: &Measurement| {
        m.system == measurement.system && m.size == measurement.size && m.workload == measurement.workload
    };
    match measurements.iter_mut().find(|m| same(m)) {
        Some(earlier) if earlier.summary.requests_per_second < measurement.summary.requests_per_second => {
            *earlier = measurement;
        }
        Some(_) => {}
        None => measurements.push(measurement),
    }
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
    for system in &results.systems {
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
    let systems = &results.systems;
    let others = &systems[1..];
    let mut md = String::new();
    md.push_str(&format!("# Benchmark results: cairn beside {}\n\n", others.join(" and ")));
    md.push_str(&format!(
        "Measured {} on {}, every system on loopback in one run, taking turns.\n",
        results.date, results.machine
    ));
    md.push_str(&format!("Reproduce with `{}`.\n\n", results.command));
    md.push_str(&format!(
        "The disk's own fdatasync of 4 KiB takes {:.3} ms (p50): the floor for a durable write.\n\n",
        results.fdatasync_p50_ms
    ));
    md.push_str(
        "Throughput ratios are cairn's requests per second over each other system's; above 1 means cairn is faster.\n\n",
    );
    let columns = |what: &str| systems.iter().map(|system| format!(" {system} {what} |")).collect::<String>();
    let ratios = others.iter().map(|other| format!(" ratio to {other} |")).collect::<String>();
    md.push_str(&format!(
        "| size | workload |{}{}{}{ratios}\n",
        columns("p50 ms"),
        columns("p99 ms"),
        columns("req/s")
    ));
    md.push_str(&format!("|---|---|{}\n", "---|".repeat(systems.len() * 3 + others.len())));
    let p = |s: &Summary, q: f64| s.percentiles_ms.iter().find(|(p, _)| *p == q).map_or(0.0, |(_, v)| *v);
    for size in &sizes {
        for (workload, _, _, _) in WORKLOADS {
            let Some(found) =
                systems.iter().map(|system| find(results, system, *size, workload)).collect::<Option<Vec<_>>>()
            else {
                continue;
            };
            let cells =
                |cell: &dyn Fn(&Summary) -> String| found.iter().map(|s| format!(" {} |", cell(s))).collect::<String>();
            let ratio = found[1..]
                .iter()
                .map(|e| format!(" {:.2}x |", found[0].requests_per_second / e.requests_per_second.max(1e-9)))
                .collect::<String>();
            md.push_str(&format!(
                "| {size} | {workload} |{}{}{}{ratio}\n",
                cells(&|s| format!("{:.3}", p(s, 50.0))),
                cells(&|s| format!("{:.3}", p(s, 99.0))),
                cells(&|s| format!("{:.0}", s.requests_per_second)),
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
    let latency: Vec<_> = [50.0, 99.0]
        .into_iter()
        .flat_map(|q| systems.iter().map(move |system| (system, q)))
        .map(|(system, q)| latency_series(system, q, single))
        .collect();
    std::fs::write(
        out.join("latency-vs-size.svg"),
        svg::line_chart("Put latency, 1 client (ms) against cluster size", "members", "ms", &latency),
    )?;
    let mut throughput = Vec::new();
    for system in systems {
        // The puts of 16, 64 and 256 clients.
        for (workload, _, clients, _) in &WORKLOADS[2..5] {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(p50: f64, requests_per_second: f64) -> Summary {
        Summary {
            total: 10,
            errors: 0,
            seconds: 1.0,
            requests_per_second,
            slowest_ms: p50,
            fastest_ms: p50,
            average_ms: p50,
            stddev_ms: 0.0,
            percentiles_ms: vec![(50.0, p50), (99.0, p50 * 2.0)],
            histogram: Vec::new(),
        }
    }

    #[test]
    fn each_workload_keeps_its_best_round() {
        let measured = |system: &str, workload: &str, rate: f64| Measurement {
            system: system.into(),
            size: 3,
            workload: workload.into(),
            clients: 1,
            summary: summary(1.0, rate),
        };
        let mut kept = Vec::new();
        for (system, workload, rate) in
            [("cairn", "put", 100.0), ("cairn", "put", 300.0), ("cairn", "put", 200.0), ("cairn before", "put", 50.0)]
        {
            keep_best(&mut kept, measured(system, workload, rate));
        }
        let rates: Vec<(String, f64)> =
            kept.iter().map(|m| (m.system.clone(), m.summary.requests_per_second)).collect();
        assert_eq!(rates, [("cairn".to_string(), 300.0), ("cairn before".to_string(), 50.0)]);
    }

    #[test]
    fn every_etcd_gets_its_columns_and_its_ratio() {
        let systems = ["cairn", "etcd 3.5.1", "etcd 3.6.16"].map(String::from).to_vec();
        let rates = [3000.0, 2000.0, 1500.0];
        let measurements = systems
            .iter()
            .zip(rates)
            .flat_map(|(system, rate)| {
                WORKLOADS.iter().map(move |(workload, _, clients, _)| Measurement {
                    system: system.clone(),
                    size: 3,
                    workload: workload.to_string(),
                    clients: *clients,
                    summary: summary(1.0, rate),
                })
            })
            .collect();
        let results = Results {
            date: "today".into(),
            machine: "here".into(),
            command: "cairn-bench compare".into(),
            systems,
            fdatasync_p50_ms: 0.1,
            measurements,
            resources: Vec::new(),
        };
        let out = tempfile::tempdir().expect("tempdir");
        write_outputs(&results, out.path()).expect("written");
        let md = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
        assert!(md.starts_with("# Benchmark results: cairn beside etcd 3.5.1 and etcd 3.6.16"), "{md}");
        assert!(
            md.contains(
                "| cairn req/s | etcd 3.5.1 req/s | etcd 3.6.16 req/s | ratio to etcd 3.5.1 | ratio to etcd 3.6.16 |"
            ),
            "{md}"
        );
        assert!(md.contains("| 3 | put, 64 clients | 1.000 | 1.000 | 1.000 | 2.000 | 2.000 | 2.000 | 3000 | 2000 | 1500 | 1.50x | 2.00x |"), "{md}");
        let header = md.lines().find(|line| line.starts_with("| size")).expect("header");
        let rule = md.lines().find(|line| line.starts_with("|---")).expect("rule");
        assert_eq!(header.matches('|').count(), rule.matches('|').count(), "{header}\n{rule}");
        let chart = std::fs::read_to_string(out.path().join("throughput.svg")).expect("chart");
        assert!(chart.contains("etcd 3.6.16 256 clients"), "the 256-client puts are charted");
    }
}
