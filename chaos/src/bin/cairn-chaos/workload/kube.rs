//! Traffic shaped like kube-apiserver's storage layer (k8s.io/apiserver's
//! etcd3 store), on objects under one `/registry/` prefix that the clients
//! share, so that their optimistic writes conflict:
//! - create: a Txn that puts if the key's create revision is 0, else gets;
//! - update and delete: a Txn on the mod revision the client last read, whose
//!   else-branch gets the current object, on which the client tries again;
//! - list: pages of a few keys at the revision of the first page, continued
//!   from the last key, as a continue token does;
//! - compaction through `compact_rev_key`, as kube-apiserver's compactor does.
//!
//! The watch (from a list's revision + 1, with prev_kv and progress) is the
//! `watch` worker with a prefix. Acknowledged writes go into the KV history,
//! lists are checked as snapshots, watches by the watch checker.

use std::time::Duration;

use cairn_chaos::record::{ListRecord, OpKind};
use cairn_chaos::schedule::Rng;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp, TxnOpResponse};

use super::{text, Conn, Failure, Pace, Session, Shared};

pub const PREFIX: &str = "/registry/configmaps/chaos/";
/// Keys per page: small, so that a list takes several pages.
const PAGE: i64 = 4;
/// kube-apiserver's compaction key.
const COMPACT_REV_KEY: &str = "compact_rev_key";

pub struct Client {
    pub id: u32,
    pub objects: u64,
    pub per_second: f64,
}

struct State {
    session: Session,
    /// Values written, for unique values.
    written: u64,
}

/// What a Txn's else-branch (or a get) says the object is now.
struct Current {
    value: Option<String>,
    mod_revision: i64,
}

impl State {
    fn new(id: u32, recorder: Shared, conn: Conn) -> Self {
        State { session: Session::new(id, recorder, conn), written: 0 }
    }

    async fn get(&mut self, key: &str) -> Option<Current> {
        let invoked = self.session.recorder.now();
        let owned = key.to_string();
        let response = self.session.conn.call(|mut client| async move { client.get(owned, None).await }).await.ok();
        self.session.recorder.latency(OpKind::Get, response.is_some(), invoked);
        let response = response?;
        self.session.observed(response.header().map_or(0, |header| header.revision()), false);
        let kv = response.kvs().first();
        Some(Current { value: kv.map(|kv| text(kv.value())), mod_revision: kv.map_or(0, |kv| kv.mod_revision()) })
    }

    /// One guarded write: `then` if the guard holds, else a get of the key.
    /// `Ok(None)`: done; `Ok(Some(current))`: the guard failed on this object.
    async fn guarded(
        &mut self,
        key: &str,
        guard: Compare,
        then: TxnOp,
        value: Option<String>,
    ) -> Result<Option<Current>, ()> {
        let invoked = self.session.recorder.now();
        let txn = Txn::new().when([guard]).and_then([then]).or_else([TxnOp::get(key, None)]);
        let response = self.session.conn.call(|mut client| async move { client.txn(txn).await }).await;
        self.session.recorder.latency(OpKind::Cas, response.is_ok(), invoked);
        let response = match response {
            Ok(response) => response,
            // An unknown write is in the history only if a watcher saw it.
            Err(Failure::Unknown) | Err(Failure::NotSent) => return Err(()),
        };
        let revision = response.header().map_or(0, |header| header.revision());
        if response.succeeded() {
            self.session.acknowledged(key, value, revision);
            return Ok(None);
        }
        self.session.observed(revision, false);
        let kv = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => get.kvs().first().cloned(),
            _ => None,
        });
        Ok(Some(Current {
            value: kv.as_ref().map(|kv| text(kv.value())),
            mod_revision: kv.as_ref().map_or(0, |kv| kv.mod_revision()),
        }))
    }

    /// Creates the object, or updates or deletes it from what it is now,
    /// retrying on the object the failed guard returned, as GuaranteedUpdate does.
    async fn write(&mut self, key: &str, rng: &mut Rng) {
        let Some(mut current) = self.get(key).await else { return };
        for _ in 0..3 {
            self.written += 1;
            let value = format!("{}.{}", self.session.id, self.written);
            let outcome = match current.value {
                None => {
                    let guard = Compare::create_revision(key, CompareOp::Equal, 0);
                    self.guarded(key, guard, TxnOp::put(key, value.clone(), None), Some(value)).await
                }
                Some(_) if rng.below(4) == 0 => {
                    let guard = Compare::mod_revision(key, CompareOp::Equal, current.mod_revision);
                    self.guarded(key, guard, TxnOp::delete(key, None), None).await
                }
                Some(_) => {
                    let guard = Compare::mod_revision(key, CompareOp::Equal, current.mod_revision);
                    self.guarded(key, guard, TxnOp::put(key, value.clone(), None), Some(value)).await
                }
            };
            match outcome {
                Ok(Some(now)) => current = now,
                Ok(None) | Err(()) => return,
            }
        }
    }

    /// A list in pages at the first page's revision, recorded; its revision,
    /// or `None` if a page failed (a fault, or compaction past the revision:
    /// kube-apiserver's 410), which drops the list.
    async fn list(&mut self) -> Option<i64> {
        let mut record = ListRecord { client: self.session.id, prefix: PREFIX.to_string(), ..Default::default() };
        let end = prefix_end(PREFIX);
        let mut from = PREFIX.to_string();
        loop {
            let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
            if record.revision > 0 {
                options = options.with_revision(record.revision);
            }
            let key = from.clone();
            let page =
                self.session.conn.call(|mut client| async move { client.get(key, Some(options)).await }).await.ok()?;
            if record.revision == 0 {
                record.revision = page.header().map_or(0, |header| header.revision());
                self.session.observed(record.revision, false);
            }
            record.pages += 1;
            record.items.extend(page.kvs().iter().map(|kv| (text(kv.key()), text(kv.value()))));
            match (page.more(), page.kvs().last()) {
                (true, Some(last)) => from = format!("{}\0", text(last.key())),
                _ => break,
            }
        }
        let revision = record.revision;
        self.session.recorder.record().lists.push(record);
        Some(revision)
    }
}

