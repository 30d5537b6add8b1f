//! Writing a snapshot from a consistent view of the engine.

use std::io::Write;

use cairn_proto::cairnpb::{
    snapshot_record, KvRecord, LeaseRecord, MetaRecord, SnapshotFooter, SnapshotHeader, SnapshotRecord,
};
use sha2::{Digest, Sha256};

use super::format::{write_record, SnapshotError, SnapshotSummary, ALIGNMENT, FORMAT_VERSION, MAGIC};
use crate::engine::schema::{self, meta};
use crate::engine::{Engine, EngineError, KeyValuePair};

pub struct WriteOptions {
    pub cluster_id: u64,
    pub member_id: u64,
}

/// Counts and hashes what passes through, for the trailer and the summary.
struct Tee<'a, W> {
    inner: &'a mut W,
    sha: Sha256,
    crc: u32,
    written: u64,
}

impl<W: Write> Write for Tee<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let written = self.inner.write(bytes)?;
        self.sha.update(&bytes[..written]);
        self.crc = crc32c::crc32c_append(self.crc, &bytes[..written]);
        self.written += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// The header, from the meta records of the same moment, then the meta
/// records that travel with the data.
fn write_head<W: Write>(
    tee: &mut Tee<'_, W>,
    meta_values: &[KeyValuePair],
    options: &WriteOptions,
    summary: &mut SnapshotSummary,
) -> Result<(), EngineError> {
    let find = |wanted: &'static [u8], what: &str| -> Result<Option<i64>, EngineError> {
        let found = meta_values.iter().find(|(key, _)| key == wanted);
        found.map(|(_, value)| schema::decode_i64(what, value)).transpose()
    };
    summary.revision = find(meta::SM_CURRENT_REV, "current revision")?.unwrap_or(1);
    summary.compact_revision = find(meta::SM_COMPACT_REV, "compact revision")?.unwrap_or(0);
    let header = SnapshotHeader {
        format_version: FORMAT_VERSION,
        current_revision: summary.revision,
        compact_revision: summary.compact_revision,
        cluster_id: options.cluster_id,
        member_id: options.member_id,
    };
    let record = |record| SnapshotRecord { record: Some(record) };
    write_record(tee, &record(snapshot_record::Record::Header(header))).map_err(EngineError::Io)?;
    for (key, value) in meta_values {
        if [meta::SM_MEMBER_ATTRS, meta::SM_ALARMS, meta::SM_AUTH].contains(&key.as_slice()) {
            let meta = MetaRecord { key: key.clone(), value: value.clone() };
            write_record(tee, &record(snapshot_record::Record::Meta(meta))).map_err(EngineError::Io)?;
        }
    }
    Ok(())
}

/// Writes the state machine as of now into `sink`, and returns the metadata
/// values of that same moment (for Raft's snapshot meta) with the summary.
pub fn write_snapshot(
    engine: &Engine,
    options: &WriteOptions,
    sink: &mut impl Write,
) -> Result<(SnapshotSummary, Vec<KeyValuePair>), SnapshotError> {
    let mut tee = Tee { inner: sink, sha: Sha256::new(), crc: 0, written: 0 };
    tee.write_all(MAGIC)?;
    let mut summary = SnapshotSummary::default();
    let mut meta_values = Vec::new();
    let mut header_written = false;
    let io = EngineError::Io;
    let record = |record| SnapshotRecord { record: Some(record) };
    engine.scan_consistent(&[schema::CF_META, schema::CF_KV, schema::CF_LEASE], |cf, key, value| {
        if cf == schema::CF_META {
            meta_values.push((key.to_vec(), value.to_vec()));
            return Ok(());
        }
        if !header_written {
            header_written = true;
            write_head(&mut tee, &meta_values, options, &mut summary)?;
        }
        let next = if cf == schema::CF_KV {
            summary.kv_records += 1;
            snapshot_record::Record::Kv(KvRecord { key: key.to_vec(), value: value.to_vec() })
        } else {
            summary.lease_records += 1;
            let (id, ttl) = schema::decode_lease_record(key, value)?;
            snapshot_record::Record::Lease(LeaseRecord { id, ttl })
        };
        write_record(&mut tee, &record(next)).map_err(io)?;
        Ok(())
    })?;
    if !header_written {
        // A store without keys or leases still has its revisions, alarms and auth store.
        write_head(&mut tee, &meta_values, options, &mut summary)?;
    }
    let footer = SnapshotFooter { kv_records: summary.kv_records, lease_records: summary.lease_records };
    write_record(&mut tee, &record(snapshot_record::Record::Footer(footer)))?;
    let padding = (ALIGNMENT - tee.written % ALIGNMENT) % ALIGNMENT;
    tee.write_all(&vec![0u8; padding as usize])?;
    let checksum = tee.sha.clone().finalize();
    summary.hash = tee.crc;
    summary.total_size = tee.written + checksum.len() as u64;
    tee.inner.write_all(&checksum)?;
    tee.inner.flush()?;
    Ok((summary, meta_values))
}
