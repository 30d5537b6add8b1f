//! An informer: a kube watcher feeding a reflector cache, bumping a shared
//! change counter (`Changes`) that wakes every reconcile loop subscribed to it.

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch as channel;

pub struct Informer<K: Resource + 'static>
where
    K::DynamicType: Eq + Hash + Clone,
{
    store: Store<K>,
    changes: Changes,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Informer<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Eq + Hash + Clone + Default + Send + Sync,
{
    /// Starts watching; `changed` is bumped after every event is in the cache.
    pub fn start(api: Api<K>, config: watcher::Config, changed: Changes) -> Informer<K> {
        let (store, writer) = reflector::store();
        let changes = changed.clone();
        let stream = reflector::reflector(writer, watcher(api, config).default_backoff());
        let task = tokio::spawn(async move {
            let mut stream = std::pin::pin!(stream);
            while let Some(event) = stream.next().await {
                if let Err(error) = event {
                    tracing::debug!(%error, "watch failed; retrying with backoff");
                }
                changed.bump();
            }
        });
        Informer { store, changes, task }
    }

    /// Waits, at most `timeout`, for the first list to be in the cache.
    pub async fn synced(&self, timeout: Duration) -> bool {
        tokio::time::timeout(timeout, self.store.wait_until_ready()).await.is_ok_and(|r| r.is_ok())
    }

    pub fn state(&self) -> Vec<Arc<K>> {
        self.store.state()
    }

    pub fn store(&self) -> &Store<K> {
        &self.store
    }

    /// The counter this informer bumps.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }
}

impl<K: Resource + 'static> Drop for Informer<K>
where
    K::DynamicType: Eq + Hash + Clone,
{
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A counter of cache changes that any number of loops can wait on.
#[derive(Clone)]
pub struct Changes(Arc<channel::Sender<u64>>);

impl Default for Changes {
    fn default() -> Changes {
        Changes(Arc::new(channel::channel(0).0))
    }
}

impl Changes {
    pub fn bump(&self) {
        self.0.send_modify(|count| *count += 1);
    }

    /// A new subscriber sees one change at once, so that a loop's first pass
    /// covers what the caches held when it started, as a kube informer's
    /// initial adds do; without it a namespace created before the sync waited
    /// a whole resync period for its ServiceAccount.
    pub fn subscribe(&self) -> channel::Receiver<u64> {
        let mut receiver = self.0.subscribe();
        receiver.mark_changed();
        receiver
    }

    /// A counter bumped whenever any of `sources` is, so that a loop wakes
    /// only for the caches it reads (node Leases change a hundred times a
    /// second at a thousand nodes; few loops care).
    pub fn any_of(sources: &[&Changes]) -> Changes {
        let merged = Changes::default();
        for source in sources {
            let mut changed = source.subscribe();
            let merged = merged.clone();
            // Ends when the source's informer goes.
            tokio::spawn(async move {
                while changed.changed().await.is_ok() {
                    merged.bump();
                }
            });
        }
        merged
    }
}

/// Waits for a change, then lets a burst of changes settle so that one
/// reconcile pass covers them; returns after `resync` at the latest.
pub async fn next_pass(changed: &mut channel::Receiver<u64>, resync: Duration) {
    let _ = tokio::time::timeout(resync, changed.changed()).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    changed.borrow_and_update();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn t10_a_new_subscriber_passes_at_once_then_waits_for_a_change() {
        let changes = Changes::default();
        let mut wake = changes.subscribe();
        let hour = Duration::from_secs(3600);
        let first = tokio::time::timeout(Duration::from_secs(5), next_pass(&mut wake, hour)).await;
        assert!(first.is_ok(), "the first pass does not wait for a change");
        let idle = tokio::time::timeout(Duration::from_millis(200), next_pass(&mut wake, hour)).await;
        assert!(idle.is_err(), "then a pass waits for a change");
        changes.bump();
        let woken = tokio::time::timeout(Duration::from_secs(5), next_pass(&mut wake, hour)).await;
        assert!(woken.is_ok(), "a change wakes it");
    }
}
