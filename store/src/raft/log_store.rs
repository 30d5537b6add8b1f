//! The Raft log and vote in the engine. On a leader with peers an append is
//! written at once (so that replication can read it) and fsynced by the WAL
//! sync thread, which tells openraft it is durable only after the fsync, so
//! the leader's fsync overlaps its followers' round. openraft 0.10 goes on
//! appending (and replicating) while a flush is pending, so one fsync covers
//! every append that queued meanwhile. Where nothing could run beside the
//! fsync (a follower, or a leader alone), the append fsyncs inline on
//! openraft's core task instead, saving the hand-off to the thread and back
//! (measured: docs/benchmarks.md).

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::io;

use openraft::storage::{IOFlushed, LogState, RaftLogStorage};
use openraft::{EntryPayload, OptionalSend, RaftLogReader};

use super::types::{decode, encode, Entry, LogId, Proposal, TypeConfig, Vote};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, EngineError, WriteOp};
use crate::metrics::METRICS;

#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    wal_sync: Arc<WalSync>,
    /// The last committed log id, not yet written: it rides in the next
    /// append's batch instead of costing a write of its own between a commit
    /// and its apply. It is a hint (the applied index is durable with the
    /// state, and a lost commit is re-learned from the leader).
    unsaved_committed: Option<Option<LogId>>,
    /// Whether appends fsync inline: see [`LogStore::inline_fsync`].
    inline_fsync: Arc<AtomicBool>,
}

/// The WAL sync thread and the queue of appends waiting for its fsync, in log
/// order. When the last log store goes, the queue closes and the thread is
/// joined: it holds the engine, and a RocksDB closed by a thread still running
/// while the process exits aborts it ("pthread lock: Invalid argument").
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
    pub fn new(engine: Arc<Engine>) -> Result<Self, std::io::Error> {
        let (unsynced, waiting) = std::sync::mpsc::channel();
        let syncing = engine.clone();
        let thread =
            std::thread::Builder::new().name("cairn-wal-sync".into()).spawn(move || sync_loop(&syncing, waiting))?;
        let wal_sync = Arc::new(WalSync { unsynced, thread: parking_lot::Mutex::new(Some(thread)) });
        Ok(Self { engine, wal_sync, unsaved_committed: None, inline_fsync: Arc::new(AtomicBool::new(true)) })
    }

    /// The switch between fsyncing appends inline (true: no replication to
    /// overlap with, as on a follower or a lone leader) and on the WAL sync
    /// thread (a leader with peers, whose fsync overlaps their round). Either
    /// is correct; the server sets it as the member's role changes.
    pub fn inline_fsync(&self) -> Arc<AtomicBool> {
        self.inline_fsync.clone()
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, io::Error> {
        let Some(bytes) = self.engine.get(schema::CF_META, key).map_err(io::Error::other)? else {
            return Ok(None);
        };
        let corrupt = |err: bincode::Error| EngineError::Corrupt {
            what: format!("meta record {}", String::from_utf8_lossy(key)),
            detail: err.to_string(),
        };
        Ok(Some(decode(&bytes).map_err(corrupt).map_err(io::Error::other)?))
    }

    async fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), io::Error> {
        let value = encode(value).map_err(io::Error::other)?;
        let op = WriteOp::Put { cf: schema::CF_META, key: key.to_vec(), value };
        self.write_synced(vec![op]).await
    }

    /// A synced write, off the async workers: no tokio worker waits for an fsync.
    async fn write_synced(&self, ops: Vec<WriteOp>) -> Result<(), io::Error> {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.write(&ops, Durability::Sync)).await {
            Ok(written) => written.map_err(io::Error::other),
            Err(join) => Err(io::Error::other(join.to_string())),
        }
    }
}

