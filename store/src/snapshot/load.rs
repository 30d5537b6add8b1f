//! Verifying a snapshot file and loading it into an engine.

use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::Path;

use cairn_proto::cairnpb::snapshot_record::Record;
use sha2::{Digest, Sha256};

use super::format::{hex, read_record, SnapshotError, SnapshotSummary, CHECKSUM_BYTES, FORMAT_VERSION, MAGIC};
use super::{bbolt, etcd};
use crate::engine::schema::{self, meta};
use crate::engine::{Durability, Engine, WriteOp};
use crate::mvcc::{Index, Revision};

/// Engine writes per batch while loading: bounded memory for any snapshot size.
const LOAD_BATCH_OPS: usize = 10_000;

pub struct LoadOptions {
    /// Load the published member attributes and alarms too (Raft catch-up, not restore).
    pub with_meta: bool,
    /// etcdutl's `--bump-revision`.
    pub bump_revision: i64,
    /// etcdutl's `--mark-compacted`: compact at the (bumped) revision.
    pub mark_compacted: bool,
    /// Called with the share done, 0 to 100, as the load goes.
    pub progress: Option<Box<dyn FnMut(u64) + Send>>,
}

/// The two formats a snapshot file may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Cairn,
    Etcd,
}

fn format_of(path: &Path) -> Result<Format, SnapshotError> {
    let mut head = Vec::new();
    File::open(path)?.take(2 * bbolt::PAGE_SIZE as u64).read_to_end(&mut head)?;
    if head.starts_with(MAGIC) {
        return Ok(Format::Cairn);
    }
    // Either meta page will do: bbolt itself falls back to the second.
    let second_meta = head.get(bbolt::PAGE_SIZE..).unwrap_or_default();
    if bbolt::looks_like_bbolt(&head) || bbolt::looks_like_bbolt(second_meta) {
        return Ok(Format::Etcd);
    }
    Err(SnapshotError::BadMagic)
}

/// Checks the structure, every record and (unless skipped) the SHA-256
/// trailer; returns what the snapshot holds.
pub fn verify(path: &Path, skip_hash_check: bool) -> Result<SnapshotSummary, SnapshotError> {
    match format_of(path)? {
        Format::Cairn => verify_cairn(path, skip_hash_check),
        Format::Etcd => etcd::verify(path, skip_hash_check),
    }
}

fn verify_cairn(path: &Path, skip_hash_check: bool) -> Result<SnapshotSummary, SnapshotError> {
    let mut file = File::open(path)?;
    let size = file.metadata()?.len();
    if size < (MAGIC.len() + CHECKSUM_BYTES) as u64 {
        return Err(SnapshotError::Truncated(format!("{size} bytes")));
    }
    let content_len = size - CHECKSUM_BYTES as u64;
    let mut sha = Sha256::new();
    let mut crc = 0u32;
    let mut remaining = content_len;
    let mut buffer = vec![0u8; 1 << 20];
    let mut reader = BufReader::new(&mut file);
    while remaining > 0 {
        let chunk = remaining.min(buffer.len() as u64) as usize;
        reader.read_exact(&mut buffer[..chunk])?;
        sha.update(&buffer[..chunk]);
        crc = crc32c::crc32c_append(crc, &buffer[..chunk]);
        remaining -= chunk as u64;
    }
    let mut trailer = [0u8; CHECKSUM_BYTES];
    reader.read_exact(&mut trailer)?;
    let computed = sha.finalize();
    if !skip_hash_check && computed.as_slice() != trailer {
        return Err(SnapshotError::ChecksumMismatch { expected: hex(&trailer), computed: hex(&computed) });
    }
    let mut summary = SnapshotSummary { hash: crc, total_size: size, ..Default::default() };
    scan_cairn(path, content_len, |record| {
        match record {
            Record::Header(header) => {
                summary.revision = header.current_revision;
                summary.compact_revision = header.compact_revision;
            }
            Record::Kv(_) => summary.kv_records += 1,
            Record::Lease(_) => summary.lease_records += 1,
            Record::Meta(_) | Record::Footer(_) => {}
        }
        Ok(())
    })?;
    summary.total_key = summary.kv_records;
    Ok(summary)
}

/// Visits the records of a verified snapshot, in either format.
fn scan(
    path: &Path,
    summary: &SnapshotSummary,
    visit: impl FnMut(Record) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    match format_of(path)? {
        Format::Cairn => scan_cairn(path, summary.total_size - CHECKSUM_BYTES as u64, visit),
        Format::Etcd => etcd::scan(path, visit),
    }
}

