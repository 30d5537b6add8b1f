//! `cairn-kube proxy`: kube-proxy for hollow nodes. It watches Services and
//! EndpointSlices and keeps the rule table kube-proxy would program
//! (ClusterIP:port to the ready pod IP:ports), printed in `iptables-save`
//! form at `/rules` and into `--rules-file`. In userspace mode it also listens
//! on each ClusterIP:port that lies on loopback and balances connections
//! across the ready endpoints, round robin.

pub mod rules;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::runtime::watcher;
use kube::Api;
use parking_lot::RwLock;
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinHandle;

use crate::client::informer::{next_pass, Changes};
use crate::client::{self, ClientError, Informer};
use rules::Rule;

#[derive(Clone, Copy, Debug, PartialEq, clap::ValueEnum)]
pub enum Mode {
    /// Listen on ClusterIPs and forward connections (loopback ClusterIPs only).
    Userspace,
    /// Keep and show the rule table only.
    Table,
}

#[derive(Args, Clone, Debug)]
pub struct ProxyConfig {
    #[arg(long = "kubeconfig")]
    pub kubeconfig: PathBuf,
    #[arg(long = "proxy-mode", value_enum, default_value = "userspace")]
    pub mode: Mode,
    /// Where `/rules`, `/healthz` and `/metrics` are served.
    #[arg(long = "metrics-bind-address", default_value = "127.0.0.1:10249")]
    pub metrics_bind_address: SocketAddr,
    /// A file that always holds the current rules, in iptables-save form.
    #[arg(long = "rules-file")]
    pub rules_file: Option<PathBuf>,
    #[arg(long = "hostname-override", default_value = "cairn-proxy")]
    pub hostname_override: String,
}

type Backends = Arc<RwLock<HashMap<SocketAddr, Vec<SocketAddr>>>>;

struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Accepts on a ClusterIP:port and forwards each connection to the next backend.
async fn forward(socket: tokio::net::TcpListener, frontend: SocketAddr, backends: Backends) {
    let next = AtomicUsize::new(0);
    loop {
        let Ok((mut inbound, _)) = socket.accept().await else { continue };
        let targets = backends.read().get(&frontend).cloned().unwrap_or_default();
        if targets.is_empty() {
            // No ready endpoint: refuse, as kube-proxy's REJECT rule does.
            drop(inbound);
            continue;
        }
        let first = next.fetch_add(1, Ordering::Relaxed);
        tokio::spawn(async move {
            for attempt in 0..targets.len() {
                let target = targets[(first + attempt) % targets.len()];
                let connect = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(target)).await;
                if let Ok(Ok(mut outbound)) = connect {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    return;
                }
            }
        });
    }
}

fn listen(frontend: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = TcpSocket::new_v4()?;
    // Every node's proxy serves the same ClusterIPs on the shared loopback.
    socket.set_reuseport(true)?;
    socket.set_reuseaddr(true)?;
    socket.bind(frontend)?;
    socket.listen(1024)
}

pub async fn run(config: ProxyConfig) -> Result<(), ClientError> {
    let client = client::connect(&config.kubeconfig, "kube-proxy/v1.33.7-cairn").await?;
    let changes = Changes::default();
    let mut wake = changes.subscribe();
    let services = Informer::start(Api::<Service>::all(client.clone()), watcher::Config::default(), changes.clone());
    let slices =
        Informer::start(Api::<EndpointSlice>::all(client.clone()), watcher::Config::default(), changes.clone());
    let table = Arc::new(RwLock::new(String::new()));
    serve_status(config.metrics_bind_address, table.clone());
    let backends: Backends = Arc::default();
    let mut listeners: HashMap<SocketAddr, Listener> = HashMap::new();
    let mut unbindable: std::collections::HashSet<SocketAddr> = Default::default();
    let mut shutdown = std::pin::pin!(crate::shutdown_signal());
    loop {
        tokio::select! {
            _ = &mut shutdown => return Ok(()),
            _ = next_pass(&mut wake, Duration::from_secs(30)) => {}
        }
        let rules: Vec<Rule> = rules::rules(&services.state(), &slices.state());
        let text = rules::iptables_save(&rules);
        if *table.read() != text {
            if let Some(path) = &config.rules_file {
                if let Err(error) = std::fs::write(path, &text) {
                    tracing::warn!(%error, path = %path.display(), "writing the rules file failed");
                }
            }
            *table.write() = text;
        }
        *backends.write() = rules.iter().map(|r| (r.frontend, r.ready.clone())).collect();
        if config.mode == Mode::Table {
            continue;
        }
        let wanted: Vec<SocketAddr> = rules.iter().filter(|r| r.protocol == "TCP").map(|r| r.frontend).collect();
        listeners.retain(|frontend, _| wanted.contains(frontend));
        for frontend in wanted {
            if listeners.contains_key(&frontend) || !frontend.ip().is_loopback() {
                continue;
            }
            match listen(frontend) {
                Ok(socket) => {
                    let task = tokio::spawn(forward(socket, frontend, backends.clone()));
                    listeners.insert(frontend, Listener { task });
                    unbindable.remove(&frontend);
                }
                Err(error) => {
                    if unbindable.insert(frontend) {
                        tracing::warn!(%error, %frontend, "cannot listen on a ClusterIP");
                    }
                }
            }
        }
    }
}

/// `/rules`, `/healthz` and `/metrics` on the metrics address.
fn serve_status(address: SocketAddr, table: Arc<RwLock<String>>) {
    let app = axum::Router::new()
        .route("/rules", axum::routing::get({
            let table = table.clone();
            move || {
                let table = table.clone();
                async move { table.read().clone() }
            }
        }))
        .route("/healthz", axum::routing::get(|| async { "ok" }))
        .route("/metrics", axum::routing::get(move || {
            let table = table.clone();
            async move {
                let rules = table.read().lines().filter(|l| l.starts_with("-A KUBE-SEP-")).count();
                format!("# TYPE kubeproxy_sync_proxy_rules_endpoints_total gauge\nkubeproxy_sync_proxy_rules_endpoints_total {rules}\n")
            }
        }));
    tokio::spawn(async move {
        match tokio::net::TcpListener::bind(address).await {
            Ok(listener) => {
                let _ = axum::serve(listener, app).await;
            }
            Err(error) => tracing::warn!(%error, %address, "cannot serve the proxy's status"),
        }
    });
}
