//! The etcd Watch service: one bidirectional stream carries many watchers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::watch_server::Watch;
use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use cairn_proto::mvccpb::Event;
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::auth::Credentials;
use super::node::Node;
use crate::config::GRPC_OVERHEAD_BYTES;
use crate::error::EtcdError;
use crate::watch::{fragment, WatchFilter};

/// Responses queued for one stream; a slow client stalls only its own watchers.
/// A response may carry up to --max-request-bytes of events, so this bounds a
/// stalled stream's memory (32 × 1.5 MiB rather than 256 × 1.5 MiB).
const OUTPUT_DEPTH: usize = 32;
/// Revisions read from storage at once by a watcher that is catching up.
const CATCH_UP_REVISIONS: i64 = 1000;
/// The watch ID of responses that belong to no watcher (etcd's `InvalidWatchID`).
const NO_WATCH_ID: i64 = -1;

pub struct WatchService {
    pub node: Arc<Node>,
}

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ReceiverStream<Result<WatchResponse, Status>>;

    async fn watch(&self, request: Request<Streaming<WatchRequest>>) -> Result<Response<Self::WatchStream>, Status> {
        let (out, responses) = mpsc::channel(OUTPUT_DEPTH);
        let credentials = self.node.credentials(&request);
        tokio::spawn(serve_stream(self.node.clone(), credentials, request.into_inner(), out));
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

struct Watcher {
    task: JoinHandle<()>,
    /// The last revision whose events this watcher has queued.
    delivered: Arc<AtomicI64>,
}

/// What a progress request waiting on a stream gets now.
#[derive(Debug, PartialEq, Eq)]
enum ProgressAnswer {
    /// A notify at this revision: every watcher has queued its events through it.
    Notify(i64),
    /// A watcher is still queueing revisions up to the one current at the request.
    Wait,
    /// No answer, as etcd gives none: no watchers, one that starts past the
    /// current revision (a notify would move its client backwards), or one
    /// canceled by compaction that the client has not canceled yet.
    Drop,
}

/// etcd (3.5.13 and later) answers a progress request only when every watcher
/// on the stream is synced. Cairn's watchers queue each revision a moment
/// after it commits, so where etcd would drop a request because of a watcher
/// that lags, Cairn keeps it until each watcher has queued the revision that
/// was current when the request came.
fn progress_answer(delivered: impl Iterator<Item = i64>, asked_at: i64, current: i64) -> ProgressAnswer {
    let mut lowest = None::<i64>;
    let mut lagging = false;
    for revision in delivered {
        if revision > current {
            return ProgressAnswer::Drop;
        }
        lagging |= revision < asked_at;
        lowest = Some(lowest.map_or(revision, |lowest| lowest.min(revision)));
    }
    match lowest {
        None => ProgressAnswer::Drop,
        Some(_) if lagging => ProgressAnswer::Wait,
        Some(lowest) => ProgressAnswer::Notify(lowest),
    }
}

/// etcd's `isWatchPermitted`, for each watch as it is created: read access
/// to the watched range, for who the stream's credentials name now; credentials
/// that no longer check out refuse the watch.
async fn watch_permitted(node: &Node, credentials: &Credentials, create: &WatchCreateRequest) -> bool {
    let Ok(who) = node.identify(credentials).await else { return false };
    // An empty key is the smallest key, as etcd reads it.
    let key: &[u8] = if create.key.is_empty() { &[0] } else { &create.key };
    node.check_read(&who.unwrap_or_default(), key, &create.range_end).is_ok()
}

async fn serve_stream(node: Arc<Node>, credentials: Credentials, mut incoming: Streaming<WatchRequest>, out: Out) {
    let mut watchers: HashMap<i64, Watcher> = HashMap::new();
    let mut next_id = 0;
    // A progress request that waits for the watchers: the revision current when it came.
    let mut progress_asked_at: Option<i64> = None;
    let watchers_moved = Arc::new(Notify::new());
    let mut revisions = node.state.events().subscribe();
    let mut requests_open = true;
    loop {
        if let Some(asked_at) = progress_asked_at {
            let current = node.state.events().current_revision();
            // A watcher canceled by compaction stays on the stream until the
            // client cancels it, and etcd answers no progress request meanwhile.
            let delivered = watchers.values().map(|watcher| match watcher.task.is_finished() {
                true => i64::MAX,
                false => watcher.delivered.load(Ordering::Acquire),
            });
            match progress_answer(delivered, asked_at, current) {
                ProgressAnswer::Wait => {}
                ProgressAnswer::Drop => progress_asked_at = None,
                ProgressAnswer::Notify(revision) => {
                    progress_asked_at = None;
                    let response =
                        WatchResponse { header: node.header(revision), watch_id: NO_WATCH_ID, ..Default::default() };
                    if out.send(Ok(response)).await.is_err() {
                        break;
                    }
                }
            }
        }
        let message = tokio::select! {
            message = incoming.message(), if requests_open => message,
            _ = out.closed() => break,
            _ = watchers_moved.notified(), if progress_asked_at.is_some() => continue,
            Ok(()) = revisions.changed(), if progress_asked_at.is_some() => continue,
        };
        let request = match message {
            Ok(Some(WatchRequest { request_union: Some(request) })) => request,
            // etcd skips a request it does not know rather than end the stream.
            Ok(Some(WatchRequest { request_union: None })) => continue,
            // A client that closes its side keeps its watchers, as with etcd
            // (the JSON gateway's watch sends its one request and closes).
            Ok(None) => {
                requests_open = false;
                continue;
            }
            Err(_) => break,
        };
        match request {
            RequestUnion::CreateRequest(create) => {
                let id = if create.watch_id != 0 {
                    create.watch_id
                } else {
                    // As etcd: IDs go up and are not reused after a cancel.
                    while watchers.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id += 1;
                    next_id - 1
                };
                // A watch from now starts after every write answered here, and its
                // header is as new. A barrier that fails means the member stops.
                if node.local_read_barrier().await.is_err() {
                    break;
                }
                let current = node.state.events().current_revision();
                if !watch_permitted(&node, &credentials, &create).await {
                    let response = WatchResponse {
                        header: node.header(current),
                        watch_id: create.watch_id,
                        created: true,
                        canceled: true,
                        // etcd sends the gRPC error's text, as Go's status prints it.
                        cancel_reason: format!(
                            "rpc error: code = PermissionDenied desc = {}",
                            EtcdError::PermissionDenied
                        ),
                        ..Default::default()
                    };
                    if out.send(Ok(response)).await.is_err() {
                        break;
                    }
                    continue;
                }
                if watchers.contains_key(&id) {
                    let response = WatchResponse {
                        header: node.header(current),
                        watch_id: NO_WATCH_ID,
                        created: true,
                        canceled: true,
                        cancel_reason: EtcdError::DuplicateWatchId.to_string(),
                        ..Default::default()
                    };
                    let _ = out.send(Ok(response)).await;
                    continue;
                }
                let start = if create.start_revision > 0 { create.start_revision } else { current + 1 };
                let created =
                    WatchResponse { header: node.header(current), watch_id: id, created: true, ..Default::default() };
                if out.send(Ok(created)).await.is_err() {
                    break;
                }
                let delivered = Arc::new(AtomicI64::new(start - 1));
                let progress = Progress { delivered: delivered.clone(), moved: watchers_moved.clone() };
                let moved = watchers_moved.clone();
                let watcher = run_watcher(node.clone(), id, create, start, progress, out.clone());
                let task = tokio::spawn(async move {
                    watcher.await;
                    // A waiting progress request learns that this watcher ended.
                    moved.notify_one();
                });
                watchers.insert(id, Watcher { task, delivered });
            }
            RequestUnion::CancelRequest(cancel) => {
                if let Some(watcher) = watchers.remove(&cancel.watch_id) {
                    watcher.task.abort();
                    let current = node.state.events().current_revision();
                    let response = WatchResponse {
                        header: node.header(current),
                        watch_id: cancel.watch_id,
                        canceled: true,
                        ..Default::default()
                    };
                    let _ = out.send(Ok(response)).await;
                }
            }
            RequestUnion::ProgressRequest(_) => {
                // The revision reported covers every write answered here.
                if node.local_read_barrier().await.is_err() {
                    break;
                }
                // A second request while one waits changes nothing, as in etcd.
                if progress_asked_at.is_none() {
                    progress_asked_at = Some(node.state.events().current_revision());
                }
            }
        }
    }
    for watcher in watchers.into_values() {
        watcher.task.abort();
    }
}

/// How a watcher tells its stream how far it has queued events.
struct Progress {
    delivered: Arc<AtomicI64>,
    moved: Arc<Notify>,
}

/// The events `filter` passes, with the previous values it asked for.
fn select(node: &Node, filter: &WatchFilter, events: &[Event]) -> Vec<Event> {
    let mut selected = filter.select(events);
    if filter.prev_kv {
        node.state.fill_prev_kvs(&mut selected);
    }
    selected
}

/// Sends one watcher its events from `start` on, in revision order, for as long as the stream lives.
async fn run_watcher(node: Arc<Node>, id: i64, create: WatchCreateRequest, start: i64, progress: Progress, out: Out) {
    let filter = WatchFilter::new(&create);
    let _counted = filter.prev_kv.then(|| node.state.watch_prev_kvs());
    let events = node.state.events();
    let mut revisions = events.subscribe();
    let mut next = start;
    let max_bytes = (node.config.max_request_bytes + GRPC_OVERHEAD_BYTES) as usize;
    let mut ticks = tokio::time::interval(node.config.watch_progress_notify_interval());
    ticks.tick().await;
    let mut sent_since_tick = false;
    loop {
        let current = *revisions.borrow_and_update();
        if next <= current {
            let compacted = node.state.compact_revision();
            if next < compacted {
                let response = WatchResponse {
                    header: node.header(0),
                    watch_id: id,
                    compact_revision: compacted,
                    canceled: true,
                    ..Default::default()
                };
                let _ = out.send(Ok(response)).await;
                return;
            }
            let until = match events.read(next, current) {
                Some(batch) => {
                    let selected = select(&node, &filter, &batch);
                    if !send_events(&node, &out, id, selected, current, max_bytes, create.fragment).await {
                        return;
                    }
                    current
                }
                None => {
                    // Fell behind the in-memory log: catch up from storage, a bounded chunk at a time.
                    let until = current.min(next + CATCH_UP_REVISIONS - 1);
                    let stored = match node.state.stored_events(next, until) {
                        Ok(stored) => stored,
                        Err(err) => {
                            tracing::error!(error = %err, "watch catch-up read failed");
                            return;
                        }
                    };
                    if node.state.compact_revision() > next {
                        continue; // compacted while reading: report it on the next turn
                    }
                    let selected = select(&node, &filter, &stored);
                    if !send_events(&node, &out, id, selected, until, max_bytes, create.fragment).await {
                        return;
                    }
                    until
                }
            };
            sent_since_tick = true;
            next = until + 1;
            progress.delivered.store(until, Ordering::Release);
            progress.moved.notify_one();
            continue;
        }
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = ticks.tick(), if create.progress_notify => {
                // A watcher that starts in the future has no progress to report yet.
                if !sent_since_tick && next - 1 <= *revisions.borrow() {
                    let response = WatchResponse { header: node.header(next - 1), watch_id: id, ..Default::default() };
                    if out.send(Ok(response)).await.is_err() {
                        return;
                    }
                }
                sent_since_tick = false;
            }
        }
    }
}

