//! `cairn-chaos kube`: the whole Kubernetes cluster under faults. A Cairn
//! store with per-link proxies, API server replicas behind a load balancer,
//! leader-elected controller-managers and schedulers, and hollow nodes that
//! each reach the API servers through a link of their own, so that one can
//! be cut off. A steady Deployment, Service and ConfigMap workload runs while
//! the seeded schedule plays; watchers and the store's own watch record what
//! happened, and the checkers of `cairn_chaos::kube` judge it.

mod cluster;
mod end;
mod observe;
mod workload;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use cairn_chaos::history::Nanos;
use cairn_chaos::kube::{check, report, KubeMeta, KubeRecorded, Micros, Timing};
use cairn_chaos::schedule::{self, KubeFault, Rng};

use crate::parse_duration;

#[derive(clap::Args)]
pub struct KubeArgs {
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub duration: Duration,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Comma-separated fault kinds, or `all`.
    #[arg(long, default_value = "all")]
    pub faults: String,
    #[arg(long, default_value = "chaos-kube-out")]
    pub out: PathBuf,
    #[arg(long, default_value_t = 3)]
    pub store_members: usize,
    #[arg(long, default_value_t = 3)]
    pub apiservers: usize,
    /// Replicas of the controller-manager and of the scheduler.
    #[arg(long, default_value_t = 2)]
    pub replicas: usize,
    /// Hollow nodes, one kubelet process each.
    #[arg(long, default_value_t = 4)]
    pub nodes: usize,
    #[arg(long, default_value = "12s", value_parser = parse_duration)]
    pub node_grace: Duration,
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    /// How long the workload's pods tolerate an unreachable or not-ready node, in seconds.
    #[arg(long, default_value_t = 10)]
    pub toleration: i64,
    /// How long Deployments may take to converge once the last fault is healed.
    #[arg(long, default_value = "90s", value_parser = parse_duration)]
    pub converge_limit: Duration,
    /// Saves the full history even when the run passes.
    #[arg(long)]
    pub save_history: bool,
}

/// The leader-election timings every elected component gets (kube's are 15 s, 10 s, 2 s).
pub const LEASE_DURATION: Duration = Duration::from_secs(4);
pub const RENEW_DEADLINE: Duration = Duration::from_secs(3);
pub const RETRY_PERIOD: Duration = Duration::from_millis(500);

/// The shared record and the run's clocks.
pub struct KubeRecorder {
    started: Instant,
    run: Mutex<KubeRecorded>,
    stop: AtomicBool,
    /// A node is cut off: the workload holds its scale-downs and deletes.
    pub quiet: AtomicBool,
}

pub fn unix_us() -> Micros {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |since| since.as_micros() as Micros)
}

impl KubeRecorder {
    fn new(run: KubeRecorded) -> Self {
        KubeRecorder {
            started: Instant::now(),
            run: Mutex::new(run),
            stop: AtomicBool::new(false),
            quiet: AtomicBool::new(false),
        }
    }

    pub fn now(&self) -> Nanos {
        self.started.elapsed().as_nanos() as Nanos
    }

    pub fn record(&self) -> MutexGuard<'_, KubeRecorded> {
        self.run.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn take(&self) -> KubeRecorded {
        std::mem::take(&mut *self.record())
    }
}

pub type Shared = Arc<KubeRecorder>;

fn holds(fault: KubeFault, rng: &mut Rng, args: &KubeArgs) -> Duration {
    let lease = LEASE_DURATION.as_millis() as u64;
    match fault {
        // Past the lease, so that the pause costs the leadership.
        KubeFault::ControllerManagerPauseLeader | KubeFault::SchedulerPauseLeader => rng.millis(2 * lease, 3 * lease),
        KubeFault::ApiServerKill | KubeFault::ApiServerPause => rng.millis(3000, 8000),
        // Long enough for the node to go Unknown and its pods to be evicted.
        KubeFault::NodeCut => {
            let timeline = args.node_grace + Duration::from_secs(args.toleration as u64) + 2 * args.node_monitor_period;
            let base = timeline.as_millis() as u64 + 10_000;
            rng.millis(base, base + 6000)
        }
        _ => rng.millis(2000, 6000),
    }
}

