//! The whole on-disk layout, declared in one place.
//!
//! One RocksDB instance holds the Raft vote and the state machine. The Raft
//! log has files of its own ([`crate::wal`], under [`WAL_DIR`]); state-machine
//! writes are not synced, since the log entries they came from are kept until
//! a synced write (the purged index) has made them durable.

use super::{EngineError, WriteOp};
use crate::mvcc::Revision;

/// Bumped whenever the layout below changes incompatibly.
/// 2: the Raft log moved from [`CF_RAFT_LOG`] to [`WAL_DIR`].
pub const SCHEMA_VERSION: u64 = 2;
/// The versions this cairn upgrades at start: 1, whose Raft log is still in [`CF_RAFT_LOG`].
pub const UPGRADABLE_SCHEMA_VERSIONS: [u64; 1] = [1];

/// MVCC key-value revisions. Key: [`crate::mvcc::Revision::to_bytes`] (17 bytes,
/// plus a trailing `t` for a tombstone, as etcd's `key` bucket). Value: an encoded
/// `mvccpb::KeyValue`.
pub const CF_KV: &str = "kv";
/// Raft log entries of data dirs written before [`WAL_DIR`]: moved there at
/// the first start, and empty after it. Key: the log index, 8 bytes
/// big-endian. Value: a bincode `Entry`.
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
    /// Raft: the vote and the last purged log id (bincode). Data dirs of
    /// earlier builds also hold `raft_committed`, which nothing reads now.
    pub const RAFT_VOTE: &[u8] = b"raft_vote";
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
    /// The auth store: users, roles, the enabled flag and the auth revision
    /// (an encoded `cairnpb.AuthState`). Snapshots carry it, restores keep it.
    pub const SM_AUTH: &[u8] = b"sm_auth";
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
/// The Raft log's segments ([`crate::wal`]) live here, under the data dir, as etcd's.
pub const WAL_DIR: &str = "member/wal";

pub fn log_key(index: u64) -> [u8; 8] {
    index.to_be_bytes()
}

/// The record of the schema version this cairn writes.
pub fn schema_version_record() -> WriteOp {
    WriteOp::Put { cf: CF_META, key: meta::SCHEMA_VERSION.to_vec(), value: SCHEMA_VERSION.to_be_bytes().to_vec() }
}

/// The records that say whose a data dir is: schema version, member, cluster, token and name.
pub fn identity_records(member_id: u64, cluster_id: u64, token: &str, name: &str) -> Vec<WriteOp> {
    let put = |key: &[u8], value: Vec<u8>| WriteOp::Put { cf: CF_META, key: key.to_vec(), value };
    vec![
        schema_version_record(),
        put(meta::MEMBER_ID, member_id.to_be_bytes().to_vec()),
        put(meta::CLUSTER_ID, cluster_id.to_be_bytes().to_vec()),
        put(meta::CLUSTER_TOKEN, token.as_bytes().to_vec()),
        put(meta::MEMBER_NAME, name.as_bytes().to_vec()),
    ]
}

/// Decodes an 8-byte big-endian identity number (member or cluster ID, schema version).
pub fn decode_u64(what: &str, bytes: &[u8]) -> Result<u64, EngineError> {
    let bytes = bytes.try_into().map_err(|_| corrupt(what, bytes))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Decodes a log key; anything but 8 bytes is damage.
pub fn decode_log_key(key: &[u8]) -> Result<u64, EngineError> {
    let bytes = key.try_into().map_err(|_| corrupt("raft log key", key))?;
    Ok(u64::from_be_bytes(bytes))
}

/// Counters, lease IDs and TTLs: 8 bytes big-endian.
pub fn encode_i64(value: i64) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

/// Decodes what [`encode_i64`] wrote; `what` names the record in the error.
pub fn decode_i64(what: &str, bytes: &[u8]) -> Result<i64, EngineError> {
    let bytes = bytes.try_into().map_err(|_| corrupt(what, bytes))?;
    Ok(i64::from_be_bytes(bytes))
}

/// A lease record in [`CF_LEASE`].
pub fn lease_record(id: i64, ttl: i64) -> WriteOp {
    WriteOp::Put { cf: CF_LEASE, key: encode_i64(id), value: encode_i64(ttl) }
}

/// Decodes a lease record into (ID, granted TTL).
pub fn decode_lease_record(key: &[u8], value: &[u8]) -> Result<(i64, i64), EngineError> {
    Ok((decode_i64("lease ID", key)?, decode_i64("lease TTL", value)?))
}

/// The deletes of a compacted revision: it is stored either plain or with the tombstone mark.
pub fn revision_deletes(rev: Revision) -> [WriteOp; 2] {
    [false, true].map(|tombstone| WriteOp::Delete { cf: CF_KV, key: rev.to_key(tombstone) })
}

fn corrupt(what: &str, bytes: &[u8]) -> EngineError {
    EngineError::Corrupt { what: what.to_string(), detail: format!("{} bytes {bytes:02x?}", bytes.len()) }
}
