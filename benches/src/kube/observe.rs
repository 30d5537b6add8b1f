//! Watches of the running cluster: the pod timelines of one namespace, and
//! many concurrent pod watchers whose event streams are checked against the
//! store's own watch.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{WatchEvent, WatchParams};
use kube::runtime::watcher;
use kube::{Api, Client};
use parking_lot::Mutex;

use super::measure::PodTimes;

pub fn unix_now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

fn running_and_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else { return false };
    status.phase.as_deref() == Some("Running")
        && status.conditions.iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
}

/// Every pod of a namespace, with when the watch saw it created, bound and running.
#[derive(Clone, Default)]
pub struct Timelines(Arc<Mutex<HashMap<String, PodTimes>>>);

impl Timelines {
    pub fn start(client: Client, namespace: &str) -> Timelines {
        let timelines = Timelines::default();
        let pods: Api<Pod> = Api::namespaced(client, namespace);
        let sink = timelines.clone();
        tokio::spawn(async move {
            let mut events = std::pin::pin!(watcher(pods, watcher::Config::default()));
            while let Some(event) = events.next().await {
                if Arc::strong_count(&sink.0) == 1 {
                    return;
                }
                match event {
                    Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod)) => sink.saw(&pod),
                    Ok(_) => {}
                    Err(error) => tracing::debug!(%error, "pod watch restarts"),
                }
            }
        });
        timelines
    }

    fn saw(&self, pod: &Pod) {
        let Some(name) = pod.metadata.name.clone() else { return };
        let now = unix_now();
        let mut all = self.0.lock();
        let times = all.entry(name).or_insert_with(|| PodTimes {
            created: pod.metadata.creation_timestamp.as_ref().map_or(now, |t| t.0.as_second() as f64),
            watched: now,
            scheduled: None,
            running: None,
        });
        if times.scheduled.is_none() && pod.spec.as_ref().is_some_and(|s| s.node_name.is_some()) {
            times.scheduled = Some(now);
        }
        if times.running.is_none() && running_and_ready(pod) {
            times.running = Some(now);
        }
    }

    pub fn snapshot(&self) -> HashMap<String, PodTimes> {
        self.0.lock().clone()
    }

    /// (pods seen, bound, running) among those whose name starts with `prefix`.
    pub fn counts(&self, prefix: &str) -> (usize, usize, usize) {
        let all = self.0.lock();
        let mine = all.iter().filter(|(name, _)| name.starts_with(prefix)).map(|(_, t)| t);
        mine.fold((0, 0, 0), |(seen, bound, running), t| {
            (seen + 1, bound + usize::from(t.scheduled.is_some()), running + usize::from(t.running.is_some()))
        })
    }
}

/// An order-independent digest of a set of (name, revision) events, so that
/// two streams can be compared without keeping them.
fn digest(name: &str, revision: &str) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    (name, revision).hash(&mut hasher);
    hasher.finish()
}

/// What one stream of events added up to.
#[derive(Default)]
pub struct Tally {
    pub events: AtomicU64,
    pub digest: AtomicU64,
    /// 410 Gone or any other end that forced a relist: the stream is incomplete.
    pub broken: AtomicU64,
}

impl Tally {
    fn add(&self, name: &str, revision: &str) {
        self.digest.fetch_xor(digest(name, revision), Ordering::Relaxed);
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(&self) -> (u64, u64) {
        (self.events.load(Ordering::Relaxed), self.digest.load(Ordering::Relaxed))
    }
}

/// One raw pod watch of a namespace from `revision`, resumed from its last
/// event when the server ends it, as a reflector does.
pub fn watch_from(client: Client, namespace: &str, revision: String) -> Arc<Tally> {
    let tally = Arc::new(Tally::default());
    let pods: Api<Pod> = Api::namespaced(client, namespace);
    let sink = tally.clone();
    tokio::spawn(async move {
        let mut from = revision;
        loop {
            if Arc::strong_count(&sink) == 1 {
                return;
            }
            let params = WatchParams::default().timeout(290);
            let mut stream = match pods.watch(&params, &from).await {
                Ok(stream) => stream.boxed(),
                Err(error) => {
                    tracing::debug!(%error, "watch refused; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(event) = stream.next().await {
                match event {
                    Ok(WatchEvent::Added(pod) | WatchEvent::Modified(pod) | WatchEvent::Deleted(pod)) => {
                        let meta = &pod.metadata;
                        let revision = meta.resource_version.clone().unwrap_or_default();
                        sink.add(meta.name.as_deref().unwrap_or(""), &revision);
                        from = revision;
                    }
                    Ok(WatchEvent::Bookmark(bookmark)) => from = bookmark.metadata.resource_version,
                    Ok(WatchEvent::Error(_)) | Err(_) => {
                        sink.broken.fetch_add(1, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    });
    tally
}

/// The truth the watchers are held to: the store's own watch of the
/// namespace's pod keys, from the same revision.
pub async fn store_truth(endpoints: &[String], namespace: &str, revision: i64) -> anyhow::Result<Arc<Tally>> {
    let mut client = etcd_client::Client::connect(endpoints, None).await?;
    let prefix = format!("/registry/pods/{namespace}/");
    let options = etcd_client::WatchOptions::new().with_prefix().with_start_revision(revision + 1);
    let mut stream = client.watch(prefix.as_bytes(), Some(options)).await?;
    let tally = Arc::new(Tally::default());
    let sink = tally.clone();
    tokio::spawn(async move {
        while let Ok(Some(response)) = stream.message().await {
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key());
                let name = key.strip_prefix(prefix.as_str()).unwrap_or(&key).to_string();
                // A delete event carries the revision of the delete itself.
                sink.add(&name, &kv.mod_revision().to_string());
            }
        }
    });
    Ok(tally)
}
