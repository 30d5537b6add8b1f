//! `cairn-kube up`: the whole cluster in one command. A Cairn store, the API
//! server(s), the controller-manager and scheduler replicas (with leader
//! election), one kubelet process per hollow node and a proxy, all on
//! loopback, everything kept under `--dir` so that a second `up` starts again
//! from what is there. Components that exit are started again (as a kubelet
//! restarts static pods), except kubelets: a dead hollow node is a dead node.
//!
//! Every link is TLS with client certificates from one CA (`pki`), every
//! component talks as its own user under `Node,RBAC`, and kubelets join by
//! TLS bootstrapping with a bootstrap token, as kubeadm sets a cluster up.

mod pki;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::Args;
use tokio::process::{Child, Command};

use crate::certificates::Profile;
use crate::config::parse_duration;
use pki::Credentials;

#[derive(Args, Clone, Debug)]
pub struct UpConfig {
    /// Where everything lives: store data, certificates, logs, the kubeconfig.
    #[arg(long = "dir", default_value = "cairn-cluster")]
    pub dir: PathBuf,
    #[arg(long = "store-members", default_value_t = 3)]
    pub store_members: u32,
    #[arg(long = "apiservers", default_value_t = 1)]
    pub apiservers: u32,
    /// Replicas of the controller-manager and of the scheduler.
    #[arg(long = "replicas", default_value_t = 2)]
    pub replicas: u32,
    #[arg(long = "nodes", default_value_t = 3)]
    pub nodes: u32,
    /// The loopback address every component listens on.
    #[arg(long = "address", default_value = "127.0.0.1")]
    pub address: std::net::Ipv4Addr,
    /// The API server's port; with several API servers, the load balancer's, and
    /// the API servers take the next ones.
    #[arg(long = "apiserver-port", default_value_t = 6443)]
    pub apiserver_port: u16,
    /// Store member i listens for clients on this port + 2i and for peers on the next.
    #[arg(long = "store-port", default_value_t = 12379)]
    pub store_port: u16,
    /// The proxy's status port; the kube-proxy default.
    #[arg(long = "proxy-port", default_value_t = 10249)]
    pub proxy_port: u16,
    #[arg(long = "service-cluster-ip-range", default_value = "127.96.0.0/16")]
    pub service_cluster_ip_range: String,
    #[arg(long = "cluster-cidr", default_value = "127.64.0.0/12")]
    pub cluster_cidr: String,
    /// The Cairn store binary; by default `cairn` beside this one.
    #[arg(long = "cairn-binary")]
    pub cairn_binary: Option<PathBuf>,
    // Timings that pass through, so that a test can shorten the timeline.
    #[arg(long = "node-monitor-period", default_value = "5s", value_parser = parse_duration)]
    pub node_monitor_period: Duration,
    #[arg(long = "node-monitor-grace-period", default_value = "40s", value_parser = parse_duration)]
    pub node_monitor_grace_period: Duration,
    #[arg(long = "node-status-update-frequency", default_value = "10s", value_parser = parse_duration)]
    pub node_status_update_frequency: Duration,
    #[arg(long = "node-lease-duration-seconds", default_value_t = 40)]
    pub node_lease_duration_seconds: u32,
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = parse_duration)]
    pub leader_elect_lease_duration: Duration,
    #[arg(long = "leader-elect-renew-deadline", default_value = "10s", value_parser = parse_duration)]
    pub leader_elect_renew_deadline: Duration,
    #[arg(long = "leader-elect-retry-period", default_value = "2s", value_parser = parse_duration)]
    pub leader_elect_retry_period: Duration,
    #[arg(long = "image-pull-delay", default_value = "1s", value_parser = parse_duration)]
    pub image_pull_delay: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum UpError {
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("starting {name}: {source}")]
    Spawn { name: String, source: std::io::Error },
    #[error("the API server did not become ready within {0:?}; see {1}")]
    NotReady(Duration, String),
    #[error("{0}")]
    Certificate(#[from] crate::certificates::CertError),
    #[error("setting up TLS bootstrapping: {0}")]
    Bootstrap(String),
    #[error("--{0} must be at least 1")]
    Zero(&'static str),
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> UpError + '_ {
    move |source| UpError::Io { path: path.display().to_string(), source }
}

fn go_duration(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// One supervised process.
struct Process {
    name: String,
    program: PathBuf,
    args: Vec<String>,
    restart: bool,
    child: Option<Child>,
    started: Instant,
}

impl Process {
    fn spawn(&mut self, logs: &Path) -> Result<(), UpError> {
        let log_path = logs.join(format!("{}.log", self.name));
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path).map_err(io_error(&log_path))?;
        let err = log.try_clone().map_err(io_error(&log_path))?;
        let child = Command::new(&self.program)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| UpError::Spawn { name: self.name.clone(), source })?;
        if let Some(pid) = child.id() {
            let pid_path = logs.join(format!("{}.pid", self.name));
            let _ = std::fs::write(pid_path, pid.to_string());
        }
        self.child = Some(child);
        self.started = Instant::now();
        Ok(())
    }

    fn terminate(&mut self) {
        if let Some(pid) = self.child.as_ref().and_then(Child::id) {
            let _ = std::process::Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
        }
    }
}

