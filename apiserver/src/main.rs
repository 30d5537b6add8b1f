//! `cairn-kube`: the Kubernetes components that run on Cairn.

use clap::{Parser, Subcommand};

/// Every component allocates and frees JSON trees by the thousand per second;
/// glibc's malloc spent a third of the API server's CPU on them and kept
/// freed memory fragmented. mimalloc serves them from per-thread pages.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// kube-controller-manager's controllers, with leader election.
    ControllerManager(Box<cairn_kube::controllers::ControllerManagerConfig>),
    /// The scheduler: filter, score, preempt, bind; with leader election.
    Scheduler(Box<cairn_kube::scheduler::SchedulerConfig>),
    /// Hollow nodes: kubelets over a simulated container runtime.
    Kubelet(Box<cairn_kube::kubelet::KubeletConfig>),
    /// kube-proxy for hollow nodes: the rule table, and userspace forwarding on loopback ClusterIPs.
    Proxy(Box<cairn_kube::proxy::ProxyConfig>),
    /// The whole cluster in one command: store, API server, controllers, scheduler, nodes, proxy.
    Up(Box<cairn_kube::up::UpConfig>),
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
        Command::ControllerManager(config) => runtime.block_on(cairn_kube::controllers::run(*config))?,
        Command::Scheduler(config) => runtime.block_on(cairn_kube::scheduler::run(*config))?,
        Command::Kubelet(config) => runtime.block_on(cairn_kube::kubelet::run(*config))?,
        Command::Proxy(config) => runtime.block_on(cairn_kube::proxy::run(*config))?,
        Command::Up(config) => runtime.block_on(cairn_kube::up::run(*config))?,
    }
    Ok(())
}
