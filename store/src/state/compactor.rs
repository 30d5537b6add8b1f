//! Compaction off the apply path, as etcd's scheduled compaction.
//!
//! Apply decides a compaction: it raises the compact revision and writes it
//! with the entry. Here the key index is then walked in chunks, each under the
//! MVCC write lock for at most [`KEYS_PER_CHUNK`] keys or
//! `--compaction-batch-limit` dropped revisions, and the values the dropped
//! entries pointed at are deleted in batches of at most that many revisions
//! with a pause of `--compaction-sleep-interval` between batches. So neither
//! the walk of a million revisions nor their deletes stall the writes.
//!
//! Nothing waits for it but `Compact{physical: true}`. A crash before it
//! finishes leaves unreachable values behind; the next start finds them when
//! it compacts the rebuilt index and schedules them again. So a failed engine
//! write stops the compactor, and the server stops the member on it, as a
//! failed backend commit stops etcd.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock, RwLockWriteGuard};
use tokio::sync::watch;

use crate::engine::{schema, Durability, Engine, EngineError, WriteOp};
use crate::mvcc::{ChunkLimit, Mvcc, Revision};

/// Keys one chunk of the index walk visits at most: about a millisecond under
/// the lock when no key has history to drop.
const KEYS_PER_CHUNK: usize = 10_000;

enum Job {
    /// Values already known unreachable at `revision` (found at start).
    Delete { revision: i64, garbage: Vec<Revision> },
    /// A compaction applied at `revision`: walk the index, delete what it drops.
    Compact { revision: i64 },
}

pub struct Compactor {
    jobs: Option<mpsc::Sender<Job>>,
    /// The compact revision whose garbage is all deleted. Closed if the compactor stopped on a fault.
    finished: watch::Receiver<i64>,
    /// The engine error it stopped on.
    fault: Arc<Mutex<Option<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    pub fn start(
        engine: Arc<Engine>,
        mvcc: Arc<RwLock<Mvcc>>,
        batch_limit: usize,
        sleep: Duration,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let (finished_tx, finished) = watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let fault = Arc::new(Mutex::new(None));
        let worker = Worker { engine, mvcc, batch_limit: batch_limit.max(1), sleep, stop: stop.clone() };
        let worker_fault = fault.clone();
        let thread = std::thread::Builder::new().name("cairn-compactor".into()).spawn(move || {
            if let Err(err) = worker.run(&queue, &finished_tx) {
                *worker_fault.lock() = Some(err.to_string());
            }
        })?;
        Ok(Self { jobs: Some(jobs), finished, fault, stop, thread: Some(thread) })
    }

    /// Deletes `garbage` in the background; `revision` counts as physically
    /// compacted once it and every earlier job are done.
    pub fn delete(&self, revision: i64, garbage: Vec<Revision>) {
        self.send(Job::Delete { revision, garbage });
    }

    /// Compacts the index at `revision`, which apply has just made the compact
    /// revision, and deletes what that drops.
    pub fn compact(&self, revision: i64) {
        self.send(Job::Compact { revision });
    }

    fn send(&self, job: Job) {
        if let Some(jobs) = &self.jobs {
            // A send fails only once the thread has stopped; the garbage then waits for the next start.
            let _ = jobs.send(job);
        }
    }

    pub fn finished(&self) -> watch::Receiver<i64> {
        self.finished.clone()
    }

    /// Returns the engine error the compactor stopped on, once it has; pending
    /// for as long as it runs. Only a drop stops it otherwise.
    pub async fn fault(&self) -> String {
        let mut finished = self.finished.clone();
        while finished.changed().await.is_ok() {}
        let fault = self.fault.lock().clone();
        fault.unwrap_or_else(|| "the compactor ended".to_string())
    }
}

impl Drop for Compactor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.jobs.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Why a job ended early.
enum Halt {
    Stopped,
    Failed(EngineError),
}

struct Worker {
    engine: Arc<Engine>,
    mvcc: Arc<RwLock<Mvcc>>,
    batch_limit: usize,
    sleep: Duration,
    stop: Arc<AtomicBool>,
}

impl Worker {
    /// Runs jobs until the compactor is dropped, or until an engine write fails.
    fn run(&self, queue: &mpsc::Receiver<Job>, finished: &watch::Sender<i64>) -> Result<(), EngineError> {
        while let Ok(job) = queue.recv() {
            let mut paced = Pacer { sleep: self.sleep, wrote: false };
            let (revision, done) = match job {
                Job::Delete { revision, garbage } => (revision, self.delete(garbage, &mut paced)),
                Job::Compact { revision } => (revision, self.walk(revision, &mut paced)),
            };
            match done {
                Ok(()) => {
                    finished.send_replace(revision);
                }
                Err(Halt::Stopped) => return Ok(()),
                Err(Halt::Failed(err)) => {
                    tracing::error!(error = %err, revision, "physical compaction failed");
                    return Err(err);
                }
            }
        }
        Ok(())
    }