struct Cluster {
    processes: Vec<Process>,
    logs: PathBuf,
}

impl Cluster {
    fn add(&mut self, name: String, program: &Path, args: Vec<String>, restart: bool) -> Result<(), UpError> {
        let mut process =
            Process { name, program: program.to_path_buf(), args, restart, child: None, started: Instant::now() };
        process.spawn(&self.logs)?;
        self.processes.push(process);
        Ok(())
    }

    /// Starts again what exited and should run; reports kubelets that died.
    fn supervise(&mut self) {
        for process in &mut self.processes {
            let Some(child) = process.child.as_mut() else { continue };
            let Ok(Some(status)) = child.try_wait() else { continue };
            process.child = None;
            if process.restart {
                tracing::warn!(component = %process.name, %status, "exited; starting it again");
                // Back off a little if it keeps dying at once.
                if process.started.elapsed() < Duration::from_secs(2) {
                    std::thread::sleep(Duration::from_millis(500));
                }
                if let Err(error) = process.spawn(&self.logs) {
                    tracing::error!(%error, "restart failed");
                }
            } else {
                tracing::warn!(component = %process.name, %status, "exited; not restarted (a dead node stays dead)");
            }
        }
    }

    async fn stop(&mut self) {
        // Nodes and controllers first, the store last.
        for process in self.processes.iter_mut().rev() {
            process.terminate();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for process in self.processes.iter_mut().rev() {
            if let Some(child) = process.child.as_mut() {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left, child.wait()).await.is_err() {
                    let _ = child.start_kill();
                    let _ = child.wait().await;
                }
            }
        }
    }
}

/// The group kubeadm gives its default bootstrap token.
const BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// How long the bootstrap token lasts from each `up`, kubeadm's default.
const BOOTSTRAP_TOKEN_TTL: Duration = Duration::from_secs(24 * 3600);

