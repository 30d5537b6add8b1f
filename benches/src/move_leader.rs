//! `etcdctl move-leader` under a write load: each system's cluster takes
//! 64 clients' puts while the real etcdctl 3.5.1 moves its leadership from
//! member to member, and every move is timed from etcdctl's start to its exit.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use cairn_testkit::{etcdctl, Cluster};

use crate::compare;
use crate::load::{self, LoadOptions, Workload};
use crate::report::{summarize, Summary};

#[derive(Debug, Clone, clap::Args)]
pub struct MoveLeaderOptions {
    /// A system to measure, as NAME=BINARY (cairn or etcd); repeat for each.
    #[arg(long = "system", required = true)]
    pub systems: Vec<String>,
    #[arg(long, default_value_t = 3)]
    pub members: usize,
    /// Clients putting 256-byte values throughout.
    #[arg(long, default_value_t = 64)]
    pub clients: usize,
    /// Leadership moves, one every --interval-ms.
    #[arg(long, default_value_t = 20)]
    pub moves: usize,
    #[arg(long, default_value_t = 1500)]
    pub interval_ms: u64,
    /// A move succeeds if etcdctl says so within this many ms.
    #[arg(long, default_value_t = 1000)]
    pub limit_ms: u64,
    #[arg(long, default_value = "docs/benchmarks/move-leader.json")]
    pub out: PathBuf,
}

#[derive(Debug, Clone, Serialize)]
pub struct SystemMoves {
    pub system: String,
    /// Each move: from and to (member indexes), how long etcdctl took in ms,
    /// and whether it said so within the limit and the target then led.
    pub moves: Vec<Move>,
    /// The writers' puts over the whole run.
    pub writes: Summary,
}

#[derive(Debug, Clone, Serialize)]
pub struct Move {
    pub from: usize,
    pub to: usize,
    pub ms: f64,
    pub ok: bool,
    /// etcdctl's output when the move failed.
    pub error: Option<String>,
}

impl SystemMoves {
    pub fn succeeded(&self) -> usize {
        self.moves.iter().filter(|one| one.ok).count()
    }
}

pub async fn run(options: &MoveLeaderOptions) -> Result<Vec<SystemMoves>> {
    if options.members < 2 {
        bail!("--members must be at least 2 for a leader to move");
    }
    let work = tempfile::tempdir().context("work dir")?;
    let mut results = Vec::new();
    for system in &options.systems {
        let (name, binary) = system.split_once('=').context("--system takes NAME=BINARY")?;
        eprintln!("{name}: {} members, {} writers, {} moves", options.members, options.clients, options.moves);
        let cluster = compare::start(name, &PathBuf::from(binary), options.members, work.path()).await?;
        let writers = writers(&cluster, options);
        // Let the writers reach their pace before the first move.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let mut moves = Vec::new();
        for number in 0..options.moves {
            let next = Instant::now() + Duration::from_millis(options.interval_ms);
            let one = move_once(&cluster, options.limit_ms).await?;
            eprintln!(
                "  move {}/{}: {} -> {} in {:.0} ms{}",
                number + 1,
                options.moves,
                one.from,
                one.to,
                one.ms,
                if one.ok { "" } else { " FAILED" }
            );
            moves.push(one);
            tokio::time::sleep_until(next.into()).await;
        }
        let outcome = writers.await.context("writers")??;
        let result = SystemMoves { system: name.to_string(), moves, writes: summarize(&outcome) };
        eprintln!(
            "  {}/{} moves within {} ms; {} puts failed",
            result.succeeded(),
            options.moves,
            options.limit_ms,
            result.writes.errors
        );
        results.push(result);
    }
    std::fs::write(&options.out, serde_json::to_string_pretty(&results)?)
        .with_context(|| format!("writing {}", options.out.display()))?;
    Ok(results)
}

/// Puts from `options.clients` clients until a second after the last move.
fn writers(cluster: &Cluster, options: &MoveLeaderOptions) -> tokio::task::JoinHandle<Result<load::Outcome>> {
    let seconds = 3 + (options.moves as u64 * options.interval_ms).div_ceil(1000);
    let load = LoadOptions { duration: Some(seconds), ..LoadOptions::puts(cluster.endpoints(), options.clients, 0) };
    tokio::spawn(async move { load::run(Workload::Put, &load, false).await })
}

/// Moves the leadership to the next member with etcdctl, given every endpoint
/// as an operator would: etcdctl finds the leader itself.
async fn move_once(cluster: &Cluster, limit_ms: u64) -> Result<Move> {
    let from = cluster.leader_index().await?;
    let to = (from + 1) % cluster.members.len();
    let mut target = cluster.connect(cluster.members[to].endpoint(), Duration::from_secs(2)).await?;
    let target_id = target.status().await?.header().map(|header| header.member_id()).context("no header")?;
    let endpoints = cluster.endpoints();
    let started = Instant::now();
    let out = tokio::task::spawn_blocking(move || {
        let endpoints: Vec<&str> = endpoints.iter().map(String::as_str).collect();
        etcdctl(&endpoints, &["move-leader", &format!("{target_id:x}")])
    })
    .await
    .context("etcdctl task")??;
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    let said_so = out.status.success() && String::from_utf8_lossy(&out.stdout).contains("Leadership transferred");
    let leads = target.status().await.is_ok_and(|status| status.leader() == target_id);
    let ok = said_so && leads && ms <= limit_ms as f64;
    let error = (!said_so).then(|| String::from_utf8_lossy(&out.stderr).trim().to_string());
    Ok(Move { from, to, ms, ok, error })
}

/// The results as a markdown table.
pub fn table(results: &[SystemMoves], limit_ms: u64) -> String {
    let mut out = format!(
        "| system | moves within {limit_ms} ms | move p50 (ms) | move max (ms) | puts | failed puts | put p99 (ms) |\n|---|---|---|---|---|---|---|\n"
    );
    for result in results {
        let mut took: Vec<f64> = result.moves.iter().map(|one| one.ms).collect();
        took.sort_by(f64::total_cmp);
        let p50 = took.get(took.len() / 2).copied().unwrap_or(0.0);
        let max = took.last().copied().unwrap_or(0.0);
        let p99 = result.writes.percentiles_ms.iter().find(|(p, _)| *p == 99.0).map_or(0.0, |(_, ms)| *ms);
        out.push_str(&format!(
            "| {} | {}/{} | {p50:.0} | {max:.0} | {} | {} | {p99:.1} |\n",
            result.system,
            result.succeeded(),
            result.moves.len(),
            result.writes.total,
            result.writes.errors
        ));
    }
    out
}
