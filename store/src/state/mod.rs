//! The replicated state: MVCC over the engine, and the published member attributes.
//!
//! This is the I/O edge of the state machine: [`crate::apply`] decides what
//! to write, and this module reads and writes the engine.

mod compactor;

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{auth_response, write_request, write_response, AuthState, MemberAttributes, WriteResponse};
use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::{AlarmMember, AlarmRequest, AlarmResponse, AlarmType};
use cairn_proto::etcdserverpb::{RangeRequest, RangeResponse};
use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::{Event, KeyValue};
use parking_lot::{Mutex, RwLock, RwLockReadGuard};
use prost::Message;
use tokio::sync::watch;

use crate::apply::{Applied, Applier};
use crate::auth::tokens::{simple_token, SimpleTokens};
use crate::auth::{AuthStore, TokenEffect};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, EngineError, PointRead, WriteOp};
use crate::error::StoreError;
use crate::lease::{Lease, Leases};
use crate::metrics::METRICS;
use crate::mvcc::{self, KeyRange, Mvcc, Revision, ValueReader};
use crate::snapshot::{load_into, LoadOptions};
use crate::types::{decode, encode, LogId, Proposal, StoredMembership};
use crate::watch::EventLog;
pub use compactor::Compactor;

/// How the state is kept, beside what the Raft log holds.
#[derive(Debug, Clone, Copy)]
pub struct StateOptions {
    /// Recent watch events kept in memory.
    pub event_log_capacity: usize,
    pub min_lease_ttl: i64,
    /// Revisions deleted per batch by physical compaction.
    pub compaction_batch_limit: usize,
    /// Pause between two batches of a physical compaction.
    pub compaction_sleep: Duration,
    /// `--auth-token-ttl`: how long an unused simple token lives.
    pub simple_token_ttl: Duration,
}

/// Reads values by revision from the engine, or from a snapshot of it.
pub struct EngineReader<'a, E: PointRead = Engine>(pub &'a E);

impl<E: PointRead> ValueReader for EngineReader<'_, E> {
    fn read(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, StoreError> {
        if revs.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<Vec<u8>> = revs.iter().map(|rev| rev.to_key(false)).collect();
        let values = self.0.multi_get(schema::CF_KV, &keys)?;
        revs.iter()
            .zip(values)
            .map(|(rev, value)| {
                let bytes = value.ok_or_else(|| corrupt(*rev, "value missing"))?;
                KeyValue::decode(bytes.as_slice()).map_err(|err| corrupt(*rev, &err.to_string()).into())
            })
            .collect()
    }
}

fn corrupt(rev: Revision, detail: &str) -> EngineError {
    EngineError::Corrupt { what: format!("revision {}/{}", rev.main, rev.sub), detail: detail.to_string() }
}

/// What the state machine has applied, as stored with the data.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppliedState {
    pub last_applied: Option<LogId>,
    pub membership: StoredMembership,
}

pub struct KvState {
    engine: Arc<Engine>,
    min_lease_ttl: i64,
    /// Shared with the compactor, which walks the index in chunks.
    mvcc: Arc<RwLock<Mvcc>>,
    leases: RwLock<Leases>,
    member_attrs: RwLock<BTreeMap<u64, MemberAttributes>>,
    /// Active alarms: (member ID, alarm type), replicated.
    alarms: RwLock<Vec<(u64, AlarmType)>>,
    auth: RwLock<AuthStore>,
    /// This member's simple tokens: registered as Authenticate entries apply.
    tokens: Mutex<SimpleTokens>,
    applied: RwLock<AppliedState>,
    applied_index: watch::Sender<u64>,
    /// The applied membership, apart from the applied index: its watchers wake
    /// on membership changes only, not on every write.
    applied_membership: watch::Sender<StoredMembership>,
    events: EventLog,
    compactor: Compactor,
    /// Watchers that asked for previous values: while there are none, puts read none.
    prev_kv_watchers: Arc<AtomicUsize>,
    /// [`KvState::db_size`] as the quota check last read it, and when.
    quota_size: Mutex<Option<(std::time::Instant, u64)>>,
}

/// A watcher that wants previous values, counted while it lives.
pub struct PrevKvWatcher(Arc<AtomicUsize>);

