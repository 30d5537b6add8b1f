//! The Raft log in its own files ([`crate::wal`]), the vote and the purged
//! index in the engine. On a leader with peers an append is written at once
//! (so that replication can read it) and fsynced by the WAL sync thread, which
//! tells openraft it is durable only after the fsync, so the leader's fsync
//! overlaps its followers' round. openraft 0.10 goes on appending (and
//! replicating) while a flush is pending, so one fsync covers every append
//! that queued meanwhile. Where nothing could run beside the fsync (a
//! follower, or a leader alone), the append fsyncs inline on openraft's core
//! task instead, saving the hand-off to the thread and back (measured:
//! docs/benchmarks.md).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::io;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};

use super::types::{decode, encode, Entry, LogId, Proposal, TypeConfig, Vote};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, EngineError, WriteOp};
use crate::metrics::METRICS;
use crate::wal::{Record, Wal};

#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    wal: Arc<Wal>,
    wal_sync: Arc<WalSync>,
    /// Whether appends fsync inline: see [`LogStore::inline_fsync`].
    inline_fsync: Arc<AtomicBool>,
}

/// The WAL sync thread and the queue of appends waiting for its fsync, in log
/// order. When the last log store goes, the queue closes and the thread is joined.
struct WalSync {
    unsynced: std::sync::mpsc::Sender<IOFlushed<TypeConfig>>,
    thread: parking_lot::Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Drop for WalSync {
    fn drop(&mut self) {
        // Close the queue first (a fresh channel replaces ours), then wait for the thread.
        let (closed, _) = std::sync::mpsc::channel();
        drop(std::mem::replace(&mut self.unsynced, closed));
        if let Some(thread) = self.thread.lock().take() {
            let _ = thread.join();
        }
    }
}

impl LogStore {
    /// Opens the log in `wal_dir`. Entries that an older version kept in the
    /// engine move into it first. A member that has voted on a data dir of
    /// this version must find its log: a missing one would be a log forgotten.
    pub fn open(engine: Arc<Engine>, wal_dir: &Path) -> Result<Self, io::Error> {
        let version = engine.get(schema::CF_META, meta::SCHEMA_VERSION).map_err(io::Error::other)?;
        let version = version.map(|bytes| schema::decode_u64("schema version", &bytes)).transpose();
        let upgrading = version.map_err(io::Error::other)? != Some(schema::SCHEMA_VERSION);
        let voted = read_meta::<Vote>(&engine, meta::RAFT_VOTE)?.is_some();
        if voted && !upgrading && !wal_dir.exists() {
            let missing =
                EngineError::Corrupt { what: "raft log".into(), detail: format!("{} is missing", wal_dir.display()) };
            return Err(io::Error::other(missing));
        }
        if upgrading && wal_dir.exists() {
            // Left by an upgrade that did not finish: until the stamp, the engine holds every entry.
            std::fs::remove_dir_all(wal_dir)?;
        }
        let purged: Option<LogId> = read_meta(&engine, meta::RAFT_LAST_PURGED)?;
        let wal = Arc::new(
            Wal::open(wal_dir, purged.map(|log_id| log_id.index), crate::wal::SEGMENT_BYTES)
                .map_err(io::Error::other)?,
        );
        if upgrading {
            move_engine_entries(&engine, &wal).map_err(io::Error::other)?;
        }
        let (unsynced, waiting) = std::sync::mpsc::channel();
        let syncing = wal.clone();
        let thread =
            std::thread::Builder::new().name("cairn-wal-sync".into()).spawn(move || sync_loop(&syncing, waiting))?;
        let wal_sync = Arc::new(WalSync { unsynced, thread: parking_lot::Mutex::new(Some(thread)) });
        Ok(Self { engine, wal, wal_sync, inline_fsync: Arc::new(AtomicBool::new(true)) })
    }

    /// The switch between fsyncing appends inline (true: no replication to
    /// overlap with, as on a follower or a lone leader) and on the WAL sync
    /// thread (a leader with peers, whose fsync overlaps their round). Either
    /// is correct; the server sets it as the member's role changes.
    pub fn inline_fsync(&self) -> Arc<AtomicBool> {
        self.inline_fsync.clone()
    }

    async fn write_meta<T: serde::Serialize>(
        &self,
        key: &[u8],
        value: &T,
        durability: Durability,
    ) -> Result<(), io::Error> {
        let value = encode(value).map_err(io::Error::other)?;
        let ops = vec![WriteOp::Put { cf: schema::CF_META, key: key.to_vec(), value }];
        if durability == Durability::Buffered {
            return self.engine.write(&ops, durability).map_err(io::Error::other);
        }
        // Off the async workers: no tokio worker waits for an fsync.
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.write(&ops, durability)).await {
            Ok(written) => written.map_err(io::Error::other),
            Err(join) => Err(io::Error::other(join.to_string())),
        }
    }

