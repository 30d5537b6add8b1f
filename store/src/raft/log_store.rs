//! The Raft log and vote in the engine. An append is written at once (so that
//! replication can read it) and fsynced by the WAL sync thread, which tells
//! openraft it is durable only after the fsync; no tokio worker waits on the
//! disk. (openraft 0.9's core awaits each callback before its next append, so
//! an fsync covers one append; the thread takes whatever has queued anyway.)

use std::fmt::Debug;
use std::ops::{Bound, RangeBounds};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage};
use openraft::{OptionalSend, RaftLogReader, StorageIOError, Vote};

use super::types::{decode, encode, Entry, LogId, NodeId, StorageError, TypeConfig};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, EngineError, WriteOp};
use crate::metrics::METRICS;

#[derive(Clone)]
pub struct LogStore {
    engine: Arc<Engine>,
    wal_sync: Arc<WalSync>,
}

/// The WAL sync thread and the queue of appends waiting for its fsync, in log
/// order. When the last log store goes, the queue closes and the thread is
/// joined: it holds the engine, and a RocksDB closed by a thread still running
/// while the process exits aborts it ("pthread lock: Invalid argument").
struct WalSync {
    unsynced: std::sync::mpsc::Sender<LogFlushed<TypeConfig>>,
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
        Ok(Self { engine, wal_sync })
    }

    fn read_meta<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>, StorageError> {
        let Some(bytes) = self.engine.get(schema::CF_META, key).map_err(|err| StorageIOError::read(&err))? else {
            return Ok(None);
        };
        let corrupt = |err: bincode::Error| EngineError::Corrupt {
            what: format!("meta record {}", String::from_utf8_lossy(key)),
            detail: err.to_string(),
        };
        Ok(Some(decode(&bytes).map_err(corrupt).map_err(|err| StorageIOError::read(&err))?))
    }

    async fn write_meta<T: serde::Serialize>(&self, key: &[u8], value: &T) -> Result<(), StorageError> {
        let value = encode(value).map_err(|err| StorageIOError::write(&err))?;
        let op = WriteOp::Put { cf: schema::CF_META, key: key.to_vec(), value };
        self.write_synced(vec![op]).await.map_err(|err| StorageIOError::write(&err))?;
        Ok(())
    }

    /// A synced write, off the async workers: no tokio worker waits for an fsync.
    async fn write_synced(&self, ops: Vec<WriteOp>) -> Result<(), EngineError> {
        let engine = self.engine.clone();
        match tokio::task::spawn_blocking(move || engine.write(&ops, Durability::Sync)).await {
            Ok(written) => written,
            Err(join) => Err(EngineError::Io(std::io::Error::other(join.to_string()))),
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
    ) -> Result<Vec<Entry>, StorageError> {
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
            .map_err(|err| StorageIOError::read_logs(&err))?;
        Ok(entries)
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError> {
        let last_purged_log_id: Option<LogId> = self.read_meta(meta::RAFT_LAST_PURGED)?;
        let last = self.engine.last(schema::CF_RAFT_LOG).map_err(|err| StorageIOError::read_logs(&err))?;
        let last_log_id = match last {
            Some((key, value)) => {
                Some(decode_entry(&key, &value).map_err(|err| StorageIOError::read_logs(&err))?.log_id)
            }
            None => last_purged_log_id,
        };
        Ok(LogState { last_purged_log_id, last_log_id })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError> {
        self.write_meta(meta::RAFT_VOTE, vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError> {
        self.read_meta(meta::RAFT_VOTE)
    }

    async fn save_committed(&mut self, committed: Option<LogId>) -> Result<(), StorageError> {
        METRICS.proposals_committed.store(committed.map_or(0, |log_id| log_id.index), Ordering::Relaxed);
        // Buffered: the committed index is a hint, re-learned from the leader after a crash.
        let value = encode(&committed).map_err(|err| StorageIOError::write(&err))?;
        let op = WriteOp::Put { cf: schema::CF_META, key: meta::RAFT_COMMITTED.to_vec(), value };
        self.engine.write(&[op], Durability::Buffered).map_err(|err| StorageIOError::write(&err))?;
        Ok(())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId>, StorageError> {
        Ok(self.read_meta::<Option<LogId>>(meta::RAFT_COMMITTED)?.flatten())
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError>
    where
        I: IntoIterator<Item = Entry> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut ops = Vec::new();
        for entry in entries {
            let value = encode(&entry).map_err(|err| StorageIOError::write_logs(&err))?;
            ops.push(WriteOp::Put {
                cf: schema::CF_RAFT_LOG,
                key: schema::log_key(entry.log_id.index).to_vec(),
                value,
            });
        }
        self.engine.write(&ops, Durability::Buffered).map_err(|err| StorageIOError::write_logs(&err))?;
        self.wal_sync
            .unsynced
            .send(callback)
            .map_err(|_| StorageIOError::write_logs(openraft::AnyError::error("the WAL sync thread has stopped")))?;
        Ok(())
    }

    async fn truncate(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let op = WriteOp::DeleteRange {
            cf: schema::CF_RAFT_LOG,
            from: schema::log_key(log_id.index).to_vec(),
            to: schema::log_key(u64::MAX).to_vec(),
        };
        self.write_synced(vec![op]).await.map_err(|err| StorageIOError::write_logs(&err))?;
        Ok(())
    }

    async fn purge(&mut self, log_id: LogId) -> Result<(), StorageError> {
        let ops = vec![
            WriteOp::Put {
                cf: schema::CF_META,
                key: meta::RAFT_LAST_PURGED.to_vec(),
                value: encode(&log_id).map_err(|err| StorageIOError::write_logs(&err))?,
            },
            WriteOp::DeleteRange {
                cf: schema::CF_RAFT_LOG,
                from: schema::log_key(0).to_vec(),
                to: schema::log_key(log_id.index.saturating_add(1)).to_vec(),
            },
        ];
        self.write_synced(ops).await.map_err(|err| StorageIOError::write_logs(&err))?;
        Ok(())
    }
}

/// fsyncs the WAL for every append that is waiting, oldest first, then completes
/// their callbacks in order. Ends when the log store is dropped.
fn sync_loop(engine: &Engine, waiting: std::sync::mpsc::Receiver<LogFlushed<TypeConfig>>) {
    while let Ok(first) = waiting.recv() {
        let mut flushed = vec![first];
        flushed.extend(waiting.try_iter());
        let started = std::time::Instant::now();
        let synced = engine.sync_wal();
        METRICS.wal_fsync.observe(started.elapsed());
        for callback in flushed {
            let result = synced.as_ref().map(|_| ()).map_err(|err| std::io::Error::other(err.to_string()));
            callback.log_io_completed(result);
        }
    }
}
