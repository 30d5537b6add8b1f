//! The storage engine: the only module that names `rocksdb`.
//!
//! Everything above it speaks in [`WriteOp`]s and column-family names from
//! [`schema`], so the engine could be swapped without touching MVCC or Raft.

pub mod schema;

use std::path::Path;

use rocksdb::{ColumnFamilyDescriptor, IteratorMode, Options, WriteBatch, WriteOptions, DB};

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("rocksdb: {0}")]
    Rocks(#[from] rocksdb::Error),
    #[error("data dir {path} is locked by another process")]
    Locked { path: String },
    #[error("column family {0} is missing")]
    MissingColumnFamily(&'static str),
    /// Bytes on disk that do not decode: the member must not go on with them.
    #[error("corrupt {what}: {detail}")]
    Corrupt { what: String, detail: String },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0} has stopped after a storage fault")]
    Stopped(&'static str),
    /// A value of ours that could not be encoded: a bug, not damage on disk.
    #[error("cannot encode {what}: {detail}")]
    Encode { what: String, detail: String },
}

/// One mutation; a slice of them is written as one atomic batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriteOp {
    Put {
        cf: &'static str,
        key: Vec<u8>,
        value: Vec<u8>,
    },
    Delete {
        cf: &'static str,
        key: Vec<u8>,
    },
    /// Deletes keys in `[from, to)`.
    DeleteRange {
        cf: &'static str,
        from: Vec<u8>,
        to: Vec<u8>,
    },
}

/// Whether a write must be on disk before it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync the write-ahead log before returning.
    Sync,
    /// Durable at the next synced write: state-machine data is recoverable from the Raft log.
    Buffered,
}

/// Memtable size per column family.
const WRITE_BUFFER_BYTES: usize = 8 * 1024 * 1024;

/// Point reads by key; served by the engine or by a snapshot of it.
pub trait PointRead {
    fn multi_get(&self, cf: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError>;
}

impl PointRead for Engine {
    fn multi_get(&self, cf: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        Engine::multi_get(self, cf, keys)
    }
}

/// A point-in-time view of the engine, for reads that must not hold a lock
/// while they touch the disk.
pub struct EngineSnapshot<'a> {
    engine: &'a Engine,
    snapshot: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl PointRead for EngineSnapshot<'_> {
    fn multi_get(&self, cf: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let handle = self.engine.cf(cf)?;
        let mut options = rocksdb::ReadOptions::default();
        options.set_snapshot(&self.snapshot);
        collect_values(self.engine.db.batched_multi_get_cf_opt(handle, keys.iter(), false, &options))
    }
}

fn collect_values(
    results: Vec<Result<Option<rocksdb::DBPinnableSlice<'_>>, rocksdb::Error>>,
) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
    results.into_iter().map(|res| Ok(res?.map(|slice| slice.to_vec()))).collect()
}

/// A raw `(key, value)` of a column family.
pub type KeyValuePair = (Vec<u8>, Vec<u8>);

pub struct Engine {
    db: DB,
}

