//! Watchers of the whole key space from different start revisions, and
//! kube-apiserver's watch of one prefix (prev_kv, progress notifications and
//! progress requests). Through faults a watcher resumes on another member from
//! its last revision + 1; a watcher that hears nothing for a while assumes its
//! member is cut off.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_chaos::record::{Notify, WatchSession};
use cairn_chaos::watch::{Change, Received};
use etcd_client::{EventType, WatchOptions};

use super::{text, Conn, Shared};

/// Silence after which a watcher moves to another member.
const SILENCE: Duration = Duration::from_secs(3);
/// How often a Kubernetes-shaped watcher asks for progress, as kube-apiserver's
/// watch cache does while a consistent read waits.
const PROGRESS_REQUEST_EVERY: Duration = Duration::from_millis(700);

/// What one watcher watches.
#[derive(Clone, Default)]
pub struct Spec {
    /// Empty: every key.
    pub prefix: String,
    /// Progress notifications and requests, as kube-apiserver watches.
    pub progress: bool,
}

/// What the watchers share with the harness.
#[derive(Default)]
pub struct Progress {
    /// Per watcher, the last revision received (`i64::MAX` before it starts),
    /// so that compaction can stay behind every watcher.
    pub last: Vec<AtomicI64>,
    /// Set at the end: watchers stop once past it.
    pub fence: AtomicI64,
}

impl Progress {
    pub fn new(watchers: usize) -> Arc<Self> {
        Arc::new(Progress { last: (0..watchers).map(|_| AtomicI64::new(i64::MAX)).collect(), fence: AtomicI64::new(0) })
    }

    pub fn low_water_mark(&self) -> i64 {
        self.last.iter().map(|last| last.load(Ordering::Relaxed)).min().unwrap_or(0)
    }

    fn past_fence(&self, revision: i64) -> bool {
        let fence = self.fence.load(Ordering::Relaxed);
        fence > 0 && revision >= fence
    }
}

enum Ended {
    /// Reconnect and resume.
    Broken,
    /// Compacted: a new session from this revision.
    Compacted(i64),
    Done,
}

pub async fn run(watcher: u32, start: i64, spec: Spec, recorder: Shared, mut conn: Conn, progress: Arc<Progress>) {
    let mark = &progress.last[watcher as usize];
    mark.store(start - 1, Ordering::Relaxed);
    let fresh =
        |start_revision| WatchSession { watcher, prefix: spec.prefix.clone(), start_revision, ..Default::default() };
    let mut session = fresh(start);
    let mut next = start;
    let mut response = 0u64;
    let mut ask = tokio::time::interval(PROGRESS_REQUEST_EVERY);
    loop {
        let mut options = WatchOptions::new().with_start_revision(next).with_prev_key();
        options = match spec.prefix.as_str() {
            "" => options.with_all_keys(),
            _ => options.with_prefix(),
        };
        if spec.progress {
            options = options.with_progress_notify();
        }
        let key = spec.prefix.clone();
        let stream = conn.call(|mut client| async move { client.watch(key, Some(options)).await }).await.ok();
        let ended = match stream {
            None => Ended::Broken,
            Some(mut stream) => loop {
                let deadline = tokio::time::Instant::now() + SILENCE;
                let message = loop {
                    tokio::select! {
                        message = tokio::time::timeout_at(deadline, stream.message()) => break message,
                        _ = ask.tick(), if spec.progress => {
                            let _ = stream.request_progress().await;
                        }
                    }
                };
                let message = match message {
                    Ok(Ok(Some(message))) => message,
                    _ if progress.past_fence(next - 1) => break Ended::Done,
                    _ => break Ended::Broken,
                };
                if message.canceled() {
                    break match message.compact_revision() {
                        0 => Ended::Broken,
                        compacted => Ended::Compacted(compacted),
                    };
                }
                if message.created() {
                    continue;
                }
                if message.events().is_empty() {
                    // A progress notification: nothing through its revision is still owed.
                    let revision = message.header().map_or(0, |header| header.revision());
                    if revision > 0 {
                        session.notifies.push(Notify { after: session.received.len(), revision });
                        next = next.max(revision + 1);
                        mark.store(next - 1, Ordering::Relaxed);
                        if progress.past_fence(next - 1) {
                            break Ended::Done;
                        }
                    }
                    continue;
                }
                response += 1;
                for event in message.events() {
                    let Some(kv) = event.kv() else { continue };
                    let value = (event.event_type() == EventType::Put).then(|| text(kv.value()));
                    let change = Change { revision: kv.mod_revision(), key: text(kv.key()), value };
                    next = next.max(change.revision + 1);
                    let prev_value = event.prev_kv().map(|prev| text(prev.value()));
                    session.received.push(Received { response, change, prev_value });
                }
                mark.store(next - 1, Ordering::Relaxed);
                if progress.past_fence(next - 1) {
                    break Ended::Done;
                }
            },
        };
        match ended {
            Ended::Done => break,
            Ended::Broken if recorder.stopping() && progress.fence.load(Ordering::Relaxed) < 0 => break,
            Ended::Broken => {
                session.reconnects += 1;
                conn.failed();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ended::Compacted(revision) => {
                let finished = std::mem::take(&mut session);
                recorder.record().watch_sessions.push(finished);
                session = fresh(revision);
                next = revision;
            }
        }
    }
    recorder.record().watch_sessions.push(session);
}

/// Tells watchers still short of the fence to give up (the harness's deadline passed).
pub fn abandon(progress: &Progress) {
    progress.fence.store(-1, Ordering::Relaxed);
}