/// What kubeadm sets up for TLS bootstrapping: the token's Secret, and the
/// bindings that let its holders ask for a kubelet certificate and have it
/// approved, and let nodes renew their own.
async fn allow_bootstrapping(kubeconfig: &Path, token: &str) -> Result<(), UpError> {
    use base64::Engine;
    use k8s_openapi::api::core::v1::Secret;
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;
    use kube::api::{Patch, PatchParams, PostParams};
    let failed = |e: kube::Error| UpError::Bootstrap(e.to_string());
    let client =
        crate::client::connect(kubeconfig, "cairn-kube-up").await.map_err(|e| UpError::Bootstrap(e.to_string()))?;
    let (id, secret) = crate::http::auth::bootstrap_token_parts(token).unwrap_or_default();
    let b64 = |text: &str| base64::engine::general_purpose::STANDARD.encode(text);
    let expiration = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(BOOTSTRAP_TOKEN_TTL.as_secs() as i64);
    let name = crate::http::auth::bootstrap_secret_name(id);
    let data = serde_json::json!({
        "token-id": b64(id),
        "token-secret": b64(secret),
        "usage-bootstrap-authentication": b64("true"),
        "usage-bootstrap-signing": b64("true"),
        "auth-extra-groups": b64(BOOTSTRAP_GROUP),
        "expiration": b64(&crate::client::time_text(expiration)),
        "description": b64("cairn-kube up's token for kubelets' TLS bootstrapping"),
    });
    let secrets: kube::Api<Secret> = kube::Api::namespaced(client.clone(), "kube-system");
    let object = serde_json::json!({
        "metadata": {"name": name, "namespace": "kube-system"},
        "type": "bootstrap.kubernetes.io/token",
        "data": data,
    });
    match secrets.create(&PostParams::default(), &crate::client::from_json(object).map_err(failed)?).await {
        Ok(_) => {}
        Err(e) if crate::client::is_conflict(&e) => {
            let patch = Patch::Merge(serde_json::json!({"data": data}));
            secrets.patch(&name, &PatchParams::default(), &patch).await.map_err(failed)?;
        }
        Err(e) => return Err(failed(e)),
    }
    let bindings: kube::Api<ClusterRoleBinding> = kube::Api::all(client);
    let rbac = crate::resources::RBAC_GROUP;
    for (binding, role, group) in [
        ("kubeadm:kubelet-bootstrap", "system:node-bootstrapper", BOOTSTRAP_GROUP),
        (
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            BOOTSTRAP_GROUP,
        ),
        (
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            crate::certificates::NODES_GROUP,
        ),
    ] {
        let object = serde_json::json!({
            "metadata": {"name": binding},
            "roleRef": {"apiGroup": rbac, "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": rbac, "kind": "Group", "name": group}],
        });
        match bindings.create(&PostParams::default(), &crate::client::from_json(object).map_err(failed)?).await {
            Err(e) if !crate::client::is_conflict(&e) => return Err(failed(e)),
            _ => {}
        }
    }
    Ok(())
}

