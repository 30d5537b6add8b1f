//! The whole cluster as real processes, and the faults the nemesis injects
//! into it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use cairn_chaos::history::Nanos;
use cairn_chaos::kube::{LeaderGroup, NodeCut};
use cairn_chaos::record::FaultEvent;
use cairn_chaos::schedule::{KubeFault, Step};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::Api;
use tokio::sync::Mutex;

use super::{unix_us, KubeArgs, Shared, LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD};
use crate::nemesis::Target;
use cairn_testkit::kube::{address_block, write_kubeconfig, ApiServer, Component};
use cairn_testkit::proxy::{Link, LinkMode};
use cairn_testkit::{net, Cluster, Flavor, Options};

/// The Leases the controller-managers and schedulers are elected on, and their identities.
pub fn leader_groups(replicas: usize) -> Vec<LeaderGroup> {
    let group = |lease: &str, prefix: &str| LeaderGroup {
        lease: lease.into(),
        identities: (0..replicas).map(|i| format!("{prefix}-{i}")).collect(),
    };
    vec![group("kube-controller-manager", "controller-manager"), group("kube-scheduler", "scheduler")]
}

pub struct Parts {
    pub store: Cluster,
    pub apis: Vec<ApiServer>,
    pub controller_managers: Vec<Component>,
    pub schedulers: Vec<Component>,
    pub kubelets: Vec<Component>,
    /// Each hollow node's own way to the load balancer.
    node_links: Vec<Link>,
    /// The admin kubeconfig, at the load balancer.
    pub front: PathBuf,
    balancer: tokio::task::JoinHandle<()>,
}

impl Parts {
    pub async fn start(args: &KubeArgs, out: &Path) -> Result<Parts> {
        let mut options = Options::new(Flavor::Cairn, args.store_members).proxies();
        options.dir = Some(out.join("store"));
        let store = options.start().await.context("starting the store")?;
        let ip = net::loopback_ip();
        let block = address_block();
        let service_range = format!("--service-cluster-ip-range=127.{}.0.0/16", 96 + block);
        let mut apis = Vec::new();
        for i in 0..args.apiservers {
            let dir = out.join(format!("apiserver-{i}"));
            let flags = [service_range.as_str(), "--etcd-watch-progress-requests=true"];
            apis.push(ApiServer::start_in(&dir, &store.endpoints(), &flags).await?);
        }
        let backends = apis
            .iter()
            .map(|api| api.url.trim_start_matches("https://").parse())
            .collect::<Result<Vec<std::net::SocketAddr>, _>>()?;
        let balancer_port = net::next_port();
        let listener = tokio::net::TcpListener::bind((ip.as_str(), balancer_port)).await?;
        let balancer = tokio::spawn(cairn_kube::balancer::run(listener, backends));
        let front = out.join("kubeconfig");
        write_kubeconfig(&front, &format!("https://{ip}:{balancer_port}"))?;
        let logs = out.join("logs");
        std::fs::create_dir_all(&logs)?;

        let election = [
            format!("--leader-elect-lease-duration={}ms", LEASE_DURATION.as_millis()),
            format!("--leader-elect-renew-deadline={}ms", RENEW_DEADLINE.as_millis()),
            format!("--leader-elect-retry-period={}ms", RETRY_PERIOD.as_millis()),
        ];
        let mut controller_managers = Vec::new();
        let mut schedulers = Vec::new();
        for i in 0..args.replicas {
            let mut flags = vec![
                format!("--leader-elect-identity=controller-manager-{i}"),
                format!("--node-monitor-grace-period={}ms", args.node_grace.as_millis()),
                format!("--node-monitor-period={}ms", args.node_monitor_period.as_millis()),
            ];
            flags.extend(election.iter().cloned());
            let name = format!("controller-manager-{i}");
            controller_managers.push(Component::start_with(&front, &logs, &name, "controller-manager", &refs(&flags))?);
            let mut flags = vec![format!("--leader-elect-identity=scheduler-{i}")];
            flags.extend(election.iter().cloned());
            schedulers.push(Component::start_with(
                &front,
                &logs,
                &format!("scheduler-{i}"),
                "scheduler",
                &refs(&flags),
            )?);
        }
        let mut kubelets = Vec::new();
        let mut node_links = Vec::new();
        for i in 0..args.nodes {
            let port = net::next_port();
            let link =
                Link::start(&format!("http://{ip}:{port}"), &format!("http://{ip}:{balancer_port}"), i as u64).await?;
            node_links.push(link);
            let kubeconfig = out.join(format!("kubelet-{i}.kubeconfig"));
            write_kubeconfig(&kubeconfig, &format!("https://{ip}:{port}"))?;
            let flags = [
                "--nodes=1".to_string(),
                format!("--first-node-index={i}"),
                format!("--cluster-cidr=127.{}.0.0/16", 64 + block),
                format!("--root-dir={}", out.join("kubelet").display()),
                "--image-pull-delay=200ms".into(),
                "--node-status-update-frequency=2s".into(),
                format!("--node-lease-duration-seconds={}", LEASE_DURATION.as_secs()),
            ];
            kubelets.push(Component::start_with(
                &kubeconfig,
                &logs,
                &format!("kubelet-{i}"),
                "kubelet",
                &refs(&flags),
            )?);
        }
        Ok(Parts { store, apis, controller_managers, schedulers, kubelets, node_links, front, balancer })
    }

