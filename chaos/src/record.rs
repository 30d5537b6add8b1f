//! Everything a run records, in one serializable value: what the checkers
//! read, what the report shows, and what a failing run saves for `check`.

use crate::history::{Nanos, Operation};
use crate::revisions::Observed;
use crate::schedule::Fault;
use crate::watch::{Change, Received};

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Recorded {
    pub meta: Meta,
    /// Register operations (get, put, compare-and-set), final reads included.
    pub register: Vec<Operation>,
    /// Header revisions that clients saw, in each client's order.
    pub observed: Vec<Observed>,
    /// Writes acknowledged with their revision: part of the KV history.
    pub writes: Vec<Change>,
    pub sets: Vec<SetRecord>,
    pub watch_sessions: Vec<WatchSession>,
    pub leases: Vec<LeaseRecord>,
    /// Paginated lists at a fixed revision (the Kubernetes-shaped workload).
    #[serde(default)]
    pub lists: Vec<ListRecord>,
    /// Revisions compacted through `compact_rev_key`, as kube-apiserver compacts.
    #[serde(default)]
    pub compactions: Vec<i64>,
    pub timeline: Vec<FaultEvent>,
    /// When the leader was killed.
    pub leader_kills: Vec<Nanos>,
    pub latencies: Vec<OpLatency>,
    pub end: EndState,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    pub command: String,
    pub seed: u64,
    pub system: String,
    pub members: usize,
    pub duration_ms: u64,
    pub election_timeout_ms: u64,
    /// The longest acceptable recovery after a leader kill; unset: two
    /// election timeouts and a second.
    #[serde(default)]
    pub recovery_limit_ms: Option<u64>,
    pub lease_ttl_s: i64,
    pub faults: Vec<Fault>,
    /// Faults left out, and why (for example partitions against etcd).
    pub skipped: Vec<String>,
    pub broken: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AddOutcome {
    Acknowledged,
    /// The compare failed every try: certainly not added.
    Refused,
    Unknown,
}

/// A set kept in one key: elements appended by compare-and-set.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct SetRecord {
    pub key: String,
    pub adds: Vec<(String, AddOutcome)>,
    /// The elements read at the end; `None` when the final read failed.
    pub final_read: Option<Vec<String>>,
}

/// A watcher's stream from one start revision; a watcher resumes in the same
/// session after a fault and starts a new one only if compaction cancels it.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct WatchSession {
    pub watcher: u32,
    /// The keys watched: all of them when empty.
    #[serde(default)]
    pub prefix: String,
    pub start_revision: i64,
    pub received: Vec<Received>,
    /// Progress notifications, each after this many received events.
    #[serde(default)]
    pub notifies: Vec<Notify>,
    pub reconnects: u32,
}

/// A progress notification: every event through `revision` came before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Notify {
    pub after: usize,
    pub revision: i64,
}

/// A list of `prefix` read page by page at the revision of its first page,
/// as kube-apiserver lists with a continue token.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct ListRecord {
    pub client: u32,
    pub prefix: String,
    pub revision: i64,
    pub pages: u32,
    /// Keys and values in the order the pages returned them.
    pub items: Vec<(String, String)>,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct LeaseRead {
    pub invoked: Nanos,
    pub completed: Nanos,
    pub present: bool,
}

/// A keepalive (or the grant) that the leader acknowledged with a TTL.
#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct Renewal {
    pub sent: Nanos,
    pub acknowledged: Nanos,
    pub ttl_s: i64,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct LeaseRecord {
    pub id: i64,
    pub key: String,
    /// When the put of the key under the lease was acknowledged.
    pub attached: Option<Nanos>,
    pub renewals: Vec<Renewal>,
    pub reads: Vec<LeaseRead>,
    /// When a revoke was sent (it may take effect from then on, even if it fails).
    pub revoke_sent: Option<Nanos>,
    /// When a revoke was acknowledged.
    pub revoked: Option<Nanos>,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct FaultEvent {
    pub at: Nanos,
    pub healed: Option<Nanos>,
    pub fault: String,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub struct OpLatency {
    pub kind: OpKind,
    pub ok: bool,
    pub nanos: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum OpKind {
    Get,
    Put,
    Cas,
    SetAdd,
    LeaseGrant,
    KeepAlive,
    LeaseRevoke,
}

/// What the harness saw once every fault was healed and the load stopped.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct EndState {
    /// The revision of a last write that every watcher had to reach.
    pub fence_revision: i64,
    pub watchers_caught_up: Vec<(u32, bool)>,
    /// Serializable reads of every workload key on each member.
    pub member_reads: Vec<(String, Vec<(String, String)>)>,
    /// HashKV of each member at one revision.
    pub hashes: Vec<(String, i64, u32)>,
    /// Lease keys still present a TTL and a margin after the last keepalive.
    pub lease_keys_left: Vec<String>,
    /// Log lines that report a panic, per member.
    pub panics: Vec<String>,
    /// Anything that stopped the harness from gathering the above.
    pub errors: Vec<String>,
}