impl Drop for PrevKvWatcher {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether an event could have a previous value that it does not carry. A
/// put of version 1 created its key: there was none.
fn lacks_prev_kv(event: &Event) -> bool {
    match &event.kv {
        Some(kv) if event.prev_kv.is_none() => !(event.r#type == EventType::Put as i32 && kv.version == 1),
        _ => false,
    }
}

/// How stale a size the quota check may compare. The engine's size properties
/// cost more than a put does (measured: docs/benchmarks.md), and etcd's quota
/// too compares a size its backend updates at each commit, not at each write.
const QUOTA_SIZE_REFRESH: Duration = Duration::from_millis(100);

impl KvState {
    /// Rebuilds the in-memory index from the engine, as etcd does at start.
    pub fn open(engine: Arc<Engine>, options: StateOptions) -> Result<Self, StoreError> {
        let Loaded { mvcc, leases, member_attrs, alarms, auth, applied, garbage } =
            load(&engine, options.min_lease_ttl)?;
        let applied_index = applied.last_applied.map_or(0, |log_id: LogId| log_id.index);
        let events = EventLog::new(mvcc.current_rev, options.event_log_capacity);
        let compact_rev = mvcc.compact_rev;
        let mvcc = Arc::new(RwLock::new(mvcc));
        let compactor =
            Compactor::start(engine.clone(), mvcc.clone(), options.compaction_batch_limit, options.compaction_sleep)
                .map_err(EngineError::Io)?;
        compactor.delete(compact_rev, garbage);
        Ok(Self {
            events,
            engine,
            compactor,
            min_lease_ttl: options.min_lease_ttl,
            mvcc,
            leases: RwLock::new(leases),
            member_attrs: RwLock::new(member_attrs),
            alarms: RwLock::new(alarms),
            auth: RwLock::new(auth),
            tokens: Mutex::new(SimpleTokens::new(options.simple_token_ttl)),
            applied_membership: watch::channel(applied.membership.clone()).0,
            applied: RwLock::new(applied),
            applied_index: watch::channel(applied_index).0,
            prev_kv_watchers: Arc::new(AtomicUsize::new(0)),
            quota_size: Mutex::new(None),
        })
    }

    /// Records a snapshot just built as the current one.
    pub fn record_snapshot(&self, record: &[u8]) -> Result<(), StoreError> {
        Ok(self.engine.write(&[meta_put(meta::SNAPSHOT_CURRENT, record.to_vec())], Durability::Sync)?)
    }

    pub fn current_snapshot_record(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.engine.get(schema::CF_META, meta::SNAPSHOT_CURRENT)?)
    }

    /// Replaces the whole state with a snapshot's (a follower that fell behind
    /// the leader's log). Crash-safe: the install is marked first, and a
    /// restart that finds the mark installs again.
    pub fn install_snapshot(&self, path: &Path, record: &[u8], applied: &AppliedState) -> Result<(), StoreError> {
        let mut mvcc = self.mvcc.write();
        let marker = meta_put(meta::SNAPSHOT_INSTALLING, record.to_vec());
        self.engine.write(&[marker], Durability::Sync)?;
        install_from_file(&self.engine, path, applied)?;
        let done = [
            meta_put(meta::SNAPSHOT_CURRENT, record.to_vec()),
            WriteOp::Delete { cf: schema::CF_META, key: meta::SNAPSHOT_INSTALLING.to_vec() },
        ];
        self.engine.write(&done, Durability::Sync)?;
        let loaded = load(&self.engine, self.min_lease_ttl)?;
        self.compactor.delete(loaded.mvcc.compact_rev, loaded.garbage);
        *mvcc = loaded.mvcc;
        *self.leases.write() = loaded.leases;
        *self.quota_size.lock() = None;
        *self.member_attrs.write() = loaded.member_attrs;
        *self.alarms.write() = loaded.alarms;
        *self.auth.write() = loaded.auth;
        // The entries the snapshot stands for may have revoked tokens this member never saw revoked.
        self.tokens.lock().clear();
        self.applied_membership.send_replace(loaded.applied.membership.clone());
        *self.applied.write() = loaded.applied;
        // Watchers behind the new revision read what they miss from storage.
        self.events.reset(mvcc.current_rev);
        drop(mvcc);
        if let Some(log_id) = applied.last_applied {
            self.applied_index.send_replace(log_id.index);
        }
        Ok(())
    }
}

/// Loads a snapshot file's state and the applied position it stands for.
fn install_from_file(engine: &Engine, path: &Path, applied: &AppliedState) -> Result<(), StoreError> {
    let options = LoadOptions { with_meta: true, bump_revision: 0, mark_compacted: false, progress: None };
    load_into(engine, path, options).map_err(|err| EngineError::Corrupt {
        what: format!("snapshot {}", path.display()),
        detail: err.to_string(),
    })?;
    let encode_err = |err: bincode::Error| EngineError::Encode { what: "state".into(), detail: err.to_string() };
    let ops = [
        meta_put(meta::SM_LAST_APPLIED, encode(&applied.last_applied).map_err(encode_err)?),
        meta_put(meta::SM_MEMBERSHIP, encode(&applied.membership).map_err(encode_err)?),
    ];
    engine.write(&ops, Durability::Sync)?;
    Ok(())
}

/// Finishes a snapshot install that a crash interrupted, before anything reads the state.
pub fn finish_interrupted_install(engine: &Engine, snapshot_dir: &Path) -> Result<bool, StoreError> {
    let Some(record) = engine.get(schema::CF_META, meta::SNAPSHOT_INSTALLING)? else { return Ok(false) };
    let (file, applied): (String, AppliedState) = decode_snapshot_record(&record)?;
    install_from_file(engine, &snapshot_dir.join(file), &applied)?;
    let done = [
        meta_put(meta::SNAPSHOT_CURRENT, record),
        WriteOp::Delete { cf: schema::CF_META, key: meta::SNAPSHOT_INSTALLING.to_vec() },
    ];
    engine.write(&done, Durability::Sync)?;
    Ok(true)
}

/// A snapshot record: the file name and the applied state it stands for.
pub fn encode_snapshot_record(file: &str, applied: &AppliedState) -> Result<Vec<u8>, StoreError> {
    let record = (file.to_string(), applied.last_applied, applied.membership.clone());
    Ok(encode(&record)
        .map_err(|err| EngineError::Encode { what: "snapshot record".into(), detail: err.to_string() })?)
}

pub fn decode_snapshot_record(bytes: &[u8]) -> Result<(String, AppliedState), StoreError> {
    let (file, last_applied, membership): (String, Option<LogId>, StoredMembership) = decode(bytes)
        .map_err(|err| EngineError::Corrupt { what: "snapshot record".into(), detail: err.to_string() })?;
    Ok((file, AppliedState { last_applied, membership }))
}

/// The in-memory state rebuilt from the engine.
struct Loaded {
    mvcc: Mvcc,
    leases: Leases,
    member_attrs: BTreeMap<u64, MemberAttributes>,
    alarms: Vec<(u64, AlarmType)>,
    auth: AuthStore,
    applied: AppliedState,
    /// Values a compaction made unreachable that are still on disk.
    garbage: Vec<Revision>,
}

/// Rebuilds the in-memory index and tables from the engine, as etcd does at start.
fn load(engine: &Engine, min_lease_ttl: i64) -> Result<Loaded, StoreError> {
    {
        let mut mvcc = Mvcc::new();
        // The lease each live key holds, from its latest revision.
        let mut key_leases: HashMap<Vec<u8>, i64> = HashMap::new();
        // Tombstones whose puts are gone: what a compaction interrupted between
        // a put's delete and its tombstone's leaves (deletes go in revision order).
        let mut orphans = Vec::new();
        engine.scan_from(schema::CF_KV, &[], |key, value| {
            let Some((rev, tombstone)) = Revision::from_key(key) else {
                return Err(EngineError::Corrupt { what: "kv key".into(), detail: format!("{key:?}") });
            };
            let kv = KeyValue::decode(value).map_err(|err| corrupt(rev, &err.to_string()))?;
            if tombstone {
                if !mvcc.index.tombstone(&kv.key, rev) {
                    orphans.push(rev);
                }
                key_leases.remove(&kv.key);
            } else {
                mvcc.index.restore(&kv.key, rev, kv.create_revision, kv.version);
                key_leases.insert(kv.key, kv.lease);
            }
            mvcc.current_rev = mvcc.current_rev.max(rev.main);
            Ok(true)
        })?;
        let read_i64 = |key: &[u8], what: &str| -> Result<Option<i64>, StoreError> {
            Ok(engine.get(schema::CF_META, key)?.map(|bytes| schema::decode_i64(what, &bytes)).transpose()?)
        };
        if let Some(current) = read_i64(meta::SM_CURRENT_REV, "current revision")? {
            mvcc.current_rev = mvcc.current_rev.max(current);
        }
        mvcc.compact_rev = read_i64(meta::SM_COMPACT_REV, "compact revision")?.unwrap_or(0);
        // What the compactor had not deleted yet when the member stopped.
        let mut garbage = mvcc.index.compact(mvcc.compact_rev);
        garbage.extend(orphans.into_iter().filter(|rev| rev.main <= mvcc.compact_rev));

        let mut leases = Leases::new(min_lease_ttl);
        engine.scan_from(schema::CF_LEASE, &[], |key, value| {
            let (id, ttl) = schema::decode_lease_record(key, value)?;
            leases.grant(id, ttl);
            Ok(true)
        })?;
        for (key, lease) in key_leases {
            leases.attach(lease, &key);
        }

        let decode_meta = |key: &[u8]| -> Result<Option<Vec<u8>>, StoreError> { Ok(engine.get(schema::CF_META, key)?) };
        let corrupt_meta =
            |what: &str, err: bincode::Error| EngineError::Corrupt { what: what.to_string(), detail: err.to_string() };
        let last_applied = match decode_meta(meta::SM_LAST_APPLIED)? {
            Some(bytes) => decode(&bytes).map_err(|err| corrupt_meta("last applied", err))?,
            None => None,
        };
        let membership = match decode_meta(meta::SM_MEMBERSHIP)? {
            Some(bytes) => decode(&bytes).map_err(|err| corrupt_meta("membership", err))?,
            None => StoredMembership::default(),
        };
        let member_attrs = match decode_meta(meta::SM_MEMBER_ATTRS)? {
            Some(bytes) => {
                let encoded: BTreeMap<u64, Vec<u8>> = decode(&bytes).map_err(|err| corrupt_meta("members", err))?;
                let decode_attrs = |(id, bytes): (u64, Vec<u8>)| {
                    MemberAttributes::decode(bytes.as_slice()).map(|attrs| (id, attrs)).map_err(|err| {
                        EngineError::Corrupt { what: format!("attributes of member {id:x}"), detail: err.to_string() }
                    })
                };
                encoded.into_iter().map(decode_attrs).collect::<Result<_, _>>()?
            }
            None => BTreeMap::new(),
        };
        let alarms: Vec<(u64, i32)> = match decode_meta(meta::SM_ALARMS)? {
            Some(bytes) => decode(&bytes).map_err(|err| corrupt_meta("alarms", err))?,
            None => Vec::new(),
        };
        let decode_alarm = |(member, alarm): (u64, i32)| {
            let detail = format!("unknown alarm type {alarm} for member {member:x}");
            AlarmType::try_from(alarm)
                .map(|alarm| (member, alarm))
                .map_err(|_| EngineError::Corrupt { what: "alarms".into(), detail })
        };
        let alarms = alarms.into_iter().map(decode_alarm).collect::<Result<_, _>>()?;
        let auth = match decode_meta(meta::SM_AUTH)? {
            Some(bytes) => AuthStore::from_state(
                AuthState::decode(bytes.as_slice())
                    .map_err(|err| EngineError::Corrupt { what: "auth store".into(), detail: err.to_string() })?,
            ),
            None => AuthStore::default(),
        };
        let applied = AppliedState { last_applied, membership };
        Ok(Loaded { mvcc, leases, member_attrs, alarms, auth, applied, garbage })
    }
}

impl KvState {
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// A local (serializable) read. The index is walked under the MVCC lock;
    /// the values of a multi-key read are read after it, from an engine view
    /// taken with the walk.
    pub fn range(&self, req: &RangeRequest) -> Result<RangeResponse, StoreError> {
        let mvcc = self.mvcc.read();
        let plan = mvcc::plan_range(&mvcc, req, mvcc.current_rev)?;
        if req.range_end.is_empty() {
            // One key: a point read under the lock costs less than an engine snapshot.
            return plan.execute(&EngineReader(self.engine.as_ref()));
        }
        let view = self.engine.snapshot();
        drop(mvcc);
        plan.execute(&EngineReader(&view))
    }