    /// Every process's log lines that report a panic.
    pub fn panics(&self) -> Vec<String> {
        let mut panics = self.store.panics();
        let logs = self.apis.iter().map(|api| ("apiserver", api.log_text())).chain(
            self.controller_managers
                .iter()
                .chain(&self.schedulers)
                .chain(&self.kubelets)
                .map(|c| (c.name.as_str(), c.log_text())),
        );
        for (name, text) in logs {
            panics
                .extend(text.lines().filter(|line| line.contains("panicked at")).map(|line| format!("{name}: {line}")));
        }
        panics
    }

    /// Starts again each controller-manager or scheduler that exited on its
    /// own; the names of those restarted.
    pub fn supervise(&mut self) -> Vec<String> {
        let mut restarted = Vec::new();
        for component in self.controller_managers.iter_mut().chain(&mut self.schedulers) {
            if component.exited() && component.restart().is_ok() {
                restarted.push(component.name.clone());
            }
        }
        restarted
    }

    /// Stops the controllers, schedulers and kubelets, so that only the API
    /// servers' own writes go on while the watchers are checked.
    pub fn stop_components(&mut self) {
        self.controller_managers
            .iter_mut()
            .chain(&mut self.schedulers)
            .chain(&mut self.kubelets)
            .for_each(Component::kill);
    }

    pub fn stop(&mut self) {
        self.stop_components();
        self.apis.iter_mut().for_each(ApiServer::kill);
        self.balancer.abort();
        self.store.stop();
    }
}

fn refs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A client at the load balancer, without kube-rs's own retries, so that
/// every outcome the workload records is the API server's answer.
pub async fn client(kubeconfig: &Path) -> Result<kube::Client> {
    let file = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let mut config = kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default()).await?;
    config.default_retry = false;
    config.read_timeout = None;
    Ok(kube::Client::try_from(config)?)
}

