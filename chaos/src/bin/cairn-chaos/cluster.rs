//! Real member processes on loopback, each in its own slot: a name, URLs, a
//! data dir and a log. A slot outlives its process: kills, pauses and
//! restarts act on the slot, and a replaced member reuses the slot's URLs
//! with a fresh name and data dir.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, ConnectOptions, MemberAddOptions};

use cairn_chaos::proxy::{Link, LinkMode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    Cairn,
    Etcd,
}

pub struct Settings {
    pub system: System,
    pub binary: PathBuf,
    pub dir: PathBuf,
    pub ip: String,
    pub first_port: u16,
    pub members: usize,
    pub election_timeout_ms: u64,
    pub heartbeat_ms: u64,
    pub snapshot_count: u64,
    /// `CAIRN_FAILPOINT` for every member: a deliberately broken cluster.
    pub failpoint: Option<String>,
}

pub struct Slot {
    pub index: usize,
    pub name: String,
    pub generation: u32,
    pub client_url: String,
    pub peer_url: String,
    pub log: PathBuf,
    child: Option<Child>,
    pub paused: bool,
    /// The flags it was first started with; a restart repeats them.
    started_as: (String, String),
}

impl Slot {
    fn data_dir(&self, dir: &std::path::Path) -> PathBuf {
        dir.join(format!("{}.data", self.name))
    }

    pub fn is_up(&mut self) -> bool {
        matches!(self.child.as_mut().map(|child| child.try_wait()), Some(Ok(None)))
    }
}

pub struct Cluster {
    pub settings: Settings,
    pub slots: Vec<Slot>,
    /// Proxies by (from, to) slot; empty against etcd, which cannot be told
    /// to dial a peer anywhere but its advertised URL.
    links: HashMap<(usize, usize), Link>,
    proxy_urls: HashMap<(usize, usize), String>,
}

/// Membership changes wait for an apply on the leader: give them longer.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(10);

/// A member as the member list shows it.
struct Listed {
    id: u64,
    name: String,
    peer_url: String,
    is_learner: bool,
}

pub async fn connect(endpoint: &str, timeout: Duration) -> Result<Client> {
    let options = ConnectOptions::new().with_connect_timeout(timeout).with_timeout(timeout);
    Ok(Client::connect([endpoint], Some(options)).await?)
}

impl Cluster {
    pub async fn start(settings: Settings) -> Result<Cluster> {
        let mut port = settings.first_port;
        let mut next_url = || {
            port += 1;
            format!("http://{}:{port}", settings.ip)
        };
        let mut slots = Vec::new();
        for index in 0..settings.members {
            let name = format!("m{index}");
            slots.push(Slot {
                index,
                log: settings.dir.join(format!("{name}.log")),
                name,
                generation: 0,
                client_url: next_url(),
                peer_url: next_url(),
                child: None,
                paused: false,
                started_as: Default::default(),
            });
        }
        let mut links = HashMap::new();
        let mut proxy_urls = HashMap::new();
        if settings.system == System::Cairn {
            for from in 0..slots.len() {
                for (to, target) in slots.iter().enumerate() {
                    if from != to {
                        let url = next_url();
                        let link = Link::start(&url, &target.peer_url, (from * 31 + to) as u64).await?;
                        links.insert((from, to), link);
                        proxy_urls.insert((from, to), url);
                    }
                }
            }
        }
        let mut cluster = Cluster { settings, slots, links, proxy_urls };
        let initial: Vec<String> =
            cluster.slots.iter().map(|slot| format!("{}={}", slot.name, slot.peer_url)).collect();
        for index in 0..cluster.slots.len() {
            cluster.spawn(index, &initial.join(","), "new")?;
        }
        cluster.wait_healthy(Duration::from_secs(30)).await?;
        Ok(cluster)
    }

    pub fn endpoints(&self) -> Vec<String> {
        self.slots.iter().map(|slot| slot.client_url.clone()).collect()
    }

