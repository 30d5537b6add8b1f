//! The store, reached only through the etcd v3 API (`etcd-client`): the key
//! layout, `GuaranteedUpdate`-style compare-and-swap writes, the compactor and
//! the leases shared by Events. Works unchanged against Cairn or etcd.

mod compactor;
mod etcd3;
mod event_leases;
pub mod keys;

pub use compactor::run_compactor;
pub use etcd3::{encode, ListPage, Storage, Stored, Swap, WatchChange, WatchItem};
pub use event_leases::EventLeases;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// A read at a revision the store has compacted away.
    #[error("too old resource version: {requested} ({compacted})")]
    Compacted { requested: i64, compacted: i64 },
    #[error("etcdserver: request is too large")]
    TooLarge,
    #[error("etcd: {0}")]
    Unavailable(String),
    #[error("stored object at {key} is not valid JSON: {reason}")]
    Corrupt { key: String, reason: String },
    #[error("encoding an object: {0}")]
    Encode(String),
}

impl From<etcd_client::Error> for StorageError {
    fn from(err: etcd_client::Error) -> StorageError {
        let text = err.to_string();
        if text.contains("request is too large") {
            StorageError::TooLarge
        } else if text.contains("required revision has been compacted") {
            StorageError::Compacted { requested: 0, compacted: 0 }
        } else {
            StorageError::Unavailable(text)
        }
    }
}

/// Whether two objects store as the same bytes (an update that changes nothing).
pub fn same_content(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    matches!((encode(a), encode(b)), (Ok(x), Ok(y)) if x == y)
}
