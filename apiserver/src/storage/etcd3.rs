//! kube-apiserver's etcd3 store over `etcd-client`: objects are JSON values
//! without a resourceVersion; the key's mod_revision is the resourceVersion.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, EventType, GetOptions, KeyValue, KvClient, PutOptions, Txn, TxnOp,
    TxnOpResponse, WatchClient, WatchOptions, WatchStream,
};
use serde_json::Value;

use super::StorageError;
use crate::config::StoreTls;
use crate::meta;

/// Retries for a store call that failed because a member is gone or a leader
/// is being elected; 20 × 250 ms spans an election with room to spare.
const ATTEMPTS: u32 = 20;
const RETRY_PAUSE: Duration = Duration::from_millis(250);
/// etcd's default gRPC message limit on the client side is too small for big lists.
const MAX_MESSAGE_BYTES: usize = 512 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct Stored {
    /// The object with `metadata.resourceVersion` set to `mod_revision`.
    pub object: Value,
    pub mod_revision: i64,
}

#[derive(Debug)]
pub struct ListPage {
    pub items: Vec<(String, Stored)>,
    /// The revision the page was read at.
    pub revision: i64,
    /// Keys left after this page in the range, at `revision`.
    pub remaining: i64,
}

#[derive(Debug)]
pub enum WatchChange {
    Put { key: String, object: Stored, prev: Option<Stored> },
    Delete { key: String, prev: Option<Stored>, revision: i64 },
}

#[derive(Debug)]
pub enum WatchItem {
    Changes(Vec<WatchChange>),
    /// No change up to this revision (a progress notification).
    Progress(i64),
}

/// The outcome of a compare-and-swap write.
#[derive(Debug)]
pub enum Swap {
    Done(i64),
    /// The key's mod_revision was not the expected one; what is there now.
    Lost(Option<Stored>),
}

#[derive(Clone)]
pub struct Storage {
    client: Client,
    kv: KvClient,
    watch: WatchClient,
}

fn is_transient(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::TransportError(_) | etcd_client::Error::IoError(_) => true,
        etcd_client::Error::GRpcStatus(status) => {
            matches!(status.code(), tonic::Code::Unavailable | tonic::Code::DeadlineExceeded)
                || status.message().contains("leader changed")
                || status.message().contains("no leader")
                || status.message().contains("timed out")
        }
        _ => false,
    }
}

/// Failures that happen before a request leaves this process: nothing to be unsure about.
fn never_sent(err: &etcd_client::Error) -> bool {
    let text = err.to_string();
    ["error trying to connect", "tcp connect error", "Connection refused", "no leader"].iter().any(|m| text.contains(m))
}

pub(crate) fn decode(kv: &KeyValue) -> Result<Stored, StorageError> {
    let key = String::from_utf8_lossy(kv.key()).to_string();
    let mut object: Value =
        serde_json::from_slice(kv.value()).map_err(|e| StorageError::Corrupt { key, reason: e.to_string() })?;
    meta::set_resource_version(&mut object, kv.mod_revision());
    Ok(Stored { object, mod_revision: kv.mod_revision() })
}

/// The bytes kube-apiserver stores: the object without resourceVersion.
pub fn encode(object: &Value) -> Result<Vec<u8>, StorageError> {
    let mut object = object.clone();
    meta::remove(&mut object, "resourceVersion");
    meta::remove(&mut object, "selfLink");
    serde_json::to_vec(&object).map_err(|e| StorageError::Encode(e.to_string()))
}

