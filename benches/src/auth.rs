//! The cost of auth beside etcd: logins per second (bcrypt on the server),
//! and puts and ranges by a user whose role grants a key range, against the
//! same load with auth off. Systems take turns going first in each round;
//! each figure is the best of the rounds.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use etcd_client::{Client, Permission};

use crate::compare;
use crate::load::{self, LoadOptions, Workload};
use crate::report::{summarize, Summary};

#[derive(Debug, Clone, clap::Args)]
pub struct AuthOptions {
    /// The etcd binary to compare with.
    #[arg(long)]
    pub etcd: PathBuf,
    /// The cairn binary.
    #[arg(long)]
    pub cairn: PathBuf,
    /// Requests per put or range workload.
    #[arg(long, default_value_t = 20_000)]
    pub total: u64,
    /// Logins per round.
    #[arg(long, default_value_t = 200)]
    pub logins: u64,
    #[arg(long, default_value_t = 2)]
    pub rounds: usize,
    /// Where the Markdown table goes.
    #[arg(long, default_value = "docs/benchmarks/auth.md")]
    pub out: PathBuf,
}

const CLIENTS: usize = 16;
/// Every benchmark key starts with "0" (8 digits, 1000 keys): alice's role grants that prefix.
const KEY_SPACE: u64 = 1000;

/// (name, workload, user, clients)
const STEPS: [(&str, Workload, Option<&str>, usize); 6] = [
    ("put, auth off", Workload::Put, None, CLIENTS),
    ("range, auth off", Workload::Range, None, CLIENTS),
    ("put, as a user with a key-range role", Workload::Put, Some("alice:alicepw"), CLIENTS),
    ("range, as a user with a key-range role", Workload::Range, Some("alice:alicepw"), CLIENTS),
    ("put, as root", Workload::Put, Some("root:rootpw"), CLIENTS),
    ("authenticate (bcrypt cost 10)", Workload::Authenticate, Some("alice:alicepw"), 2),
];
/// The steps before this one run with auth off.
const AUTH_ON_FROM: usize = 2;

/// Root, and alice with readwrite on the benchmark's keys; auth stays off until [`enable`].
async fn set_up(client: &mut Client) -> Result<()> {
    client.user_add("root", "rootpw", None).await?;
    client.user_grant_role("root", "root").await?;
    client.role_add("bench").await?;
    client.role_grant_permission("bench", Permission::read_write("0").with_prefix()).await?;
    client.user_add("alice", "alicepw", None).await?;
    client.user_grant_role("alice", "bench").await?;
    Ok(())
}

async fn measure(system: &str, binary: &Path, options: &AuthOptions, work: &Path) -> Result<Vec<Summary>> {
    let cluster = compare::start(system, binary, 1, work).await?;
    let endpoints = cluster.endpoints();
    let mut admin = Client::connect(endpoints.clone(), None).await.context("connecting")?;
    set_up(&mut admin).await.context("creating users and roles")?;
    let mut summaries = Vec::new();
    for (index, (name, workload, user, clients)) in STEPS.into_iter().enumerate() {
        if index == AUTH_ON_FROM {
            admin.auth_enable().await.context("enabling auth")?;
        }
        eprintln!(" {system}: {name}");
        let total = if workload == Workload::Authenticate { options.logins } else { options.total };
        let load = LoadOptions {
            conns: clients.min(4),
            key_space_size: KEY_SPACE,
            user: user.map(str::to_string),
            ..LoadOptions::puts(endpoints.clone(), clients, total)
        };
        let summary = summarize(&load::run(workload, &load, true).await?);
        anyhow::ensure!(summary.errors == 0, "{system}: {name}: {} requests failed", summary.errors);
        summaries.push(summary);
    }
    Ok(summaries)
}

fn best(rounds: &[Vec<Summary>], step: usize) -> Option<&Summary> {
    rounds
        .iter()
        .filter_map(|round| round.get(step))
        .max_by(|a, b| a.requests_per_second.total_cmp(&b.requests_per_second))
}

fn p50(summary: &Summary) -> f64 {
    summary.percentiles_ms.iter().find(|(percentile, _)| *percentile == 50.0).map_or(0.0, |(_, ms)| *ms)
}

/// The table: each step's best req/s and p50 on both systems, and what auth costs each.
pub fn table(cairn: &[Vec<Summary>], etcd: &[Vec<Summary>]) -> String {
    let mut out = String::from(
        "| workload | cairn req/s | etcd req/s | cairn / etcd | cairn p50 ms | etcd p50 ms |\n|---|---|---|---|---|---|\n",
    );
    for (step, (name, ..)) in STEPS.iter().enumerate() {
        let (Some(ours), Some(theirs)) = (best(cairn, step), best(etcd, step)) else { continue };
        out += &format!(
            "| {name} | {:.0} | {:.0} | {:.2}x | {:.2} | {:.2} |\n",
            ours.requests_per_second,
            theirs.requests_per_second,
            ours.requests_per_second / theirs.requests_per_second.max(f64::MIN_POSITIVE),
            p50(ours),
            p50(theirs),
        );
    }
    out +=
        "\nThroughput with auth on, as a share of the same load with auth off:\n\n| | cairn | etcd |\n|---|---|---|\n";
    for (label, with, without) in [("put as the user", 2, 0), ("range as the user", 3, 1), ("put as root", 4, 0)] {
        let share = |rounds: &[Vec<Summary>]| match (best(rounds, with), best(rounds, without)) {
            (Some(with), Some(without)) => {
                with.requests_per_second / without.requests_per_second.max(f64::MIN_POSITIVE)
            }
            _ => 0.0,
        };
        out += &format!("| {label} | {:.0}% | {:.0}% |\n", share(cairn) * 100.0, share(etcd) * 100.0);
    }
    out
}

/// The page `--out` gets: how it was measured, then the table.
pub fn page(table: &str) -> String {
    let command: Vec<String> = std::env::args().collect();
    format!(
        "# The cost of auth, beside etcd\n\nOne member each, on loopback, {CLIENTS} clients, 256-byte values over \
         {KEY_SPACE} keys; the best of alternating rounds.\n\nCommand: `{}`\n\n{table}",
        command.join(" ")
    )
}

pub async fn run(options: &AuthOptions) -> Result<String> {
    let work = tempfile::tempdir()?;
    let (mut cairn, mut etcd) = (Vec::new(), Vec::new());
    for round in 0..options.rounds {
        eprintln!("round {} of {}", round + 1, options.rounds);
        let cairn_first = round % 2 == 0;
        for first in [cairn_first, !cairn_first] {
            if first {
                cairn.push(measure("cairn", &options.cairn, options, work.path()).await?);
            } else {
                etcd.push(measure("etcd", &options.etcd, options, work.path()).await?);
            }
        }
    }
    Ok(table(&cairn, &etcd))
}