impl Engine {
    pub fn open(path: &Path) -> Result<Self, EngineError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_max_background_jobs(2);
        opts.set_bytes_per_sync(1 << 20);
        // Smaller memtables than RocksDB's 64 MiB default: four column families
        // would otherwise hold up to 256 MiB of unflushed writes in memory.
        let cf_options = || {
            let mut options = Options::default();
            options.set_write_buffer_size(WRITE_BUFFER_BYTES);
            options
        };
        let cfs = schema::ALL_CFS.iter().map(|name| ColumnFamilyDescriptor::new(*name, cf_options()));
        let db = DB::open_cf_descriptors(&opts, path, cfs).map_err(|err| {
            if err.to_string().contains("lock") {
                EngineError::Locked { path: path.display().to_string() }
            } else {
                EngineError::Rocks(err)
            }
        })?;
        Ok(Self { db })
    }

    fn cf(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily, EngineError> {
        self.db.cf_handle(name).ok_or(EngineError::MissingColumnFamily(name))
    }

    pub fn write(&self, ops: &[WriteOp], durability: Durability) -> Result<(), EngineError> {
        let mut batch = WriteBatch::default();
        for op in ops {
            match op {
                WriteOp::Put { cf, key, value } => batch.put_cf(self.cf(cf)?, key, value),
                WriteOp::Delete { cf, key } => batch.delete_cf(self.cf(cf)?, key),
                WriteOp::DeleteRange { cf, from, to } => batch.delete_range_cf(self.cf(cf)?, from, to),
            }
        }
        let mut write_opts = WriteOptions::default();
        write_opts.set_sync(durability == Durability::Sync);
        self.db.write_opt(batch, &write_opts)?;
        Ok(())
    }

    pub fn get(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, EngineError> {
        Ok(self.db.get_cf(self.cf(cf)?, key)?)
    }

    pub fn multi_get(&self, cf: &'static str, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>, EngineError> {
        let handle = self.cf(cf)?;
        collect_values(self.db.batched_multi_get_cf(handle, keys.iter(), false))
    }

    /// A consistent view as of now: later writes (a compaction's deletes
    /// included) are not seen by it, and are not held up by it.
    pub fn snapshot(&self) -> EngineSnapshot<'_> {
        EngineSnapshot { engine: self, snapshot: self.db.snapshot() }
    }

    /// Visits `(key, value)` pairs with `key >= from`, in order, until `visit` returns false.
    pub fn scan_from(
        &self,
        cf: &'static str,
        from: &[u8],
        mut visit: impl FnMut(&[u8], &[u8]) -> Result<bool, EngineError>,
    ) -> Result<(), EngineError> {
        let iter = self.db.iterator_cf(self.cf(cf)?, IteratorMode::From(from, rocksdb::Direction::Forward));
        for item in iter {
            let (key, value) = item?;
            if !visit(&key, &value)? {
                break;
            }
        }
        Ok(())
    }

    /// Visits every `(column family, key, value)` of `cfs`, in that order, as
    /// of one point in time: writes made meanwhile are not seen, and not held up.
    pub fn scan_consistent(
        &self,
        cfs: &[&'static str],
        mut visit: impl FnMut(&'static str, &[u8], &[u8]) -> Result<(), EngineError>,
    ) -> Result<(), EngineError> {
        let snapshot = self.db.snapshot();
        for name in cfs {
            let mut options = rocksdb::ReadOptions::default();
            options.set_snapshot(&snapshot);
            for item in self.db.iterator_cf_opt(self.cf(name)?, options, IteratorMode::Start) {
                let (key, value) = item?;
                visit(name, &key, &value)?;
            }
        }
        Ok(())
    }

    /// The last `(key, value)` of a column family.
    pub fn last(&self, cf: &'static str) -> Result<Option<KeyValuePair>, EngineError> {
        match self.db.iterator_cf(self.cf(cf)?, IteratorMode::End).next() {
            None => Ok(None),
            Some(item) => {
                let (key, value) = item?;
                Ok(Some((key.to_vec(), value.to_vec())))
            }
        }
    }

    /// Approximate size of the given column families, in bytes: their files
    /// plus what is still in memory waiting to be flushed.
    pub fn size_bytes(&self, cfs: &[&'static str]) -> u64 {
        let property = |cf, name| self.db.property_int_value_cf(cf, name).ok().flatten().unwrap_or(0);
        cfs.iter()
            .filter_map(|name| self.db.cf_handle(name))
            .map(|cf| property(cf, "rocksdb.total-sst-files-size") + property(cf, "rocksdb.cur-size-all-mem-tables"))
            .sum()
    }

    /// Flushes and fully compacts the given column families (etcd's defragment).
    pub fn compact_all(&self, cfs: &[&'static str]) -> Result<(), EngineError> {
        for name in cfs {
            let cf = self.cf(name)?;
            self.db.flush_cf(cf)?;
            self.db.compact_range_cf(cf, None::<&[u8]>, None::<&[u8]>);
        }
        Ok(())
    }
}

#[cfg(test)]
impl Engine {
    /// How many records a column family holds.
    pub fn count(&self, cf: &'static str) -> usize {
        let mut count = 0;
        self.scan_from(cf, &[], |_, _| {
            count += 1;
            Ok(true)
        })
        .expect("scan");
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_still_reads_what_is_deleted_after_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let engine = Engine::open(dir.path()).expect("open");
        let put =
            |key: &[u8], value: &[u8]| WriteOp::Put { cf: schema::CF_KV, key: key.to_vec(), value: value.to_vec() };
        engine.write(&[put(b"a", b"1"), put(b"b", b"2")], Durability::Buffered).expect("write");
        let view = engine.snapshot();
        engine
            .write(&[WriteOp::Delete { cf: schema::CF_KV, key: b"a".to_vec() }, put(b"b", b"3")], Durability::Buffered)
            .expect("write");
        let keys = [b"a".to_vec(), b"b".to_vec()];
        assert_eq!(view.multi_get(schema::CF_KV, &keys).expect("read"), vec![Some(b"1".to_vec()), Some(b"2".to_vec())]);
        assert_eq!(PointRead::multi_get(&engine, schema::CF_KV, &keys).expect("read"), vec![None, Some(b"3".to_vec())]);
    }
}
