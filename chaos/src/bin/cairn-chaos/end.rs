//! The end of a run: heal everything, let the watchers reach a fence write,
//! then read the final state from every member for the checkers.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use cairn_chaos::history::{Call, Operation, Outcome};
use cairn_chaos::record::SetRecord;
use cairn_chaos::watch::Change;
use etcd_client::GetOptions;
use tokio::sync::Mutex;

use crate::workload::watch::{abandon, Progress};
use crate::workload::{register, set, text, Shared};
use cairn_testkit::{connect, Cluster};

pub struct End {
    pub cluster: Arc<Mutex<Cluster>>,
    pub recorder: Shared,
    pub progress: Arc<Progress>,
    pub lease_ttl: i64,
}

async fn within<T>(limit: Duration, what: &str, work: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    tokio::time::timeout(limit, work).await.map_err(|_| anyhow!("{what}: no answer within {limit:?}"))?
}

impl End {
    /// Gathers the end state; a step that fails is recorded as an error, which fails the run.
    pub async fn gather(&self, watchers: Vec<tokio::task::JoinHandle<()>>) {
        let mut errors = Vec::new();
        let step = |result: Result<()>, errors: &mut Vec<String>| {
            if let Err(err) = result {
                errors.push(format!("{err:#}"));
            }
        };
        step(self.heal().await, &mut errors);
        let fence = self.fence(watchers).await;
        step(fence.as_ref().map(|_| ()).map_err(|err| anyhow!("{err:#}")), &mut errors);
        if let Ok(fence) = fence {
            step(within(Duration::from_secs(30), "final reads", self.final_register_reads()).await, &mut errors);
            step(within(Duration::from_secs(30), "set reads", self.final_set_reads()).await, &mut errors);
            step(within(Duration::from_secs(60), "member reads", self.member_reads(fence)).await, &mut errors);
            step(within(Duration::from_secs(60), "lease expiry", self.lease_keys_left()).await, &mut errors);
        }
        let panics = self.cluster.lock().await.panics();
        let mut run = self.recorder.record();
        run.end.panics = panics;
        run.end.errors.extend(errors);
    }

    async fn heal(&self) -> Result<()> {
        let mut cluster = self.cluster.lock().await;
        cluster.heal()?;
        cluster.wait_healthy(Duration::from_secs(60)).await
    }

    async fn client(&self) -> Result<etcd_client::Client> {
        self.cluster.lock().await.any_client(None, cairn_testkit::cluster::ADMIN_TIMEOUT).await
    }

    /// Writes a last key and waits until every watcher has received it.
    async fn fence(&self, watchers: Vec<tokio::task::JoinHandle<()>>) -> Result<i64> {
        let mut client = self.client().await?;
        let put = within(Duration::from_secs(10), "fence put", async { Ok(client.put("fence", "end", None).await?) });
        let revision = put.await?.header().map_or(0, |header| header.revision());
        let change = Change { revision, key: "fence".into(), value: Some("end".into()) };
        self.recorder.record().writes.push(change);
        self.progress.fence.store(revision, Ordering::Relaxed);
        self.recorder.record().end.fence_revision = revision;
        let all = futures::future::join_all(watchers);
        if tokio::time::timeout(Duration::from_secs(30), all).await.is_err() {
            abandon(&self.progress);
        }
        let caught_up: Vec<(u32, bool)> = (0..self.progress.last.len())
            .map(|watcher| (watcher as u32, self.progress.last[watcher].load(Ordering::Relaxed) >= revision))
            .collect();
        self.recorder.record().end.watchers_caught_up = caught_up;
        Ok(revision)
    }

    /// One linearizable read of every register key, as the last operation on each.
    async fn final_register_reads(&self) -> Result<()> {
        let mut client = self.client().await?;
        let invoked = self.recorder.now();
        let response = client.get(register::PREFIX, Some(GetOptions::new().with_prefix())).await?;
        let completed = self.recorder.now();
        let values: BTreeMap<String, String> =
            response.kvs().iter().map(|kv| (text(kv.key()), text(kv.value()))).collect();
        let mut run = self.recorder.record();
        let mut keys: Vec<String> = run.register.iter().map(|op| op.key.clone()).collect();
        keys.sort_unstable();
        keys.dedup();
        for key in keys {
            let value = values.get(&key).cloned();
            let call = Operation {
                client: u32::MAX,
                key,
                call: Call::Read,
                outcome: Outcome::Read(value),
                invoked,
                completed: Some(completed),
            };
            run.register.push(call);
        }
        Ok(())
    }

    async fn final_set_reads(&self) -> Result<()> {
        let mut client = self.client().await?;
        let mut merged: BTreeMap<String, SetRecord> = BTreeMap::new();
        for record in std::mem::take(&mut self.recorder.record().sets) {
            let entry = merged
                .entry(record.key.clone())
                .or_insert_with(|| SetRecord { key: record.key.clone(), ..Default::default() });
            entry.adds.extend(record.adds);
        }
        for record in merged.values_mut() {
            let response = client.get(record.key.as_str(), None).await?;
            let value = response.kvs().first().map(|kv| text(kv.value())).unwrap_or_default();
            record.final_read = Some(set::elements(&value));
        }
        self.recorder.record().sets = merged.into_values().collect();
        Ok(())
    }

    /// Every member's data at the fence revision, read locally, and its HashKV there.
    async fn member_reads(&self, fence: i64) -> Result<()> {
        let slots: Vec<(String, String)> = self
            .cluster
            .lock()
            .await
            .members
            .iter()
            .map(|m| (m.spec.name.clone(), m.spec.client_url.clone()))
            .collect();
        for (name, url) in slots {
            let mut client =
                connect(&url, Duration::from_secs(5)).await.with_context(|| format!("connecting to {name}"))?;
            // Wait until the member has applied the fence.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
            loop {
                let options = GetOptions::new().with_serializable().with_keys_only().with_limit(1);
                let revision = client.get("fence", Some(options)).await?.header().map_or(0, |header| header.revision());
                if revision >= fence {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(anyhow!("{name} stayed at revision {revision}, short of the fence {fence}"));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            let options = GetOptions::new().with_all_keys().with_serializable().with_revision(fence);
            let response = client.get("", Some(options)).await?;
            let kvs = response.kvs().iter().map(|kv| (text(kv.key()), text(kv.value()))).collect();
            let hash = client.hash_kv(fence).await?.hash();
            let mut run = self.recorder.record();
            run.end.member_reads.push((name.clone(), kvs));
            run.end.hashes.push((name, fence, hash));
        }
        Ok(())
    }

    /// Every lease stopped being kept alive when the load stopped; a TTL and a
    /// margin after the cluster is healthy again, their keys must be gone.
    async fn lease_keys_left(&self) -> Result<()> {
        tokio::time::sleep(Duration::from_secs(self.lease_ttl as u64 + 3)).await;
        let mut client = self.client().await?;
        let options = GetOptions::new().with_prefix().with_keys_only();
        let response = client.get(crate::workload::lease::PREFIX, Some(options)).await?;
        let left: Vec<String> = response.kvs().iter().map(|kv| text(kv.key())).collect();
        self.recorder.record().end.lease_keys_left = left;
        Ok(())
    }
}