    fn spawn(&mut self, index: usize, initial_cluster: &str, state: &str) -> Result<()> {
        let settings = &self.settings;
        let dial: Vec<String> = (0..self.slots.len())
            .filter_map(|to| Some(format!("{}={}", self.slots[to].peer_url, self.proxy_urls.get(&(index, to))?)))
            .collect();
        let slot = &self.slots[index];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&slot.log)?;
        let mut command = Command::new(&settings.binary);
        command
            .args(["--name", &slot.name])
            .args(["--data-dir", &slot.data_dir(&settings.dir).to_string_lossy()])
            .args(["--listen-client-urls", &slot.client_url, "--advertise-client-urls", &slot.client_url])
            .args(["--listen-peer-urls", &slot.peer_url, "--initial-advertise-peer-urls", &slot.peer_url])
            .args(["--initial-cluster", initial_cluster, "--initial-cluster-state", state])
            .args(["--heartbeat-interval", &settings.heartbeat_ms.to_string()])
            .args(["--election-timeout", &settings.election_timeout_ms.to_string()])
            .args(["--snapshot-count", &settings.snapshot_count.to_string()])
            .env("CAIRN_PEER_DIAL_OVERRIDE", dial.join(","))
            .env_remove("ETCD_NAME")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(failpoint) = &settings.failpoint {
            command.env("CAIRN_FAILPOINT", failpoint);
        }
        let child = command.spawn().with_context(|| format!("spawning {}", settings.binary.display()))?;
        let slot = &mut self.slots[index];
        slot.child = Some(child);
        slot.paused = false;
        slot.started_as = (initial_cluster.to_string(), state.to_string());
        Ok(())
    }

    fn signal(&self, index: usize, signal: &str) {
        if let Some(child) = &self.slots[index].child {
            let _ = Command::new("kill").args([signal, &child.id().to_string()]).status();
        }
    }

    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.slots[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.slots[index].paused = false;
    }

    pub fn pause(&mut self, index: usize) {
        self.signal(index, "-STOP");
        self.slots[index].paused = true;
    }

    pub fn resume(&mut self, index: usize) {
        self.signal(index, "-CONT");
        self.slots[index].paused = false;
    }

    /// Restarts a killed member on its data dir with the flags it first had.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        if self.slots[index].is_up() {
            return Ok(());
        }
        let (initial, state) = self.slots[index].started_as.clone();
        self.spawn(index, &initial, &state)
    }

    /// Every link between the two groups stalls, or only from `from` to `to`.
    pub fn set_link(&self, from: usize, to: usize, mode: LinkMode) {
        if let Some(link) = self.links.get(&(from, to)) {
            link.set(mode);
        }
    }

    pub fn set_all_links(&self, mode: LinkMode) {
        for link in self.links.values() {
            link.set(mode);
        }
    }

    /// Undoes every fault: links pass, paused members continue, killed ones restart.
    pub fn heal(&mut self) -> Result<()> {
        self.set_all_links(LinkMode::Pass);
        for index in 0..self.slots.len() {
            if self.slots[index].paused {
                self.resume(index);
            }
            self.restart(index)?;
        }
        Ok(())
    }

    async fn client_of(&self, index: usize) -> Result<Client> {
        connect(&self.slots[index].client_url, Duration::from_secs(1)).await
    }

    /// The slot of the leader, as a majority of the members that answer see it.
    pub async fn leader(&mut self) -> Option<usize> {
        let mut votes: HashMap<u64, usize> = HashMap::new();
        let mut ids: HashMap<u64, usize> = HashMap::new();
        for index in 0..self.slots.len() {
            if self.slots[index].paused || !self.slots[index].is_up() {
                continue;
            }
            let Ok(mut client) = self.client_of(index).await else { continue };
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

    /// Waits until every slot answers and they agree on a leader.
    pub async fn wait_healthy(&mut self, limit: Duration) -> Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let mut answered = 0;
            let mut leaders = Vec::new();
            for index in 0..self.slots.len() {
                let Ok(mut client) = self.client_of(index).await else { continue };
                if let Ok(Ok(status)) = tokio::time::timeout(Duration::from_secs(1), client.status()).await {
                    answered += 1;
                    leaders.push(status.leader());
                }
            }
            leaders.dedup();
            if answered == self.slots.len() && leaders.len() == 1 && leaders[0] != 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                bail!("the cluster was not healthy within {limit:?}: {answered} of {} answered", self.slots.len());
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A client on any member that answers, other than `not`.
    pub async fn any_client(&self, not: Option<usize>, timeout: Duration) -> Result<Client> {
        for index in (0..self.slots.len()).filter(|index| Some(*index) != not) {
            if self.slots[index].paused {
                continue;
            }
            if let Ok(mut client) = connect(&self.slots[index].client_url, timeout).await {
                if tokio::time::timeout(Duration::from_secs(1), client.status()).await.is_ok_and(|s| s.is_ok()) {
                    return Ok(client);
                }
            }
        }
        Err(anyhow!("no member answered"))
    }

    /// Removes the member in `index`, wipes it, and adds it back under a new
    /// name, as a learner that is then promoted or as a voter. A call that
    /// fails is retried, or found done in the member list: removing the leader,
    /// for one, can fail the call after the change is made.
    pub async fn replace(&mut self, index: usize, as_learner: bool) -> Result<String> {
        let old_name = self.slots[index].name.clone();
        let peer_url = self.slots[index].peer_url.clone();
        let find = |members: &[Listed]| members.iter().find(|member| member.peer_url == peer_url).map(|m| m.id);
        let id = find(&self.members(index).await?).ok_or_else(|| anyhow!("{old_name} is not in the member list"))?;
        self.until(|| async {
            let mut client = self.any_client(Some(index), ADMIN_TIMEOUT).await?;
            let removed = client.member_remove(id).await;
            match find(&self.members(index).await?) {
                None => Ok(true),
                Some(_) => removed.map(|_| false).context("member remove"),
            }
        })
        .await?;
        self.kill(index);
        let _ = std::fs::remove_dir_all(self.slots[index].data_dir(&self.settings.dir));
        let slot = &mut self.slots[index];
        slot.generation += 1;
        slot.name = format!("m{}g{}", slot.index, slot.generation);
        self.until(|| async {
            let mut client = self.any_client(Some(index), ADMIN_TIMEOUT).await?;
            let options = as_learner.then(|| MemberAddOptions::new().with_is_learner());
            let added = client.member_add([peer_url.as_str()], options).await;
            match find(&self.members(index).await?) {
                Some(_) => Ok(true),
                None => added.map(|_| false).context("member add"),
            }
        })
        .await?;
        let members = self.members(index).await?;
        let new_id = find(&members).ok_or_else(|| anyhow!("the added member left the list"))?;
        let mut initial: Vec<String> = members
            .iter()
            .filter(|member| member.id != new_id)
            .map(|member| format!("{}={}", member.name, member.peer_url))
            .collect();
        initial.push(format!("{}={}", self.slots[index].name, peer_url));
        self.spawn(index, &initial.join(","), "existing")?;
        if as_learner {
            // etcd refuses to promote a learner that has not caught up; retry for a while.
            self.until(|| async {
                let mut client = self.any_client(Some(index), ADMIN_TIMEOUT).await?;
                let promoted = client.member_promote(new_id).await;
                let members = self.members(index).await?;
                match members.iter().find(|member| member.id == new_id) {
                    Some(member) if !member.is_learner => Ok(true),
                    _ => promoted.map(|_| false).context("member promote"),
                }
            })
            .await?;
        }
        Ok(format!(
            "{old_name} replaced by {}{}",
            self.slots[index].name,
            if as_learner { " (learner, promoted)" } else { "" }
        ))
    }

    /// Retries `attempt` until it answers true, for at most 30 s.
    async fn until<F, Fut>(&self, attempt: F) -> Result<()>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<bool>>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let error = match attempt().await {
                Ok(true) => return Ok(()),
                Ok(false) => None,
                Err(err) => Some(err),
            };
            if tokio::time::Instant::now() > deadline {
                return Err(error.unwrap_or_else(|| anyhow!("not done within 30 s")));
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    /// The member list, asked of the members other than `not`; retried for a
    /// while, since a removed leader leaves none at first.
    async fn members(&self, not: usize) -> Result<Vec<Listed>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
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
            if tokio::time::Instant::now() > deadline {
                bail!("no member answered the member list");
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    /// How many lines of a slot's log contain `needle`.
    pub fn log_mentions(&self, index: usize, needle: &str) -> usize {
        std::fs::read_to_string(&self.slots[index].log).unwrap_or_default().matches(needle).count()
    }

    /// Log lines of every member that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut lines = Vec::new();
        for slot in &self.slots {
            let text = std::fs::read_to_string(&slot.log).unwrap_or_default();
            for line in text.lines().filter(|line| line.contains("panicked at") || line.contains("panic:")) {
                lines.push(format!("{}: {line}", slot.name));
            }
        }
        lines
    }

    pub fn stop(&mut self) {
        for index in 0..self.slots.len() {
            if self.slots[index].paused {
                self.resume(index);
            }
            self.kill(index);
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}
