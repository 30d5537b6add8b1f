//! Chaos on the whole Kubernetes cluster, the pure half: what a run records,
//! the checkers, and the report. `cairn-chaos kube` does the I/O (processes,
//! workload, watchers, the store's own watch) and fills a [`KubeRecorded`].
//!
//! Times are Unix microseconds: the components stamp leases and events with
//! the wall clock, and every process of a run shares one machine's clock.

pub mod check;
pub mod report;

use crate::record::FaultEvent;
use crate::schedule::KubeFault;

/// Unix time in microseconds.
pub type Micros = i64;

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct KubeRecorded {
    pub meta: KubeMeta,
    /// Every create the workload sent, with its outcome.
    pub creates: Vec<Create>,
    /// Every delete the workload sent (acknowledged or not: it may take effect).
    pub deletes: Vec<Delete>,
    /// Every change under the API server's prefix, from the store's own watch.
    pub store: Vec<StoreChange>,
    /// Every version of the controller-manager's and scheduler's leader Leases.
    pub leader_leases: Vec<LeaseVersion>,
    /// Every renewal of the hollow nodes' Leases.
    pub node_renewals: Vec<NodeRenewal>,
    /// One kube-rs watcher per resource.
    pub watches: Vec<WatchLog>,
    pub pods: Vec<PodSeen>,
    pub nodes: Vec<NodeSeen>,
    /// Events whose reporter is a leader-elected replica, or a Scheduled one.
    pub events: Vec<EventSeen>,
    pub timeline: Vec<FaultEvent>,
    /// Controller-managers and schedulers that exited (on losing their lease,
    /// as kube's do) and were started again, as a kubelet restarts a static pod.
    #[serde(default)]
    pub restarts: Vec<String>,
    pub node_cuts: Vec<NodeCut>,
    pub convergence: Option<Convergence>,
    pub end: KubeEnd,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct KubeMeta {
    pub command: String,
    pub seed: u64,
    pub duration_ms: u64,
    pub started_us: Micros,
    pub store_members: usize,
    pub apiservers: usize,
    pub replicas: usize,
    pub nodes: usize,
    pub faults: Vec<KubeFault>,
    pub timing: Timing,
    /// Which lease each leader-elected replica (its identity) runs under.
    pub leader_groups: Vec<LeaderGroup>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LeaderGroup {
    pub lease: String,
    pub identities: Vec<String>,
}

/// The timings the run gave the components, which the checkers' bounds come from.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Timing {
    pub renew_deadline_ms: i64,
    pub node_grace_ms: i64,
    pub node_monitor_period_ms: i64,
    /// How long the workload's pods tolerate an unreachable node.
    pub toleration_s: i64,
    /// How long Deployments may take to converge once everything is healed.
    pub converge_limit_ms: i64,
    /// What the node-death bounds allow on top of a monitor period: watch
    /// delivery and the eviction queue's pace on a loaded machine.
    pub slack_ms: i64,
    /// Clock noise allowed between a lease's stamps and an event's.
    pub clock_tolerance_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum CreateOutcome {
    /// 201, with the object's uid and the revision it was created at.
    Acknowledged { uid: String, revision: i64 },
    /// A definite refusal (4xx): nothing was created.
    Refused(String),
    /// A timeout, a 5xx or a broken connection: it may or may not exist.
    Unknown(String),
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Create {
    pub resource: String,
    /// The object's key in the store.
    pub key: String,
    pub invoked_us: Micros,
    pub outcome: CreateOutcome,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Delete {
    pub key: String,
    pub sent_us: Micros,
    pub acknowledged: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoreChange {
    pub revision: i64,
    pub key: String,
    pub deleted: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LeaseVersion {
    pub lease: String,
    pub revision: i64,
    pub holder: String,
    pub acquire_us: Micros,
    pub renew_us: Micros,
    pub duration_s: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRenewal {
    pub node: String,
    pub revision: i64,
    pub renew_us: Micros,
}

/// A change as a watcher saw it: the store key, and the object's resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Seen {
    pub key: String,
    pub revision: i64,
    pub deleted: bool,
}

/// From one (re)list to the next: the list, then the watch events.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Session {
    pub started_us: Micros,
    pub listed: Vec<Seen>,
    pub list_done: bool,
    pub events: Vec<Seen>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WatchLog {
    pub resource: String,
    /// The store prefix its objects live under.
    pub prefix: String,
    pub sessions: Vec<Session>,
    /// Errors the watcher reported (a 410 among them before each relist).
    pub errors: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodSeen {
    pub at_us: Micros,
    pub uid: String,
    pub key: String,
    pub node: String,
    pub deleting: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeSeen {
    pub at_us: Micros,
    pub node: String,
    /// The Ready condition's status: True, False or Unknown.
    pub ready: String,
    pub unreachable_taint: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct EventSeen {
    pub reason: String,
    pub instance: String,
    pub time_us: Option<Micros>,
    pub involved_uid: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeCut {
    pub node: String,
    pub cut_us: Micros,
    pub healed_us: Option<Micros>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Convergence {
    pub healed_us: Micros,
    pub converged_us: Option<Micros>,
    /// What was still short when the limit ran out, or the converged state.
    pub state: String,
}

/// The object a workload create made, as listed at the end.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Present {
    pub key: String,
    pub uid: String,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct KubeEnd {
    /// The workload's objects listed through the API server once all was
    /// healed; `None` when that list failed.
    pub present: Option<Vec<Present>>,
    /// Per resource: whether the watcher reached the store's last change.
    pub watchers_caught_up: Vec<(String, bool)>,
    pub panics: Vec<String>,
    pub errors: Vec<String>,
}