    /// The entry at `index`, if the log holds it.
    fn entry_at(&self, index: u64) -> Result<Option<Entry>, io::Error> {
        let stored = self.wal.read(index, index.saturating_add(1)).map_err(io::Error::other)?;
        stored.first().map(|(index, bytes)| decode_entry(*index, bytes)).transpose().map_err(io::Error::other)
    }
}

fn read_meta<T: serde::de::DeserializeOwned>(engine: &Engine, key: &[u8]) -> Result<Option<T>, io::Error> {
    let Some(bytes) = engine.get(schema::CF_META, key).map_err(io::Error::other)? else {
        return Ok(None);
    };
    let corrupt = |err: bincode::Error| EngineError::Corrupt {
        what: format!("meta record {}", String::from_utf8_lossy(key)),
        detail: err.to_string(),
    };
    Ok(Some(decode(&bytes).map_err(corrupt).map_err(io::Error::other)?))
}

/// Moves the entries of a data dir written before the WAL (schema 1 kept
/// them in the engine), then stamps the data dir with this schema version, in
/// the batch that deletes them. Copied and synced first: a crash before the
/// stamp copies them again, and a copy replaces the same entries.
fn move_engine_entries(engine: &Engine, wal: &Wal) -> Result<(), EngineError> {
    const CHUNK_BYTES: usize = 16 << 20;
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    let mut moved = 0;
    let write = |chunk: &mut Vec<(u64, Vec<u8>)>| -> Result<(), EngineError> {
        let records: Vec<Record> =
            chunk.iter().map(|(index, payload)| Record::Entry { index: *index, payload }).collect();
        wal.write(&records).map_err(|err| EngineError::Io(io::Error::other(err)))?;
        chunk.clear();
        Ok(())
    };
    engine.scan_from(schema::CF_RAFT_LOG, &[], |key, value| {
        chunk.push((schema::decode_log_key(key)?, value.to_vec()));
        chunk_bytes += value.len();
        moved += 1;
        if chunk_bytes >= CHUNK_BYTES {
            write(&mut chunk)?;
            chunk_bytes = 0;
        }
        Ok(true)
    })?;
    write(&mut chunk)?;
    wal.sync().map_err(|err| EngineError::Io(io::Error::other(err)))?;
    let all = WriteOp::DeleteRange {
        cf: schema::CF_RAFT_LOG,
        from: schema::log_key(0).to_vec(),
        to: schema::log_key(u64::MAX).to_vec(),
    };
    engine.write(&[all, schema::schema_version_record()], Durability::Sync)?;
    if moved > 0 {
        tracing::info!(entries = moved, "moved the raft log from the engine into its own files");
    }
    Ok(())
}

/// Decodes a stored entry, which must be the entry of its own index.
fn decode_entry(index: u64, bytes: &[u8]) -> Result<Entry, EngineError> {
    let corrupt = |detail: String| EngineError::Corrupt { what: format!("raft log entry {index}"), detail };
    let entry: Entry = decode(bytes).map_err(|err| corrupt(err.to_string()))?;
    if entry.log_id.index != index {
        return Err(corrupt(format!("holds the entry of index {}", entry.log_id.index)));
    }
    Ok(entry)
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry>, io::Error> {
        let from = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let to = match range.end_bound() {
            Bound::Included(index) => index.saturating_add(1),
            Bound::Excluded(index) => *index,
            Bound::Unbounded => u64::MAX,
        };
        let stored = self.wal.read(from, to).map_err(io::Error::other)?;
        stored.iter().map(|(index, bytes)| decode_entry(*index, bytes).map_err(io::Error::other)).collect()
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        read_meta(&self.engine, meta::RAFT_VOTE)
    }

    /// Replication reads here. An AppendEntries carries at most
    /// [`MAX_APPEND_BYTES`] of requests, or one entry: like etcd's
    /// `MaxSizePerMsg`, it keeps a catch-up message well inside an election
    /// timeout, so a follower that is catching up goes on hearing from its leader.
    async fn limited_get_log_entries(&mut self, start: u64, end: u64) -> Result<Vec<Entry>, io::Error> {
        let mut entries = self.try_get_log_entries(start..end).await?;
        entries.truncate(entries_within(&entries, MAX_APPEND_BYTES));
        Ok(entries)
    }
}

/// An AppendEntries' bound of request bytes.
const MAX_APPEND_BYTES: usize = crate::server::batch::MAX_BATCH_BYTES;