pub async fn run(args: KubeArgs) -> Result<bool> {
    let faults: Vec<KubeFault> = if args.faults == "all" {
        KubeFault::ALL.to_vec()
    } else {
        args.faults.split(',').map(str::parse).collect::<Result<_, String>>().map_err(anyhow::Error::msg)?
    };
    anyhow::ensure!(args.store_members >= 3, "--store-members must be 3 or more: faults need a quorum to survive");
    anyhow::ensure!(args.apiservers >= 2 && args.replicas >= 2, "--apiservers and --replicas must be 2 or more");
    anyhow::ensure!(args.nodes >= 2, "--nodes must be 2 or more, so that pods can move");
    let _ = std::fs::remove_dir_all(&args.out);
    std::fs::create_dir_all(&args.out)?;
    let out = std::fs::canonicalize(&args.out)?;
    let meta = KubeMeta {
        command: std::env::args().collect::<Vec<_>>().join(" "),
        seed: args.seed,
        duration_ms: args.duration.as_millis() as u64,
        started_us: unix_us(),
        store_members: args.store_members,
        apiservers: args.apiservers,
        replicas: args.replicas,
        nodes: args.nodes,
        faults: faults.clone(),
        timing: Timing {
            renew_deadline_ms: RENEW_DEADLINE.as_millis() as i64,
            node_grace_ms: args.node_grace.as_millis() as i64,
            node_monitor_period_ms: args.node_monitor_period.as_millis() as i64,
            toleration_s: args.toleration,
            converge_limit_ms: args.converge_limit.as_millis() as i64,
            slack_ms: 2000,
            clock_tolerance_ms: 100,
        },
        leader_groups: cluster::leader_groups(args.replicas),
    };
    let recorder = Arc::new(KubeRecorder::new(KubeRecorded { meta, ..Default::default() }));

    eprintln!("cairn-chaos kube: starting the cluster in {}", out.display());
    let parts = cluster::Parts::start(&args, &out).await?;
    let store_watch = observe::StoreWatch::start(parts.store.endpoints(), recorder.clone());
    let front = parts.front.clone();
    let cluster = Arc::new(tokio::sync::Mutex::new(parts));
    let client = cluster::client(&front).await?;
    cluster::wait_nodes_ready(&client, args.nodes, Duration::from_secs(120)).await?;
    let watchers = observe::start_watchers(client.clone(), recorder.clone());
    let load = workload::start(client.clone(), recorder.clone(), Rng::new(args.seed).fork(1), args.toleration).await?;

    let started = tokio::time::Instant::now();
    let until = started + args.duration;
    let plan = schedule::plan_with(args.seed, &faults, 10_000, (5000, 15_000), |fault, rng| holds(fault, rng, &args));
    let nemesis = cluster::Nemesis { cluster: cluster.clone(), recorder: recorder.clone(), client: client.clone() };
    let progress = tokio::spawn(show_progress(recorder.clone(), plan.clone(), args.duration));
    let supervisor = tokio::spawn(supervise(cluster.clone(), recorder.clone()));
    crate::nemesis::play(&nemesis, plan, until).await;
    tokio::time::sleep_until(until).await;

    eprintln!("cairn-chaos kube: load done; healing, waiting for convergence, reading the final state");
    recorder.stop.store(true, Ordering::Relaxed);
    if tokio::time::timeout(Duration::from_secs(60), futures::future::join_all(load)).await.is_err() {
        recorder.record().end.errors.push("the workload did not stop within 60 s".into());
    }
    progress.abort();
    supervisor.abort();
    let end = end::End {
        cluster: cluster.clone(),
        recorder: recorder.clone(),
        client,
        store_watch,
        converge_limit: args.converge_limit,
    };
    end.gather().await;
    watchers.iter().for_each(tokio::task::JoinHandle::abort);
    cluster.lock().await.stop();

    eprintln!("cairn-chaos kube: checking");
    let run = recorder.take();
    let summary = report::summarize(&run, check::all(&run));
    write_report(&out, &run, &summary, args.save_history)?;
    eprintln!(
        "cairn-chaos kube: {} — report in {}",
        if summary.passed { "PASS" } else { "FAIL" },
        out.join("report.md").display()
    );
    Ok(summary.passed)
}

pub fn write_report(out: &Path, run: &KubeRecorded, summary: &report::KubeSummary, save_history: bool) -> Result<()> {
    std::fs::write(out.join("report.md"), report::markdown(run, summary))?;
    std::fs::write(out.join("report.json"), serde_json::to_vec_pretty(summary)?)?;
    if save_history || !summary.passed {
        std::fs::write(out.join("history.json"), serde_json::to_vec(run)?)?;
    }
    for check in &summary.checks {
        eprintln!("  {:<48} {:?}", check.name, check.verdict);
    }
    Ok(())
}

/// `cairn-chaos check` on a whole-cluster history.
pub fn check_saved(text: &str) -> Result<bool> {
    let run: KubeRecorded = serde_json::from_str(text).context("parsing the history")?;
    let summary = report::summarize(&run, check::all(&run));
    print!("{}", report::markdown(&run, &summary));
    Ok(summary.passed)
}

/// Restarts the elected components that exit, once a second.
async fn supervise(cluster: Arc<tokio::sync::Mutex<cluster::Parts>>, recorder: Shared) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let restarted = cluster.lock().await.supervise();
        for name in restarted {
            let at = Duration::from_nanos(recorder.now()).as_secs_f64();
            recorder.record().restarts.push(format!("{name} at {at:.1} s"));
        }
    }
}

async fn show_progress(recorder: Shared, plan: Vec<schedule::Step<KubeFault>>, duration: Duration) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    loop {
        tick.tick().await;
        let now = Duration::from_nanos(recorder.now());
        let current = crate::nemesis::CURRENT.load(Ordering::Relaxed);
        let fault = current.checked_sub(1).and_then(|index| plan.get(index)).map_or("none", |step| step.fault.name());
        let line = {
            let run = recorder.record();
            let acknowledged = run
                .creates
                .iter()
                .filter(|c| matches!(c.outcome, cairn_chaos::kube::CreateOutcome::Acknowledged { .. }))
                .count();
            format!(
                "creates {} ({acknowledged} acknowledged), deletes {}, store changes {}, faults done {}",
                run.creates.len(),
                run.deletes.len(),
                run.store.len(),
                run.timeline.len()
            )
        };
        eprintln!("[{:>5}s/{}s] {line}, now: {fault}", now.as_secs(), duration.as_secs());
    }
}
