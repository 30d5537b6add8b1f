//! The upstream Kubernetes control plane on any store: kube-apiserver,
//! kube-controller-manager and kube-scheduler v1.33.7 (built from Go modules
//! by `.ci/kubernetes.sh`) with the flags kubeadm gives them, and hollow nodes
//! from `cairn-kube kubelet`, each with a node identity of its own so that the
//! Node authorizer and NodeRestriction apply. Certificates come from openssl;
//! every address is this process's loopback address.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::kube::{kubectl_with, spawn_logged, write_kubeconfig_for, Component};
use crate::net;
use crate::pki::ClusterTls;

/// Overrides the folder of the upstream binaries.
pub const KUBE_DIR_ENV: &str = "CAIRN_KUBE_DIR";
/// The Kubernetes release they are built from.
pub const KUBE_VERSION: &str = "v1.33.7";

/// One of the upstream binaries: kube-apiserver, kube-controller-manager,
/// kube-scheduler, e2e.test or ginkgo.
pub fn kube_tool(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var(KUBE_DIR_ENV) {
        return PathBuf::from(dir).join(name);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(format!(".cache/cairn/kube-{KUBE_VERSION}")).join(name)
}

fn require_kube_tool(name: &str) -> Result<PathBuf> {
    let path = kube_tool(name);
    if !path.is_file() {
        bail!("{} is missing: `.ci/kubernetes.sh` builds it", path.display());
    }
    Ok(path)
}

/// An upstream binary as a process with its log in a file; killed on drop.
pub struct Process {
    pub name: String,
    binary: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Process {
    pub fn start(binary: PathBuf, name: &str, args: Vec<String>, log_dir: &Path) -> Result<Process> {
        let mut process =
            Process { name: name.to_string(), binary, args, log: log_dir.join(format!("{name}.log")), child: None };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> Result<()> {
        self.child = Some(spawn_logged(&self.binary, &self.args, &self.log)?);
        Ok(())
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs openssl; its stderr on failure.
fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl").args(args).current_dir(dir).output().context("running openssl")?;
    if !out.status.success() {
        bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

/// kubeadm's certificates, less etcd's: the cluster CA and the API server's
/// serving certificate, the front-proxy CA and its client, and the
/// service-account key pair.
fn write_pki(dir: &Path, ip: &str) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let days = "7";
    for (ca, subject) in [("ca", "/CN=kubernetes"), ("front-proxy-ca", "/CN=front-proxy-ca")] {
        let (key, crt) = (format!("{ca}.key"), format!("{ca}.crt"));
        openssl(
            dir,
            &[
                "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &crt, "-days", days, "-subj",
                subject,
            ],
        )?;
    }
    let sans = format!(
        "subjectAltName=IP:{ip},IP:10.96.0.1,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local\nextendedKeyUsage=serverAuth\n"
    );
    std::fs::write(dir.join("apiserver.ext"), sans)?;
    std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n")?;
    for (name, subject, ca, ext) in [
        ("apiserver", "/CN=kube-apiserver", "ca", "apiserver.ext"),
        ("front-proxy-client", "/CN=front-proxy-client", "front-proxy-ca", "client.ext"),
    ] {
        let (key, csr, crt) = (format!("{name}.key"), format!("{name}.csr"), format!("{name}.crt"));
        openssl(dir, &["req", "-newkey", "rsa:2048", "-nodes", "-keyout", &key, "-out", &csr, "-subj", subject])?;
        let (ca_crt, ca_key) = (format!("{ca}.crt"), format!("{ca}.key"));
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                &ca_crt,
                "-CAkey",
                &ca_key,
                "-CAcreateserial",
                "-out",
                &crt,
                "-days",
                days,
                "-extfile",
                ext,
            ],
        )?;
    }
    openssl(dir, &["genrsa", "-out", "sa.key", "2048"])?;
    openssl(dir, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
    Ok(())
}

/// Who talks to the API server, and the token each one presents.
struct Identity {
    /// The kubeconfig's file name.
    file: String,
    token: String,
    user: String,
    groups: &'static str,
}

fn identities(nodes: usize) -> Vec<Identity> {
    let fixed = [
        ("admin", "kubernetes-admin", "system:masters"),
        ("controller-manager", "system:kube-controller-manager", ""),
        ("scheduler", "system:kube-scheduler", ""),
    ];
    let mut all: Vec<Identity> = fixed
        .into_iter()
        .map(|(file, user, groups)| Identity {
            file: file.to_string(),
            token: format!("{file}-token"),
            user: user.to_string(),
            groups,
        })
        .collect();
    all.extend((0..nodes).map(|i| Identity {
        file: format!("node-{i}"),
        token: format!("node-{i}-token"),
        user: format!("system:node:{}", node_name(i)),
        groups: "system:nodes",
    }));
    all
}

/// The name of hollow node `index` (`cairn-kube kubelet`'s default prefix).
pub fn node_name(index: usize) -> String {
    format!("hollow-node-{index}")
}

/// The pod CIDR every hollow node takes its /24 from, and the controller-manager allocates from.
const CLUSTER_CIDR: &str = "127.64.0.0/16";

pub struct UpstreamCluster {
    pub dir: PathBuf,
    /// `https://ip:port` of kube-apiserver.
    pub url: String,
    pub admin_kubeconfig: PathBuf,
    pub apiserver: Process,
    pub controller_manager: Process,
    pub scheduler: Process,
    pub kubelets: Vec<Component>,
}

impl UpstreamCluster {
    /// Starts the control plane on the store at `endpoints` (over mTLS with
    /// `store_tls`'s client certificate, as kubeadm's kube-apiserver reaches
    /// etcd) and `nodes` hollow nodes; returns once every node is Ready.
    pub async fn start(
        endpoints: &[String],
        store_tls: Option<&ClusterTls>,
        dir: &Path,
        nodes: usize,
    ) -> Result<UpstreamCluster> {
        let ip = net::loopback_ip();
        let pki = dir.join("pki");
        write_pki(&pki, &ip)?;
        let port = net::next_port();
        let url = format!("https://{ip}:{port}");
        let ca = pki.join("ca.crt");
        let identities = identities(nodes);
        let tokens: String = identities
            .iter()
            .map(|id| format!("{},{},{}-uid,\"{}\"\n", id.token, id.user, id.file, id.groups))
            .collect();
        std::fs::write(dir.join("tokens.csv"), tokens)?;
        for id in &identities {
            write_kubeconfig_for(&dir.join(format!("{}.conf", id.file)), &url, &id.token, Some(&ca))?;
        }
        let file = |name: &str| pki.join(name).display().to_string();
        let conf = |name: &str| dir.join(format!("{name}.conf")).display().to_string();
        // kubeadm's kube-apiserver manifest, with a static token file for the
        // identities where kubeadm has client certificates. The kubernetes
        // Service gets no endpoints: a loopback address is not a valid one.
        let apiserver_args = vec![
            format!("--advertise-address={ip}"),
            format!("--bind-address={ip}"),
            format!("--secure-port={port}"),
            "--allow-privileged=true".into(),
            "--authorization-mode=Node,RBAC".into(),
            format!("--client-ca-file={}", file("ca.crt")),
            "--enable-admission-plugins=NodeRestriction".into(),
            "--enable-bootstrap-token-auth=true".into(),
            format!("--etcd-servers={}", endpoints.join(",")),
            "--kubelet-preferred-address-types=InternalIP,ExternalIP,Hostname".into(),
            format!("--proxy-client-cert-file={}", file("front-proxy-client.crt")),
            format!("--proxy-client-key-file={}", file("front-proxy-client.key")),
            "--requestheader-allowed-names=front-proxy-client".into(),
            format!("--requestheader-client-ca-file={}", file("front-proxy-ca.crt")),
            "--requestheader-extra-headers-prefix=X-Remote-Extra-".into(),
            "--requestheader-group-headers=X-Remote-Group".into(),
            "--requestheader-username-headers=X-Remote-User".into(),
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.96.0.0/12".into(),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
            "--endpoint-reconciler-type=none".into(),
        ];
        let mut apiserver_args = apiserver_args;
        if let Some(tls) = store_tls {
            apiserver_args.extend([
                format!("--etcd-cafile={}", tls.ca.display()),
                format!("--etcd-certfile={}", tls.client.cert.display()),
                format!("--etcd-keyfile={}", tls.client.key.display()),
            ]);
        }
        let mut apiserver =
            Process::start(require_kube_tool("kube-apiserver")?, "kube-apiserver", apiserver_args, dir)?;
        let admin_kubeconfig = dir.join("admin.conf");
        wait_ready(&mut apiserver, &admin_kubeconfig, dir, Duration::from_secs(90)).await?;
        let kcm_conf = conf("controller-manager");
        let controller_manager = Process::start(
            require_kube_tool("kube-controller-manager")?,
            "kube-controller-manager",
            vec![
                format!("--kubeconfig={kcm_conf}"),
                format!("--authentication-kubeconfig={kcm_conf}"),
                format!("--authorization-kubeconfig={kcm_conf}"),
                format!("--bind-address={ip}"),
                format!("--secure-port={}", net::next_port()),
                "--allocate-node-cidrs=true".into(),
                format!("--cluster-cidr={CLUSTER_CIDR}"),
                format!("--client-ca-file={}", file("ca.crt")),
                format!("--cluster-signing-cert-file={}", file("ca.crt")),
                format!("--cluster-signing-key-file={}", file("ca.key")),
                "--controllers=*,bootstrapsigner,tokencleaner".into(),
                "--leader-elect=true".into(),
                format!("--requestheader-client-ca-file={}", file("front-proxy-ca.crt")),
                format!("--root-ca-file={}", file("ca.crt")),
                format!("--service-account-private-key-file={}", file("sa.key")),
                "--service-cluster-ip-range=10.96.0.0/12".into(),
                "--use-service-account-credentials=true".into(),
            ],
            dir,
        )?;
        let scheduler_conf = conf("scheduler");
        let scheduler = Process::start(
            require_kube_tool("kube-scheduler")?,
            "kube-scheduler",
            vec![
                format!("--kubeconfig={scheduler_conf}"),
                format!("--authentication-kubeconfig={scheduler_conf}"),
                format!("--authorization-kubeconfig={scheduler_conf}"),
                format!("--bind-address={ip}"),
                format!("--secure-port={}", net::next_port()),
                "--leader-elect=true".into(),
            ],
            dir,
        )?;
        let mut kubelets = Vec::new();
        for i in 0..nodes {
            let flags = [
                format!("--first-node-index={i}"),
                format!("--cluster-cidr={CLUSTER_CIDR}"),
                format!("--root-dir={}", dir.join("kubelet").display()),
                "--image-pull-delay=200ms".into(),
                "--node-status-update-frequency=2s".into(),
            ];
            let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
            let kubeconfig = dir.join(format!("node-{i}.conf"));
            kubelets.push(Component::start_with(&kubeconfig, dir, &format!("kubelet-{i}"), "kubelet", &flags)?);
        }
        let cluster = UpstreamCluster {
            dir: dir.to_path_buf(),
            url,
            admin_kubeconfig,
            apiserver,
            controller_manager,
            scheduler,
            kubelets,
        };
        cluster.wait_nodes_ready(nodes, Duration::from_secs(90)).await?;
        Ok(cluster)
    }

    /// kubectl as the cluster admin.
    pub fn kubectl(&self, args: &[&str], input: Option<&str>) -> Output {
        kubectl_with(&self.admin_kubeconfig, &self.dir.join("kubectl-cache"), args, input)
    }

    async fn wait_nodes_ready(&self, nodes: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let ready = r#"jsonpath={range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}"#;
        loop {
            let out = self.kubectl(&["get", "nodes", "-o", ready], None);
            let listed = String::from_utf8_lossy(&out.stdout);
            if listed.lines().filter(|line| line.trim() == "True").count() >= nodes {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{nodes} nodes not Ready after {timeout:?}: {listed}");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The tail of every component's log, for a report on a failure.
    pub fn logs(&self, lines: usize) -> String {
        let tail = |text: String| {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        };
        let mut out = Vec::new();
        for process in [&self.apiserver, &self.controller_manager, &self.scheduler] {
            out.push(format!("--- {}\n{}", process.name, tail(process.log_text())));
        }
        for kubelet in &self.kubelets {
            out.push(format!("--- {}\n{}", kubelet.name, tail(kubelet.log_text())));
        }
        out.join("\n")
    }
}

async fn wait_ready(apiserver: &mut Process, kubeconfig: &Path, dir: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if apiserver.exited() {
            bail!("kube-apiserver exited: {}", apiserver.log_text());
        }
        let out = kubectl_with(kubeconfig, &dir.join("kubectl-cache"), &["get", "--raw", "/readyz"], None);
        if out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "ok" {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("kube-apiserver not ready after {timeout:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}
