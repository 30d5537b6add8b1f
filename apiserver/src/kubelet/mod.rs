//! `cairn-kube kubelet`: hollow nodes, as kubemark and kwok make them. Each
//! node registers itself, renews its Lease in `kube-node-lease`, posts its
//! status, and runs the pods bound to it (a watch on `spec.nodeName`) on a
//! simulated runtime (`runtime`). One process hosts `--nodes N` of them.

pub mod bootstrap;
pub mod cri;
pub mod node;
pub mod pod;
pub mod runtime;

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::config::parse_duration;

#[derive(Args, Clone, Debug)]
pub struct KubeletConfig {
    /// The kubeconfig to talk with; with `--bootstrap-kubeconfig`, where the
    /// one made at bootstrap goes (`<path>-<node>` when the process hosts several nodes).
    #[arg(long = "kubeconfig")]
    pub kubeconfig: PathBuf,
    /// A kubeconfig with a bootstrap token: each node asks for its own
    /// client certificate with it (TLS bootstrapping) and talks as itself.
    #[arg(long = "bootstrap-kubeconfig")]
    pub bootstrap_kubeconfig: Option<PathBuf>,
    /// Where the node's certificate goes; by default `<root-dir>/<node>/pki`.
    #[arg(long = "cert-dir")]
    pub cert_dir: Option<PathBuf>,
    /// How many hollow nodes this process hosts.
    #[arg(long = "nodes", default_value_t = 1)]
    pub nodes: u32,
    /// Node names are this prefix and the node's index.
    #[arg(long = "node-name-prefix", default_value = "hollow-node-")]
    pub node_name_prefix: String,
    /// The index of this process's first node, so that processes do not collide.
    #[arg(long = "first-node-index", default_value_t = 0)]
    pub first_node_index: u32,
    /// Node k gets the k-th /24 of this range as its pod CIDR.
    #[arg(long = "cluster-cidr", default_value = "127.64.0.0/12")]
    pub cluster_cidr: String,
    /// Node k's InternalIP is this address plus k.
    #[arg(long = "node-ip-base", default_value = "127.32.0.1")]
    pub node_ip_base: Ipv4Addr,
    #[arg(long = "cpu", default_value = "4")]
    pub cpu: String,
    #[arg(long = "memory", default_value = "16Gi")]
    pub memory: String,
    #[arg(long = "max-pods", default_value_t = 110)]
    pub max_pods: u32,
    /// Extra node labels, key=value, comma-separated.
    #[arg(long = "node-labels", value_delimiter = ',')]
    pub node_labels: Vec<String>,
    /// Taints the node registers with, key[=value]:Effect, comma-separated.
    #[arg(long = "register-with-taints", value_delimiter = ',')]
    pub register_with_taints: Vec<String>,
    /// Images every node has cached (no pull delay).
    #[arg(long = "images", value_delimiter = ',', default_value = "cairn.io/echo,registry.k8s.io/pause:3.10")]
    pub images: Vec<String>,
    /// How long pulling an uncached image takes.
    #[arg(long = "image-pull-delay", default_value = "1s", value_parser = parse_duration)]
    pub image_pull_delay: Duration,
    #[arg(long = "node-status-update-frequency", default_value = "10s", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,
    /// How often an unchanged status is posted anyway (the kubelet's
    /// nodeStatusReportFrequency); the Lease is the heartbeat in between.
    #[arg(long = "node-status-report-frequency", default_value = "5m", value_parser = parse_duration)]
    pub node_status_report_frequency: Duration,
    #[arg(long = "node-lease-duration-seconds", default_value_t = 40)]
    pub node_lease_duration_seconds: u32,
    /// A CRI runtime's socket (`unix:///run/containerd/containerd.sock`);
    /// by default each node runs the built-in simulated runtime.
    #[arg(long = "container-runtime-endpoint")]
    pub container_runtime_endpoint: Option<String>,
    /// Where each node keeps its files: the simulated runtime's CRI socket is `<root-dir>/<node>/cri.sock`.
    #[arg(long = "root-dir")]
    pub root_dir: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum KubeletError {
    #[error("--cluster-cidr {0}: expected an IPv4 CIDR of prefix /8 to /24")]
    ClusterCidr(String),
    #[error("--cluster-cidr {cidr} has room for {room} nodes; node index {index} is past it")]
    OutOfRange { cidr: String, room: u32, index: u32 },
    #[error("{0}")]
    Client(#[from] crate::client::ClientError),
    #[error("{0}")]
    Runtime(#[from] runtime::RuntimeError),
    #[error("serving the CRI on {path}: {source}")]
    Socket { path: String, source: std::io::Error },
    #[error("--container-runtime-endpoint needs cairn-kube built with the CRI API (`.ci/setup.sh` fetches it)")]
    NoCri,
    #[error("{0}")]
    Kube(#[from] kube::Error),
    #[error("TLS bootstrap: {0}")]
    Bootstrap(String),
}

impl KubeletConfig {
    /// The pod CIDR (/24) of the node with this index.
    pub fn pod_cidr(&self, index: u32) -> Result<Ipv4Addr, KubeletError> {
        let bad = || KubeletError::ClusterCidr(self.cluster_cidr.clone());
        let (base, prefix) = self.cluster_cidr.split_once('/').ok_or_else(bad)?;
        let base: Ipv4Addr = base.parse().map_err(|_| bad())?;
        let prefix: u32 = prefix.parse().map_err(|_| bad())?;
        if !(8..=24).contains(&prefix) {
            return Err(bad());
        }
        let room = 1u32 << (24 - prefix);
        if index >= room {
            return Err(KubeletError::OutOfRange { cidr: self.cluster_cidr.clone(), room, index });
        }
        Ok(Ipv4Addr::from((u32::from(base) & !((1u64 << (32 - prefix)) as u32).wrapping_sub(1)) + index * 256))
    }

    pub fn root_dir(&self) -> PathBuf {
        self.root_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("cairn-kubelet"))
    }

    /// Where node `name` keeps its kubeconfig and certificate after bootstrap.
    pub fn node_paths(&self, name: &str) -> bootstrap::NodePaths {
        let kubeconfig = if self.nodes == 1 {
            self.kubeconfig.clone()
        } else {
            PathBuf::from(format!("{}-{name}", self.kubeconfig.display()))
        };
        let cert_dir = match &self.cert_dir {
            Some(dir) if self.nodes == 1 => dir.clone(),
            Some(dir) => dir.join(name),
            None => self.root_dir().join(name).join("pki"),
        };
        bootstrap::NodePaths { kubeconfig, cert_dir }
    }

    pub fn node_name(&self, index: u32) -> String {
        format!("{}{index}", self.node_name_prefix)
    }

    pub fn validate(&self) -> Result<(), KubeletError> {
        self.pod_cidr(self.first_node_index + self.nodes.saturating_sub(1)).map(|_| ())
    }
}

pub async fn run(config: KubeletConfig) -> Result<(), KubeletError> {
    config.validate()?;
    let user_agent = "kubelet/v1.33.7-cairn";
    // Without a bootstrap kubeconfig every node shares the one identity given.
    let mut shared: Option<kube::Client> = None;
    let mut nodes = tokio::task::JoinSet::new();
    for offset in 0..config.nodes {
        let index = config.first_node_index + offset;
        let client = match (&config.bootstrap_kubeconfig, &shared) {
            (Some(bootstrap_kubeconfig), _) => {
                let name = config.node_name(index);
                bootstrap::client_for(&name, &config.node_paths(&name), bootstrap_kubeconfig, user_agent).await?
            }
            (None, Some(client)) => client.clone(),
            (None, None) => {
                let client = crate::client::connect(&config.kubeconfig, user_agent).await?;
                shared = Some(client.clone());
                client
            }
        };
        let node = node::HollowNode::new(client, &config, index)?;
        nodes.spawn(node.run());
    }
    tracing::info!(nodes = config.nodes, "hollow nodes started");
    let mut shutdown = std::pin::pin!(crate::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            done = nodes.join_next() => match done {
                Some(Ok(Err(error))) => return Err(error),
                Some(_) => {}
                None => return Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: KubeletConfig,
    }

    #[test]
    fn t10_each_node_gets_its_own_slash_24_of_the_cluster_cidr() {
        let cli = Cli::parse_from(["kubelet", "--kubeconfig", "k"]);
        assert_eq!(cli.config.pod_cidr(0).ok(), Some(Ipv4Addr::new(127, 64, 0, 0)));
        assert_eq!(cli.config.pod_cidr(300).ok(), Some(Ipv4Addr::new(127, 65, 44, 0)));
        assert!(cli.config.pod_cidr(4096).is_err());
    }
}