/// The end of a prefix range: the prefix with its last byte raised.
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    if let Some(last) = end.last_mut() {
        *last += 1;
    }
    end
}

impl Client {
    pub async fn run(self, recorder: Shared, conn: Conn, mut rng: Rng) {
        let mut state = State::new(self.id, recorder.clone(), conn);
        let mut pace = Pace::new(self.per_second);
        while pace.next(&recorder).await {
            if rng.below(5) == 0 {
                state.list().await;
            } else {
                let key = format!("{PREFIX}cm-{}", rng.below(self.objects));
                state.write(&key, &mut rng).await;
            }
        }
    }
}

/// kube-apiserver's compactor: every `interval`, a Txn that moves
/// `compact_rev_key` on only if its version is the one this compactor last
/// saw (so that of several API servers one compacts), then a compaction to the
/// revision the previous round recorded. It stays behind `low_water_mark()`,
/// the oldest revision a whole-history watcher still needs, so that the
/// checkers keep a complete history.
pub async fn compact(recorder: Shared, mut conn: Conn, interval: Duration, low_water_mark: impl Fn() -> i64) {
    let mut version = 0;
    let mut previous = 0;
    while !recorder.stopping() {
        tokio::time::sleep(interval).await;
        let Ok(current) = conn.call(|mut client| async move { client.get(COMPACT_REV_KEY, None).await }).await else {
            continue;
        };
        let revision = current.header().map_or(0, |header| header.revision());
        let txn = Txn::new()
            .when([Compare::version(COMPACT_REV_KEY, CompareOp::Equal, version)])
            .and_then([TxnOp::put(COMPACT_REV_KEY, revision.to_string(), None)])
            .or_else([TxnOp::get(COMPACT_REV_KEY, None)]);
        let Ok(response) = conn.call(|mut client| async move { client.txn(txn).await }).await else { continue };
        if !response.succeeded() {
            // Another compactor moved it: take its version and try next round.
            version = response
                .op_responses()
                .into_iter()
                .find_map(|op| match op {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
                    _ => None,
                })
                .unwrap_or(0);
            continue;
        }
        version += 1;
        let target = previous.min(low_water_mark());
        previous = revision;
        if target <= 1 {
            continue;
        }
        let compacted = conn.call(|mut client| async move { client.compact(target, None).await }).await;
        if compacted.is_ok() {
            recorder.record().compactions.push(target);
        }
    }
}

/// A reflector: a list, then a watch of the prefix from its revision + 1 with
/// prev_kv and progress, in watcher slot `slot`.
pub async fn reflect(slot: u32, recorder: Shared, conn: Conn, progress: std::sync::Arc<super::watch::Progress>) {
    let mut state = State::new(3000 + slot, recorder.clone(), conn);
    while !recorder.stopping() {
        if let Some(revision) = state.list().await {
            let spec = super::watch::Spec { prefix: PREFIX.to_string(), progress: true };
            super::watch::run(slot, revision + 1, spec, recorder, state.session.conn, progress).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
