//! The framing: magic, length-delimited records, padding, SHA-256 trailer.

use std::io::{Read, Write};

use cairn_proto::cairnpb::SnapshotRecord;
use prost::Message;

/// The first bytes of every snapshot file.
pub const MAGIC: &[u8; 8] = b"CAIRNSNP";
pub const FORMAT_VERSION: u32 = 1;
/// Content is padded to this, so that etcdctl (which expects a SHA-256 after
/// a whole number of 512-byte sectors) accepts the file.
pub const ALIGNMENT: u64 = 512;
pub const CHECKSUM_BYTES: usize = 32;
/// No single record may be larger: a bound on what a corrupt length can make us allocate.
pub const MAX_RECORD_BYTES: u64 = 64 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a cairn snapshot (bad magic); etcd's bbolt snapshots cannot be restored by cairn")]
    BadMagic,
    #[error("snapshot format version {0} is not supported (this cairn reads version {FORMAT_VERSION})")]
    UnsupportedVersion(u32),
    #[error("snapshot is truncated: {0}")]
    Truncated(String),
    #[error("snapshot is corrupted: {0}")]
    Corrupt(String),
    #[error("snapshot checksum mismatch: expected {expected}, computed {computed}")]
    ChecksumMismatch { expected: String, computed: String },
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
}

/// What a snapshot holds, as `cairn snapshot status` prints it.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    /// CRC-32C of the content.
    pub hash: u32,
    pub revision: i64,
    pub compact_revision: i64,
    #[serde(rename = "totalKey")]
    pub kv_records: u64,
    pub lease_records: u64,
    #[serde(rename = "totalSize")]
    pub total_size: u64,
}

pub fn write_record(sink: &mut impl Write, record: &SnapshotRecord) -> std::io::Result<usize> {
    let bytes = record.encode_length_delimited_to_vec();
    sink.write_all(&bytes)?;
    Ok(bytes.len())
}

/// Reads one length-delimited record; `None` at a zero length (the padding).
pub fn read_record(source: &mut impl Read) -> Result<Option<(SnapshotRecord, u64)>, SnapshotError> {
    let mut length: u64 = 0;
    let mut prefix = 0u64;
    for shift in (0..64).step_by(7) {
        let mut byte = [0u8; 1];
        source.read_exact(&mut byte).map_err(|_| SnapshotError::Truncated("record length cut short".into()))?;
        prefix += 1;
        length |= u64::from(byte[0] & 0x7f) << shift;
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    if length == 0 {
        return Ok(None);
    }
    if length > MAX_RECORD_BYTES {
        return Err(SnapshotError::Corrupt(format!("record of {length} bytes")));
    }
    let mut buffer = vec![0u8; length as usize];
    source.read_exact(&mut buffer).map_err(|_| SnapshotError::Truncated(format!("record of {length} bytes")))?;
    let record = SnapshotRecord::decode(buffer.as_slice()).map_err(|err| SnapshotError::Corrupt(err.to_string()))?;
    Ok(Some((record, prefix + length)))
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