    /// The index walk: a write waits for one chunk at most, never the whole walk.
    fn walk(&self, revision: i64, paced: &mut Pacer) -> Result<(), Halt> {
        let limit = ChunkLimit { keys: KEYS_PER_CHUNK, removed: self.batch_limit };
        let mut after = None;
        loop {
            self.check_stop()?;
            let mut mvcc = self.mvcc.write();
            let chunk = mvcc.index.compact_chunk(revision, after.as_deref(), limit);
            // Straight to a write waiting for it, not to this walk's next chunk.
            RwLockWriteGuard::unlock_fair(mvcc);
            self.delete(chunk.removed, paced)?;
            match chunk.resume_after {
                Some(key) => after = Some(key),
                None => return Ok(()),
            }
        }
    }

    fn delete(&self, mut garbage: Vec<Revision>, paced: &mut Pacer) -> Result<(), Halt> {
        // In revision order: RocksDB's deletes land in few files, and a key's
        // puts go before its tombstone, which a restart relies on.
        garbage.sort_unstable();
        for batch in garbage.chunks(self.batch_limit) {
            self.check_stop()?;
            paced.before_write();
            let ops: Vec<WriteOp> = batch.iter().flat_map(|rev| schema::revision_deletes(*rev)).collect();
            if crate::failpoint::fires("compactor-write-error") {
                return Err(Halt::Failed(crate::failpoint::io_error("compactor-write-error").into()));
            }
            // Buffered: these follow the compaction's own batch in the WAL, and a lost tail is found again at start.
            self.engine.write(&ops, Durability::Buffered).map_err(Halt::Failed)?;
        }
        Ok(())
    }

    fn check_stop(&self) -> Result<(), Halt> {
        if self.stop.load(Ordering::Acquire) {
            Err(Halt::Stopped)
        } else {
            Ok(())
        }
    }
}

/// The pause between two batches of deletes of one job.
struct Pacer {
    sleep: Duration,
    wrote: bool,
}

impl Pacer {
    fn before_write(&mut self) {
        if std::mem::replace(&mut self.wrote, true) {
            std::thread::sleep(self.sleep);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_finished(compactor: &Compactor, revision: i64) {
        let mut finished = compactor.finished();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        runtime.block_on(async {
            let done = tokio::time::timeout(Duration::from_secs(10), finished.wait_for(|done| *done >= revision)).await;
            assert!(matches!(done, Ok(Ok(_))), "the compactor finished the jobs through {revision}");
        });
    }

    fn write_values(engine: &Engine, revs: &[(Revision, bool)]) {
        let ops: Vec<WriteOp> = revs
            .iter()
            .map(|(rev, tombstone)| WriteOp::Put {
                cf: schema::CF_KV,
                key: rev.to_key(*tombstone),
                value: b"v".to_vec(),
            })
            .collect();
        engine.write(&ops, Durability::Buffered).expect("write");
    }

    #[test]
    fn deletes_scheduled_garbage_in_batches_and_reports_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(Engine::open(dir.path()).expect("open"));
        let revs: Vec<Revision> = (1..=2500).map(|main| Revision::new(main, 0)).collect();
        write_values(&engine, &revs.iter().map(|rev| (*rev, rev.main % 2 == 0)).collect::<Vec<_>>());
        let mvcc = Arc::new(RwLock::new(Mvcc::new()));
        let compactor = Compactor::start(engine.clone(), mvcc, 1000, Duration::from_millis(10)).expect("start");
        compactor.delete(2000, revs[..2000].to_vec());
        compactor.delete(2400, revs[2000..2400].to_vec());
        wait_finished(&compactor, 2400);
        assert_eq!(engine.count(schema::CF_KV), 100, "plain and tombstone keys alike are gone; the rest stays");
    }

    #[test]
    fn walks_the_index_in_chunks_and_deletes_what_it_drops() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(Engine::open(dir.path()).expect("open"));
        let mut mvcc = Mvcc::new();
        let mut values = Vec::new();
        // 300 keys written 5 times each (revisions 2..1501), every tenth key then deleted.
        for round in 0..5 {
            for key in 0..300 {
                let rev = Revision::new(2 + round * 300 + key, 0);
                mvcc.index.put(format!("k{key:03}").as_bytes(), rev);
                values.push((rev, false));
            }
        }
        for key in (0..300).step_by(10) {
            let rev = Revision::new(1502 + key, 0);
            mvcc.index.tombstone(format!("k{key:03}").as_bytes(), rev);
            values.push((rev, true));
        }
        write_values(&engine, &values);
        let mut expected = mvcc.clone();
        let expected_garbage = expected.index.compact(1800).len();
        assert_eq!(expected_garbage, 270 * 4 + 30 * 6, "the older values, and the deleted keys whole");
        let mvcc = Arc::new(RwLock::new(mvcc));
        // A batch limit of 7 revisions: chunks of 2 keys, in batches of 7 deletes.
        let compactor = Compactor::start(engine.clone(), mvcc.clone(), 7, Duration::ZERO).expect("start");
        compactor.compact(1800);
        wait_finished(&compactor, 1800);
        assert_eq!(mvcc.read().index, expected.index, "the same index as a compaction in one go");
        assert_eq!(engine.count(schema::CF_KV), values.len() - expected_garbage, "exactly the dropped values went");
        assert_eq!(engine.count(schema::CF_KV), 270, "each live key's last value stays");
    }
}
