//! MVCC, as etcd's `mvcc` package: revisions, the key index, and ranges.
//!
//! Pure: no I/O and no clock. Values are fetched through [`ValueReader`],
//! which the caller backs with the engine (or a map, in tests).

mod index;
mod key_index;
mod range;
mod revision;

pub use index::{ChunkLimit, CompactedChunk, Index, KeyRange};
pub use key_index::KeyAt;
pub use range::{plan as plan_range, range, RangePlan};
pub use revision::Revision;

use cairn_proto::mvccpb::KeyValue;

use crate::error::StoreError;

/// Fetches stored values by revision. Visible revisions are never tombstones.
pub trait ValueReader {
    /// Values of `revs`, in the same order.
    fn read(&self, revs: &[Revision]) -> Result<Vec<KeyValue>, StoreError>;
}

/// The MVCC state that lives in memory: the key index and the revision counters.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Mvcc {
    pub index: Index,
    /// The store revision: raised by one for every write transaction that changes something.
    pub current_rev: i64,
    /// Revisions below this have been compacted away.
    pub compact_rev: i64,
}

impl Mvcc {
    /// An empty store; etcd's first revision is 1.
    pub fn new() -> Self {
        Self { index: Index::default(), current_rev: 1, compact_rev: 0 }
    }
}