    pub fn current_revision(&self) -> i64 {
        self.mvcc.read().current_rev
    }

    pub fn compact_revision(&self) -> i64 {
        self.mvcc.read().compact_rev
    }

    pub fn applied_state(&self) -> AppliedState {
        self.applied.read().clone()
    }

    pub fn member_attributes(&self) -> BTreeMap<u64, MemberAttributes> {
        self.member_attrs.read().clone()
    }

    pub fn alarms(&self) -> Vec<(u64, AlarmType)> {
        self.alarms.read().clone()
    }

    /// The auth store, for the checks a member makes before it proposes or reads.
    pub fn auth(&self) -> RwLockReadGuard<'_, AuthStore> {
        self.auth.read()
    }

    /// The user a simple token stands for, renewing it.
    pub fn simple_token_user(&self, token: &str) -> Option<String> {
        self.tokens.lock().lookup(token, std::time::Instant::now())
    }

    /// Keys live at the latest revision (etcd's `keys_total`).
    pub fn key_count(&self) -> usize {
        self.mvcc.read().index.live_count()
    }

    /// The size of the backend: the state machine's column families.
    pub fn db_size(&self) -> u64 {
        self.engine.size_bytes(&schema::STATE_CFS)
    }

    /// [`KvState::db_size`] for the quota check of every write: read again at
    /// most every [`QUOTA_SIZE_REFRESH`], and after anything that shrinks it
    /// at once (a defragment, a snapshot installed).
    pub fn quota_size(&self) -> u64 {
        let mut cached = self.quota_size.lock();
        match *cached {
            Some((read_at, bytes)) if read_at.elapsed() < QUOTA_SIZE_REFRESH => bytes,
            _ => {
                let bytes = self.db_size();
                *cached = Some((std::time::Instant::now(), bytes));
                bytes
            }
        }
    }

