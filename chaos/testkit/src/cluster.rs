//! Members as real processes on loopback. A member is a slot: a name, URLs,
//! a data dir and a log. Kills, pauses and restarts act on the slot, and a
//! replaced member reuses the slot's URLs with a fresh name and data dir.
//! Every wait is bounded, and every process is killed when its handle drops.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, ConnectOptions, MemberAddOptions};

use crate::binaries::{self, require};
use crate::net;
use crate::pki::ClusterTls;
use crate::proxy::{Link, LinkMode};

/// Lets each peer link go through its own proxy: `advertised-url=url-to-dial`, comma-separated.
const DIAL_OVERRIDE_ENV: &str = "CAIRN_PEER_DIAL_OVERRIDE";
/// Membership changes wait for an apply on the leader: give them longer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Flavor {
    Cairn,
    Etcd,
}

/// How a cluster is started; [`Options::start`] starts it.
#[derive(Debug, Clone)]
pub struct Options {
    pub flavor: Flavor,
    pub size: usize,
    /// The member binary; default: this workspace's cairn, or etcd 3.5.1.
    pub binary: Option<PathBuf>,
    /// Where data dirs and logs go; default: a temporary folder removed with the cluster.
    pub dir: Option<PathBuf>,
    /// The loopback address; default: this process's.
    pub ip: Option<String>,
    /// URLs take ports from here on; default: this process's next free ones.
    pub first_port: Option<u16>,
    /// Flags every member gets after its URLs and cluster flags.
    pub args: Vec<String>,
    /// Environment every member gets.
    pub env: Vec<(String, String)>,
    /// Cairn only: every directed peer link goes through its own proxy.
    pub proxies: bool,
    /// TLS with client certificates on every link, `https://` URLs.
    pub tls: Option<ClusterTls>,
}

impl Options {
    pub fn new(flavor: Flavor, size: usize) -> Self {
        Self {
            flavor,
            size,
            binary: None,
            dir: None,
            ip: None,
            first_port: None,
            args: Vec::new(),
            env: Vec::new(),
            proxies: false,
            tls: None,
        }
    }

    pub fn tls(mut self, tls: ClusterTls) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn args(mut self, args: &[&str]) -> Self {
        self.args.extend(args.iter().map(|arg| arg.to_string()));
        self
    }

    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    pub fn proxies(mut self) -> Self {
        self.proxies = true;
        self
    }

    /// Starts the members and waits until each serves a linearizable read.
    pub async fn start(self) -> Result<Cluster> {
        let mut cluster = Cluster::prepare(self)?;
        let initial =
            cluster.members.iter().map(|m| format!("{}={}", m.spec.name, m.spec.peer_url)).collect::<Vec<_>>();
        for member in &mut cluster.members {
            member.spec.initial_cluster = initial.join(",");
        }
        cluster.start_proxies().await?;
        for index in 0..cluster.members.len() {
            cluster.restart(index)?;
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }
}

/// What one member is started with.
#[derive(Debug, Clone)]
pub struct MemberSpec {
    pub name: String,
    /// `--initial-cluster` and `--initial-cluster-state` it starts with.
    pub initial_cluster: String,
    pub state: &'static str,
    pub client_url: String,
    pub peer_url: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// Environment of this member alone (failpoints, one-off flags).
    pub env: Vec<(String, String)>,
}

pub struct Member {
    pub spec: MemberSpec,
    child: Option<Child>,
    paused: bool,
    /// How often the slot has been replaced.
    pub generation: u32,
}

impl Member {
    pub fn endpoint(&self) -> &str {
        &self.spec.client_url
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.as_mut().map(|child| child.try_wait()), Some(Ok(None)))
    }

