//! The watch cache, as kube-apiserver's cacher: one store watch per resource
//! keeps every object in memory and a window of recent events; every HTTP
//! watcher and every `resourceVersion=0` list is served from here.
//!
//! It lists, then watches from the list revision + 1. When the store watch
//! breaks (a member dies, a leader changes) it watches again from its last
//! revision + 1, so nothing is missed or repeated; when its revision has been
//! compacted it lists again and ends every watcher, which then start over.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use parking_lot::Mutex;
use serde_json::Value;
use tokio::sync::{broadcast, mpsc, watch};

use crate::meta;
use crate::resources::Resource;
use crate::selector::{FieldSelector, LabelSelector};
use crate::storage::{Storage, StorageError, WatchChange, WatchItem};

/// Events kept per resource for watchers that resume from a revision.
const WINDOW: usize = 16 * 1024;
/// Messages a slow HTTP watcher may fall behind before it is ended. The
/// channel keeps this many events alive, so it matches the window.
const FANOUT: usize = WINDOW;
const RETRY_PAUSE: Duration = Duration::from_millis(200);
/// How often a waiting reader asks for a progress notification again.
const PROGRESS_RETRY: Duration = Duration::from_millis(250);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn name(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub key: String,
    pub object: Arc<Value>,
    pub prev: Option<Arc<Value>>,
    pub revision: i64,
    /// `object` as JSON, made by the first watcher that sends it unchanged
    /// and shared by the rest: a thousand watchers encode an event once.
    pub encoded: OnceLock<bytes::Bytes>,
}

impl CacheEvent {
    pub fn new(
        kind: EventType,
        key: String,
        object: Arc<Value>,
        prev: Option<Arc<Value>>,
        revision: i64,
    ) -> CacheEvent {
        CacheEvent { kind, key, object, prev, revision, encoded: OnceLock::new() }
    }

    /// The object's JSON text.
    pub fn encoded(&self) -> &bytes::Bytes {
        self.encoded.get_or_init(|| bytes::Bytes::from(serde_json::to_vec(&*self.object).unwrap_or_default()))
    }
}

#[derive(Clone, Debug)]
pub enum Message {
    Event(Arc<CacheEvent>),
    /// The store is known to have no further change up to this revision.
    Progress(i64),
    /// The cache was rebuilt; watchers must end and start over.
    Reset,
}

struct State {
    objects: BTreeMap<String, Arc<Value>>,
    events: VecDeque<Arc<CacheEvent>>,
    revision: i64,
    /// Every event after this revision is in `events`.
    oldest: i64,
    listed: bool,
}

pub struct Cacher {
    pub resource: &'static Resource,
    state: Mutex<State>,
    tx: broadcast::Sender<Message>,
    /// Per-node feeds of pod watchers; locked only while `state` is.
    by_node: Mutex<HashMap<String, Vec<mpsc::Sender<Message>>>>,
    revision_tx: watch::Sender<i64>,
    /// A reader waits for a revision the cache has not seen: ask the store
    /// for a progress notification, as kube-apiserver's progress requester
    /// does, so that a quiet resource's cache catches up without a change.
    progress_wanted: tokio::sync::Notify,
    /// Whether the store's progress answers can be trusted (`--etcd-watch-progress-requests`).
    progress_requests: bool,
}

/// What a watcher sees: which objects, by key prefix and selectors.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub prefix: String,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn matches(&self, resource: &Resource, key: &str, object: &Value) -> bool {
        key.starts_with(&self.prefix)
            && self.labels.matches(meta::labels(object))
            && self.fields.matches(resource.kind, object)
    }

    /// The event this watcher sees, as kube-apiserver's cacher turns an object
    /// moving into or out of the selection into ADDED or DELETED.
    pub fn view(&self, resource: &Resource, event: &CacheEvent) -> Option<(EventType, Arc<Value>)> {
        let now = event.kind != EventType::Deleted && self.matches(resource, &event.key, &event.object);
        let before = match &event.prev {
            Some(prev) => self.matches(resource, &event.key, prev),
            None => false,
        };
        match (event.kind, before, now) {
            (EventType::Deleted, true, _) => Some((EventType::Deleted, event.object.clone())),
            (EventType::Deleted, false, _) => None,
            (_, true, true) => Some((EventType::Modified, event.object.clone())),
            (_, false, true) => Some((EventType::Added, event.object.clone())),
            (_, true, false) => {
                // The object as the watcher last saw it, at the revision it left.
                let mut last = event.prev.as_deref().cloned().unwrap_or_default();
                meta::set_resource_version(&mut last, event.revision);
                Some((EventType::Deleted, Arc::new(last)))
            }
            (_, false, false) => None,
        }
    }
}

