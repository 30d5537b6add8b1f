//! `cairn-kube apiserver` as a real process for tests: a token file, a
//! kubeconfig, a fresh kubectl cache, and the real kubectl.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::binaries::{require, workspace_tool};
use crate::net;

/// The bearer token of the `admin` user (group system:masters) in every test.
pub const ADMIN_TOKEN: &str = "cairn-test-admin-token";
/// Users every test API server also knows, for authorisation tests:
/// (token, user, groups). With the default AlwaysAllow they may do anything.
pub const TEST_USERS: &[(&str, &str, &str)] =
    &[("cairn-test-alice-token", "alice", "dev"), ("cairn-test-node-a-token", "system:node:node-a", "system:nodes")];
/// Overrides the kubectl the tests run (default: kubectl 1.32).
pub const KUBECTL_ENV: &str = "CAIRN_KUBECTL";
/// How long one kubectl command may take.
const KUBECTL_LIMIT: Duration = Duration::from_secs(60);

pub fn kubectl_binary() -> PathBuf {
    if let Ok(path) = std::env::var(KUBECTL_ENV) {
        return PathBuf::from(path);
    }
    let pinned = PathBuf::from("/usr/lib/google-cloud-sdk/bin/kubectl.1.32");
    if pinned.is_file() {
        pinned
    } else {
        PathBuf::from("/usr/bin/kubectl")
    }
}

/// The real kube-apiserver's binary (`.ci/kubernetes.sh` builds it).
pub const KUBE_APISERVER_ENV: &str = "CAIRN_KUBE_APISERVER";

pub fn kube_apiserver_binary() -> PathBuf {
    if let Ok(path) = std::env::var(KUBE_APISERVER_ENV) {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/cairn/kube-v1.33.7/kube-apiserver")
}

/// A kubeconfig for the admin user at `url` (`https://ip:port`), which may be
/// an API server, a load balancer or a proxy in front of one.
pub fn write_kubeconfig(path: &Path, url: &str) -> Result<()> {
    write_kubeconfig_for(path, url, ADMIN_TOKEN, None)
}

/// A kubeconfig with a bearer token; the server's certificate is checked
/// against `ca` (a PEM file) if one is given.
pub fn write_kubeconfig_for(path: &Path, url: &str, token: &str, ca: Option<&Path>) -> Result<()> {
    let trust = match ca {
        Some(ca) => format!("certificate-authority: {}", ca.display()),
        None => "insecure-skip-tls-verify: true".to_string(),
    };
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: cairn\n  cluster:\n    server: {url}\n    {trust}\nusers:\n- name: user\n  user:\n    token: {token}\ncontexts:\n- name: cairn\n  context:\n    cluster: cairn\n    user: user\ncurrent-context: cairn\n"
        ),
    )?;
    Ok(())
}

/// kubectl with `kubeconfig` and a cache directory of its own, bounded in time.
pub fn kubectl_with(kubeconfig: &Path, cache_dir: &Path, args: &[&str], input: Option<&str>) -> Output {
    let mut command = Command::new("timeout");
    command
        .arg(KUBECTL_LIMIT.as_secs().to_string())
        .arg(kubectl_binary())
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--cache-dir={}", cache_dir.display()))
        .args(args)
        .stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut run = || -> std::io::Result<Output> {
        let mut child = command.spawn()?;
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            use std::io::Write;
            stdin.write_all(text.as_bytes())?;
        }
        child.wait_with_output()
    };
    run().unwrap_or_else(|err| Output {
        status: std::os::unix::process::ExitStatusExt::from_raw(1 << 8),
        stdout: Vec::new(),
        stderr: err.to_string().into_bytes(),
    })
}

/// Starts `binary` with `args`, its output appended to `log` and nothing on
/// its standard input.
pub(crate) fn spawn_logged(binary: &Path, args: &[String], log: &Path) -> Result<Child> {
    let log = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    Command::new(binary)
        .args(args)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("starting {} {}", binary.display(), args.first().map_or("", String::as_str)))
}

/// SIGSTOP or SIGCONT (`-STOP`, `-CONT`) to a child process.
pub(crate) fn signal(child: Option<&Child>, signal: &str) {
    if let Some(child) = child {
        let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
    }
}

/// Which API server a test runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Server {
    Cairn,
    /// The real kube-apiserver 1.33.7, for differential tests.
    Kube,
}

pub struct ApiServer {
    /// `https://ip:port`.
    pub url: String,
    binary: PathBuf,
    pub kubeconfig: PathBuf,
    dir: PathBuf,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
    _temp: Option<tempfile::TempDir>,
}

