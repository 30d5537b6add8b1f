//! `cairn-kube scheduler`: watches pods without a node, filters and scores the
//! nodes (`plugins`), preempts when nothing fits (`preemption`), and binds
//! through the `binding` subresource. Only the leader of the
//! `kube-system/kube-scheduler` Lease schedules.

pub mod plugins;
pub mod preemption;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::runtime::watcher;
use kube::{Api, Client};
use serde_json::json;
use tokio::sync::mpsc;

use crate::client::events::Reporter;
use crate::client::leader::LeaderElectionFlags;
use crate::client::writes::{Op, Propagation};
use crate::client::{self, ClientError, Informer, Write};
use plugins::{pod_requests, NodeInfo, Resources, ScoringStrategy};

#[derive(Args, Clone, Debug)]
pub struct SchedulerConfig {
    #[arg(long = "kubeconfig")]
    pub kubeconfig: PathBuf,
    #[command(flatten)]
    pub leader_election: LeaderElectionFlags,
    /// Spread pods (LeastAllocated, kube's default) or pack them (MostAllocated).
    #[arg(long = "scoring-strategy", value_enum, default_value = "least-allocated")]
    pub scoring_strategy: ScoringStrategy,
    #[arg(long = "scheduler-name", default_value = "default-scheduler")]
    pub scheduler_name: String,
    /// Bindings in flight at once.
    #[arg(long = "parallelism", default_value_t = 16)]
    pub parallelism: usize,
}

/// What the scheduler remembers of a pod it could not place.
struct Attempt {
    retry_at: Instant,
    failures: u32,
    message: String,
    reported_at: Option<Instant>,
}

struct Assumed {
    node: String,
    pod: Arc<Pod>,
    since: Instant,
}

fn key(pod: &Pod) -> String {
    uid(pod).to_string()
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or_default()
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(pod.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"))
}

fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()).filter(|n| !n.is_empty())
}

fn pod_json(pod: &Pod) -> serde_json::Value {
    let mut object = serde_json::to_value(pod).unwrap_or_default();
    object["apiVersion"] = json!("v1");
    object["kind"] = json!("Pod");
    object
}

struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    reporter: Reporter,
    assumed: HashMap<String, Assumed>,
    attempts: HashMap<String, Attempt>,
    bound_tx: mpsc::UnboundedSender<(String, bool)>,
    in_flight: Arc<tokio::sync::Semaphore>,
    /// Each pod's requests by uid: parsed once, not on every pass.
    requests: HashMap<String, (Resources, Resources)>,
    /// Where the next pod's search over the nodes starts, as kube rotates it.
    next_start: usize,
}

const PASS_PAUSE: Duration = Duration::from_millis(50);

/// How many feasible nodes kube-scheduler looks for before it stops
/// filtering: all below 100 nodes, else an adaptive share (50% less one
/// point per 125 nodes, at least 5%) and never fewer than 100.
pub fn feasible_nodes_to_find(nodes: usize) -> usize {
    if nodes < 100 {
        return nodes;
    }
    let percentage = 50usize.saturating_sub(nodes / 125).max(5);
    (nodes * percentage / 100).max(100)
}

impl Scheduler {
    /// The node snapshot: bound pods from the cache plus the ones we assumed.
    fn requests_of(&mut self, pod: &Pod) -> (Resources, Resources) {
        if let Some(known) = self.requests.get(uid(pod)) {
            return *known;
        }
        *self.requests.entry(key(pod)).or_insert_with(|| (pod_requests(pod, false), pod_requests(pod, true)))
    }

    fn snapshot(&mut self, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) -> Vec<NodeInfo> {
        let mut infos: Vec<NodeInfo> = nodes.iter().map(|n| NodeInfo::new(n.clone())).collect();
        let index: HashMap<String, usize> = infos.iter().enumerate().map(|(i, n)| (n.name().to_string(), i)).collect();
        let by_uid: HashMap<&str, &Arc<Pod>> = pods.iter().map(|p| (uid(p), p)).collect();
        self.assumed.retain(|uid, assumed| match by_uid.get(uid.as_str()) {
            Some(pod) => node_name(pod).is_none() && assumed.since.elapsed() < Duration::from_secs(30),
            None => false,
        });
        self.requests.retain(|uid, _| by_uid.contains_key(uid.as_str()));
        for pod in pods.iter().filter(|p| !is_terminal(p)) {
            if let Some(&i) = node_name(pod).and_then(|n| index.get(n)) {
                let requests = self.requests_of(pod);
                infos[i].add_with(pod.clone(), requests);
            }
        }
        let assumed: Vec<(String, Arc<Pod>)> = self.assumed.values().map(|a| (a.node.clone(), a.pod.clone())).collect();
        for (node, pod) in assumed {
            if let Some(&i) = index.get(&node) {
                let requests = self.requests_of(&pod);
                infos[i].add_with(pod, requests);
            }
        }
        infos
    }