pub struct Subscription {
    /// Events to send first: the current objects (a start "at most recent") or
    /// the buffered events after the requested revision.
    pub initial: Vec<Arc<CacheEvent>>,
    pub feed: Feed,
    pub revision: i64,
}

/// Where a watcher's later messages come from: every event of the resource,
/// or only the events of pods on one node. kube-apiserver indexes pod watches
/// by `spec.nodeName` the same way, so that a thousand kubelets do not each
/// wake for every pod event of the cluster.
pub enum Feed {
    All(broadcast::Receiver<Message>),
    /// With the cache's revision, which a node's watcher reports in its
    /// bookmarks once it has sent everything queued for it.
    Node(mpsc::Receiver<Message>, watch::Receiver<i64>),
}

impl Feed {
    /// The next message; None once the watcher must end (it fell behind, or
    /// the cache was rebuilt).
    pub async fn next(&mut self) -> Option<Message> {
        match self {
            Feed::All(rx) => rx.recv().await.ok(),
            Feed::Node(rx, _) => rx.recv().await,
        }
    }

    /// A revision every event of this feed up to which has been taken from
    /// it. An unindexed feed sees every event and tracks that itself; a node's
    /// feed sees only its node's pods, so without this its bookmarks would
    /// name the revision of its last event, minutes old, and a resumed watch
    /// would start outside the window, from the store.
    pub fn caught_up(&self) -> Option<i64> {
        match self {
            Feed::All(_) => None,
            Feed::Node(rx, revision) => {
                // Events are queued before the revision that covers them is published.
                let revision = *revision.borrow();
                rx.is_empty().then_some(revision)
            }
        }
    }
}

/// The node a pod is bound to, for the per-node feeds.
fn node_of(object: &Value) -> Option<&str> {
    object.get("spec")?.get("nodeName")?.as_str().filter(|n| !n.is_empty())
}

pub enum Start {
    /// Synthetic ADDED events for the current state, then changes.
    Current,
    /// Changes after this revision.
    After(i64),
}

pub enum SubscribeError {
    /// The revision is older than the window; the oldest revision served.
    TooOld(i64),
}

impl Cacher {
    pub fn start(
        storage: Storage,
        prefix: String,
        resource: &'static Resource,
        progress_requests: bool,
    ) -> Arc<Cacher> {
        let mut cacher = Cacher::empty(resource);
        cacher.progress_requests = progress_requests;
        let cacher = Arc::new(cacher);
        tokio::spawn(cacher.clone().run(storage, prefix));
        cacher
    }

    fn empty(resource: &'static Resource) -> Cacher {
        let (tx, _) = broadcast::channel(FANOUT);
        let (revision_tx, _) = watch::channel(0);
        Cacher {
            resource,
            state: Mutex::new(State {
                objects: BTreeMap::new(),
                events: VecDeque::new(),
                revision: 0,
                oldest: 0,
                listed: false,
            }),
            tx,
            by_node: Mutex::new(HashMap::new()),
            revision_tx,
            progress_wanted: tokio::sync::Notify::new(),
            progress_requests: false,
        }
    }

    pub fn revision(&self) -> i64 {
        self.state.lock().revision
    }