/// How many leading entries fit in `limit` bytes of requests; at least one.
fn entries_within(entries: &[Entry], limit: usize) -> usize {
    let mut bytes = 0;
    let fitting = entries.iter().take_while(|entry| {
        if let EntryPayload::Normal(Proposal(requests)) = &entry.payload {
            bytes += requests.iter().map(prost::Message::encoded_len).sum::<usize>();
        }
        bytes <= limit
    });
    fitting.count().max(1)
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, io::Error> {
        let last_purged_log_id: Option<LogId> = read_meta(&self.engine, meta::RAFT_LAST_PURGED)?;
        METRICS.raft_purged_index.store(last_purged_log_id.map_or(0, |log_id| log_id.index), Ordering::Relaxed);
        let last_log_id = match self.wal.last_index() {
            Some(index) => self.entry_at(index)?.map(|entry| entry.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta(meta::RAFT_VOTE, vote, Durability::Sync).await
    }

    /// Counted, not stored: the state machine stores its applied log id in
    /// the batch of the data it covers, and openraft restarts from that. A
    /// committed id saved beside it could only be ahead by entries this
    /// member had not applied yet, which it applies once it hears the commit
    /// again (a member alone: at its first election). Storing it cost every
    /// member an engine write per commit (docs/benchmarks.md).
    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        METRICS.proposals_committed.store(committed.map_or(0, |log_id| log_id.index), Ordering::Relaxed);
        Ok(())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut encoded = Vec::new();
        for entry in entries {
            encoded.push((entry.log_id.index, encode(&entry).map_err(io::Error::other)?));
        }
        let records: Vec<Record> =
            encoded.iter().map(|(index, payload)| Record::Entry { index: *index, payload }).collect();
        self.wal.write(&records).map_err(io::Error::other)?;
        if self.inline_fsync.load(Ordering::Relaxed) {
            let started = std::time::Instant::now();
            self.wal.sync().map_err(io::Error::other)?;
            METRICS.wal_fsync.observe(started.elapsed());
            // An append still queued for the thread completes later with an
            // older id, which openraft ignores: this fsync covered it too.
            callback.io_completed(Ok(()));
            return Ok(());
        }
        self.wal_sync.unsynced.send(callback).map_err(|_| io::Error::other("the WAL sync thread has stopped"))
    }

    /// Keeps the log up to and including `last`, deletes every entry after it.
    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let from = last.map_or(0, |log_id| log_id.index.saturating_add(1));
        self.wal.write(&[Record::Truncate { from }]).and_then(|()| self.wal.sync()).map_err(io::Error::other)
    }

    /// The purged index is synced first: that also makes every state-machine
    /// write before it durable, which the purged entries no longer back.
    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        self.write_meta(meta::RAFT_LAST_PURGED, &log_id, Durability::Sync).await?;
        self.wal.purge(log_id.index);
        METRICS.raft_purged_index.store(log_id.index, Ordering::Relaxed);
        Ok(())
    }
}

/// fsyncs the WAL for every append that is waiting, oldest first, then completes
/// their callbacks in order. Ends when the log store is dropped.
fn sync_loop(wal: &Wal, waiting: std::sync::mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = waiting.recv() {
        let mut flushed = vec![first];
        flushed.extend(waiting.try_iter());
        let started = std::time::Instant::now();
        let synced = wal.sync();
        METRICS.wal_fsync.observe(started.elapsed());
        for callback in flushed {
            let result = synced.as_ref().map(|_| ()).map_err(|err| io::Error::other(err.to_string()));
            callback.io_completed(result);
        }
    }
}

#[cfg(test)]
mod tests {
    use cairn_proto::cairnpb::{write_request, WriteRequest};
    use cairn_proto::etcdserverpb::PutRequest;

    use super::*;
    use openraft::vote::RaftLeaderId;

    use crate::types::{CommittedLeaderId, Member, NodeId};

    fn entry(index: u64, payload: EntryPayload<Proposal, NodeId, Member>) -> Entry {
        Entry { log_id: LogId::new(CommittedLeaderId::new(1, 1), index), payload }
    }

    fn put(index: u64, value_bytes: usize) -> Entry {
        let put = PutRequest { key: b"k".to_vec(), value: vec![0; value_bytes], ..Default::default() };
        let request = WriteRequest { request: Some(write_request::Request::Put(put)), auth_info: None };
        entry(index, EntryPayload::Normal(Proposal(vec![request])))
    }