    fn pending<'a>(&self, pods: &'a [Arc<Pod>]) -> Vec<&'a Arc<Pod>> {
        let now = Instant::now();
        let mut pending: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| node_name(p).is_none() && p.metadata.deletion_timestamp.is_none() && !is_terminal(p))
            .filter(|p| {
                let name = p.spec.as_ref().and_then(|s| s.scheduler_name.clone()).unwrap_or_default();
                name.is_empty() || name == self.config.scheduler_name
            })
            .filter(|p| !self.assumed.contains_key(uid(p)))
            .filter(|p| self.attempts.get(uid(p)).is_none_or(|a| a.retry_at <= now))
            .collect();
        pending.sort_by_key(|p| {
            (std::cmp::Reverse(preemption::priority(p)), p.metadata.creation_timestamp.clone().map(|t| t.0))
        });
        pending
    }

    async fn schedule_pass(&mut self, nodes: &[Arc<Node>], pods: &[Arc<Pod>]) {
        let mut infos = self.snapshot(nodes, pods);
        if !self.attempts.is_empty() {
            let live: std::collections::HashSet<&str> = pods.iter().map(|p| uid(p)).collect();
            self.attempts.retain(|uid, _| live.contains(uid.as_str()));
        }
        let mut any_anti_affinity = infos.iter().any(|n| !n.anti_affinity.is_empty());
        let to_find = feasible_nodes_to_find(infos.len());
        for pod in self.pending(pods) {
            let mut failures = Vec::new();
            let mut feasible = Vec::new();
            // Most pods fit on a node by its own facts alone; only those that
            // do not are filtered against the whole snapshot.
            let all: &[NodeInfo] = if plugins::needs_snapshot(pod, any_anti_affinity) { &infos } else { &[] };
            let start = self.next_start % infos.len().max(1);
            let mut examined = 0;
            for i in (start..infos.len()).chain(0..start) {
                if feasible.len() >= to_find {
                    break;
                }
                examined += 1;
                match plugins::filter(pod, &infos[i], all) {
                    Ok(()) => feasible.push(i),
                    Err(reasons) => failures.push((infos[i].name().to_string(), reasons)),
                }
            }
            self.next_start = start + examined;
            if feasible.is_empty() {
                self.unschedulable(pod, &infos, &failures).await;
                continue;
            }
            let candidates: Vec<&NodeInfo> = feasible.iter().map(|&i| &infos[i]).collect();
            let scores = plugins::score(pod, &candidates, self.config.scoring_strategy);
            let best = scores.iter().copied().max().unwrap_or(0);
            let tied: Vec<usize> = feasible.iter().zip(&scores).filter(|(_, s)| **s == best).map(|(i, _)| *i).collect();
            // Ties go to any of the best nodes, as kube picks one at random.
            let pick = tied[(jiff::Timestamp::now().subsec_nanosecond() as usize) % tied.len()];
            let node = infos[pick].name().to_string();
            let requests = self.requests_of(pod);
            infos[pick].add_with(pod.clone(), requests);
            any_anti_affinity |= !infos[pick].anti_affinity.is_empty();
            self.attempts.remove(&key(pod));
            self.assumed.insert(key(pod), Assumed { node: node.clone(), pod: pod.clone(), since: Instant::now() });
            self.bind(pod.clone(), node);
        }
    }

    fn bind(&self, pod: Arc<Pod>, node: String) {
        let client = self.client.clone();
        let reporter = self.reporter.clone();
        let done = self.bound_tx.clone();
        let permits = self.in_flight.clone();
        tokio::spawn(async move {
            let _permit = permits.acquire_owned().await;
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, "uid": pod.metadata.uid},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            let write =
                Write::new::<Pod>(&namespace, Op::Post { name: name.clone(), subresource: "binding", body: binding });
            let ok = write.perform(&client).await.is_ok();
            if ok {
                let message = format!("Successfully assigned {namespace}/{name} to {node}");
                let event = reporter.event(&pod_json(&pod), false, "Scheduled", &message);
                client::writes::perform_all(&client, "scheduler", vec![event]).await;
            }
            let _ = done.send((key(&pod), ok));
        });
    }

    async fn unschedulable(
        &mut self,
        pod: &Arc<Pod>,
        infos: &[NodeInfo],
        failures: &[(String, Vec<plugins::Failure>)],
    ) {
        let can_preempt = pod.spec.as_ref().and_then(|s| s.preemption_policy.as_deref()) != Some("Never");
        let postfilter = if can_preempt {
            match preemption::select(pod, infos, failures) {
                Ok(candidate) => {
                    self.preempt(pod, candidate).await;
                    None
                }
                Err(message) => Some(message),
            }
        } else {
            Some(format!(
                "preemption: 0/{} nodes are available: {} Preemption is not helpful for scheduling",
                infos.len(),
                infos.len()
            ))
        };
        let reasons: Vec<Vec<plugins::Failure>> = failures.iter().map(|(_, f)| f.clone()).collect();
        let message = plugins::fit_error(infos.len(), &reasons, postfilter.as_deref());
        let uid = key(pod);
        let attempt = self.attempts.entry(uid).or_insert(Attempt {
            retry_at: Instant::now(),
            failures: 0,
            message: String::new(),
            reported_at: None,
        });
        attempt.failures += 1;
        // kube's pod back-off: 1 s doubling to 10 s.
        attempt.retry_at = Instant::now() + Duration::from_secs((1u64 << attempt.failures.min(4)).min(10));
        let stale = attempt.reported_at.is_none_or(|at| at.elapsed() > Duration::from_secs(60));
        if attempt.message != message || stale {
            attempt.message = message.clone();
            attempt.reported_at = Some(Instant::now());
            let namespace = pod.metadata.namespace.clone().unwrap_or_default();
            let name = pod.metadata.name.clone().unwrap_or_default();
            let condition = json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                    "message": message, "lastProbeTime": null,
                                    "lastTransitionTime": client::time_text(client::now())});
            let mut conditions = client::json_items(pod.status.as_ref().and_then(|s| s.conditions.as_ref()));
            conditions.retain(|c| c["type"] != "PodScheduled");
            conditions.push(condition);
            let writes = vec![
                self.reporter.event(&pod_json(pod), true, "FailedScheduling", &message),
                Write::merge_status::<Pod>(&namespace, &name, json!({"status": {"conditions": conditions}})),
            ];
            client::writes::perform_all(&self.client, "scheduler", writes).await;
        }
    }

    async fn preempt(&mut self, pod: &Arc<Pod>, candidate: preemption::Candidate) {
        let mut writes = Vec::new();
        let uid = key(pod);
        for victim in &candidate.victims {
            let namespace = victim.metadata.namespace.clone().unwrap_or_default();
            let name = victim.metadata.name.clone().unwrap_or_default();
            let message = format!("Preempted by pod {uid} on node {}", candidate.node);
            writes.push(self.reporter.event(&pod_json(victim), false, "Preempted", &message));
            writes.push(Write::new::<Pod>(
                &namespace,
                Op::Delete {
                    name,
                    uid: victim.metadata.uid.clone(),
                    grace_seconds: None,
                    propagation: Some(Propagation::Background),
                },
            ));
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        writes.push(Write::merge_status::<Pod>(
            &namespace,
            &name,
            json!({"status": {"nominatedNodeName": candidate.node}}),
        ));
        client::writes::perform_all(&self.client, "scheduler", writes).await;
    }
}

