//! The whole on-disk layout, declared in one place.
//!
//! One RocksDB instance holds the Raft log, the Raft vote and the state
//! machine, so that they share one write-ahead log: the fsync of a log append
//! also makes every earlier state-machine write durable.

/// Bumped whenever the layout below changes incompatibly.
pub const SCHEMA_VERSION: u64 = 1;

/// MVCC key-value revisions. Key: [`crate::mvcc::Revision::to_bytes`] (17 bytes,
/// plus a trailing `t` for a tombstone, as etcd's `key` bucket). Value: an encoded
/// `mvccpb::KeyValue`.
pub const CF_KV: &str = "kv";
/// Raft log entries. Key: the log index, 8 bytes big-endian. Value: a bincode `Entry`.
pub const CF_RAFT_LOG: &str = "raft_log";
/// Small values: the keys below.
pub const CF_META: &str = "meta";
/// Leases. Key: the lease ID, 8 bytes big-endian. Value: the granted TTL in seconds, 8 bytes
/// big-endian. Attached keys are not stored: they follow from each key's `lease` field.
pub const CF_LEASE: &str = "lease";

pub const ALL_CFS: [&str; 4] = [CF_KV, CF_RAFT_LOG, CF_META, CF_LEASE];
/// The state machine's column families: what etcd calls the backend, and what
/// `--quota-backend-bytes` limits. The Raft log is etcd's WAL and is not counted.
pub const STATE_CFS: [&str; 3] = [CF_KV, CF_META, CF_LEASE];

/// Meta keys in [`CF_META`].
pub mod meta {
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    /// The identity of this data dir: which cluster and member it belongs to.
    pub const CLUSTER_ID: &[u8] = b"cluster_id";
    pub const MEMBER_ID: &[u8] = b"member_id";
    /// The `--initial-cluster-token` and `--name` it was created with, to refuse another cluster's.
    pub const CLUSTER_TOKEN: &[u8] = b"cluster_token";
    pub const MEMBER_NAME: &[u8] = b"member_name";
    /// Raft: the vote, the committed log id and the last purged log id (bincode).
    pub const RAFT_VOTE: &[u8] = b"raft_vote";
    pub const RAFT_COMMITTED: &[u8] = b"raft_committed";
    pub const RAFT_LAST_PURGED: &[u8] = b"raft_last_purged";
    /// State machine, written in the same batch as the data it covers:
    /// the last applied log id and the last membership (bincode), and the
    /// MVCC revision counters (8 bytes big-endian each).
    pub const SM_LAST_APPLIED: &[u8] = b"sm_last_applied";
    pub const SM_MEMBERSHIP: &[u8] = b"sm_membership";
    pub const SM_CURRENT_REV: &[u8] = b"sm_current_rev";
    pub const SM_COMPACT_REV: &[u8] = b"sm_compact_rev";
    /// Published member attributes (client URLs), bincode map.
    pub const SM_MEMBER_ATTRS: &[u8] = b"sm_member_attrs";
    /// Active alarms, bincode list of (member ID, alarm type).
    pub const SM_ALARMS: &[u8] = b"sm_alarms";
    /// The current Raft snapshot: bincode (file name, openraft `SnapshotMeta`).
    pub const SNAPSHOT_CURRENT: &[u8] = b"snapshot_current";
    /// Set (synced) while a received snapshot is being installed: the same
    /// record as `SNAPSHOT_CURRENT`. A restart finds it and installs again.
    pub const SNAPSHOT_INSTALLING: &[u8] = b"snapshot_installing";
    /// Written by `cairn snapshot restore`: the members (bincode map) to
    /// initialize Raft with at the first start.
    pub const BOOTSTRAP_MEMBERS: &[u8] = b"bootstrap_members";
}

/// Raft snapshot files live here, under the data dir.
pub const SNAPSHOT_DIR: &str = "member/snap";
/// The engine lives here, under the data dir.
pub const DB_DIR: &str = "member/db";

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}
