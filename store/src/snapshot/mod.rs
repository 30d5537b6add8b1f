//! Snapshot files (format version 1, `docs/snapshot-format.md`): written from a
//! consistent engine view while writes go on, verified, and loaded back.
//! One format serves `etcdctl snapshot save`, `cairn snapshot restore` and
//! Raft snapshots sent to members that fell behind.

mod format;
mod load;
mod restore;
mod write;

pub use format::{SnapshotError, SnapshotSummary, MAGIC};
pub use load::{load_into, verify, LoadOptions};
pub use restore::{restore, RestoreArgs, RestoreError};
pub use write::{write_snapshot, WriteOptions};
