//! Physical compaction, off the apply path, as etcd's scheduled compaction.
//!
//! Apply decides a compaction (the new compact revision and the index entries
//! it drops) and writes the compact revision with the entry. The values those
//! entries pointed at are then deleted here, in batches of at most
//! `--compaction-batch-limit` revisions with a pause of
//! `--compaction-sleep-interval` between batches, so that a compaction of a million revisions never stalls writes.
//!
//! Nothing waits for it but `Compact{physical: true}`. A crash before it
//! finishes leaves unreachable values behind; the next start finds them when
//! it compacts the rebuilt index and schedules them again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::watch;

use crate::engine::{schema, Durability, Engine, WriteOp};
use crate::mvcc::Revision;

/// Revisions whose values a compaction at `revision` made unreachable.
struct Job {
    revision: i64,
    garbage: Vec<Revision>,
}

pub struct Compactor {
    jobs: Option<mpsc::Sender<Job>>,
    /// The compact revision whose garbage is all deleted. Closed if the compactor stopped on a fault.
    finished: watch::Receiver<i64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Compactor {
    pub fn start(engine: Arc<Engine>, batch_limit: usize, sleep: Duration) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel();
        let (finished_tx, finished) = watch::channel(0);
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = stop.clone();
        let thread = std::thread::Builder::new()
            .name("cairn-compactor".into())
            .spawn(move || run(&engine, (batch_limit.max(1), sleep), &queue, &finished_tx, &stopping))?;
        Ok(Self { jobs: Some(jobs), finished, stop, thread: Some(thread) })
    }

    /// Deletes `garbage` in the background; `revision` counts as physically
    /// compacted once it and every earlier job are done.
    pub fn schedule(&self, revision: i64, garbage: Vec<Revision>) {
        if let Some(jobs) = &self.jobs {
            // A send fails only once the thread has stopped; the garbage then waits for the next start.
            let _ = jobs.send(Job { revision, garbage });
        }
    }

    pub fn finished(&self) -> watch::Receiver<i64> {
        self.finished.clone()
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

fn run(
    engine: &Engine,
    (batch_limit, sleep): (usize, Duration),
    queue: &mpsc::Receiver<Job>,
    finished: &watch::Sender<i64>,
    stop: &AtomicBool,
) {
    while let Ok(Job { revision, mut garbage }) = queue.recv() {
        // In key order, RocksDB's deletes land in few files.
        garbage.sort_unstable();
        let mut batches = garbage.chunks(batch_limit).peekable();
        while let Some(batch) = batches.next() {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let ops: Vec<WriteOp> = batch.iter().flat_map(|rev| schema::revision_deletes(*rev)).collect();
            // Buffered: these follow the compaction's own batch in the WAL, and a lost tail is found again at start.
            if let Err(err) = engine.write(&ops, Durability::Buffered) {
                tracing::error!(error = %err, revision, "physical compaction stopped; it resumes at the next start");
                return;
            }
            if batches.peek().is_some() {
                std::thread::sleep(sleep);
            }
        }
        finished.send_replace(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deletes_scheduled_garbage_in_batches_and_reports_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Arc::new(Engine::open(dir.path()).expect("open"));
        let revs: Vec<Revision> = (1..=2500).map(|main| Revision::new(main, 0)).collect();
        let ops: Vec<WriteOp> = revs
            .iter()
            .map(|rev| WriteOp::Put { cf: schema::CF_KV, key: rev.to_key(rev.main % 2 == 0), value: b"v".to_vec() })
            .collect();
        engine.write(&ops, Durability::Buffered).expect("write");
        let compactor = Compactor::start(engine.clone(), 1000, Duration::from_millis(10)).expect("start");
        let mut finished = compactor.finished();
        compactor.schedule(2000, revs[..2000].to_vec());
        compactor.schedule(2400, revs[2000..2400].to_vec());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().expect("runtime");
        runtime.block_on(async {
            let done = tokio::time::timeout(Duration::from_secs(10), finished.wait_for(|done| *done >= 2400)).await;
            assert!(matches!(done, Ok(Ok(_))), "the compactor finished both jobs");
        });
        assert_eq!(engine.count(schema::CF_KV), 100, "plain and tombstone keys alike are gone; the rest stays");
    }
}