    /// etcd's defragment: rewrite the backend compactly.
    pub fn defragment(&self) -> Result<(), StoreError> {
        self.engine.compact_all(&schema::STATE_CFS)?;
        // What the alarm's disarm after a defragment checks is the new size.
        *self.quota_size.lock() = None;
        Ok(())
    }

    /// etcd's HashKV: CRC-32C over the stored revisions up to `revision` (the
    /// current one when 0), in revision order, with etcd's key layout. Of the
    /// revisions at or below the compaction, etcd hashes only those that
    /// compacting at `revision` would keep (each key's revision visible then),
    /// or all of them when no key is visible then.
    /// Returns the hash, the revision hashed and the compact revision.
    pub fn hash_kv(&self, revision: i64) -> Result<(u32, i64, i64), StoreError> {
        let (current, compacted, any_visible) = {
            let mvcc = self.mvcc.read();
            let revision = if revision <= 0 { mvcc.current_rev } else { revision };
            let mut any_visible = false;
            mvcc.index.visit(KeyRange::new(b"\0", b"\0"), revision, |_, _| {
                any_visible = true;
                false
            });
            (mvcc.current_rev, mvcc.compact_rev, any_visible)
        };
        if revision > 0 && revision <= compacted {
            return Err(crate::error::EtcdError::Compacted.into());
        }
        if revision > current {
            return Err(crate::error::EtcdError::FutureRev.into());
        }
        let revision = if revision <= 0 { current } else { revision };
        let kept = |rev: Revision, value: &[u8]| -> Result<bool, EngineError> {
            let kv = KeyValue::decode(value)
                .map_err(|err| EngineError::Corrupt { what: format!("revision {rev:?}"), detail: err.to_string() })?;
            Ok(self.mvcc.read().index.get(&kv.key, revision).is_some_and(|at| at.modified == rev))
        };
        let mut hash = crc32c::crc32c(b"key");
        self.engine.scan_from(schema::CF_KV, &[], |key, value| match Revision::from_key(key) {
            Some((rev, tombstone)) if rev.main <= revision => {
                if rev.main > compacted || !any_visible || (!tombstone && kept(rev, value)?) {
                    hash = crc32c::crc32c_append(hash, key);
                    hash = crc32c::crc32c_append(hash, value);
                }
                Ok(true)
            }
            _ => Ok(false),
        })?;
        Ok((hash, revision, compacted))
    }

