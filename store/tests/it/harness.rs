//! Real `cairn` (and `etcd`) processes on loopback, and the real etcdctl.
//!
//! Each test process gets its own loopback address derived from its pid, so
//! tests that run at once never collide on ports. Every wait is bounded and
//! every process is killed when its handle drops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use cairn_chaos::proxy::{Link, LinkMode};

/// Where the etcd 3.5.1 binaries are (etcd, etcdctl, etcdutl).
pub fn etcd_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CAIRN_ETCD_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/cairn/etcd-v3.5.1")
}

pub fn etcd_tool(name: &str) -> PathBuf {
    let path = etcd_bin_dir().join(name);
    assert!(path.exists(), "{} is missing: run scripts/test.sh, which installs etcd 3.5.1", path.display());
    path
}

/// A loopback address of this test process: 127.a.b.c from the pid.
fn loopback_ip() -> String {
    let pid = std::process::id();
    format!("127.{}.{}.{}", (pid >> 16) & 0xff, (pid >> 8) & 0xff, (pid & 0xff).max(1))
}

static NEXT_PORT: AtomicU16 = AtomicU16::new(20000);

fn next_port() -> u16 {
    NEXT_PORT.fetch_add(1, Ordering::Relaxed)
}

/// A fresh `http://ip:port` on this test process's loopback address.
pub fn free_url() -> String {
    format!("http://{}:{}", loopback_ip(), next_port())
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    Cairn,
    Etcd,
}

pub struct MemberSpec {
    pub name: String,
    /// `--initial-cluster` and `--initial-cluster-state` this member starts with.
    pub initial_cluster: String,
    pub state: &'static str,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Extra environment (failpoints).
    pub env: Vec<(String, String)>,
}

pub struct Member {
    pub spec: MemberSpec,
    child: Option<Child>,
}

impl Member {
    pub fn endpoint(&self) -> &str {
        &self.spec.client_url
    }

    /// The member's Prometheus metrics, by curl.
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args(["-s", "--max-time", "5", &format!("{}/metrics", self.spec.client_url)])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned());
        out.unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|child| child.try_wait()), Some(Ok(None)))
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGSTOP or SIGCONT.
    pub fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
    }

    /// SIGTERM, then wait (bounded) for a clean exit; returns whether it exited cleanly.
    pub fn terminate(&mut self) -> bool {
        let Some(mut child) = self.child.take() else { return false };
        let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return status.success();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
        false
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.spec.log).unwrap_or_default()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.signal("-CONT");
        self.kill();
    }
}

pub struct Cluster {
    pub flavor: Flavor,
    pub members: Vec<Member>,
    extra_args: Vec<String>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    pub fn start(flavor: Flavor, size: usize) -> Result<Self> {
        Self::start_with(flavor, size, &[])
    }

    pub fn start_with(flavor: Flavor, size: usize, extra_args: &[&str]) -> Result<Self> {
        let (dir, specs) = plan(size)?;
        Self::launch(flavor, dir, specs, extra_args)
    }

    /// Starts members as planned (for example on data dirs restored from a snapshot).
    pub fn launch(flavor: Flavor, dir: tempfile::TempDir, specs: Vec<MemberSpec>, extra_args: &[&str]) -> Result<Self> {
        let mut cluster = Cluster {
            flavor,
            members: Vec::new(),
            extra_args: extra_args.iter().map(|arg| arg.to_string()).collect(),
            _dir: dir,
        };
        for spec in specs {
            let child = cluster.spawn(&spec)?;
            cluster.members.push(Member { spec, child: Some(child) });
        }
        cluster.wait_ready(Duration::from_secs(30))?;
        Ok(cluster)
    }

    fn binary(&self) -> PathBuf {
        match self.flavor {
            Flavor::Cairn => PathBuf::from(env!("CARGO_BIN_EXE_cairn")),
            Flavor::Etcd => etcd_tool("etcd"),
        }
    }