    /// Waits until the cache has seen `revision` (0: until it has listed once).
    pub async fn wait_for(&self, revision: i64, timeout: Duration) -> Result<i64, i64> {
        let mut rx = self.revision_tx.subscribe();
        let wanted = revision.max(1);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let seen = *rx.borrow_and_update();
            if seen >= wanted {
                return Ok(seen);
            }
            if revision > 0 && self.progress_requests {
                self.progress_wanted.notify_one();
            }
            let step = PROGRESS_RETRY.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
            if step.is_zero() {
                return Err(seen);
            }
            let _ = tokio::time::timeout(step, rx.wait_for(|seen| *seen >= wanted)).await;
        }
    }

    pub fn get(&self, key: &str) -> Option<Arc<Value>> {
        self.state.lock().objects.get(key).cloned()
    }

    /// Every object under `prefix`, and the revision of the cache.
    pub fn list(&self, prefix: &str) -> (Vec<(String, Arc<Value>)>, i64) {
        let state = self.state.lock();
        let items = state
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (items, state.revision)
    }

    /// Subscribes from `start`; `node` narrows a pod watch to the pods bound
    /// to that node (the watcher's own filter still applies).
    pub fn subscribe(&self, start: Start, prefix: &str, node: Option<&str>) -> Result<Subscription, SubscribeError> {
        let state = self.state.lock();
        let initial = match start {
            Start::Current => state
                .objects
                .range(prefix.to_string()..)
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(key, object)| {
                    Arc::new(CacheEvent::new(EventType::Added, key.clone(), object.clone(), None, state.revision))
                })
                .collect(),
            Start::After(revision) => {
                if revision < state.oldest {
                    return Err(SubscribeError::TooOld(state.oldest + 1));
                }
                state.events.iter().filter(|e| e.revision > revision && e.key.starts_with(prefix)).cloned().collect()
            }
        };
        let feed = match node {
            Some(node) if self.resource.kind == crate::resources::Kind::Pod => {
                let (tx, rx) = mpsc::channel(FANOUT);
                self.by_node.lock().entry(node.to_string()).or_default().push(tx);
                Feed::Node(rx, self.revision_tx.subscribe())
            }
            _ => Feed::All(self.tx.subscribe()),
        };
        Ok(Subscription { initial, feed, revision: state.revision })
    }

    async fn run(self: Arc<Self>, storage: Storage, prefix: String) {
        loop {
            let page = match storage.list(&prefix, "", 0, 0).await {
                Ok(page) => page,
                Err(err) => {
                    tracing::warn!(%err, resource = self.resource.plural, "watch cache list failed");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            self.reset(page.items.into_iter().map(|(k, s)| (k, s.object)).collect(), page.revision);
            self.follow(&storage, &prefix).await;
        }
    }

    /// Watches until the cache's revision is compacted away.
    async fn follow(&self, storage: &Storage, prefix: &str) {
        loop {
            let next = self.revision() + 1;
            let mut watch = match storage.watch(prefix, next).await {
                Ok(watch) => watch,
                Err(StorageError::Compacted { .. }) => return,
                Err(err) => {
                    tracing::debug!(%err, "watch cache: store watch failed; retrying");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
            };
            loop {
                let item = tokio::select! {
                    item = watch.next() => item,
                    () = self.progress_wanted.notified() => {
                        if let Err(err) = watch.request_progress().await {
                            tracing::debug!(%err, "watch cache: progress request failed");
                        }
                        continue;
                    }
                };
                match item {
                    Ok(Some(WatchItem::Changes(changes))) => self.apply(changes),
                    Ok(Some(WatchItem::Progress(revision))) => self.progress(revision),
                    Ok(None) => break,
                    Err(StorageError::Compacted { .. }) => return,
                    Err(err) => {
                        tracing::debug!(%err, resource = self.resource.plural, "watch cache: store watch broke");
                        tokio::time::sleep(RETRY_PAUSE).await;
                        break;
                    }
                }
            }
        }
    }

    fn reset(&self, objects: Vec<(String, Value)>, revision: i64) {
        let mut state = self.state.lock();
        let was_listed = state.listed;
        state.objects = objects.into_iter().map(|(k, v)| (k, Arc::new(v))).collect();
        state.events.clear();
        state.revision = revision;
        state.oldest = revision;
        state.listed = true;
        if was_listed {
            let _ = self.tx.send(Message::Reset);
        }
        // Dropping the per-node feeds ends their watchers as Reset ends the rest.
        self.by_node.lock().clear();
        drop(state);
        self.revision_tx.send_replace(revision);
    }

    fn progress(&self, revision: i64) {
        let mut state = self.state.lock();
        if revision > state.revision {
            state.revision = revision;
            let _ = self.tx.send(Message::Progress(revision));
            for feeds in self.by_node.lock().values() {
                for feed in feeds {
                    // A full feed just misses one progress note.
                    let _ = feed.try_send(Message::Progress(revision));
                }
            }
            drop(state);
            self.revision_tx.send_replace(revision);
        }
    }

    /// Sends a pod event to the watchers of the nodes it is (or was) bound to;
    /// a watcher whose feed is full is dropped and ends, as a lagging one does.
    fn to_nodes(&self, event: &Arc<CacheEvent>) {
        let mut by_node = self.by_node.lock();
        if by_node.is_empty() {
            return;
        }
        let now = node_of(&event.object);
        let before = event.prev.as_deref().and_then(node_of).filter(|b| Some(*b) != now);
        for node in now.into_iter().chain(before) {
            if let Some(feeds) = by_node.get_mut(node) {
                feeds.retain(|feed| feed.try_send(Message::Event(event.clone())).is_ok());
                if feeds.is_empty() {
                    by_node.remove(node);
                }
            }
        }
    }

    fn apply(&self, changes: Vec<WatchChange>) {
        let mut state = self.state.lock();
        for change in changes {
            let event = match change {
                WatchChange::Put { key, object, prev } => {
                    let revision = object.mod_revision;
                    // One revision may change many keys (a lease expiring); none is older.
                    if revision < state.revision {
                        continue;
                    }
                    let object = Arc::new(object.object);
                    let old = state.objects.insert(key.clone(), object.clone());
                    let prev = prev.map(|p| Arc::new(p.object)).or(old);
                    let kind = if prev.is_some() { EventType::Modified } else { EventType::Added };
                    CacheEvent::new(kind, key, object, prev, revision)
                }
                WatchChange::Delete { key, prev, revision } => {
                    if revision < state.revision {
                        continue;
                    }
                    let old = state.objects.remove(&key);
                    let prev = prev.map(|p| Arc::new(p.object)).or(old);
                    let Some(prev) = prev else { continue };
                    let mut object = (*prev).clone();
                    meta::set_resource_version(&mut object, revision);
                    CacheEvent::new(EventType::Deleted, key, Arc::new(object), Some(prev), revision)
                }
            };
            state.revision = event.revision;
            let event = Arc::new(event);
            state.events.push_back(event.clone());
            while state.events.len() > WINDOW {
                if let Some(dropped) = state.events.pop_front() {
                    state.oldest = dropped.revision;
                }
            }
            self.to_nodes(&event);
            let _ = self.tx.send(Message::Event(event));
        }
        let revision = state.revision;
        drop(state);
        self.revision_tx.send_replace(revision);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::{of, Kind};
    use serde_json::json;

    fn event(kind: EventType, object: Value, prev: Option<Value>) -> CacheEvent {
        CacheEvent::new(kind, "/registry/pods/d/p".into(), Arc::new(object), prev.map(Arc::new), 2)
    }

    #[test]
    fn a_node_feed_gets_only_the_events_of_pods_on_its_node() {
        let cacher = Cacher::empty(of(Kind::Pod));
        cacher.reset(Vec::new(), 1);
        let subscription = cacher.subscribe(Start::After(1), "/p/", Some("n1")).ok().expect("subscribes");
        let feed = subscription.feed;
        assert_eq!(feed.caught_up(), Some(1), "nothing queued: caught up with the cache");
        let Feed::Node(mut rx, _) = feed else { panic!("a pod watch on one node is indexed") };
        let pod = |node: Option<&str>, revision: i64| crate::storage::Stored {
            object: json!({"metadata": {"name": "p"}, "spec": {"nodeName": node}}),
            mod_revision: revision,
        };
        cacher.apply(vec![WatchChange::Put { key: "/p/a".into(), object: pod(None, 2), prev: None }]);
        cacher.apply(vec![WatchChange::Put { key: "/p/b".into(), object: pod(Some("n2"), 3), prev: None }]);
        let quiet = cacher.subscribe(Start::After(3), "/p/", Some("n3")).ok().expect("subscribes").feed;
        assert_eq!(quiet.caught_up(), Some(3), "a node with no events still reports the cache's revision");
        cacher.apply(vec![WatchChange::Put { key: "/p/a".into(), object: pod(Some("n1"), 4), prev: None }]);
        cacher.apply(vec![WatchChange::Delete { key: "/p/a".into(), prev: None, revision: 5 }]);
        let mut seen = Vec::new();
        while let Ok(Message::Event(event)) = rx.try_recv() {
            seen.push((event.key.clone(), event.revision));
        }
        assert_eq!(seen, vec![("/p/a".to_string(), 4), ("/p/a".to_string(), 5)]);
        cacher.reset(Vec::new(), 6);
        assert!(rx.try_recv().is_err(), "a rebuilt cache ends the node feeds");
    }

    #[test]
    fn every_key_of_one_revision_is_applied() {
        let cacher = Cacher::empty(of(Kind::Event));
        let stored = |name: &str, revision: i64| crate::storage::Stored {
            object: json!({"metadata": {"name": name}}),
            mod_revision: revision,
        };
        cacher.reset(vec![("/e/a".into(), json!({})), ("/e/b".into(), json!({}))], 5);
        let subscription = cacher.subscribe(Start::After(5), "/e/", None).ok().expect("subscribes");
        // A lease expiring deletes both keys at revision 6.
        cacher.apply(vec![
            WatchChange::Delete { key: "/e/a".into(), prev: Some(stored("a", 3)), revision: 6 },
            WatchChange::Delete { key: "/e/b".into(), prev: Some(stored("b", 4)), revision: 6 },
        ]);
        assert!(cacher.list("/e/").0.is_empty(), "both keys are gone");
        let Feed::All(mut rx) = subscription.feed else { panic!("an unindexed watch") };
        let mut deleted = 0;
        while let Ok(Message::Event(event)) = rx.try_recv() {
            assert_eq!((event.kind, event.revision), (EventType::Deleted, 6));
            deleted += 1;
        }
        assert_eq!(deleted, 2);
        // A replayed older change is ignored.
        cacher.apply(vec![WatchChange::Put { key: "/e/a".into(), object: stored("a", 5), prev: None }]);
        assert!(cacher.list("/e/").0.is_empty());
    }

    #[test]
    fn objects_leaving_the_selection_are_deleted_for_the_watcher() {
        let pods = of(Kind::Pod);
        let filter = Filter {
            prefix: "/registry/pods/d/".into(),
            labels: LabelSelector::parse("app=web").expect("test data"),
            fields: FieldSelector::default(),
        };
        let web = json!({"metadata": {"labels": {"app": "web"}}});
        let db = json!({"metadata": {"labels": {"app": "db"}}});
        let seen = |e: CacheEvent| filter.view(pods, &e).map(|(k, _)| k);
        assert_eq!(seen(event(EventType::Modified, web.clone(), Some(db.clone()))), Some(EventType::Added));
        assert_eq!(seen(event(EventType::Modified, db.clone(), Some(web.clone()))), Some(EventType::Deleted));
        assert_eq!(seen(event(EventType::Modified, web.clone(), Some(web.clone()))), Some(EventType::Modified));
        assert_eq!(seen(event(EventType::Modified, db.clone(), Some(db.clone()))), None);
        assert_eq!(seen(event(EventType::Deleted, web.clone(), Some(web))), Some(EventType::Deleted));
        assert_eq!(seen(event(EventType::Added, db, None)), None);
    }
}