impl ApiServer {
    /// Starts an API server on `endpoints` with extra flags, and waits until it is ready.
    pub async fn start(endpoints: &[String], extra: &[&str]) -> Result<ApiServer> {
        ApiServer::start_as(Server::Cairn, endpoints, extra).await
    }

    pub async fn start_as(kind: Server, endpoints: &[String], extra: &[&str]) -> Result<ApiServer> {
        let temp = tempfile::tempdir()?;
        let dir = temp.path().to_path_buf();
        let mut server = ApiServer::prepare(kind, &dir, endpoints, extra)?;
        server._temp = Some(temp);
        server.spawn()?;
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    /// Starts a Cairn API server that keeps its files (log, certificates) in `dir`.
    pub async fn start_in(dir: &Path, endpoints: &[String], extra: &[&str]) -> Result<ApiServer> {
        std::fs::create_dir_all(dir)?;
        let mut server = ApiServer::prepare(Server::Cairn, dir, endpoints, extra)?;
        server.spawn()?;
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    fn prepare(kind: Server, dir: &Path, endpoints: &[String], extra: &[&str]) -> Result<ApiServer> {
        let ip = net::loopback_ip();
        let port = net::next_port();
        let url = format!("https://{ip}:{port}");
        let mut tokens = format!("{ADMIN_TOKEN},admin,admin-uid,\"system:masters\"\n");
        for (token, user, groups) in TEST_USERS {
            tokens += &format!("{token},{user},{user}-uid,\"{groups}\"\n");
        }
        std::fs::write(dir.join("tokens.csv"), tokens)?;
        let kubeconfig = dir.join("kubeconfig");
        write_kubeconfig(&kubeconfig, &url)?;
        let mut args: Vec<String> = match kind {
            Server::Cairn => vec!["apiserver".into()],
            Server::Kube => {
                let key = dir.join("sa.key");
                let made = Command::new("openssl").args(["genrsa", "-out"]).arg(&key).arg("2048").output()?;
                if !made.status.success() {
                    bail!("openssl genrsa: {}", String::from_utf8_lossy(&made.stderr));
                }
                vec![
                    format!("--service-account-key-file={}", key.display()),
                    format!("--service-account-signing-key-file={}", key.display()),
                    "--service-account-issuer=https://kubernetes.default.svc".into(),
                    "--service-cluster-ip-range=10.0.0.0/24".into(),
                    format!("--advertise-address={ip}"),
                ]
            }
        };
        args.extend([
            format!("--etcd-servers={}", endpoints.join(",")),
            format!("--bind-address={ip}"),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", dir.join("certs").display()),
            format!("--token-auth-file={}", dir.join("tokens.csv").display()),
        ]);
        // kube-apiserver appends a repeated --authorization-mode to the first: only one is given.
        if kind == Server::Kube && !extra.iter().any(|arg| arg.starts_with("--authorization-mode")) {
            args.push("--authorization-mode=AlwaysAllow".into());
        }
        args.extend(extra.iter().map(|a| a.to_string()));
        let binary = match kind {
            Server::Cairn => require(workspace_tool("cairn-kube"))?,
            Server::Kube => {
                let binary = kube_apiserver_binary();
                if !binary.is_file() {
                    bail!("{} is missing: `.ci/kubernetes.sh` builds it", binary.display());
                }
                binary
            }
        };
        Ok(ApiServer {
            url,
            binary,
            kubeconfig,
            dir: dir.to_path_buf(),
            args,
            log: dir.join("apiserver.log"),
            child: None,
            _temp: None,
        })
    }

    fn spawn(&mut self) -> Result<()> {
        self.child = Some(spawn_logged(&self.binary, &self.args, &self.log)?);
        Ok(())
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn pause(&self) {
        signal(self.child.as_ref(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.child.as_ref(), "-CONT");
    }

    /// Kills and starts again on the same address, then waits until ready.
    pub async fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()?;
        self.wait_ready(Duration::from_secs(60)).await
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET a path with the admin token; the status code and body.
    pub fn get(&self, path: &str) -> (u16, String) {
        self.get_with_timeout(path, 5)
    }

    /// GET with a longer bound, for watches.
    pub fn get_with_timeout(&self, path: &str, seconds: u64) -> (u16, String) {
        self.request("GET", path, &[], None, seconds)
    }

    /// Any request with the admin token: method, path, extra headers and a
    /// body; the status code and body.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        headers: &[&str],
        body: Option<&str>,
        seconds: u64,
    ) -> (u16, String) {
        let mut command = Command::new("curl");
        command.args(["-sk", "-X", method, "--max-time", &seconds.to_string(), "-w", "\n%{http_code}"]);
        command.args(["-H", &format!("Authorization: Bearer {ADMIN_TOKEN}")]);
        for header in headers {
            command.args(["-H", header]);
        }
        if let Some(body) = body {
            command.args(["--data-binary", body]);
        }
        let out = command.arg(format!("{}{path}", self.url)).output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
        (code.trim().parse().unwrap_or(0), body.to_string())
    }

    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(Ok(Some(status))) = self.child.as_mut().map(|c| c.try_wait()) {
                bail!("cairn-kube apiserver exited ({status}): {}", self.log_text());
            }
            let (code, body) = self.get("/readyz");
            if code == 200 && body.trim() == "ok" {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "cairn-kube apiserver at {} not ready after {timeout:?}: {code} {body}\n{}",
                    self.url,
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// kubectl against this server, with its own fresh cache directory, bounded in time.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_stdin(args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], input: Option<&str>) -> Output {
        kubectl_with(&self.kubeconfig, &self.dir.join("kubectl-cache"), args, input)
    }

    /// kubectl as the holder of `token` (one of [`TEST_USERS`]).
    pub fn kubectl_as(&self, token: &str, args: &[&str], input: Option<&str>) -> Output {
        let flag = format!("--token={token}");
        let mut all = vec![flag.as_str()];
        all.extend_from_slice(args);
        kubectl_with(&self.kubeconfig, &self.dir.join("kubectl-cache"), &all, input)
    }
}

impl Drop for ApiServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Another `cairn-kube` component (controller-manager, scheduler, kubelet,
/// proxy) as a real process, pointed at an API server through its kubeconfig.
pub struct Component {
    pub name: String,
    args: Vec<String>,
    log: PathBuf,
    child: Option<Child>,
}

impl Component {
    /// Starts `cairn-kube <subcommand> --kubeconfig=… <args>`; its log goes beside the API server's.
    pub fn start(api: &ApiServer, name: &str, subcommand: &str, args: &[&str]) -> Result<Component> {
        Component::start_with(&api.kubeconfig, api.dir(), name, subcommand, args)
    }

    /// Starts `cairn-kube <subcommand>` with its own kubeconfig; its log goes to `<log_dir>/<name>.log`.
    pub fn start_with(
        kubeconfig: &Path,
        log_dir: &Path,
        name: &str,
        subcommand: &str,
        args: &[&str],
    ) -> Result<Component> {
        let mut all = vec![subcommand.to_string(), format!("--kubeconfig={}", kubeconfig.display())];
        all.extend(args.iter().map(|a| a.to_string()));
        let log = log_dir.join(format!("{name}.log"));
        let mut component = Component { name: name.to_string(), args: all, log, child: None };
        component.spawn()?;
        Ok(component)
    }

    fn spawn(&mut self) -> Result<()> {
        let binary = require(workspace_tool("cairn-kube"))?;
        self.child = Some(spawn_logged(&binary, &self.args, &self.log)?);
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// SIGKILL: the process dies without a word, as a crashed machine does.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        self.spawn()
    }

    pub fn pause(&self) {
        signal(self.child.as_ref(), "-STOP");
    }

    pub fn resume(&self) {
        signal(self.child.as_ref(), "-CONT");
    }

    /// Exited on its own (not killed by the test)?
    pub fn exited(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
    }

    /// Still running?
    pub fn running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A whole cluster of processes for a test: store, API server, controller
/// managers and schedulers (leader-elected), one kubelet process per hollow
/// node, and a proxy. Pod and Service addresses come from a loopback block of
/// the test's own, so clusters of concurrent tests never share an address.
pub struct KubeCluster {
    pub store: crate::Cluster,
    pub api: ApiServer,
    pub controller_managers: Vec<Component>,
    pub schedulers: Vec<Component>,
    pub kubelets: Vec<Component>,
    pub proxy: Option<Component>,
    /// Where the proxy serves `/rules`.
    pub proxy_status: String,
}

#[derive(Clone, Debug)]
pub struct KubeOptions {
    pub store_members: usize,
    pub replicas: usize,
    pub nodes: usize,
    /// Hollow nodes per kubelet process: 1 for tests that kill a node's
    /// process, hundreds for density runs.
    pub nodes_per_kubelet: usize,
    pub proxy: bool,
    pub apiserver_flags: Vec<String>,
    pub controller_flags: Vec<String>,
    pub scheduler_flags: Vec<String>,
    pub kubelet_flags: Vec<String>,
}

impl Default for KubeOptions {
    fn default() -> KubeOptions {
        KubeOptions {
            store_members: 3,
            replicas: 1,
            nodes: 3,
            nodes_per_kubelet: 1,
            proxy: true,
            apiserver_flags: Vec::new(),
            controller_flags: Vec::new(),
            scheduler_flags: Vec::new(),
            kubelet_flags: vec!["--image-pull-delay=200ms".into(), "--node-status-update-frequency=2s".into()],
        }
    }
}

static BLOCKS: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// A second octet for this cluster's pod (64–95) and service (96–127) blocks.
pub fn address_block() -> u8 {
    let n = BLOCKS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ((std::process::id() % 8) as u8 * 4 + n % 4) % 32
}

fn as_refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

impl KubeCluster {
    pub async fn start(options: KubeOptions) -> Result<KubeCluster> {
        let store = crate::Options::new(crate::Flavor::Cairn, options.store_members).start().await?;
        let block = address_block();
        let service_range = format!("--service-cluster-ip-range=127.{}.0.0/16", 96 + block);
        let mut api_flags = vec![service_range, "--etcd-watch-progress-requests=true".to_string()];
        api_flags.extend(options.apiserver_flags.clone());
        let api = ApiServer::start(&store.endpoints(), &as_refs(&api_flags)).await?;
        let mut cluster = KubeCluster {
            store,
            api,
            controller_managers: Vec::new(),
            schedulers: Vec::new(),
            kubelets: Vec::new(),
            proxy: None,
            proxy_status: format!("{}:{}", net::loopback_ip(), net::next_port()),
        };
        for i in 0..options.replicas {
            let mut flags = vec![format!("--leader-elect-identity=controller-manager-{i}")];
            flags.extend(options.controller_flags.clone());
            let name = format!("controller-manager-{i}");
            cluster.controller_managers.push(Component::start(
                &cluster.api,
                &name,
                "controller-manager",
                &as_refs(&flags),
            )?);
            let mut flags = vec![format!("--leader-elect-identity=scheduler-{i}")];
            flags.extend(options.scheduler_flags.clone());
            let name = format!("scheduler-{i}");
            cluster.schedulers.push(Component::start(&cluster.api, &name, "scheduler", &as_refs(&flags))?);
        }
        // A /16 holds 256 nodes' /24s; density runs take the whole /12 and run alone.
        let cluster_cidr = match options.nodes {
            0..=256 => format!("--cluster-cidr=127.{}.0.0/16", 64 + block),
            _ => "--cluster-cidr=127.64.0.0/12".to_string(),
        };
        let per_process = options.nodes_per_kubelet.max(1);
        for (i, first) in (0..options.nodes).step_by(per_process).enumerate() {
            let mut flags = vec![
                format!("--nodes={}", per_process.min(options.nodes - first)),
                format!("--first-node-index={first}"),
                cluster_cidr.clone(),
                format!("--root-dir={}", cluster.api.dir().join("kubelet").display()),
            ];
            flags.extend(options.kubelet_flags.clone());
            cluster.kubelets.push(Component::start(
                &cluster.api,
                &format!("kubelet-{i}"),
                "kubelet",
                &as_refs(&flags),
            )?);
        }
        if options.proxy {
            let flags = vec![format!("--metrics-bind-address={}", cluster.proxy_status)];
            cluster.proxy = Some(Component::start(&cluster.api, "proxy", "proxy", &as_refs(&flags))?);
        }
        Ok(cluster)
    }

    /// kubectl's stdout; an error with its stderr if it failed.
    pub fn kubectl_ok(&self, args: &[&str]) -> Result<String> {
        let out = self.api.kubectl(args);
        if !out.status.success() {
            bail!("kubectl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Every component's log, for a failing test's message.
    pub fn logs(&self) -> String {
        let components =
            self.controller_managers.iter().chain(&self.schedulers).chain(&self.kubelets).chain(&self.proxy);
        components.map(|c| format!("--- {}\n{}", c.name, tail(&c.log_text(), 40))).collect::<Vec<_>>().join("\n")
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// crictl (cri-tools v1.37.0, built by `.ci/setup.sh --with-etcd`), to inspect the simulated runtime.
pub fn crictl_binary() -> PathBuf {
    if let Ok(path) = std::env::var("CAIRN_CRICTL") {
        return PathBuf::from(path);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/cairn/cri-tools-v1.37.0/crictl")
}

impl KubeCluster {
    /// crictl against one node's runtime socket; stdout, or an error with stderr.
    pub fn crictl(&self, node: &str, args: &[&str]) -> Result<String> {
        let socket = self.api.dir().join("kubelet").join(node).join("cri.sock");
        let out = Command::new("timeout")
            .arg("30")
            .arg(crictl_binary())
            .arg(format!("--runtime-endpoint=unix://{}", socket.display()))
            .arg(format!("--image-endpoint=unix://{}", socket.display()))
            .args(args)
            .output()?;
        if !out.status.success() {
            bail!("crictl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}