    fn spawn(&self, spec: &MemberSpec) -> Result<Child> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log)?;
        let child = Command::new(self.binary())
            .args(["--name", &spec.name])
            .args(["--data-dir", &spec.data_dir.to_string_lossy()])
            .args(["--listen-client-urls", &spec.client_url])
            .args(["--advertise-client-urls", &spec.client_url])
            .args(["--listen-peer-urls", &spec.peer_url])
            .args(["--initial-advertise-peer-urls", &spec.peer_url])
            .args(["--initial-cluster", &spec.initial_cluster])
            .args(["--initial-cluster-state", spec.state])
            .args(&self.extra_args)
            .env_remove("ETCD_NAME")
            .envs(spec.env.iter().map(|(key, value)| (key.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", self.binary().display()))?;
        Ok(child)
    }

    /// Fresh URLs for a member to be added with `member add`.
    pub fn new_member_urls(&self) -> (String, String) {
        (free_url(), free_url())
    }

    /// Starts a member that `member add` has added, as etcd's docs describe:
    /// `--initial-cluster` as `member add` printed it, state `existing`.
    pub fn start_added(&mut self, name: &str, urls: (String, String), initial_cluster: &str) -> Result<usize> {
        self.start_added_with_env(name, urls, initial_cluster, Vec::new())
    }

    pub fn start_added_with_env(
        &mut self,
        name: &str,
        urls: (String, String),
        initial_cluster: &str,
        env: Vec<(String, String)>,
    ) -> Result<usize> {
        let dir = self._dir.path();
        let spec = MemberSpec {
            name: name.to_string(),
            initial_cluster: initial_cluster.to_string(),
            state: "existing",
            client_url: urls.0,
            peer_url: urls.1,
            data_dir: dir.join(format!("{name}.data")),
            log: dir.join(format!("{name}.log")),
            env,
        };
        let child = self.spawn(&spec)?;
        self.members.push(Member { spec, child: Some(child) });
        Ok(self.members.len() - 1)
    }

    /// Starts a stopped member again with the same flags and data dir.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        let child = self.spawn(&self.members[index].spec)?;
        self.members[index].child = Some(child);
        Ok(())
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|member| member.endpoint().to_string()).collect()
    }

    /// Waits until every running member serves a linearizable read.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for index in 0..self.members.len() {
            if !self.members[index].is_running() {
                if self.members[index].child.is_none() {
                    continue;
                }
                bail!("member {index} exited:\n{}", self.members[index].log_text());
            }
            loop {
                let probe = etcdctl(&[self.members[index].endpoint()], &["get", "ready-probe"]);
                if probe.as_ref().is_ok_and(|out| out.status.success()) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("member {index} not ready: {probe:?}\n{}", self.members[index].log_text());
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        Ok(())
    }

    /// The index of the member that currently leads, by `endpoint status`.
    pub fn leader_index(&self) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            for (index, member) in self.members.iter().enumerate() {
                let Ok(out) = etcdctl(&[member.endpoint()], &["endpoint", "status", "-w", "json"]) else { continue };
                let text = String::from_utf8_lossy(&out.stdout);
                let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
                let status = &json[0]["Status"];
                let own = status["header"]["member_id"].as_u64();
                if own.is_some() && own == status["leader"].as_u64() {
                    return Ok(index);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader found");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The peer links of a cluster started by `start_behind_proxies`, one TCP
/// proxy per direction between two members (the chaos harness's proxy).
pub struct PeerLinks {
    links: HashMap<(usize, usize), Link>,
}

impl PeerLinks {
    /// Cuts `member` off from the others, both ways; nothing queued is lost.
    pub fn isolate(&self, member: usize) {
        for ((from, to), link) in &self.links {
            if *from == member || *to == member {
                link.set(LinkMode::Stall);
            }
        }
    }

    pub fn heal(&self) {
        self.links.values().for_each(|link| link.set(LinkMode::Pass));
    }
}

impl Cluster {
    /// Starts `size` cairn members that dial each other through proxies
    /// (`CAIRN_PEER_DIAL_OVERRIDE`). Needs a multi-threaded runtime: the
    /// proxies run while this blocks until the members are ready.
    pub async fn start_behind_proxies(size: usize) -> Result<(Cluster, PeerLinks)> {
        let (dir, mut specs) = plan(size)?;
        let mut links = HashMap::new();
        let peer_urls: Vec<String> = specs.iter().map(|spec| spec.peer_url.clone()).collect();
        for (from, spec) in specs.iter_mut().enumerate() {
            let mut dial = Vec::new();
            for (to, peer_url) in peer_urls.iter().enumerate().filter(|(to, _)| *to != from) {
                let proxy_url = free_url();
                links.insert((from, to), Link::start(&proxy_url, peer_url, 0).await?);
                dial.push(format!("{peer_url}={proxy_url}"));
            }
            spec.env.push(("CAIRN_PEER_DIAL_OVERRIDE".to_string(), dial.join(",")));
        }
        let cluster = tokio::task::block_in_place(|| Cluster::launch(Flavor::Cairn, dir, specs, &[]))?;
        Ok((cluster, PeerLinks { links }))
    }
}

/// Members for a new cluster of `size` in a fresh folder: names, URLs on
/// this process's loopback address, data dirs and log files.
pub fn plan(size: usize) -> Result<(tempfile::TempDir, Vec<MemberSpec>)> {
    let dir = tempfile::tempdir()?;
    let mut specs: Vec<MemberSpec> = (0..size)
        .map(|i| MemberSpec {
            name: format!("m{i}"),
            initial_cluster: String::new(),
            state: "new",
            client_url: free_url(),
            peer_url: free_url(),
            data_dir: dir.path().join(format!("m{i}.data")),
            log: dir.path().join(format!("m{i}.log")),
            env: Vec::new(),
        })
        .collect();
    let initial_cluster =
        specs.iter().map(|spec| format!("{}={}", spec.name, spec.peer_url)).collect::<Vec<_>>().join(",");
    for spec in &mut specs {
        spec.initial_cluster = initial_cluster.clone();
    }
    Ok((dir, specs))
}

/// Runs etcdctl 3.5.1 against `endpoints`, bounded in time.
pub fn etcdctl(endpoints: &[&str], args: &[&str]) -> Result<Output> {
    etcdctl_stdin(endpoints, args, "")
}

/// Runs etcdctl with `input` on its standard input (for `txn`).
pub fn etcdctl_stdin(endpoints: &[&str], args: &[&str], input: &str) -> Result<Output> {
    use std::io::Write;
    let mut child = Command::new(etcd_tool("etcdctl"))
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--command-timeout=10s")
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// etcdctl that must succeed; returns stdout.
pub fn etcdctl_ok(endpoints: &[&str], args: &[&str]) -> String {
    let out = etcdctl(endpoints, args).expect("etcdctl runs");
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub async fn client(endpoint: &str) -> etcd_client::Client {
    let options = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(15));
    etcd_client::Client::connect([endpoint], Some(options)).await.expect("connect")
}

/// Runs `script` against a fresh single-member etcd 3.5.1 and a fresh cairn
/// started with the same `flags`, and asserts that every line is the same.
/// Returns cairn's lines for further checks.
pub async fn assert_same_as_etcd<F, Fut>(flags: &[&str], script: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let etcd = Cluster::start_with(Flavor::Etcd, 1, flags).expect("etcd starts");
    let cairn = Cluster::start_with(Flavor::Cairn, 1, flags).expect("cairn starts");
    let expected = script(etcd.members[0].endpoint().to_string()).await;
    let actual = script(cairn.members[0].endpoint().to_string()).await;
    let diffs: Vec<String> = expected
        .iter()
        .zip(&actual)
        .enumerate()
        .filter(|(_, (expected, actual))| expected != actual)
        .map(|(i, (expected, actual))| format!("#{i}\netcd : {expected}\ncairn: {actual}"))
        .collect();
    assert_eq!(expected.len(), actual.len(), "etcd: {expected:#?}\ncairn: {actual:#?}");
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
    actual
}

/// An error as the comparisons print it: the gRPC code and etcd's message.
pub fn err_of(err: etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => format!("ERR {:?} {}", status.code(), status.message()),
        other => format!("ERR {other}"),
    }
}

pub fn cairn_binary() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_cairn"))
}