fn key_of(kv: &KeyValue) -> String {
    String::from_utf8_lossy(kv.key()).to_string()
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// kube-apiserver's --etcd-cafile, --etcd-certfile and --etcd-keyfile.
fn tls_options(tls: &StoreTls) -> Result<etcd_client::TlsOptions, StorageError> {
    let read = |path: &std::path::Path| {
        std::fs::read(path).map_err(|err| StorageError::Unavailable(format!("reading {}: {err}", path.display())))
    };
    let mut options = etcd_client::TlsOptions::new();
    if let Some(ca) = &tls.ca {
        options = options.ca_certificate(etcd_client::Certificate::from_pem(read(ca)?));
    }
    if let Some((cert, key)) = &tls.cert_and_key {
        options = options.identity(etcd_client::Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

impl Storage {
    pub async fn connect(endpoints: &[String], tls: Option<&StoreTls>) -> Result<Storage, StorageError> {
        let mut options = ConnectOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        if let Some(tls) = tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let client = Client::connect(endpoints, Some(options)).await?;
        let kv = client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let watch = client.watch_client().max_decoding_message_size(MAX_MESSAGE_BYTES);
        Ok(Storage { client, kv, watch })
    }

    /// Whether the store reports at least this etcd version; false when it cannot be asked.
    pub async fn version_at_least(&self, wanted: (u32, u32, u32)) -> bool {
        let Ok(status) = self.client.clone().status().await else { return false };
        let mut parts = status.version().split('.').map(|part| part.parse::<u32>().unwrap_or(0));
        let version = (parts.next().unwrap_or(0), parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        version >= wanted
    }

    async fn retry<T, F, Fut>(&self, call: F) -> Result<T, StorageError>
    where
        F: FnMut(KvClient) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        retry_with(|| self.kv.clone(), call).await
    }
}

async fn retry_with<C, T, F, Fut>(client: impl Fn() -> C, mut call: F) -> Result<T, StorageError>
where
    F: FnMut(C) -> Fut,
    Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call(client()).await {
            Ok(value) => return Ok(value),
            Err(err) if attempt < ATTEMPTS && is_transient(&err) => {
                tracing::debug!(%err, attempt, "store call failed; retrying");
                tokio::time::sleep(RETRY_PAUSE).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

impl Storage {
    pub async fn get(&self, key: &str) -> Result<Option<Stored>, StorageError> {
        let response = self.retry(|mut c| async move { c.get(key, None).await }).await?;
        response.kvs().first().map(decode).transpose()
    }

    /// The store's current revision (a linearizable read of nothing).
    pub async fn current_revision(&self) -> Result<i64, StorageError> {
        let response =
            self.retry(|mut c| async move { c.get("\0", Some(GetOptions::new().with_count_only())).await }).await?;
        Ok(response.header().map(|h| h.revision()).unwrap_or(0))
    }

    /// Up to `limit` keys (0: all) of `prefix` from `start` on, at `revision` (0: now).
    pub async fn list(&self, prefix: &str, start: &str, revision: i64, limit: i64) -> Result<ListPage, StorageError> {
        let from = if start.is_empty() { prefix.to_string() } else { start.to_string() };
        let end = prefix_end(prefix);
        let response = self
            .retry(|mut c| {
                let (from, end) = (from.clone(), end.clone());
                async move {
                    let mut options = GetOptions::new().with_range(end).with_revision(revision);
                    if limit > 0 {
                        options = options.with_limit(limit);
                    }
                    c.get(from, Some(options)).await
                }
            })
            .await
            .map_err(|err| match err {
                StorageError::Compacted { .. } => StorageError::Compacted { requested: revision, compacted: 0 },
                other => other,
            })?;
        let mut items = Vec::with_capacity(response.kvs().len());
        for kv in response.kvs() {
            items.push((key_of(kv), decode(kv)?));
        }
        let remaining = response.count() - items.len() as i64;
        let revision = if revision > 0 { revision } else { response.header().map(|h| h.revision()).unwrap_or(0) };
        Ok(ListPage { items, revision, remaining })
    }

    /// Writes `object` at `key` if the key's mod_revision is `expected` (0: absent).
    pub async fn swap(
        &self,
        key: &str,
        expected: i64,
        object: &Value,
        lease: Option<i64>,
    ) -> Result<Swap, StorageError> {
        let bytes = encode(object)?;
        let put = || {
            let options = lease.map(|id| PutOptions::new().with_lease(id));
            TxnOp::put(key, bytes.clone(), options)
        };
        self.txn(key, expected, put).await
    }

    /// Deletes `key` if its mod_revision is `expected`.
    pub async fn delete(&self, key: &str, expected: i64) -> Result<Swap, StorageError> {
        self.txn(key, expected, || TxnOp::delete(key, None)).await
    }

    /// A compare-and-swap on `key`. It is sent again only after failures that
    /// prove it never reached a member; after any other (a connection lost
    /// mid-request, a leader change) its outcome is unknown and the error goes
    /// to the caller, as kube-apiserver's does: reading the key afterwards
    /// cannot tell our write from another writer's identical one.
    async fn txn(&self, key: &str, expected: i64, op: impl Fn() -> TxnOp) -> Result<Swap, StorageError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let txn = Txn::new()
                .when([Compare::mod_revision(key, CompareOp::Equal, expected)])
                .and_then([op()])
                .or_else([TxnOp::get(key, None)]);
            let mut kv = self.kv.clone();
            let response = match kv.txn(txn).await {
                Ok(response) => response,
                Err(err) if attempt < ATTEMPTS && never_sent(&err) => {
                    tracing::debug!(%err, attempt, "write not sent; sending it again");
                    tokio::time::sleep(RETRY_PAUSE).await;
                    continue;
                }
                // It may have landed: only the caller (and its client) can decide what to do.
                Err(err) if is_transient(&err) => {
                    return Err(StorageError::Unavailable(format!("the outcome of the write is unknown: {err}")))
                }
                Err(err) => return Err(err.into()),
            };
            if response.succeeded() {
                return Ok(Swap::Done(response.header().map(|h| h.revision()).unwrap_or(0)));
            }
            let current = response.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(get) => Some(get.kvs().first().map(decode)),
                _ => None,
            });
            return Ok(Swap::Lost(current.flatten().transpose()?));
        }
    }

    pub async fn grant_lease(&self, ttl_seconds: i64) -> Result<i64, StorageError> {
        let response =
            retry_with(|| self.client.clone(), |mut c| async move { c.lease_grant(ttl_seconds, None).await }).await?;
        Ok(response.id())
    }

    /// kube-apiserver's compaction step: one Txn on `compact_rev_key` lets one
    /// of several replicas win; the winner compacts at the revision it saw last time.
    /// Returns the key's version and the store revision for the next round.
    pub async fn compact_round(&self, seen_version: i64, last_revision: i64) -> Result<(i64, i64), StorageError> {
        let key = super::keys::COMPACT_REV_KEY;
        let response = self
            .retry(|mut c| {
                let txn = Txn::new()
                    .when([Compare::version(key, CompareOp::Equal, seen_version)])
                    .and_then([TxnOp::put(key, last_revision.to_string(), None)])
                    .or_else([TxnOp::get(key, None)]);
                async move { c.txn(txn).await }
            })
            .await?;
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        if !response.succeeded() {
            let version = response
                .op_responses()
                .into_iter()
                .find_map(|r| match r {
                    TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.version()),
                    _ => None,
                })
                .unwrap_or(0);
            return Ok((version, revision));
        }
        if last_revision > 0 {
            let mut kv = self.kv.clone();
            match kv.compact(last_revision, None).await {
                Ok(_) => tracing::info!(revision = last_revision, "compacted the store"),
                Err(err) if err.to_string().contains("compacted") => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok((seen_version + 1, revision))
    }

    /// A watch on `prefix` from `start_revision`, with previous values and
    /// progress notifications.
    pub async fn watch(&self, prefix: &str, start_revision: i64) -> Result<StoreWatch, StorageError> {
        let options = WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_progress_notify()
            .with_start_revision(start_revision);
        let stream = retry_with(
            || self.watch.clone(),
            |mut c| {
                let options = options.clone();
                async move { c.watch(prefix, Some(options)).await }
            },
        )
        .await?;
        Ok(StoreWatch { stream, start_revision })
    }
}

pub struct StoreWatch {
    stream: WatchStream,
    start_revision: i64,
}

impl StoreWatch {
    /// Asks the store to report the revision this watch has reached.
    pub async fn request_progress(&mut self) -> Result<(), StorageError> {
        Ok(self.stream.request_progress().await?)
    }

    /// The next batch; `Ok(None)` when the stream ended; `Compacted` when the
    /// start revision is gone.
    pub async fn next(&mut self) -> Result<Option<WatchItem>, StorageError> {
        loop {
            let Some(response) = self.stream.message().await? else {
                return Ok(None);
            };
            if response.compact_revision() > 0 {
                return Err(StorageError::Compacted {
                    requested: self.start_revision,
                    compacted: response.compact_revision(),
                });
            }
            if response.canceled() {
                return Err(StorageError::Unavailable(format!("watch canceled: {}", response.cancel_reason())));
            }
            if response.created() && response.events().is_empty() {
                continue;
            }
            if response.events().is_empty() {
                let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                return Ok(Some(WatchItem::Progress(revision)));
            }
            let mut changes = Vec::with_capacity(response.events().len());
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                // An undecodable value is reported and passed over: one bad key must not stop every watcher.
                let prev = event
                    .prev_kv()
                    .and_then(|p| decode(p).map_err(|err| tracing::warn!(%err, "watch: previous value")).ok());
                changes.push(match event.event_type() {
                    EventType::Put => match decode(kv) {
                        Ok(object) => WatchChange::Put { key: key_of(kv), object, prev },
                        Err(err) => {
                            tracing::warn!(%err, "watch: skipping an undecodable value");
                            continue;
                        }
                    },
                    EventType::Delete => WatchChange::Delete { key: key_of(kv), prev, revision: kv.mod_revision() },
                });
            }
            return Ok(Some(WatchItem::Changes(changes)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key() {
        assert_eq!(prefix_end("/registry/pods/"), b"/registry/pods0".to_vec());
    }

    #[test]
    fn stored_bytes_have_no_resource_version() {
        let object = serde_json::json!({"metadata": {"name": "a", "resourceVersion": "5"}});
        let bytes = encode(&object).expect("test data");
        assert_eq!(bytes, br#"{"metadata":{"name":"a"}}"#.to_vec());
    }
}