/// Queues `events` (already filtered) for the client; false once the stream is gone.
async fn send_events(
    node: &Node,
    out: &Out,
    id: i64,
    events: Vec<Event>,
    revision: i64,
    max_bytes: usize,
    fragments: bool,
) -> bool {
    if events.is_empty() {
        return true;
    }
    let response = WatchResponse { header: node.header(revision), watch_id: id, events, ..Default::default() };
    for part in fragment(response, max_bytes, fragments) {
        if out.send(Ok(part)).await.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::{progress_answer, ProgressAnswer::*};

    #[test]
    fn progress_waits_for_every_watcher_and_drops_as_etcd_does() {
        // All synced at the revision asked at: the lowest delivered revision.
        assert_eq!(progress_answer([10, 10].into_iter(), 10, 10), Notify(10));
        // Writes went on since: still a revision every watcher has queued.
        assert_eq!(progress_answer([12, 11].into_iter(), 10, 12), Notify(11));
        // One watcher still catching up: wait for it.
        assert_eq!(progress_answer([10, 4].into_iter(), 10, 10), Wait);
        // One watcher starting past the current revision: no answer, as etcd 3.6 gives none.
        assert_eq!(progress_answer([10, 20].into_iter(), 10, 10), Drop);
        // No watchers: nothing to report.
        assert_eq!(progress_answer(std::iter::empty(), 10, 10), Drop);
    }
}
