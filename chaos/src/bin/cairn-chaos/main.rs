//! `cairn-chaos`: kills, pauses and partitions members of a real cluster
//! (cairn or etcd) under load, then checks the recorded history.
//!
//! `run` plays a seeded schedule and writes a report; `check` checks a saved
//! history again, offline.

mod end;
mod kube;
mod nemesis;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use cairn_chaos::record::{Meta, Recorded};
use cairn_chaos::schedule::{self, Fault, Rng};
use cairn_chaos::{check, report};
use clap::{Parser, Subcommand, ValueEnum};
use tokio::sync::Mutex;

use crate::workload::watch::Progress;
use crate::workload::{Conn, Recorder};
use cairn_testkit::{binaries, Flavor, Options};

#[derive(Parser)]
#[command(name = "cairn-chaos", about = "Fault injection and history checking for etcd-compatible clusters")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Starts a cluster, runs the workloads under faults, checks, and reports.
    Run(Box<RunArgs>),
    /// The whole Kubernetes cluster on Cairn under faults, checked.
    Kube(Box<kube::KubeArgs>),
    /// Checks a history saved by a run (of the store or of the whole cluster) again.
    Check {
        history: PathBuf,
        /// Time budget of the linearizability checker.
        #[arg(long, default_value = "120s", value_parser = parse_duration)]
        budget: Duration,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum SystemArg {
    Cairn,
    Etcd,
}

#[derive(Parser)]
struct RunArgs {
    #[arg(long, value_enum, default_value = "cairn")]
    system: SystemArg,
    /// The member binary; default: `cairn` next to this binary, or etcd 3.5.1 in ~/.cache/cairn.
    #[arg(long)]
    binary: Option<PathBuf>,
    #[arg(long, default_value_t = 3)]
    members: usize,
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    duration: Duration,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Comma-separated fault kinds, or `all`.
    #[arg(long, default_value = "all")]
    faults: String,
    /// Where the report, logs and data dirs go.
    #[arg(long, default_value = "chaos-out")]
    out: PathBuf,
    /// Register clients (each also CASes); set, watch and lease workers come on top.
    #[arg(long, default_value_t = 8)]
    clients: u32,
    /// Register operations per second, over all register clients.
    #[arg(long, default_value_t = 160.0)]
    rate: f64,
    /// Clients of the Kubernetes-shaped workload (each also runs a reflector watch).
    #[arg(long, default_value_t = 2)]
    kube_clients: u32,
    /// Their operations per second, over all of them.
    #[arg(long, default_value_t = 40.0)]
    kube_rate: f64,
    /// How often the kube-apiserver-shaped compactor runs (it stays behind every watcher).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    kube_compaction_interval: Duration,
    /// Register keys in use at a time.
    #[arg(long, default_value_t = 20)]
    keys: u64,
    /// How long register keys are used before the next set of keys.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    epoch: Duration,
    #[arg(long, default_value_t = 1000)]
    election_timeout: u64,
    /// The longest acceptable recovery after a leader kill (default: two
    /// election timeouts).
    #[arg(long, value_parser = parse_duration)]
    recovery_limit: Option<Duration>,
    #[arg(long, default_value_t = 100)]
    heartbeat_interval: u64,
    #[arg(long, default_value_t = 300)]
    snapshot_count: u64,
    #[arg(long, default_value_t = 5)]
    lease_ttl: i64,
    /// Per-request timeout of the clients; a timed-out write is indeterminate.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    request_timeout: Duration,
    /// Runs a deliberately broken cairn (a failpoint, such as
    /// `unsafe-local-reads`), to show that the checkers catch it.
    #[arg(long)]
    broken: Option<String>,
    /// Saves the full history even when the run passes.
    #[arg(long)]
    save_history: bool,
    /// First port on the run's loopback address.
    #[arg(long, default_value_t = 31000)]
    first_port: u16,
    /// Time budget of the linearizability checker.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    check_budget: Duration,
}

pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = text.split_at(text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len()));
    let number: u64 = number.parse().map_err(|_| format!("bad duration {text:?}"))?;
    match unit {
        "ms" => Ok(Duration::from_millis(number)),
        "s" | "" => Ok(Duration::from_secs(number)),
        "m" => Ok(Duration::from_secs(number * 60)),
        _ => Err(format!("bad duration {text:?}: use ms, s or m")),
    }
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { history, budget } => {
            let text = std::fs::read_to_string(&history).with_context(|| format!("reading {}", history.display()))?;
            if is_whole_cluster(&text) {
                if !kube::check_saved(&text)? {
                    std::process::exit(1);
                }
                return Ok(());
            }
            let run: Recorded = serde_json::from_str(&text).context("parsing the history")?;
            let summary = report::summarize(&run, check::all(&run, budget));
            print!("{}", report::markdown(&run, &summary));
            if !summary.passed {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Kube(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            if !runtime.block_on(kube::run(*args))? {
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Run(args) => {
            let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
            let passed = runtime.block_on(run(*args))?;
            if !passed {
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// A whole-cluster history names its API servers in its meta; a store history has none.
fn is_whole_cluster(text: &str) -> bool {
    serde_json::from_str::<serde_json::Value>(text).is_ok_and(|value| value["meta"]["apiservers"].is_number())
}

async fn run(args: RunArgs) -> Result<bool> {
    let system = match args.system {
        SystemArg::Cairn => Flavor::Cairn,
        SystemArg::Etcd => Flavor::Etcd,
    };
    let faults: Vec<Fault> = if args.faults == "all" {
        Fault::ALL.to_vec()
    } else {
        args.faults.split(',').map(str::parse).collect::<Result<_, String>>().map_err(anyhow::Error::msg)?
    };
    if args.members < 3 {
        bail!("--members must be 3 or more: faults need a majority to survive");
    }
    if args.broken.is_some() && system == Flavor::Etcd {
        bail!("--broken sets a cairn failpoint; it has no meaning for etcd");
    }
    let mut skipped = Vec::new();
    let faults: Vec<Fault> = faults
        .into_iter()
        .filter(|fault| {
            let (keep, why) = match fault {
                _ if system == Flavor::Etcd && fault.needs_proxies() => {
                    (false, "etcd cannot be told to dial its peers through the link proxies")
                }
                Fault::PartitionRing if args.members < 5 => (false, "a ring needs 5 members or more"),
                _ => (true, ""),
            };
            if !keep {
                skipped.push(format!("{} ({why})", fault.name()));
            }
            keep
        })
        .collect();
    if faults.is_empty() {
        bail!("no fault left to inject");
    }

    let _ = std::fs::remove_dir_all(&args.out);
    std::fs::create_dir_all(&args.out)?;
    let out = std::fs::canonicalize(&args.out)?;
    let binary = binaries::require(match (&args.binary, system) {
        (Some(binary), _) => binary.clone(),
        (None, Flavor::Cairn) => binaries::cairn(),
        (None, Flavor::Etcd) => binaries::etcd_tool("etcd"),
    })?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    let meta = Meta {
        command,
        seed: args.seed,
        system: format!("{system:?}").to_lowercase(),
        members: args.members,
        duration_ms: args.duration.as_millis() as u64,
        election_timeout_ms: args.election_timeout,
        recovery_limit_ms: args.recovery_limit.map(|limit| limit.as_millis() as u64),
        lease_ttl_s: args.lease_ttl,
        faults: faults.clone(),
        skipped,
        broken: args.broken.clone(),
    };

    eprintln!("cairn-chaos: starting {} {system:?} members in {}", args.members, out.display());
    let mut options = Options::new(system, args.members).args(&[
        "--heartbeat-interval",
        &args.heartbeat_interval.to_string(),
        "--election-timeout",
        &args.election_timeout.to_string(),
        "--snapshot-count",
        &args.snapshot_count.to_string(),
        // As kubeadm's etcd has it, for the Kubernetes-shaped watches.
        "--experimental-watch-progress-notify-interval",
        "1s",
    ]);
    options.binary = Some(binary);
    options.dir = Some(out.clone());
    options.first_port = Some(args.first_port);
    options.proxies = system == Flavor::Cairn;
    if let Some(failpoint) = &args.broken {
        options = options.env("CAIRN_FAILPOINT", failpoint);
    }
    let cluster = Arc::new(Mutex::new(options.start().await?));
    let endpoints = cluster.lock().await.endpoints();
    let recorder = Arc::new(Recorder::new(Recorded { meta, ..Default::default() }));
    let conn = |first: usize| Conn::new(endpoints.clone(), first, args.request_timeout);
    let mut rng = Rng::new(args.seed);

    // Watchers first, so that watcher 0 sees the whole history from revision 1.
    let watchers = 3;
    let progress = Progress::new(watchers + args.kube_clients as usize);
    let all_keys = workload::watch::Spec::default();
    let mut watch_tasks =
        vec![tokio::spawn(workload::watch::run(0, 1, all_keys.clone(), recorder.clone(), conn(0), progress.clone()))];
    for watcher in 1..watchers {
        let (recorder, progress, conn, all_keys) =
            (recorder.clone(), progress.clone(), conn(watcher), all_keys.clone());
        let delay = args.duration.mul_f64(watcher as f64 / watchers as f64);
        watch_tasks.push(tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            // A later watcher starts a little in the past, to replay history.
            let start = (progress.last[0].load(Ordering::Relaxed) - 50).max(1);
            workload::watch::run(watcher as u32, start, all_keys, recorder, conn, progress).await;
        }));
    }
    for slot in watchers..watchers + args.kube_clients as usize {
        let task = workload::kube::reflect(slot as u32, recorder.clone(), conn(slot), progress.clone());
        watch_tasks.push(tokio::spawn(task));
    }
    let mut load = Vec::new();
    for id in 0..args.clients {
        let client = workload::register::Client {
            id,
            keys: args.keys,
            epoch: args.epoch,
            per_second: args.rate / args.clients as f64,
        };
        load.push(tokio::spawn(client.run(recorder.clone(), conn(id as usize), rng.fork(id as u64))));
    }
    // Two clients per set, so that their compare-and-sets race.
    for id in 0..4u32 {
        let task = workload::set::run(1000 + id, id / 2, recorder.clone(), conn(id as usize + 1), 5.0);
        load.push(tokio::spawn(task));
    }
    for id in 0..2u32 {
        let task =
            workload::lease::run(recorder.clone(), conn(id as usize), rng.fork(2000 + id as u64), args.lease_ttl);
        load.push(tokio::spawn(task));
    }
    for id in 0..args.kube_clients {
        let client = workload::kube::Client {
            id: 3000 + id,
            objects: 12,
            per_second: args.kube_rate / args.kube_clients.max(1) as f64,
        };
        load.push(tokio::spawn(client.run(recorder.clone(), conn(id as usize + 2), rng.fork(3000 + id as u64))));
    }
    if args.kube_clients > 0 {
        let watermark = progress.clone();
        let task = workload::kube::compact(recorder.clone(), conn(1), args.kube_compaction_interval, move || {
            watermark.low_water_mark()
        });
        load.push(tokio::spawn(task));
    }

    let started = tokio::time::Instant::now();
    let until = started + args.duration;
    let election = Duration::from_millis(args.election_timeout);
    let plan = schedule::plan(args.seed, &faults, election, 10_000);
    let nemesis = nemesis::Nemesis { cluster: cluster.clone(), recorder: recorder.clone(), progress: progress.clone() };
    let progress_line = tokio::spawn(show_progress(recorder.clone(), plan.clone(), args.duration));
    nemesis::play(&nemesis, plan, until).await;
    tokio::time::sleep_until(until).await;

    eprintln!("cairn-chaos: load done; healing and reading the final state");
    recorder.stop();
    let stopped = futures::future::join_all(load);
    if tokio::time::timeout(args.request_timeout * 20, stopped).await.is_err() {
        recorder.record().end.errors.push("a workload did not stop".into());
    }
    progress_line.abort();
    let end = end::End { cluster: cluster.clone(), recorder: recorder.clone(), progress, lease_ttl: args.lease_ttl };
    end.gather(watch_tasks).await;
    cluster.lock().await.stop();

    eprintln!("cairn-chaos: checking");
    let run = recorder.take();
    let summary = report::summarize(&run, check::all(&run, args.check_budget));
    write_report(&out, &run, &summary, args.save_history)?;
    eprintln!(
        "cairn-chaos: {} — report in {}",
        if summary.passed { "PASS" } else { "FAIL" },
        out.join("report.md").display()
    );
    Ok(summary.passed)
}

fn write_report(out: &Path, run: &Recorded, summary: &report::Summary, save_history: bool) -> Result<()> {
    std::fs::write(out.join("report.md"), report::markdown(run, summary))?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(summary)?)?;
    if save_history || !summary.passed {
        std::fs::write(out.join("history.json"), serde_json::to_vec(run)?)?;
    }
    for check in &summary.checks {
        eprintln!("  {:<34} {:?}", check.name, check.verdict);
    }
    Ok(())
}

async fn show_progress(recorder: Arc<Recorder>, plan: Vec<schedule::Step>, duration: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tick.tick().await;
        let now = Duration::from_nanos(recorder.now());
        let current = nemesis::CURRENT.load(Ordering::Relaxed);
        let fault = current.checked_sub(1).and_then(|index| plan.get(index)).map_or("none", |step| step.fault.name());
        let (ops, unknown, events, faults) = {
            let run = recorder.record();
            let unknown = run.register.iter().filter(|op| op.outcome == cairn_chaos::history::Outcome::Unknown).count();
            let events: usize = run.watch_sessions.iter().map(|session| session.received.len()).sum();
            (run.register.len(), unknown, events, run.timeline.len())
        };
        eprintln!(
            "[{:>5}s/{}s] register ops {ops} (unknown {unknown}), faults done {faults}, now: {fault}{}",
            now.as_secs(),
            duration.as_secs(),
            if events > 0 { format!(", watch events (ended sessions) {events}") } else { String::new() }
        );
    }
}
