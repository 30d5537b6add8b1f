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
    #[error("not a snapshot: neither cairn's format nor etcd's (bbolt)")]
    BadMagic,
    #[error("snapshot missing hash but --skip-hash-check=false")]
    MissingHash,
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

/// What a snapshot holds; `cairn snapshot status` prints it as etcdutl does.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SnapshotSummary {
    /// CRC-32C: etcdutl's over an etcd snapshot's buckets, of the content in cairn's format.
    pub hash: u32,
    pub revision: i64,
    #[serde(skip)]
    pub compact_revision: i64,
    /// Revisions of keys in the snapshot.
    #[serde(skip)]
    pub kv_records: u64,
    #[serde(skip)]
    pub lease_records: u64,
    /// What etcdutl reports as total keys: records in every bucket of an etcd
    /// snapshot, revisions of keys in cairn's format.
    pub total_key: u64,
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

/// A size as etcdutl prints it (go-humanize's `Bytes`: SI units, one decimal below 10).
pub fn human_bytes(size: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if size < 10 {
        return format!("{size} B");
    }
    let exponent = ((size as f64).ln() / 1000f64.ln()).floor() as usize;
    let exponent = exponent.min(UNITS.len() - 1);
    let value = (size as f64 / 1000f64.powi(exponent as i32) * 10.0 + 0.5).floor() / 10.0;
    if value < 10.0 {
        format!("{value:.1} {}", UNITS[exponent])
    } else {
        format!("{value:.0} {}", UNITS[exponent])
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sizes_print_as_etcdutl_prints_them() {
        let cases = [(0, "0 B"), (9, "9 B"), (999, "999 B"), (1000, "1.0 kB"), (69632, "70 kB"), (20480, "20 kB")];
        for (size, printed) in cases {
            assert_eq!(super::human_bytes(size), printed);
        }
        assert_eq!(super::human_bytes(1_073_741_824), "1.1 GB");
    }
}
