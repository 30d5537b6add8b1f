//! `cairn-kube`: the Kubernetes components that run on Cairn.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cairn-kube", version, about = "A thin Kubernetes control plane on Cairn")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log verbosity, as kube's -v: 0-1 info, 2-3 debug, 4+ trace.
    #[arg(long = "v", short = 'v', global = true, default_value_t = 0)]
    verbosity: u8,
}

#[derive(Subcommand)]
enum Command {
    /// The Kubernetes API server, keeping every object in Cairn or etcd.
    Apiserver(Box<cairn_kube::config::ApiServerConfig>),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let level = match cli.verbosity {
        0 | 1 => "info",
        2 | 3 => "debug",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let runtime = tokio::runtime::Runtime::new()?;
    match cli.command {
        Command::Apiserver(config) => runtime.block_on(cairn_kube::server::run(*config))?,
    }
    Ok(())
}