    /// A hash of the whole backend: every state column family.
    pub fn hash_all(&self) -> Result<u32, StoreError> {
        let mut hash = 0;
        for cf in schema::STATE_CFS {
            hash = crc32c::crc32c_append(hash, cf.as_bytes());
            self.engine.scan_from(cf, &[], |key, value| {
                hash = crc32c::crc32c_append(hash, key);
                hash = crc32c::crc32c_append(hash, value);
                Ok(true)
            })?;
        }
        Ok(hash)
    }

    pub fn lease(&self, id: i64) -> Option<Lease> {
        self.leases.read().get(id).cloned()
    }

    /// Every lease with its granted TTL.
    pub fn lease_ttls(&self) -> Vec<(i64, i64)> {
        let leases = self.leases.read();
        leases.ids().filter_map(|id| leases.get(id).map(|lease| (id, lease.ttl))).collect()
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// Events with revisions in `[from, to]`, read back from storage;
    /// `prev_kv` is filled when `with_prev` is set.
    pub fn stored_events(&self, from: i64, to: i64) -> Result<Vec<Event>, StoreError> {
        let mut events = Vec::new();
        self.engine.scan_from(schema::CF_KV, &Revision::new(from, 0).to_key(false), |key, value| {
            let Some((rev, tombstone)) = Revision::from_key(key) else {
                return Err(EngineError::Corrupt { what: "kv key".into(), detail: format!("{key:?}") });
            };
            if rev.main > to {
                return Ok(false);
            }
            let mut kv = KeyValue::decode(value).map_err(|err| corrupt(rev, &err.to_string()))?;
            // Tombstones are stored as the bare key, as etcd stores them.
            kv.mod_revision = rev.main;
            let kind = if tombstone { EventType::Delete } else { EventType::Put };
            events.push(Event { r#type: kind as i32, kv: Some(kv), prev_kv: None });
            Ok(true)
        })?;
        Ok(events)
    }

    /// Gives each event without `prev_kv` the value its key held before it, if
    /// any is left. A put applied while no watcher wanted previous values was
    /// recorded without one; a compacted previous value is simply absent, as in etcd.
    pub fn fill_prev_kvs(&self, events: &mut [Event]) {
        // Most batches need nothing read: checked before the lock, which apply takes to write.
        if !events.iter().any(lacks_prev_kv) {
            return;
        }
        let mvcc = self.mvcc.read();
        let reader = EngineReader(self.engine.as_ref());
        for event in events.iter_mut().filter(|event| lacks_prev_kv(event)) {
            let Some(kv) = &event.kv else { continue };
            // etcd reads it as a range at that revision, which a compaction past
            // it refuses; the compactor may not have walked this key yet.
            if kv.mod_revision - 1 < mvcc.compact_rev {
                continue;
            }
            if let Some(found) = mvcc.index.get(&kv.key, kv.mod_revision - 1) {
                event.prev_kv = reader.read(&[found.modified]).ok().and_then(|mut kvs| kvs.pop());
            }
        }
    }

    /// Counts a watcher that wants previous values for as long as the guard lives.
    pub fn watch_prev_kvs(&self) -> PrevKvWatcher {
        self.prev_kv_watchers.fetch_add(1, Ordering::AcqRel);
        PrevKvWatcher(self.prev_kv_watchers.clone())
    }

    /// Waits until a compaction at `revision` (applied here) is physically
    /// done: etcd's `Compact{physical: true}`.
    pub async fn physically_compacted(&self, revision: i64) -> Result<(), StoreError> {
        let mut finished = self.compactor.finished();
        let reached = finished.wait_for(|done| *done >= revision).await.is_ok();
        if reached {
            Ok(())
        } else {
            Err(EngineError::Stopped("the compactor").into())
        }
    }

    /// Returns the engine error the compactor stopped on, once it has.
    pub async fn compactor_fault(&self) -> String {
        self.compactor.fault().await
    }

    /// The revision through which old revisions have been deleted.
    pub fn physically_compacted_through(&self) -> i64 {
        *self.compactor.finished().borrow()
    }

    /// The last applied log index.
    pub fn applied_index(&self) -> u64 {
        *self.applied_index.borrow()
    }

    /// Watches the last applied log index.
    pub fn subscribe_applied(&self) -> watch::Receiver<u64> {
        self.applied_index.subscribe()
    }

    /// Watches the applied membership.
    pub fn subscribe_membership(&self) -> watch::Receiver<StoredMembership> {
        self.applied_membership.subscribe()
    }

    /// Applies committed entries and writes their effects, the last applied
    /// log id and the membership in one batch.
    pub fn apply_entries(
        &self,
        entries: Vec<(LogId, Option<Proposal>, Option<StoredMembership>)>,
    ) -> Result<Vec<Vec<WriteResponse>>, StoreError> {
        let Some(last_log_id) = entries.last().map(|(log_id, _, _)| *log_id) else {
            return Ok(Vec::new());
        };
        let mut mvcc = self.mvcc.write();
        let compacted_before = mvcc.compact_rev;
        let mut leases = self.leases.write();
        let mut auth = self.auth.write();
        let reader = EngineReader(self.engine.as_ref());
        let mut applier = Applier::new(&mut mvcc, &reader, &mut leases, &mut auth);
        applier.limit_events(self.events.capacity());
        applier.previous_in_events(self.prev_kv_watchers.load(Ordering::Acquire) > 0);
        let mut responses = Vec::with_capacity(entries.len());
        let mut new_membership = None;
        let mut attrs_changed = false;
        let mut member_attrs = self.member_attrs.write();
        let mut alarms = self.alarms.write();
        let mut alarms_changed = false;
        applier.set_alarms(alarms.iter().map(|(_, alarm)| alarm));
        for (log_id, proposal, membership) in entries {
            if let Some(membership) = membership {
                new_membership = Some(membership);
            }
            let Some(Proposal(requests)) = proposal else {
                responses.push(Vec::new());
                continue;
            };
            let mut entry_responses = Vec::with_capacity(requests.len());
            for request in requests {
                if let Some(write_request::Request::Publish(attrs)) = &request.request {
                    member_attrs.insert(attrs.member_id, attrs.clone());
                    attrs_changed = true;
                }
                if let Some(write_request::Request::Alarm(alarm)) = &request.request {
                    let changed = apply_alarm(&mut alarms, alarm);
                    alarms_changed = true;
                    applier.set_alarms(alarms.iter().map(|(_, alarm)| alarm));
                    let response =
                        AlarmResponse { header: Some(Default::default()), alarms: changed.into_iter().collect() };
                    entry_responses.push(WriteResponse { response: Some(write_response::Response::Alarm(response)) });
                    continue;
                }
                let is_auth = matches!(request.request, Some(write_request::Request::Auth(_)));
                let mut response = applier.apply(request)?;
                if is_auth {
                    if let Some(effect) = applier.take_token_effect() {
                        self.apply_token_effect(effect, log_id.index, &mut response);
                    }
                }
                entry_responses.push(response);
            }
            responses.push(entry_responses);
        }
        let Applied { mut ops, events, events_dropped } = applier.finish();

        let mut applied = self.applied.write();
        let encode_err = |err: bincode::Error| EngineError::Encode { what: "state".into(), detail: err.to_string() };
        ops.push(meta_put(meta::SM_LAST_APPLIED, encode(&Some(last_log_id)).map_err(encode_err)?));
        if let Some(membership) = &new_membership {
            ops.push(meta_put(meta::SM_MEMBERSHIP, encode(membership).map_err(encode_err)?));
        }
        if alarms_changed {
            let encoded: Vec<(u64, i32)> = alarms.iter().map(|(member, alarm)| (*member, *alarm as i32)).collect();
            ops.push(meta_put(meta::SM_ALARMS, encode(&encoded).map_err(encode_err)?));
        }
        if attrs_changed {
            let encoded: BTreeMap<u64, Vec<u8>> =
                member_attrs.iter().map(|(id, attrs)| (*id, attrs.encode_to_vec())).collect();
            ops.push(meta_put(meta::SM_MEMBER_ATTRS, encode(&encoded).map_err(encode_err)?));
        }
        // Buffered: the Raft log keeps these entries until a synced write covers them.
        let started = std::time::Instant::now();
        self.engine.write(&ops, Durability::Buffered)?;
        METRICS.backend_commit.observe(started.elapsed());
        METRICS.proposals_applied.store(last_log_id.index, std::sync::atomic::Ordering::Relaxed);
        if events_dropped {
            self.events.reset(mvcc.current_rev);
        } else {
            self.events.append(events, mvcc.current_rev);
        }
        if mvcc.compact_rev != compacted_before {
            // Only now: the compact revision is in the WAL ahead of the deletes.
            self.compactor.compact(mvcc.compact_rev);
        }
        applied.last_applied = Some(last_log_id);
        if let Some(membership) = new_membership {
            applied.membership = membership.clone();
            self.applied_membership.send_replace(membership);
        }
        drop(applied);
        drop(member_attrs);
        drop(alarms);
        drop(auth);
        drop(leases);
        drop(mvcc);
        self.applied_index.send_replace(last_log_id.index);
        Ok(responses)
    }

    /// Every member registers a simple token when its Authenticate entry
    /// applies, named by the entry's index, so that any member accepts it.
    fn apply_token_effect(&self, effect: TokenEffect, index: u64, response: &mut WriteResponse) {
        let mut tokens = self.tokens.lock();
        match effect {
            TokenEffect::Issued { name, simple_token_prefix } if !simple_token_prefix.is_empty() => {
                let token = simple_token(&simple_token_prefix, index);
                if let Some(write_response::Response::Auth(auth)) = &mut response.response {
                    if let Some(auth_response::Response::Authenticate(result)) = &mut auth.response {
                        result.token = token.clone();
                    }
                }
                tokens.issue(token, name, std::time::Instant::now());
            }
            TokenEffect::Issued { .. } => {}
            TokenEffect::RevokeUser(name) => tokens.revoke_user(&name),
            TokenEffect::RevokeAll => tokens.clear(),
        }
    }
}

/// etcd's alarm store: activating twice or deactivating what is not active changes nothing.
fn apply_alarm(alarms: &mut Vec<(u64, AlarmType)>, request: &AlarmRequest) -> Option<AlarmMember> {
    let alarm = AlarmType::try_from(request.alarm).ok()?;
    let entry = (request.member_id, alarm);
    let member = AlarmMember { member_id: request.member_id, alarm: request.alarm };
    match AlarmAction::try_from(request.action).ok()? {
        AlarmAction::Activate if !alarms.contains(&entry) && alarm != AlarmType::None => {
            alarms.push(entry);
            Some(member)
        }
        AlarmAction::Deactivate if alarms.contains(&entry) => {
            alarms.retain(|active| *active != entry);
            Some(member)
        }
        _ => None,
    }
}

fn meta_put(key: &[u8], value: Vec<u8>) -> WriteOp {
    WriteOp::Put { cf: schema::CF_META, key: key.to_vec(), value }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use cairn_proto::cairnpb::WriteRequest;
    use cairn_proto::etcdserverpb::{CompactionRequest, PutRequest};
    use openraft::vote::RaftLeaderId;

    use crate::types::CommittedLeaderId;

    use super::*;

    type Entry = (LogId, Option<Proposal>, Option<StoredMembership>);

    fn options() -> StateOptions {
        StateOptions {
            event_log_capacity: 64,
            min_lease_ttl: 2,
            compaction_batch_limit: 100,
            compaction_sleep: Duration::from_millis(10),
            simple_token_ttl: Duration::from_secs(300),
        }
    }

    fn entry(index: u64, request: write_request::Request) -> Entry {
        let log_id = LogId::new(CommittedLeaderId::new(1, 1), index);
        (log_id, Some(Proposal(vec![WriteRequest { request: Some(request), auth_info: None }])), None)
    }

    fn put(index: u64) -> Entry {
        let put = PutRequest { key: b"a".to_vec(), value: index.to_string().into_bytes(), ..Default::default() };
        entry(index, write_request::Request::Put(put))
    }

    fn fresh_state() -> (tempfile::TempDir, Arc<Engine>, KvState) {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(Engine::open(dir.path()).expect("open"));
        let state = KvState::open(engine.clone(), options()).expect("state");
        (dir, engine, state)
    }

    async fn physically_compacted(state: &KvState, revision: i64) {
        let done = tokio::time::timeout(Duration::from_secs(10), state.physically_compacted(revision)).await;
        assert!(matches!(done, Ok(Ok(()))), "physical compaction finished");
    }

    #[test]
    fn no_prev_kv_from_below_the_compact_revision_while_the_walk_is_pending() {
        let (_dir, _engine, state) = fresh_state();
        state.apply_entries(vec![put(1), put(2), put(3)]).expect("apply");
        let event_at = |revision: i64| Event {
            r#type: EventType::Put as i32,
            kv: Some(KeyValue { key: b"a".to_vec(), mod_revision: revision, version: 3, ..Default::default() }),
            prev_kv: None,
        };
        let mut events = [event_at(4)];
        state.fill_prev_kvs(&mut events);
        assert_eq!(events[0].prev_kv.as_ref().map(|kv| kv.value.clone()), Some(b"2".to_vec()));
        // As a compaction at 4 just applied: the index still holds 3 until the compactor walks it.
        state.mvcc.write().compact_rev = 4;
        let mut events = [event_at(4)];
        state.fill_prev_kvs(&mut events);
        assert_eq!(events[0].prev_kv, None, "etcd's range at 3 is refused as compacted");
    }

    #[tokio::test]
    async fn compaction_deletes_after_apply_and_resumes_after_a_restart() {
        let (_dir, engine, state) = fresh_state();
        state.apply_entries((1..=500).map(put).collect()).expect("puts");
        assert_eq!((state.current_revision(), engine.count(schema::CF_KV)), (501, 500));

        let compact = CompactionRequest { revision: 501, physical: true };
        state.apply_entries(vec![entry(501, write_request::Request::Compaction(compact))]).expect("compact");
        assert_eq!(state.compact_revision(), 501, "decided in apply");
        physically_compacted(&state, 501).await;
        assert_eq!(engine.count(schema::CF_KV), 1, "only the latest value of a is left");
        let read = state.range(&RangeRequest { key: b"a".to_vec(), ..Default::default() }).expect("range");
        assert_eq!(read.kvs[0].value, b"500");

        // A crash before the compactor finished leaves unreachable values behind.
        drop(state);
        let leftovers: Vec<WriteOp> = (100..200)
            .map(|main| {
                let kv =
                    KeyValue { key: b"a".to_vec(), value: b"old".to_vec(), mod_revision: main, ..Default::default() };
                WriteOp::Put { cf: schema::CF_KV, key: Revision::new(main, 0).to_key(false), value: kv.encode_to_vec() }
            })
            .collect();
        // And a tombstone whose put was deleted before the crash.
        let orphan = KeyValue { key: b"gone".to_vec(), mod_revision: 300, ..Default::default() };
        let mut leftovers = leftovers;
        leftovers.push(WriteOp::Put {
            cf: schema::CF_KV,
            key: Revision::new(300, 0).to_key(true),
            value: orphan.encode_to_vec(),
        });
        engine.write(&leftovers, Durability::Sync).expect("leftovers");
        let state = KvState::open(engine.clone(), options()).expect("reopen");
        physically_compacted(&state, 501).await;
        assert_eq!(engine.count(schema::CF_KV), 1, "the next start deletes what was left");
    }

    #[test]
    fn a_put_reads_its_previous_value_only_while_a_watcher_wants_it_and_a_late_watcher_reads_it_back() {
        let (_dir, _, state) = fresh_state();
        state.apply_entries((1..=2).map(put).collect()).expect("puts");
        let watcher = state.watch_prev_kvs();
        state.apply_entries(vec![put(3)]).expect("put");
        drop(watcher);
        state.apply_entries(vec![put(4)]).expect("put");
        let mut events = state.events().read(2, 5).expect("in memory");
        let prev_values = |events: &[Event]| -> Vec<Option<Vec<u8>>> {
            events.iter().map(|event| event.prev_kv.as_ref().map(|kv| kv.value.clone())).collect()
        };
        assert_eq!(prev_values(&events), [None, None, Some(b"2".to_vec()), None], "kept only while watched");
        state.fill_prev_kvs(&mut events);
        let expected = [None, Some(b"1".to_vec()), Some(b"2".to_vec()), Some(b"3".to_vec())];
        assert_eq!(prev_values(&events), expected, "the first put had none; the others are read back");
        let versions: Vec<i64> =
            events.iter().filter_map(|event| event.prev_kv.as_ref().map(|kv| kv.version)).collect();
        assert_eq!(versions, [1, 2, 3]);
        let stored = state.stored_events(2, 5).expect("stored");
        assert!(stored.iter().all(|event| event.prev_kv.is_none()), "storage holds no previous values");
    }

    #[test]
    fn events_that_need_no_previous_value_are_passed_without_taking_the_lock() {
        let (_dir, _, state) = fresh_state();
        let watcher = state.watch_prev_kvs();
        state.apply_entries((1..=2).map(put).collect()).expect("puts");
        drop(watcher);
        let events = state.events().read(2, 3).expect("in memory");
        assert_eq!(events.iter().map(lacks_prev_kv).collect::<Vec<_>>(), [false, false], "a create; a carried value");
        let bare = |kind: EventType, version| Event {
            r#type: kind as i32,
            kv: Some(KeyValue { key: b"a".to_vec(), version, ..Default::default() }),
            prev_kv: None,
        };
        assert!(lacks_prev_kv(&bare(EventType::Put, 2)) && lacks_prev_kv(&bare(EventType::Delete, 0)));
        let state = Arc::new(state);
        let held = state.mvcc.write();
        let (done, finished) = std::sync::mpsc::channel();
        let filler = state.clone();
        let thread = std::thread::spawn(move || {
            let mut events = events;
            filler.fill_prev_kvs(&mut events);
            let _ = done.send(events);
        });
        let filled = finished.recv_timeout(Duration::from_secs(2));
        drop(held);
        thread.join().expect("filler");
        let filled = filled.expect("returned while apply held the lock");
        let prev_values: Vec<_> =
            filled.iter().map(|event| event.prev_kv.as_ref().map(|kv| kv.value.clone())).collect();
        assert_eq!(prev_values, [None, Some(b"1".to_vec())]);
    }

    #[tokio::test]
    async fn a_put_after_a_restart_keeps_counting_versions_that_a_compaction_removed() {
        let (_dir, engine, state) = fresh_state();
        state.apply_entries((1..=3).map(put).collect()).expect("puts");
        let compact = CompactionRequest { revision: 4, physical: true };
        state.apply_entries(vec![entry(4, write_request::Request::Compaction(compact))]).expect("compact");
        physically_compacted(&state, 4).await;
        drop(state);
        let state = KvState::open(engine, options()).expect("reopen");
        state.apply_entries(vec![put(5)]).expect("put");
        let read = state.range(&RangeRequest { key: b"a".to_vec(), ..Default::default() }).expect("range");
        let kv = &read.kvs[0];
        assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 5, 4), "as if never restarted");
    }
}