    /// How the member exited by itself, waiting at most `within`; None while it runs.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let child = self.child.as_mut()?;
        let deadline = Instant::now() + within;
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                _ => return None,
            }
        }
    }

    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.paused = false;
    }

    /// SIGSTOP.
    pub fn pause(&mut self) {
        self.signal("-STOP");
        self.paused = true;
    }

    /// SIGCONT.
    pub fn resume(&mut self) {
        self.signal("-CONT");
        self.paused = false;
    }

    fn signal(&self, signal: &str) {
        crate::kube::signal(self.child.as_ref(), signal);
    }

    /// SIGTERM, then a bounded wait for a clean exit; whether it exited cleanly.
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

    /// How many times the log mentions `needle`.
    pub fn log_mentions(&self, needle: &str) -> usize {
        self.log_text().matches(needle).count()
    }

    /// The member's Prometheus metrics, by curl.
    pub fn metrics(&self) -> String {
        crate::http::curl_get(&format!("{}/metrics", self.spec.client_url))
    }

    /// An unlabelled metric's value; None if the member does not report it.
    pub fn metric(&self, name: &str) -> Option<u64> {
        let prefix = format!("{name} ");
        self.metrics().lines().find_map(|line| line.strip_prefix(&prefix).and_then(|value| value.parse().ok()))
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

pub struct Cluster {
    pub flavor: Flavor,
    pub members: Vec<Member>,
    binary: PathBuf,
    args: Vec<String>,
    env: Vec<(String, String)>,
    dir: PathBuf,
    /// Proxies by (from, to) member, and the URL each listens on.
    links: HashMap<(usize, usize), Link>,
    proxy_urls: HashMap<(usize, usize), String>,
    proxies: bool,
    urls: UrlSource,
    tls: Option<ClusterTls>,
    _temp: Option<tempfile::TempDir>,
}

/// Where new URLs come from: this process's free ports, or a fixed range.
#[derive(Debug, Clone)]
struct UrlSource {
    ip: String,
    next_port: Option<u16>,
    scheme: &'static str,
}

impl UrlSource {
    fn next(&mut self) -> String {
        match &mut self.next_port {
            Some(port) => {
                *port += 1;
                format!("{}://{}:{port}", self.scheme, self.ip)
            }
            None => format!("{}://{}:{}", self.scheme, self.ip, net::next_port()),
        }
    }
}

/// A member as the member list shows it.
struct Listed {
    id: u64,
    name: String,
    peer_url: String,
    is_learner: bool,
}

/// A client of one endpoint, with bounded connect and request times.
pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Client> {
    let options = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
    Ok(Client::connect([endpoint], Some(options)).await?)
}

/// A client for tests: connects or panics.
pub async fn client(endpoint: &str) -> Client {
    let options =
        ConnectOptions::new().with_connect_timeout(Duration::from_secs(2)).with_timeout(Duration::from_secs(15));
    match Client::connect([endpoint], Some(options)).await {
        Ok(client) => client,
        Err(err) => panic!("connecting to {endpoint}: {err}"),
    }
}

/// Members for a new cluster of `size` in a fresh folder: names, URLs on this
/// process's loopback address, data dirs and logs. Start them with [`Cluster::launch`].
pub fn plan(size: usize) -> Result<(tempfile::TempDir, Vec<MemberSpec>)> {
    let dir = tempfile::tempdir()?;
    let mut urls = UrlSource { ip: net::loopback_ip(), next_port: None, scheme: "http" };
    let specs = plan_in(dir.path(), size, &mut urls);
    Ok((dir, specs))
}

/// [`plan`] with `https://` URLs, for a cluster started with [`Options::tls`].
pub fn plan_https(size: usize) -> Result<(tempfile::TempDir, Vec<MemberSpec>)> {
    let dir = tempfile::tempdir()?;
    let mut urls = UrlSource { ip: net::loopback_ip(), next_port: None, scheme: "https" };
    let specs = plan_in(dir.path(), size, &mut urls);
    Ok((dir, specs))
}

fn plan_in(dir: &Path, size: usize, urls: &mut UrlSource) -> Vec<MemberSpec> {
    let mut specs: Vec<MemberSpec> = (0..size)
        .map(|i| MemberSpec {
            name: format!("m{i}"),
            initial_cluster: String::new(),
            state: "new",
            client_url: urls.next(),
            peer_url: urls.next(),
            data_dir: dir.join(format!("m{i}.data")),
            log: dir.join(format!("m{i}.log")),
            env: Vec::new(),
        })
        .collect();
    let initial = specs.iter().map(|spec| format!("{}={}", spec.name, spec.peer_url)).collect::<Vec<_>>().join(",");
    for spec in &mut specs {
        spec.initial_cluster = initial.clone();
    }
    specs
}

impl Cluster {
    /// `size` members of `flavor` with default options.
    pub async fn start(flavor: Flavor, size: usize) -> Result<Cluster> {
        Options::new(flavor, size).start().await
    }

    /// `size` members of `flavor`, each also given `args`.
    pub async fn start_with(flavor: Flavor, size: usize, args: &[&str]) -> Result<Cluster> {
        Options::new(flavor, size).args(args).start().await
    }

    /// Starts members as planned by [`plan`] (for example on data dirs restored from a snapshot).
    pub async fn launch(
        flavor: Flavor,
        dir: tempfile::TempDir,
        specs: Vec<MemberSpec>,
        args: &[&str],
    ) -> Result<Cluster> {
        Cluster::launch_with(Options::new(flavor, 0).args(args), dir, specs).await
    }

    /// [`Cluster::launch`] with any options (TLS, for one).
    pub async fn launch_with(options: Options, dir: tempfile::TempDir, specs: Vec<MemberSpec>) -> Result<Cluster> {
        let mut cluster = Cluster::prepare(options)?;
        cluster.dir = dir.path().to_path_buf();
        cluster._temp = Some(dir);
        for spec in specs {
            cluster.members.push(Member { spec, child: None, paused: false, generation: 0 });
        }
        for index in 0..cluster.members.len() {
            cluster.restart(index)?;
        }
        cluster.wait_ready(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    fn prepare(options: Options) -> Result<Cluster> {
        let binary = match (&options.binary, options.flavor) {
            (Some(binary), _) => binary.clone(),
            (None, Flavor::Cairn) => binaries::cairn(),
            (None, Flavor::Etcd) => binaries::etcd_tool("etcd"),
        };
        let binary = require(binary)?;
        if options.proxies && options.flavor == Flavor::Etcd {
            bail!("etcd cannot be told to dial its peers through proxies");
        }
        let (dir, temp) = match &options.dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
                (dir.clone(), None)
            }
            None => {
                let temp = tempfile::tempdir()?;
                (temp.path().to_path_buf(), Some(temp))
            }
        };
        let mut urls = UrlSource {
            ip: options.ip.clone().unwrap_or_else(net::loopback_ip),
            next_port: options.first_port,
            scheme: if options.tls.is_some() { "https" } else { "http" },
        };
        let members = plan_in(&dir, options.size, &mut urls)
            .into_iter()
            .map(|spec| Member { spec, child: None, paused: false, generation: 0 })
            .collect();
        Ok(Cluster {
            flavor: options.flavor,
            members,
            binary,
            args: options.args,
            env: options.env,
            dir,
            links: HashMap::new(),
            proxy_urls: HashMap::new(),
            proxies: options.proxies,
            urls,
            tls: options.tls,
            _temp: temp,
        })
    }

    async fn start_proxies(&mut self) -> Result<()> {
        if !self.proxies {
            return Ok(());
        }
        for from in 0..self.members.len() {
            for to in (0..self.members.len()).filter(|to| *to != from) {
                let url = self.urls.next();
                let seed = (from * 31 + to) as u64;
                let link = Link::start(&url, &self.members[to].spec.peer_url, seed).await?;
                self.links.insert((from, to), link);
                self.proxy_urls.insert((from, to), url);
            }
        }
        Ok(())
    }

    /// The folder of the data dirs and logs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.members.iter().map(|member| member.endpoint().to_string()).collect()
    }

    /// The certificates of a TLS cluster.
    pub fn tls(&self) -> Option<&ClusterTls> {
        self.tls.as_ref()
    }

    /// A client of one endpoint, with the cluster's client certificate if it has TLS.
    pub async fn connect(&self, endpoint: &str, timeout: Duration) -> Result<Client> {
        let mut options = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
        if let Some(tls) = &self.tls {
            options = options.with_tls(tls.client_options()?);
        }
        Ok(Client::connect([endpoint], Some(options)).await?)
    }

    fn spawn(&self, index: usize) -> Result<Child> {
        let spec = &self.members[index].spec;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&spec.log)?;
        let mut command = Command::new(&self.binary);
        command
            .args(["--name", &spec.name])
            .args(["--data-dir", &spec.data_dir.to_string_lossy()])
            .args(["--listen-client-urls", &spec.client_url, "--advertise-client-urls", &spec.client_url])
            .args(["--listen-peer-urls", &spec.peer_url, "--initial-advertise-peer-urls", &spec.peer_url])
            .args(["--initial-cluster", &spec.initial_cluster, "--initial-cluster-state", spec.state])
            .args(&self.args)
            .env_remove("ETCD_NAME")
            .envs(self.tls.iter().flat_map(ClusterTls::member_env))
            .envs(self.env.iter().chain(&spec.env).map(|(key, value)| (key.as_str(), value.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if self.proxies {
            let dial: Vec<String> = (0..self.members.len())
                .filter_map(|to| {
                    let proxy = self.proxy_urls.get(&(index, to))?;
                    Some(format!("{}={proxy}", self.members[to].spec.peer_url))
                })
                .collect();
            command.env(DIAL_OVERRIDE_ENV, dial.join(","));
        }
        command.spawn().with_context(|| format!("spawning {}", self.binary.display()))
    }

    /// Starts a stopped member again with the flags and data dir it had; a running one is left alone.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        if self.members[index].is_running() {
            return Ok(());
        }
        let child = self.spawn(index)?;
        let member = &mut self.members[index];
        member.child = Some(child);
        member.paused = false;
        Ok(())
    }

    /// Waits until every running member serves a linearizable read; writes nothing.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        for index in 0..self.members.len() {
            if self.members[index].child.is_none() {
                continue;
            }
            loop {
                if !self.members[index].is_running() {
                    bail!("member {index} exited:\n{}", self.members[index].log_text());
                }
                let probe = async {
                    let mut client = self.connect(self.members[index].endpoint(), Duration::from_secs(2)).await?;
                    client.get("ready-probe", None).await.map_err(anyhow::Error::from)
                };
                let outcome = probe.await;
                // With auth on, an anonymous read is refused after its ReadIndex round: ready all the same.
                let anonymous = |err: &anyhow::Error| err.to_string().contains("etcdserver: user name is empty");
                if outcome.as_ref().is_ok_and(|_| true) || outcome.as_ref().is_err_and(anonymous) {
                    break;
                }
                if Instant::now() > deadline {
                    bail!("member {index} not ready: {outcome:?}\n{}", self.members[index].log_text());
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// The member that leads by its own status, waiting up to 15 s for one.
    pub async fn leader_index(&self) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            for (index, member) in self.members.iter().enumerate() {
                // A paused member would hold the probe up; a killed one refuses it at once.
                if member.paused || member.child.is_none() {
                    continue;
                }
                let Ok(mut client) = self.connect(member.endpoint(), Duration::from_secs(1)).await else { continue };
                let Ok(status) = client.status().await else { continue };
                if status.header().is_some_and(|header| header.member_id() == status.leader()) {
                    return Ok(index);
                }
            }
            if Instant::now() > deadline {
                bail!("no leader found");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The leader as a majority of the members that answer see it, if any.
    pub async fn leader(&self) -> Option<usize> {
        let mut votes: HashMap<u64, usize> = HashMap::new();
        let mut ids: HashMap<u64, usize> = HashMap::new();
        for (index, member) in self.members.iter().enumerate() {
            if member.paused || member.child.is_none() {
                continue;
            }
            let Ok(mut client) = self.connect(member.endpoint(), Duration::from_secs(1)).await else { continue };
            let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), client.status()).await else {
                continue;
            };
            if let Some(header) = status.header() {
                ids.insert(header.member_id(), index);
            }
            if status.leader() != 0 {
                *votes.entry(status.leader()).or_default() += 1;
            }
        }
        let (leader, _) = votes.into_iter().max_by_key(|(_, count)| *count)?;
        ids.get(&leader).copied()
    }

    /// Waits until every member answers and all agree on one leader.
    pub async fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            let mut answered = 0;
            let mut leaders = Vec::new();
            for member in &self.members {
                let Ok(mut client) = self.connect(member.endpoint(), Duration::from_secs(1)).await else { continue };
                if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), client.status()).await {
                    answered += 1;
                    leaders.push(status.leader());
                }
            }
            leaders.dedup();
            if answered == self.members.len() && leaders.len() == 1 && leaders[0] != 0 {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the cluster was not healthy within {limit:?}: {answered} of {} answered", self.members.len());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client on any member that answers, other than `not`.
    pub async fn any_client(&self, not: Option<usize>, timeout: Duration) -> Result<Client> {
        for (index, member) in self.members.iter().enumerate() {
            if Some(index) == not || member.paused {
                continue;
            }
            if let Ok(mut client) = self.connect(member.endpoint(), timeout).await {
                if tokio::time::timeout(Duration::from_secs(1), client.status()).await.is_ok_and(|s| s.is_ok()) {
                    return Ok(client);
                }
            }
        }
        Err(anyhow!("no member answered"))
    }

    /// Fresh URLs for a member to be added with `member add`.
    pub fn new_member_urls(&mut self) -> (String, String) {
        (self.urls.next(), self.urls.next())
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
        let spec = MemberSpec {
            name: name.to_string(),
            initial_cluster: initial_cluster.to_string(),
            state: "existing",
            client_url: urls.0,
            peer_url: urls.1,
            data_dir: self.dir.join(format!("{name}.data")),
            log: self.dir.join(format!("{name}.log")),
            env,
        };
        self.members.push(Member { spec, child: None, paused: false, generation: 0 });
        let index = self.members.len() - 1;
        self.restart(index)?;
        Ok(index)
    }

    /// Sets the link from `from` to `to` (a cluster started with proxies).
    pub fn set_link(&self, from: usize, to: usize, mode: LinkMode) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.set(mode);
        }
    }

    pub fn set_all_links(&self, mode: LinkMode) {
        self.links.values().for_each(|link| link.set(mode));
    }

    /// Cuts `member` off from the others, both ways; nothing queued is lost.
    pub fn isolate(&self, member: usize) {
        for ((from, to), link) in &self.links {
            if *from == member || *to == member {
                link.set(LinkMode::Stall);
            }
        }
    }

    /// Every link passes again.
    pub fn heal_links(&self) {
        self.set_all_links(LinkMode::Pass);
    }

    /// Undoes every fault: links pass, paused members continue, killed ones restart.
    pub fn heal(&mut self) -> Result<()> {
        self.heal_links();
        for index in 0..self.members.len() {
            if self.members[index].paused {
                self.members[index].resume();
            }
            self.restart(index)?;
        }
        Ok(())
    }

    /// Removes the member in `index`, wipes it, and adds it back under a new
    /// name, as a learner that is then promoted or as a voter. A call that
    /// fails is retried, or found done in the member list: removing the leader,
    /// for one, can fail the call after the change is made.
    pub async fn replace(&mut self, index: usize, as_learner: bool) -> Result<String> {
        let old_name = self.members[index].spec.name.clone();
        let peer_url = self.members[index].spec.peer_url.clone();
        let find = |members: &[Listed]| members.iter().find(|member| member.peer_url == peer_url).map(|m| m.id);
        let id =
            find(&self.list_members(index).await?).ok_or_else(|| anyhow!("{old_name} is not in the member list"))?;
        self.until(|| async {
            let mut client = self.any_client(Some(index), ADMIN_TIMEOUT).await?;
            let removed = client.member_remove(id).await;
            match find(&self.list_members(index).await?) {
                None => Ok(true),
                Some(_) => removed.map(|_| false).context("member remove"),
            }
        })
        .await?;
        let member = &mut self.members[index];
        member.kill();
        let _ = std::fs::remove_dir_all(&member.spec.data_dir);
        member.generation += 1;
        member.spec.name = format!("m{index}g{}", member.generation);
        member.spec.data_dir = self.dir.join(format!("{}.data", member.spec.name));
        self.until(|| async {
            let mut client = self.any_client(Some(index), ADMIN_TIMEOUT).await?;
            let options = as_learner.then(|| MemberAddOptions::new().with_is_learner());
            let added = client.member_add([peer_url.as_str()], options).await;
            match find(&self.list_members(index).await?) {
                Some(_) => Ok(true),
                None => added.map(|_| false).context("member add"),
            }
        })
        .await?;
        let members = self.list_members(index).await?;
        let new_id = find(&members).ok_or_else(|| anyhow!("the added member left the list"))?;
        let mut initial: Vec<String> = members
            .iter()
            .filter(|member| member.id != new_id)
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect();
        initial.push(format!("{}={}", self.members[index].spec.name, peer_url));
        let spec = &mut self.members[index].spec;
        spec.initial_cluster = initial.join(",");
        spec.state = "existing";
        self.restart(index)?;
        if as_learner {
            // etcd refuses to promote a learner that has not caught up; retry for a while.
            self.until(|| async {
                let mut client = self.any_client(Some(index), ADMIN_TIMEOUT).await?;
                let promoted = client.member_promote(new_id).await;
                let members = self.list_members(index).await?;
                match members.iter().find(|member| member.id == new_id) {
                    Some(member) if !member.is_learner => Ok(true),
                    _ => promoted.map(|_| false).context("member promote"),
                }
            })
            .await?;
        }
        Ok(format!(
            "{old_name} replaced by {}{}",
            self.members[index].spec.name,
            if as_learner { " (learner, promoted)" } else { "" }
        ))
    }

    /// Retries `attempt` until it answers true, for at most 30 s.
    async fn until<F, Fut>(&self, attempt: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let error = match attempt().await {
                Ok(true) => return Ok(()),
                Ok(false) => None,
                Err(err) => Some(err),
            };
            if Instant::now() > deadline {
                return Err(error.unwrap_or_else(|| anyhow!("not done within 30 s")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The member list, asked of the members other than `not`; retried for a
    /// while, since a removed leader leaves none at first.
    async fn list_members(&self, not: usize) -> Result<Vec<Listed>> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(mut client) = self.any_client(Some(not), ADMIN_TIMEOUT).await {
                if let Ok(list) = client.member_list().await {
                    let listed = list.members().iter().map(|member| Listed {
                        id: member.id(),
                        name: member.name().to_string(),
                        peer_url: member.peer_urls().first().cloned().unwrap_or_default(),
                        is_learner: member.is_learner(),
                    });
                    return Ok(listed.collect());
                }
            }
            if Instant::now() > deadline {
                bail!("no member answered the member list");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// Log lines of every member that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for member in &self.members {
            let text = member.log_text();
            for line in text.lines().filter(|line| line.contains("panicked at") || line.contains("panic:")) {
                lines.push(format!("{}: {line}", member.spec.name));
            }
        }
        lines
    }

    /// Kills every member.
    pub fn stop(&mut self) {
        for member in &mut self.members {
            member.resume();
            member.kill();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