/// Reads the records in order, checking the structure: header first, footer
/// counts right, only zero padding after it.
fn scan_cairn(
    path: &Path,
    content_len: u64,
    mut visit: impl FnMut(Record) -> Result<(), SnapshotError>,
) -> Result<(), SnapshotError> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut magic = [0u8; 8];
    reader.read_exact(&mut magic).map_err(|_| SnapshotError::Truncated("no magic".into()))?;
    if &magic != MAGIC {
        return Err(SnapshotError::BadMagic);
    }
    let mut offset = MAGIC.len() as u64;
    let (mut kv, mut leases, mut seen_header) = (0u64, 0u64, false);
    loop {
        if offset >= content_len {
            return Err(SnapshotError::Truncated("no footer".into()));
        }
        let Some((record, len)) = read_record(&mut reader)? else {
            return Err(SnapshotError::Truncated("no footer".into()));
        };
        offset += len;
        let Some(record) = record.record else { return Err(SnapshotError::Corrupt("empty record".into())) };
        match &record {
            Record::Header(header) => {
                if seen_header {
                    return Err(SnapshotError::Corrupt("two headers".into()));
                }
                if header.format_version != FORMAT_VERSION {
                    return Err(SnapshotError::UnsupportedVersion(header.format_version));
                }
                seen_header = true;
            }
            _ if !seen_header => return Err(SnapshotError::Corrupt("records before the header".into())),
            Record::Kv(record) => {
                if Revision::from_key(&record.key).is_none() {
                    return Err(SnapshotError::Corrupt(format!("bad revision key {:?}", record.key)));
                }
                kv += 1;
            }
            Record::Lease(_) => leases += 1,
            Record::Meta(_) => {}
            Record::Footer(footer) => {
                if footer.kv_records != kv || footer.lease_records != leases {
                    return Err(SnapshotError::Corrupt(format!(
                        "footer counts {}/{} records, found {kv}/{leases}",
                        footer.kv_records, footer.lease_records
                    )));
                }
                visit(record)?;
                break;
            }
        }
        visit(record)?;
    }
    // Only padding may follow.
    let mut rest = Vec::new();
    reader.seek(SeekFrom::Start(offset))?;
    reader.take(content_len - offset).read_to_end(&mut rest)?;
    if rest.iter().any(|byte| *byte != 0) {
        return Err(SnapshotError::Corrupt("data after the footer".into()));
    }
    Ok(())
}

/// Replaces the state machine in `engine` with the snapshot's. Not atomic by
/// itself: callers make it so (a temporary data dir, or an install marker).
pub fn load_into(engine: &Engine, path: &Path, mut options: LoadOptions) -> Result<SnapshotSummary, SnapshotError> {
    let summary = verify(path, true)?;
    let clear = |cf| WriteOp::DeleteRange { cf, from: Vec::new(), to: vec![0xff; 32] };
    // The auth store travels with the data, also into a restored cluster (as etcd's
    // auth buckets): none in the snapshot means none after the load.
    let no_auth = WriteOp::Delete { cf: schema::CF_META, key: meta::SM_AUTH.to_vec() };
    engine.write(&[clear(schema::CF_KV), clear(schema::CF_LEASE), no_auth], Durability::Buffered)?;
    let mut ops = Vec::with_capacity(LOAD_BATCH_OPS);
    let mut index = Index::default();
    let total = summary.kv_records.max(1);
    let mut loaded = 0u64;
    let mut last_percent = 0;
    scan(path, &summary, |record| {
        match record {
            Record::Kv(record) => {
                if options.mark_compacted {
                    let (rev, tombstone) = Revision::from_key(&record.key).unwrap_or_default();
                    let kv = <cairn_proto::mvccpb::KeyValue as prost::Message>::decode(record.value.as_slice())
                        .map_err(|err| SnapshotError::Corrupt(err.to_string()))?;
                    if tombstone {
                        index.tombstone(&kv.key, rev);
                    } else {
                        index.put(&kv.key, rev);
                    }
                }
                ops.push(WriteOp::Put { cf: schema::CF_KV, key: record.key, value: record.value });
                loaded += 1;
            }
            Record::Lease(lease) => ops.push(schema::lease_record(lease.id, lease.ttl)),
            Record::Meta(record) if options.with_meta || record.key == meta::SM_AUTH => {
                ops.push(WriteOp::Put { cf: schema::CF_META, key: record.key, value: record.value });
            }
            Record::Meta(_) | Record::Header(_) | Record::Footer(_) => {}
        }
        if ops.len() >= LOAD_BATCH_OPS {
            engine.write(&ops, Durability::Buffered)?;
            ops.clear();
            crate::failpoint::hit("snapshot-load-midway");
            let percent = loaded * 100 / total;
            if let Some(progress) = options.progress.as_mut().filter(|_| percent > last_percent) {
                progress(percent);
                last_percent = percent;
            }
        }
        Ok(())
    })?;
    // As etcd when it starts: a compaction may have removed the last revision's record.
    let current = summary.revision.max(summary.compact_revision) + options.bump_revision;
    let mut compact = summary.compact_revision;
    if options.mark_compacted {
        compact = current;
        ops.extend(index.compact(current).into_iter().flat_map(schema::revision_deletes));
    }
    if !options.with_meta {
        ops.push(WriteOp::Delete { cf: schema::CF_META, key: meta::SM_MEMBER_ATTRS.to_vec() });
        ops.push(WriteOp::Delete { cf: schema::CF_META, key: meta::SM_ALARMS.to_vec() });
    }
    for (key, value) in [(meta::SM_CURRENT_REV, current), (meta::SM_COMPACT_REV, compact)] {
        ops.push(WriteOp::Put { cf: schema::CF_META, key: key.to_vec(), value: schema::encode_i64(value) });
    }
    engine.write(&ops, Durability::Sync)?;
    if let Some(progress) = options.progress.as_mut() {
        progress(100);
    }
    Ok(SnapshotSummary { revision: current, compact_revision: compact, ..summary })
}