/// Decodes a stored entry, which must sit under its own index.
fn decode_entry(key: &[u8], value: &[u8]) -> Result<Entry, EngineError> {
    let index = schema::decode_log_key(key)?;
    let corrupt = |detail: String| EngineError::Corrupt { what: format!("raft log entry {index}"), detail };
    let entry: Entry = decode(value).map_err(|err| corrupt(err.to_string()))?;
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
        let start = match range.start_bound() {
            Bound::Included(index) => *index,
            Bound::Excluded(index) => index.saturating_add(1),
            Bound::Unbounded => 0,
        };
        let mut entries = Vec::new();
        self.engine
            .scan_from(schema::CF_RAFT_LOG, &schema::log_key(start), |key, value| {
                if !range.contains(&schema::decode_log_key(key)?) {
                    return Ok(false);
                }
                entries.push(decode_entry(key, value)?);
                Ok(true)
            })
            .map_err(io::Error::other)?;
        Ok(entries)
    }

    async fn read_vote(&mut self) -> Result<Option<Vote>, io::Error> {
        self.read_meta(meta::RAFT_VOTE)
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
        let last_purged_log_id: Option<LogId> = self.read_meta(meta::RAFT_LAST_PURGED)?;
        METRICS.raft_purged_index.store(last_purged_log_id.map_or(0, |log_id| log_id.index), Ordering::Relaxed);
        let last = self.engine.last(schema::CF_RAFT_LOG).map_err(io::Error::other)?;
        let last_log_id = match last {
            Some((key, value)) => Some(decode_entry(&key, &value).map_err(io::Error::other)?.log_id),
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote) -> Result<(), io::Error> {
        self.write_meta(meta::RAFT_VOTE, vote).await
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), io::Error> {
        METRICS.proposals_committed.store(committed.map_or(0, |log_id| log_id.index), Ordering::Relaxed);
        self.unsaved_committed = Some(committed);
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, io::Error> {
        if let Some(committed) = self.unsaved_committed {
            return Ok(committed);
        }
        Ok(self.read_meta::<Option<LogId>>(meta::RAFT_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: IOFlushed<TypeConfig>) -> Result<(), io::Error>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut ops = Vec::new();
        if let Some(committed) = self.unsaved_committed.take() {
            let value = encode(&committed).map_err(io::Error::other)?;
            ops.push(WriteOp::Put { cf: schema::CF_META, key: meta::RAFT_COMMITTED.to_vec(), value });
        }
        for entry in entries {
            let value = encode(&entry).map_err(io::Error::other)?;
            ops.push(WriteOp::Put {
                cf: schema::CF_RAFT_LOG,
                key: schema::log_key(entry.log_id.index).to_vec(),
                value,
            });
        }
        if self.inline_fsync.load(Ordering::Relaxed) {
            let started = std::time::Instant::now();
            self.engine.write(&ops, Durability::Sync).map_err(io::Error::other)?;
            METRICS.wal_fsync.observe(started.elapsed());
            // An append still queued for the thread completes later with an
            // older id, which openraft ignores: this fsync covered it too.
            callback.io_completed(Ok(()));
            return Ok(());
        }
        self.engine.write(&ops, Durability::Buffered).map_err(io::Error::other)?;
        self.wal_sync.unsynced.send(callback).map_err(|_| io::Error::other("the WAL sync thread has stopped"))
    }

    /// Keeps the log up to and including `last`, deletes every entry after it.
    async fn truncate_after(&mut self, last: Option<LogId>) -> Result<(), io::Error> {
        let op = WriteOp::DeleteRange {
            cf: schema::CF_RAFT_LOG,
            from: schema::log_key(last.map_or(0, |log_id| log_id.index.saturating_add(1))).to_vec(),
            to: schema::log_key(u64::MAX).to_vec(),
        };
        self.write_synced(vec![op]).await
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), io::Error> {
        let ops = vec![
            WriteOp::Put {
                cf: schema::CF_META,
                key: meta::RAFT_LAST_PURGED.to_vec(),
                value: encode(&log_id).map_err(io::Error::other)?,
            },
            WriteOp::DeleteRange {
                cf: schema::CF_RAFT_LOG,
                from: schema::log_key(0).to_vec(),
                to: schema::log_key(log_id.index.saturating_add(1)).to_vec(),
            },
        ];
        self.write_synced(ops).await?;
        METRICS.raft_purged_index.store(log_id.index, Ordering::Relaxed);
        Ok(())
    }
}

/// fsyncs the WAL for every append that is waiting, oldest first, then completes
/// their callbacks in order. Ends when the log store is dropped.
fn sync_loop(engine: &Engine, waiting: std::sync::mpsc::Receiver<IOFlushed<TypeConfig>>) {
    while let Ok(first) = waiting.recv() {
        let mut flushed = vec![first];
        flushed.extend(waiting.try_iter());
        let started = std::time::Instant::now();
        let synced = engine.sync_wal();
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
}