async fn wait_ready(kubeconfig: &Path, address: (std::net::Ipv4Addr, u16), timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        // Connect first: the client logs every refused connection as an error.
        if tokio::net::TcpStream::connect(address).await.is_err() {
            tokio::time::sleep(Duration::from_millis(250)).await;
            continue;
        }
        if let Ok(client) = crate::client::connect(kubeconfig, "cairn-kube-up").await {
            if client.apiserver_version().await.is_ok() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    false
}

pub async fn run(config: UpConfig) -> Result<(), UpError> {
    for (flag, value) in
        [("store-members", config.store_members), ("apiservers", config.apiservers), ("replicas", config.replicas)]
    {
        if value == 0 {
            return Err(UpError::Zero(flag));
        }
    }
    let dir = std::path::absolute(&config.dir).map_err(io_error(&config.dir))?;
    let logs = dir.join("logs");
    std::fs::create_dir_all(&logs).map_err(io_error(&logs))?;
    let me = std::env::current_exe().map_err(io_error(Path::new("current executable")))?;
    let cairn = config.cairn_binary.clone().unwrap_or_else(|| me.with_file_name("cairn"));
    let mut cluster = Cluster { processes: Vec::new(), logs: logs.clone() };

    let address = config.address;
    let pki = pki::Pki::open(&dir.join("pki"))?;
    let ca = pki.ca_file();
    let hosts = vec!["localhost".to_string(), "127.0.0.1".to_string(), address.to_string()];
    let peer = |i: u32| format!("https://{address}:{}", config.store_port + 1 + 2 * i as u16);
    let client_url = |i: u32| format!("https://{address}:{}", config.store_port + 2 * i as u16);
    let initial: Vec<String> = (0..config.store_members).map(|i| format!("store-{i}={}", peer(i))).collect();
    for i in 0..config.store_members {
        // One certificate serves clients and peers, and is the member's own as a peer client.
        let profile = Profile {
            common_name: format!("store-{i}"),
            alt_names: hosts.clone(),
            server: true,
            client: true,
            ..Profile::default()
        };
        let (cert, key) = pki.certificate(&format!("store-{i}"), &profile)?;
        let args = vec![
            format!("--name=store-{i}"),
            format!("--data-dir={}", dir.join("store").join(format!("store-{i}")).display()),
            format!("--listen-client-urls={}", client_url(i)),
            format!("--advertise-client-urls={}", client_url(i)),
            format!("--listen-peer-urls={}", peer(i)),
            format!("--initial-advertise-peer-urls={}", peer(i)),
            format!("--initial-cluster={}", initial.join(",")),
            format!("--cert-file={}", cert.display()),
            format!("--key-file={}", key.display()),
            "--client-cert-auth".to_string(),
            format!("--trusted-ca-file={}", ca.display()),
            format!("--peer-cert-file={}", cert.display()),
            format!("--peer-key-file={}", key.display()),
            "--peer-client-cert-auth".to_string(),
            format!("--peer-trusted-ca-file={}", ca.display()),
        ];
        cluster.add(format!("store-{i}"), &cairn, args, true)?;
    }
    let endpoints: Vec<String> = (0..config.store_members).map(client_url).collect();

    let mut apiserver_names = hosts.clone();
    apiserver_names.extend(
        ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
            .map(String::from),
    );
    let serving = Profile {
        common_name: "kube-apiserver".into(),
        alt_names: apiserver_names,
        server: true,
        ..Profile::default()
    };
    let (cert, key) = pki.certificate("apiserver", &serving)?;
    let (etcd_cert, etcd_key) = pki.client("apiserver-etcd-client", "kube-apiserver-etcd-client", &[])?;
    // One API server listens on the port itself; several sit behind a balancer there.
    let api_port = |i: u32| config.apiserver_port + u16::from(config.apiservers > 1) + i as u16;
    for i in 0..config.apiservers {
        let args = vec![
            "apiserver".to_string(),
            format!("--etcd-servers={}", endpoints.join(",")),
            format!("--etcd-cafile={}", ca.display()),
            format!("--etcd-certfile={}", etcd_cert.display()),
            format!("--etcd-keyfile={}", etcd_key.display()),
            format!("--bind-address={address}"),
            format!("--secure-port={}", api_port(i)),
            format!("--tls-cert-file={}", cert.display()),
            format!("--tls-private-key-file={}", key.display()),
            format!("--client-ca-file={}", ca.display()),
            "--authorization-mode=Node,RBAC".to_string(),
            "--enable-bootstrap-token-auth".to_string(),
            format!("--service-cluster-ip-range={}", config.service_cluster_ip_range),
            // The store is Cairn, whose watch progress answers are safe.
            "--etcd-watch-progress-requests=true".to_string(),
        ];
        cluster.add(format!("apiserver-{i}"), &me, args, true)?;
    }
    if config.apiservers > 1 {
        let front = std::net::SocketAddr::from((address, config.apiserver_port));
        let listener =
            tokio::net::TcpListener::bind(front).await.map_err(io_error(Path::new("the load balancer's address")))?;
        let backends = (0..config.apiservers).map(|i| std::net::SocketAddr::from((address, api_port(i)))).collect();
        tokio::spawn(crate::balancer::run(listener, backends));
    }
    let server = format!("https://{address}:{}", config.apiserver_port);
    // Each component's kubeconfig, with its own certificate: (file, user, groups).
    let identities: [(&str, &str, &[&str]); 4] = [
        ("admin", "kubernetes-admin", &["system:masters"]),
        ("controller-manager", "system:kube-controller-manager", &[]),
        ("scheduler", "system:kube-scheduler", &[]),
        ("proxy", "system:kube-proxy", &[]),
    ];
    for (name, user, groups) in identities {
        let (cert, key) = pki.client(name, user, groups)?;
        let path = if name == "admin" { dir.join("kubeconfig") } else { dir.join(format!("{name}.kubeconfig")) };
        pki::write_kubeconfig(&path, &server, &ca, &Credentials::Certificate { cert: &cert, key: &key })?;
    }
    let kubeconfig = dir.join("kubeconfig");
    let ready_within = Duration::from_secs(60);
    if !wait_ready(&kubeconfig, (address, config.apiserver_port), ready_within).await {
        cluster.stop().await;
        return Err(UpError::NotReady(ready_within, logs.join("apiserver-0.log").display().to_string()));
    }
    let token = pki.bootstrap_token()?;
    if let Err(error) = allow_bootstrapping(&kubeconfig, &token).await {
        cluster.stop().await;
        return Err(error);
    }
    let bootstrap_kubeconfig = dir.join("bootstrap-kubelet.kubeconfig");
    pki::write_kubeconfig(&bootstrap_kubeconfig, &server, &ca, &Credentials::Token(&token))?;

    let kube_of = |name: &str| format!("--kubeconfig={}", dir.join(format!("{name}.kubeconfig")).display());
    let election = vec![
        format!("--leader-elect-lease-duration={}", go_duration(config.leader_elect_lease_duration)),
        format!("--leader-elect-renew-deadline={}", go_duration(config.leader_elect_renew_deadline)),
        format!("--leader-elect-retry-period={}", go_duration(config.leader_elect_retry_period)),
    ];
    for i in 0..config.replicas {
        let mut args = vec![
            "controller-manager".to_string(),
            kube_of("controller-manager"),
            format!("--leader-elect-identity=controller-manager-{i}"),
            format!("--cluster-signing-cert-file={}", ca.display()),
            format!("--cluster-signing-key-file={}", pki.ca_key_file().display()),
        ];
        args.extend(election.clone());
        args.push(format!("--node-monitor-period={}", go_duration(config.node_monitor_period)));
        args.push(format!("--node-monitor-grace-period={}", go_duration(config.node_monitor_grace_period)));
        cluster.add(format!("controller-manager-{i}"), &me, args, true)?;
        let mut args =
            vec!["scheduler".to_string(), kube_of("scheduler"), format!("--leader-elect-identity=scheduler-{i}")];
        args.extend(election.clone());
        cluster.add(format!("scheduler-{i}"), &me, args, true)?;
    }
    let kubelets = dir.join("kubelet");
    for i in 0..config.nodes {
        let args = vec![
            "kubelet".to_string(),
            format!("--bootstrap-kubeconfig={}", bootstrap_kubeconfig.display()),
            format!("--kubeconfig={}", kubelets.join(format!("kubelet-{i}.kubeconfig")).display()),
            "--nodes=1".to_string(),
            format!("--first-node-index={i}"),
            format!("--cluster-cidr={}", config.cluster_cidr),
            format!("--node-status-update-frequency={}", go_duration(config.node_status_update_frequency)),
            format!("--node-lease-duration-seconds={}", config.node_lease_duration_seconds),
            format!("--image-pull-delay={}", go_duration(config.image_pull_delay)),
            format!("--root-dir={}", kubelets.display()),
        ];
        cluster.add(format!("kubelet-{i}"), &me, args, false)?;
    }
    let args = vec![
        "proxy".to_string(),
        kube_of("proxy"),
        format!("--metrics-bind-address={address}:{}", config.proxy_port),
        format!("--rules-file={}", dir.join("proxy-rules").display()),
    ];
    cluster.add("proxy".to_string(), &me, args, true)?;

    println!(
        "Cairn cluster is up: {} store members, {} API server(s), {} controller-manager and scheduler replicas, {} hollow nodes.\n\
         Everything is under {}; logs in {}.\n\n  export KUBECONFIG={}\n  kubectl get nodes\n\nCtrl-C stops the cluster; `cairn-kube up --dir {}` starts it again from its data.",
        config.store_members,
        config.apiservers,
        config.replicas,
        config.nodes,
        dir.display(),
        logs.display(),
        kubeconfig.display(),
        config.dir.display()
    );
    let mut shutdown = std::pin::pin!(crate::shutdown_signal());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = tick.tick() => cluster.supervise(),
        }
    }
    println!("stopping the cluster");
    cluster.stop().await;
    Ok(())
}