    #[test]
    fn append_entries_are_bounded_by_bytes_but_carry_at_least_one_entry() {
        let small: Vec<Entry> = (1..=5).map(|index| put(index, 100)).collect();
        assert_eq!(entries_within(&small, 1024), 5);
        let large: Vec<Entry> = (1..=5).map(|index| put(index, 3 << 20)).collect();
        assert_eq!(entries_within(&large, MAX_APPEND_BYTES), 2, "two 3 MiB entries fit in 8 MiB");
        assert_eq!(entries_within(&large[..1], 1024), 1, "an entry larger than the bound still goes");
        assert_eq!(entries_within(&[entry(9, EntryPayload::Blank)], 0), 1);
    }

    fn open(dir: &Path) -> (Arc<Engine>, LogStore) {
        let engine = Arc::new(Engine::open(&dir.join(schema::DB_DIR)).expect("engine"));
        let store = LogStore::open(engine.clone(), &dir.join(schema::WAL_DIR)).expect("log store");
        (engine, store)
    }

    async fn all_entries(store: &mut LogStore) -> Vec<Entry> {
        store.try_get_log_entries(..).await.expect("read")
    }

    #[tokio::test]
    async fn a_log_an_older_version_kept_in_the_engine_moves_into_the_wal() {
        let dir = tempfile::tempdir().expect("tempdir");
        let written: Vec<Entry> = (0..5).map(|index| put(index, 10)).collect();
        {
            let engine = Engine::open(&dir.path().join(schema::DB_DIR)).expect("engine");
            let mut ops: Vec<WriteOp> = written
                .iter()
                .map(|entry| WriteOp::Put {
                    cf: schema::CF_RAFT_LOG,
                    key: schema::log_key(entry.log_id.index).to_vec(),
                    value: encode(entry).expect("encode"),
                })
                .collect();
            let version_1 = 1u64.to_be_bytes().to_vec();
            ops.push(WriteOp::Put { cf: schema::CF_META, key: meta::SCHEMA_VERSION.to_vec(), value: version_1 });
            engine.write(&ops, Durability::Sync).expect("write");
        }
        for start in ["first", "second"] {
            let (engine, mut store) = open(dir.path());
            assert_eq!(all_entries(&mut store).await, written, "the {start} start reads the moved entries");
            assert_eq!(engine.count(schema::CF_RAFT_LOG), 0, "the engine holds none after the {start} start");
            let state = store.get_log_state().await.expect("log state");
            assert_eq!(state.last_log_id, Some(written[4].log_id));
            let version = engine.get(schema::CF_META, meta::SCHEMA_VERSION).expect("read");
            assert_eq!(version, Some(schema::SCHEMA_VERSION.to_be_bytes().to_vec()), "stamped after the move");
        }
        std::fs::remove_dir_all(dir.path().join(schema::WAL_DIR)).expect("remove the log");
        let engine = Arc::new(Engine::open(&dir.path().join(schema::DB_DIR)).expect("engine"));
        let vote = Vote::new(1, 1);
        engine
            .write(
                &[WriteOp::Put {
                    cf: schema::CF_META,
                    key: meta::RAFT_VOTE.to_vec(),
                    value: encode(&vote).expect("encode"),
                }],
                Durability::Sync,
            )
            .expect("vote");
        let refused = LogStore::open(engine, &dir.path().join(schema::WAL_DIR)).err().map(|err| err.to_string());
        assert!(refused.as_deref().unwrap_or_default().contains("is missing"), "{refused:?}");
    }

    #[tokio::test]
    async fn an_upgrade_that_did_not_finish_starts_over_from_the_engine() {
        let dir = tempfile::tempdir().expect("tempdir");
        {
            let engine = Engine::open(&dir.path().join(schema::DB_DIR)).expect("engine");
            let version_1 = 1u64.to_be_bytes().to_vec();
            let stamp = WriteOp::Put { cf: schema::CF_META, key: meta::SCHEMA_VERSION.to_vec(), value: version_1 };
            engine.write(&[stamp], Durability::Sync).expect("write");
            let stale = Wal::open(&dir.path().join(schema::WAL_DIR), None, crate::wal::SEGMENT_BYTES).expect("wal");
            let entries: Vec<Vec<u8>> = (0..3).map(|index| encode(&put(index, 1)).expect("encode")).collect();
            let records: Vec<Record> = entries
                .iter()
                .enumerate()
                .map(|(index, payload)| Record::Entry { index: index as u64, payload })
                .collect();
            stale.write(&records).expect("write");
            stale.sync().expect("sync");
        }
        let (_engine, mut store) = open(dir.path());
        assert!(all_entries(&mut store).await.is_empty(), "the engine, which holds no entry, is the log");
    }
}
