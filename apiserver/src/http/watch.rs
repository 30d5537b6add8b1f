//! Watch over HTTP: a chunked stream of `{"type":..,"object":..}` lines, fed
//! by the watch cache; a resourceVersion older than the cache's window is
//! served by a store watch of its own, and one the store has compacted gets
//! an ERROR event carrying 410 Expired, inside the 200 stream.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::request::{flag, Output, ResourceRequest};
use super::{Reply, Server};
use crate::cacher::{CacheEvent, EventType, Filter, Message, Start, SubscribeError, Subscription};
use crate::error::{too_old, ApiError};
use crate::meta;
use crate::registry::{ListOptions, CACHE_WAIT};
use crate::resources::Resource;
use crate::storage::{Storage, StorageError, WatchChange, WatchItem};
use crate::table::{self, IncludeObject};

/// How often a watcher that allows bookmarks gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);
/// Chunks buffered per watcher before the sender waits for the client.
const BUFFER: usize = 256;

struct Encoder {
    resource: &'static Resource,
    output: Output,
    include: IncludeObject,
    first: bool,
}

impl Encoder {
    fn object(&mut self, object: &Value) -> Value {
        match self.output {
            Output::Table => {
                let metadata = json!({"resourceVersion": meta::resource_version(object)});
                let mut t = table::table(self.resource, std::slice::from_ref(object), metadata, self.include);
                if !self.first {
                    t["columnDefinitions"] = json!([]);
                }
                self.first = false;
                t
            }
            Output::Metadata => {
                json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": object["metadata"].clone()})
            }
            _ => object.clone(),
        }
    }

    fn event(&mut self, kind: &str, object: &Value) -> bytes::Bytes {
        let line = json!({"type": kind, "object": self.object(object)});
        bytes::Bytes::from(format!("{line}\n"))
    }

    fn bookmark(&self, revision: i64, initial_events_end: bool) -> bytes::Bytes {
        let mut metadata = json!({"resourceVersion": revision.to_string(), "creationTimestamp": null});
        if initial_events_end {
            metadata["annotations"] = json!({"k8s.io/initial-events-end": "true"});
        }
        let object =
            json!({"kind": self.resource.kind_name, "apiVersion": self.resource.api_version(), "metadata": metadata});
        bytes::Bytes::from(format!("{}\n", json!({"type": "BOOKMARK", "object": object})))
    }

    fn error(&self, err: &ApiError) -> bytes::Bytes {
        bytes::Bytes::from(format!("{}\n", json!({"type": "ERROR", "object": err.status()})))
    }
}

