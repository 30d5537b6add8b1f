//! `cairn-bench`: load for any etcd-compatible endpoint, in the spirit of
//! etcd's `tools/benchmark`, and the cairn-vs-etcd comparison.

mod auth;
mod compare;
mod kube;
mod load;
mod move_leader;
mod per_write;
mod report;
mod stalls;
mod svg;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: BenchCommand,
}

#[derive(Subcommand)]
enum BenchCommand {
    /// Puts.
    Put(Run),
    /// Ranges (add --serializable for local reads).
    Range(Run),
    /// Txns of one put.
    TxnPut(Run),
    /// From a put until its watch event arrives.
    WatchLatency(Run),
    /// Lease keepalives, one lease per client.
    LeaseKeepalive(Run),
    /// Half puts, half ranges.
    Mixed(Run),
    /// Logins (etcd's Authenticate) with --user.
    Authenticate(Run),
    /// cairn beside etcd at each cluster size; writes docs/benchmarks.
    Compare(compare::CompareOptions),
    /// Logins and permission checks beside etcd; writes docs/benchmarks/auth.md's table.
    Auth(auth::AuthOptions),
    /// Write latency beside whole-range reads and beside a large compaction.
    Stalls(stalls::StallOptions),
    /// `etcdctl move-leader` again and again under a 64-client write load.
    MoveLeader(move_leader::MoveLeaderOptions),
    /// What one put costs the members: fdatasyncs, context switches, syscalls
    /// and CPU per write (perf stat), beside mean latencies from /metrics.
    PerWrite(per_write::PerWriteOptions),
    /// A whole Kubernetes cluster on Cairn at density: hollow nodes, pods,
    /// and Kubernetes' SLOs; writes docs/benchmarks/kube.
    Kube(kube::DensityOptions),
}

#[derive(clap::Args)]
struct Run {
    #[command(flatten)]
    load: load::LoadOptions,
    /// Output: simple or json.
    #[arg(short = 'w', long = "write-out", default_value = "simple")]
    write_out: String,
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let (workload, run) = match cli.command {
        BenchCommand::Put(run) => (load::Workload::Put, run),
        BenchCommand::Range(run) => (load::Workload::Range, run),
        BenchCommand::TxnPut(run) => (load::Workload::TxnPut, run),
        BenchCommand::WatchLatency(run) => (load::Workload::WatchLatency, run),
        BenchCommand::LeaseKeepalive(run) => (load::Workload::LeaseKeepalive, run),
        BenchCommand::Mixed(run) => (load::Workload::Mixed, run),
        BenchCommand::Authenticate(run) => (load::Workload::Authenticate, run),
        BenchCommand::Compare(options) => {
            let results = compare::compare(&options).await?;
            eprintln!("wrote {} measurements to {}", results.measurements.len(), options.out.display());
            return Ok(());
        }
        BenchCommand::Kube(options) => {
            let results = kube::run(&options).await?;
            let failed: Vec<_> = results.slos.iter().filter(|row| !row.pass).map(|row| row.name.as_str()).collect();
            eprintln!(
                "{} of {} SLO rows pass; failed: {failed:?}",
                results.slos.len() - failed.len(),
                results.slos.len()
            );
            return Ok(());
        }
        BenchCommand::Auth(options) => {
            let table = auth::run(&options).await?;
            print!("{table}");
            std::fs::write(&options.out, auth::page(&table))?;
            return Ok(());
        }
        BenchCommand::MoveLeader(options) => {
            let results = move_leader::run(&options).await?;
            print!("{}", move_leader::table(&results, options.limit_ms));
            return Ok(());
        }
        BenchCommand::PerWrite(options) => {
            per_write::validate(&options)?;
            let rows = per_write::run(&options).await?;
            print!("{}", per_write::table(&rows));
            return Ok(());
        }
        BenchCommand::Stalls(options) => {
            let phases = stalls::run(&options).await?;
            print!("{}", stalls::table(&phases));
            return Ok(());
        }
    };
    let outcome = load::run(workload, &run.load, run.write_out != "json").await?;
    let summary = report::summarize(&outcome);
    if run.write_out == "json" {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        report::print(&summary);
    }
    Ok(())
}