pub async fn wait_nodes_ready(client: &kube::Client, nodes: usize, limit: Duration) -> Result<()> {
    let deadline = tokio::time::Instant::now() + limit;
    let api: Api<Node> = Api::all(client.clone());
    loop {
        let ready = match api.list(&ListParams::default()).await {
            Ok(list) => list.items.iter().filter(|node| node_ready(node) == "True").count(),
            Err(_) => 0,
        };
        if ready >= nodes {
            return Ok(());
        }
        if tokio::time::Instant::now() > deadline {
            bail!("{ready} of {nodes} nodes Ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

pub fn node_ready(node: &Node) -> String {
    let conditions = node.status.as_ref().and_then(|status| status.conditions.as_ref());
    conditions
        .into_iter()
        .flatten()
        .find(|condition| condition.type_ == "Ready")
        .map_or_else(String::new, |condition| condition.status.clone())
}

pub struct Nemesis {
    pub cluster: Arc<Mutex<Parts>>,
    pub recorder: Shared,
    pub client: kube::Client,
}

pub enum Undo {
    StoreRestart(usize),
    StoreResume(usize),
    StoreLinks,
    ApiRestart(usize),
    ApiResume(usize),
    Restart(Group, usize),
    Resume(Group, usize),
    Node(usize),
}

#[derive(Clone, Copy)]
pub enum Group {
    ControllerManager,
    Scheduler,
}

impl Group {
    fn lease(self) -> &'static str {
        match self {
            Group::ControllerManager => "kube-controller-manager",
            Group::Scheduler => "kube-scheduler",
        }
    }

    fn members(self, parts: &mut Parts) -> &mut Vec<Component> {
        match self {
            Group::ControllerManager => &mut parts.controller_managers,
            Group::Scheduler => &mut parts.schedulers,
        }
    }
}

impl Nemesis {
    /// The replica that holds the group's Lease now.
    async fn leader(&self, group: Group, parts: &mut Parts) -> Result<usize> {
        let lease = Api::<Lease>::namespaced(self.client.clone(), "kube-system").get(group.lease()).await?;
        let holder = lease.spec.and_then(|spec| spec.holder_identity).unwrap_or_default();
        group
            .members(parts)
            .iter()
            .position(|component| component.name == holder)
            .ok_or_else(|| anyhow!("{} is held by {holder:?}, not one of ours", group.lease()))
    }

    async fn store_leader(parts: &Parts) -> Result<usize> {
        parts.store.leader().await.ok_or_else(|| anyhow!("the store has no leader"))
    }
}

impl Target for Nemesis {
    type Fault = KubeFault;
    type Undo = Undo;

    async fn inject(&self, step: &Step<KubeFault>) -> Result<(String, Undo)> {
        let mut parts = self.cluster.lock().await;
        let parts = &mut *parts;
        let pick = step.pick as usize;
        Ok(match step.fault {
            KubeFault::StoreKillLeader | KubeFault::StorePauseLeader | KubeFault::StorePartition => {
                let leader = Self::store_leader(parts).await?;
                let name = parts.store.members[leader].spec.name.clone();
                match step.fault {
                    KubeFault::StoreKillLeader => {
                        parts.store.members[leader].kill();
                        (format!("killed store leader {name}"), Undo::StoreRestart(leader))
                    }
                    KubeFault::StorePauseLeader => {
                        parts.store.members[leader].pause();
                        (format!("paused store leader {name}"), Undo::StoreResume(leader))
                    }
                    _ => {
                        parts.store.isolate(leader);
                        (format!("store leader {name} cut off"), Undo::StoreLinks)
                    }
                }
            }
            KubeFault::StoreKillFollower | KubeFault::StorePauseFollower => {
                let leader = Self::store_leader(parts).await?;
                let size = parts.store.members.len();
                let follower = (leader + 1 + pick % (size - 1)) % size;
                let member = &mut parts.store.members[follower];
                let name = member.spec.name.clone();
                if step.fault == KubeFault::StoreKillFollower {
                    member.kill();
                    (format!("killed store follower {name}"), Undo::StoreRestart(follower))
                } else {
                    member.pause();
                    (format!("paused store follower {name}"), Undo::StoreResume(follower))
                }
            }
            KubeFault::ApiServerKill | KubeFault::ApiServerPause => {
                let slot = pick % parts.apis.len();
                if step.fault == KubeFault::ApiServerKill {
                    parts.apis[slot].kill();
                    (format!("killed apiserver-{slot}"), Undo::ApiRestart(slot))
                } else {
                    parts.apis[slot].pause();
                    (format!("paused apiserver-{slot}"), Undo::ApiResume(slot))
                }
            }
            KubeFault::ControllerManagerKillLeader
            | KubeFault::ControllerManagerPauseLeader
            | KubeFault::SchedulerKillLeader
            | KubeFault::SchedulerPauseLeader => {
                let group = match step.fault {
                    KubeFault::ControllerManagerKillLeader | KubeFault::ControllerManagerPauseLeader => {
                        Group::ControllerManager
                    }
                    _ => Group::Scheduler,
                };
                let leader = self.leader(group, parts).await?;
                let component = &mut group.members(parts)[leader];
                let name = component.name.clone();
                if matches!(step.fault, KubeFault::ControllerManagerKillLeader | KubeFault::SchedulerKillLeader) {
                    component.kill();
                    (format!("killed leader {name}"), Undo::Restart(group, leader))
                } else {
                    component.pause();
                    (format!("paused leader {name}"), Undo::Resume(group, leader))
                }
            }
            KubeFault::NodeCut => {
                let slot = pick % parts.node_links.len();
                let node = format!("hollow-node-{slot}");
                self.recorder.quiet.store(true, Ordering::Relaxed);
                parts.node_links[slot].set(LinkMode::Stall);
                self.recorder.record().node_cuts.push(NodeCut {
                    node: node.clone(),
                    cut_us: unix_us(),
                    healed_us: None,
                });
                (format!("{node} cut off from the API servers"), Undo::Node(slot))
            }
        })
    }

    async fn heal(&self, undo: Undo) -> String {
        let mut parts = self.cluster.lock().await;
        let parts = &mut *parts;
        let healed: Result<()> = match undo {
            Undo::StoreRestart(slot) => parts.store.restart(slot),
            Undo::StoreResume(slot) => {
                parts.store.members[slot].resume();
                Ok(())
            }
            Undo::StoreLinks => {
                parts.store.heal_links();
                Ok(())
            }
            Undo::ApiRestart(slot) => parts.apis[slot].restart().await,
            Undo::ApiResume(slot) => {
                parts.apis[slot].resume();
                Ok(())
            }
            Undo::Restart(group, slot) => group.members(parts)[slot].restart(),
            Undo::Resume(group, slot) => {
                group.members(parts)[slot].resume();
                Ok(())
            }
            Undo::Node(slot) => {
                parts.node_links[slot].set(LinkMode::Pass);
                self.recorder.quiet.store(false, Ordering::Relaxed);
                if let Some(cut) = self.recorder.record().node_cuts.last_mut() {
                    cut.healed_us = Some(unix_us());
                }
                Ok(())
            }
        };
        let healthy = async {
            healed?;
            parts.store.wait_healthy(Duration::from_secs(30)).await
        };
        match healthy.await {
            Ok(()) => String::new(),
            Err(err) => format!("; not healthy after healing: {err:#}"),
        }
    }

    fn now(&self) -> Nanos {
        self.recorder.now()
    }

    fn push(&self, event: FaultEvent) {
        self.recorder.record().timeline.push(event);
    }
}
