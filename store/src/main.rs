//! The `cairn` binary: an etcd-compatible member, and `cairn snapshot` (like etcdutl).

use std::path::PathBuf;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use cairn_store::config::Config;
use cairn_store::snapshot::{human_bytes, restore, verify, RestoreArgs};

/// glibc's malloc was a tenth of the CPU under write load (the many small
/// buffers of gRPC and Raft messages); mimalloc serves them from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "cairn", version, about = "An etcd-v3-compatible key-value store on Raft and RocksDB")]
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Offline snapshot tools, like etcdutl's.
    Snapshot {
        #[command(subcommand)]
        action: SnapshotCommand,
    },
}

#[derive(Subcommand)]
enum SnapshotCommand {
    /// Prints the hash, revision, total keys and total size of a snapshot file.
    Status {
        file: PathBuf,
        /// Output format: simple, table or json.
        #[arg(short = 'w', long = "write-out", default_value = "simple")]
        write_out: String,
    },
    /// Restores a snapshot into a new data dir for one member of a new cluster.
    Restore(RestoreArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Some(Command::Snapshot { action: SnapshotCommand::Status { file, write_out } }) => status(&file, &write_out),
        Some(Command::Snapshot { action: SnapshotCommand::Restore(args) }) => {
            restore(&args, &mut std::io::stderr()).map(|_| ()).map_err(|err| err.to_string())
        }
        None => serve(cli.config),
    };
    match outcome {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("cairn: {message}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn status(file: &std::path::Path, write_out: &str) -> Result<(), String> {
    // As etcdutl: status reads a database without its checksum too, and does not check it.
    let summary = verify(file, true).map_err(|err| err.to_string())?;
    match write_out {
        "json" => println!("{}", serde_json::to_string(&summary).map_err(|err| err.to_string())?),
        "table" => {
            println!("+----------+----------+------------+------------+");
            println!("|   HASH   | REVISION | TOTAL KEYS | TOTAL SIZE |");
            println!("+----------+----------+------------+------------+");
            println!(
                "| {:8x} | {:8} | {:10} | {:>10} |",
                summary.hash,
                summary.revision,
                summary.total_key,
                human_bytes(summary.total_size)
            );
            println!("+----------+----------+------------+------------+");
        }
        "simple" => {
            println!("{:x}, {}, {}, {}", summary.hash, summary.revision, summary.total_key, summary.total_size)
        }
        other => return Err(format!("unknown output format {other:?} (simple, table or json)")),
    }
    Ok(())
}

fn serve(config: Config) -> Result<(), String> {
    let level = match config.log_level.as_str() {
        "panic" | "fatal" => "error",
        level => level,
    };
    let filter =
        EnvFilter::try_from_env("CAIRN_LOG").unwrap_or_else(|_| EnvFilter::new(format!("{level},{QUIET_OPENRAFT}")));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the runtime: {err}"))?;
    let shutdown = {
        let _runtime = runtime.enter();
        shutdown_signal()
    };
    runtime.block_on(cairn_store::server::run(config, shutdown)).map_err(|err| err.to_string())
}

/// openraft logs every failed retry to an unreachable peer; keep its warnings
/// but not that stream, which a down member would turn into megabytes.
const QUIET_OPENRAFT: &str = "openraft=warn,openraft_legacy=warn,openraft::replication=off,\
     openraft::engine::handler::replication_handler=off,openraft::core::heartbeat=error";

/// Installs the SIGTERM and SIGINT handlers at once, not when the future is
/// first polled: a signal that arrives while the member starts (it may already
/// serve) then stops it gracefully instead of killing it. Found by a flaky t82.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let handlers = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()));
    async move {
        let (Ok(mut term), Ok(mut int)) = handlers else {
            // Without signal handlers, only a kill stops us; wait forever.
            std::future::pending::<()>().await;
            return;
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    }
}