pub async fn run(config: SchedulerConfig) -> Result<(), ClientError> {
    let election = config.leader_election.clone();
    let kubeconfig = config.kubeconfig.clone();
    let user_agent = "kube-scheduler/v1.33.7-cairn";
    election.run(&kubeconfig, user_agent, "kube-scheduler", |client| schedule(client, config)).await
}

async fn schedule(client: Client, config: SchedulerConfig) -> Result<(), ClientError> {
    let changed = client::informer::Changes::default();
    let mut wake = changed.subscribe();
    let pods = Informer::start(Api::<Pod>::all(client.clone()), watcher::Config::default(), changed.clone());
    let nodes = Informer::start(Api::<Node>::all(client.clone()), watcher::Config::default(), changed.clone());
    let (bound_tx, mut bound_rx) = mpsc::unbounded_channel();
    let mut scheduler = Scheduler {
        client,
        reporter: Reporter::new(&config.scheduler_name, None).instance(&config.leader_election.identity()),
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.parallelism.max(1))),
        config,
        assumed: HashMap::new(),
        attempts: HashMap::new(),
        bound_tx,
        requests: HashMap::new(),
        next_start: 0,
    };
    while !(pods.synced(Duration::from_secs(5)).await && nodes.synced(Duration::from_secs(5)).await) {}
    tracing::info!("scheduler caches synced; scheduling");
    loop {
        crate::client::informer::next_pass(&mut wake, Duration::from_secs(1)).await;
        // A pass snapshots every pod; under a flood of changes, a short pause
        // lets each pass take a batch of pending pods instead of one or two.
        tokio::time::sleep(PASS_PAUSE).await;
        while let Ok((uid, ok)) = bound_rx.try_recv() {
            if !ok {
                scheduler.assumed.remove(&uid);
            }
        }
        scheduler.schedule_pass(&nodes.state(), &pods.state()).await;
    }
}
