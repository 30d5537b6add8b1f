//! The etcd Watch service: one bidirectional stream carries many watchers.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use cairn_proto::etcdserverpb::watch_request::RequestUnion;
use cairn_proto::etcdserverpb::watch_server::Watch;
use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use cairn_proto::mvccpb::Event;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

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
        tokio::spawn(serve_stream(self.node.clone(), request.into_inner(), out));
        Ok(Response::new(ReceiverStream::new(responses)))
    }
}

type Out = mpsc::Sender<Result<WatchResponse, Status>>;

struct Watcher {
    task: JoinHandle<()>,
    /// The last revision whose events this watcher has queued.
    delivered: Arc<AtomicI64>,
}

async fn serve_stream(node: Arc<Node>, mut incoming: Streaming<WatchRequest>, out: Out) {
    let mut watchers: HashMap<i64, Watcher> = HashMap::new();
    let mut next_id = 0;
    loop {
        let message = tokio::select! {
            message = incoming.message() => message,
            _ = out.closed() => break,
        };
        let Ok(Some(WatchRequest { request_union: Some(request) })) = message else { break };
        match request {
            RequestUnion::CreateRequest(create) => {
                let id = if create.watch_id != 0 {
                    create.watch_id
                } else {
                    while watchers.contains_key(&next_id) {
                        next_id += 1;
                    }
                    next_id
                };
                let current = node.state.events().current_revision();
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
                let task = tokio::spawn(run_watcher(node.clone(), id, create, start, delivered.clone(), out.clone()));
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
                // A revision every watcher on the stream has already queued events through.
                let current = node.state.events().current_revision();
                let revision =
                    watchers.values().map(|watcher| watcher.delivered.load(Ordering::Acquire)).fold(current, i64::min);
                let response =
                    WatchResponse { header: node.header(revision), watch_id: NO_WATCH_ID, ..Default::default() };
                let _ = out.send(Ok(response)).await;
            }
        }
    }
    for watcher in watchers.into_values() {
        watcher.task.abort();
    }
}

/// Sends one watcher its events from `start` on, in revision order, for as long as the stream lives.
async fn run_watcher(
    node: Arc<Node>,
    id: i64,
    create: WatchCreateRequest,
    start: i64,
    delivered: Arc<AtomicI64>,
    out: Out,
) {
    let filter = WatchFilter::new(&create);
    let events = node.state.events();
    let mut revisions = events.subscribe();
    let mut next = start;
    let max_bytes = (node.config.max_request_bytes + GRPC_OVERHEAD_BYTES) as usize;
    let mut progress = tokio::time::interval(node.config.experimental_watch_progress_notify_interval);
    progress.tick().await;
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
                    if !send_events(&node, &out, id, filter.select(&batch), current, max_bytes, create.fragment).await {
                        return;
                    }
                    current
                }
                None => {
                    // Fell behind the in-memory log: catch up from storage, a bounded chunk at a time.
                    let until = current.min(next + CATCH_UP_REVISIONS - 1);
                    let stored = match node.state.stored_events(next, until, filter.prev_kv) {
                        Ok(stored) => stored,
                        Err(err) => {
                            tracing::error!(error = %err, "watch catch-up read failed");
                            return;
                        }
                    };
                    if node.state.compact_revision() > next {
                        continue; // compacted while reading: report it on the next turn
                    }
                    if !send_events(&node, &out, id, filter.select(&stored), until, max_bytes, create.fragment).await {
                        return;
                    }
                    until
                }
            };
            sent_since_tick = true;
            next = until + 1;
            delivered.store(until, Ordering::Release);
            continue;
        }
        tokio::select! {
            changed = revisions.changed() => {
                if changed.is_err() {
                    return;
                }
            }
            _ = progress.tick(), if create.progress_notify => {
                if !sent_since_tick {
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
