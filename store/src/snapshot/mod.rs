//! Snapshot files (`docs/snapshot-format.md`), written from a consistent
//! engine view while writes go on, verified, and loaded back. Two formats:
//! etcd's (a bbolt database) for `etcdctl snapshot save`, so that etcd's tools
//! and etcd itself read cairn's backups, and cairn's own for Raft snapshots
//! sent to members that fell behind. A restore reads either.

mod bbolt;
mod etcd;
mod format;
mod load;
mod restore;
mod write;

pub use etcd::write_etcd_snapshot;
pub use format::{human_bytes, SnapshotError, SnapshotSummary, MAGIC};
pub use load::{load_into, verify, LoadOptions};
pub use restore::{restore, RestoreArgs, RestoreError};
pub use write::{write_snapshot, WriteOptions};