/// `{"type":…,"object":…}` around an object already encoded.
fn encoded_event(kind: &str, object: &[u8]) -> bytes::Bytes {
    let mut line = Vec::with_capacity(object.len() + 32);
    line.extend_from_slice(br#"{"type":""#);
    line.extend_from_slice(kind.as_bytes());
    line.extend_from_slice(br#"","object":"#);
    line.extend_from_slice(object);
    line.extend_from_slice(b"}\n");
    bytes::Bytes::from(line)
}

struct Session {
    tx: mpsc::Sender<bytes::Bytes>,
    encoder: Encoder,
    filter: Filter,
    bookmarks: bool,
    deadline: tokio::time::Instant,
    revision: i64,
}

impl Session {
    /// Hands a chunk to the client; false once it is gone, or when it reads
    /// too slowly to take the chunk before the watch ends.
    async fn send(&self, chunk: bytes::Bytes) -> bool {
        matches!(tokio::time::timeout_at(self.deadline, self.tx.send(chunk)).await, Ok(Ok(())))
    }

    async fn deliver(&mut self, event: &CacheEvent) -> bool {
        self.revision = self.revision.max(event.revision);
        match self.filter.view(self.encoder.resource, event) {
            Some((kind, object)) if Arc::ptr_eq(&object, &event.object) && self.encoder.output == Output::Json => {
                let chunk = encoded_event(kind.name(), event.encoded());
                self.send(chunk).await
            }
            Some((kind, object)) => {
                let chunk = self.encoder.event(kind.name(), &object);
                self.send(chunk).await
            }
            None => true,
        }
    }

    async fn serve_cache(mut self, subscription: Subscription, initial_events_end: bool) {
        let Subscription { initial, mut feed, revision } = subscription;
        self.revision = revision;
        for event in initial {
            if !self.deliver(&event).await {
                return;
            }
        }
        if initial_events_end && !self.send(self.encoder.bookmark(self.revision, true)).await {
            return;
        }
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        // One timer for the watch's life, not one armed per message.
        let end = tokio::time::sleep_until(self.deadline);
        tokio::pin!(end);
        loop {
            tokio::select! {
                message = feed.next() => match message {
                    Some(Message::Event(event)) => if !self.deliver(&event).await { return },
                    Some(Message::Progress(revision)) => self.revision = self.revision.max(revision),
                    Some(Message::Reset) | None => return,
                },
                _ = ticker.tick(), if self.bookmarks => {
                    self.revision = self.revision.max(feed.caught_up().unwrap_or(0));
                    if !self.send(self.encoder.bookmark(self.revision, false)).await { return }
                }
                _ = &mut end => return,
            }
        }
    }

    /// Serves a watch from a revision the cache no longer holds, from the store.
    async fn serve_store(mut self, storage: Storage, after: i64) {
        let mut watch = match storage.watch(&self.filter.prefix, after + 1).await {
            Ok(watch) => watch,
            Err(err) => {
                let _ = self.send(self.encoder.error(&stream_error(err, after))).await;
                return;
            }
        };
        self.revision = after;
        loop {
            tokio::select! {
                item = watch.next() => match item {
                    Ok(Some(WatchItem::Changes(changes))) => {
                        for change in changes {
                            if !self.deliver(&from_change(change)).await { return }
                        }
                    }
                    Ok(Some(WatchItem::Progress(revision))) => self.revision = self.revision.max(revision),
                    Ok(None) => return,
                    Err(err) => {
                        let _ = self.send(self.encoder.error(&stream_error(err, after))).await;
                        return;
                    }
                },
                _ = tokio::time::sleep_until(self.deadline) => return,
            }
        }
    }
}

fn stream_error(err: StorageError, after: i64) -> ApiError {
    match err {
        StorageError::Compacted { compacted, .. } => too_old(after, compacted),
        other => other.into(),
    }
}

fn from_change(change: WatchChange) -> CacheEvent {
    match change {
        WatchChange::Put { key, object, prev } => {
            let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
            CacheEvent::new(kind, key, Arc::new(object.object), prev.map(|p| Arc::new(p.object)), object.mod_revision)
        }
        WatchChange::Delete { key, prev, revision } => {
            let mut object = prev.as_ref().map(|p| p.object.clone()).unwrap_or_else(|| json!({}));
            meta::set_resource_version(&mut object, revision);
            CacheEvent::new(EventType::Deleted, key, Arc::new(object), prev.map(|p| Arc::new(p.object)), revision)
        }
    }
}

/// kube-apiserver picks a watch's lifetime between one and two `--min-request-timeout`s.
/// The longest watch any client may ask for.
const MAX_LIFETIME: Duration = Duration::from_secs(24 * 3600);

fn lifetime(query: &HashMap<String, String>) -> Result<Duration, ApiError> {
    let asked = match query.get("timeoutSeconds").map(String::as_str) {
        None | Some("") | Some("0") => None,
        Some(text) => {
            Some(text.parse::<u64>().map_err(|_| ApiError::BadRequest(format!("invalid timeoutSeconds: {text:?}")))?)
        }
    };
    let default = || 1800 + uuid::Uuid::new_v4().as_u128() as u64 % 1800;
    Ok(Duration::from_secs(asked.unwrap_or_else(default)).min(MAX_LIFETIME))
}

pub async fn serve(
    server: &Server,
    request: &ResourceRequest,
    options: ListOptions,
    query: &HashMap<String, String>,
    output: Output,
) -> Result<Reply, ApiError> {
    let registry = &server.registry;
    let resource = request.resource;
    let cacher = registry.cacher(resource.kind).clone();
    cacher.wait_for(0, CACHE_WAIT).await.map_err(|_| ApiError::Unavailable("the watch cache is not ready".into()))?;
    // sendInitialEvents=true starts from the current state whatever the
    // resourceVersion; =false never sends it.
    let initial_events = query.get("sendInitialEvents").map(|v| v == "true");
    let start = match (initial_events, options.resource_version.as_str()) {
        (Some(true), _) | (None, "" | "0") => Start::Current,
        (Some(false), "" | "0") => Start::After(cacher.revision()),
        (_, text) => {
            let wanted = meta::parse_resource_version(text)?;
            cacher
                .wait_for(wanted, CACHE_WAIT)
                .await
                .map_err(|seen| ApiError::Timeout(format!("Too large resource version: {wanted}, current: {seen}")))?;
            Start::After(wanted)
        }
    };
    let filter = Filter {
        prefix: registry.keys.collection(resource, &request.namespace),
        labels: options.labels,
        fields: options.fields,
    };
    let (tx, rx) = mpsc::channel(BUFFER);
    let session = Session {
        tx,
        encoder: Encoder {
            resource,
            output,
            include: IncludeObject::parse(query.get("includeObject").map(String::as_str).unwrap_or("")),
            first: true,
        },
        bookmarks: flag(query, "allowWatchBookmarks"),
        deadline: tokio::time::Instant::now() + lifetime(query)?,
        revision: 0,
        filter,
    };
    if initial_events == Some(true) && !session.bookmarks {
        return Err(ApiError::Invalid {
            group: "meta.k8s.io".into(),
            kind: "ListOptions".into(),
            name: String::new(),
            causes: vec![crate::error::FieldError::forbidden(
                "allowWatchBookmarks",
                "sendInitialEvents requires setting allowWatchBookmarks to true",
            )],
        });
    }
    let initial_events_end = initial_events == Some(true);
    let after = match start {
        Start::After(n) => Some(n),
        Start::Current => None,
    };
    let node = session
        .filter
        .fields
        .0
        .iter()
        .find(|(field, equal, value)| field == "spec.nodeName" && *equal && !value.is_empty());
    match cacher.subscribe(start, &session.filter.prefix, node.map(|(_, _, value)| value.as_str())) {
        Ok(subscription) => {
            tokio::spawn(session.serve_cache(subscription, initial_events_end));
        }
        Err(SubscribeError::TooOld(_)) => {
            let storage = registry.storage.clone();
            tokio::spawn(session.serve_store(storage, after.unwrap_or(0)));
        }
    }
    let body = Body::from_stream(ReceiverStream::new(rx).map(Ok::<_, Infallible>));
    Ok(Reply::stream(body))
}
