//! bbolt's file format (go.etcd.io/bbolt, format version 2), as far as etcd's
//! snapshot files use it: top-level buckets of sorted keys, each a B+tree of
//! pages (`docs/snapshot-format.md`). The writer lays out packed trees with no
//! free pages; the reader walks any tree bbolt wrote, inline buckets included.
//!
//! Pure layout over `Read`/`Write`: it knows nothing of etcd's buckets.

mod read;
mod write;

pub use read::{Bucket, Reader};
pub use write::Writer;

/// bbolt's marker and format version, in each meta page.
pub const MAGIC: u32 = 0xED0C_DAED;
pub const VERSION: u32 = 2;
/// The page size this writer uses (the OS page size bbolt picks on Linux).
pub const PAGE_SIZE: usize = 4096;

const PAGE_HEADER_BYTES: usize = 16;
/// Leaf elements (flags, pos, ksize, vsize) and branch elements (pos, ksize, pgid) are both 16 bytes.
const ELEMENT_BYTES: usize = 16;
/// magic, version, page size, flags, root bucket (root, sequence), freelist, pgid, txid, checksum.
const META_BYTES: usize = 64;
/// The checksum (FNV-1a 64) covers the meta up to the checksum itself.
const META_CHECKSUMMED_BYTES: usize = 56;
/// A bucket's value in its parent: its root page and sequence.
const BUCKET_HEADER_BYTES: usize = 16;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
/// A leaf element whose value is a bucket.
const BUCKET_LEAF_FLAG: u32 = 0x01;

#[derive(Debug, thiserror::Error)]
pub enum BboltError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a bbolt file: no valid meta page")]
    NoValidMeta,
    #[error("bbolt file is corrupted: {0}")]
    Corrupt(String),
    #[error("bbolt keys must be written in ascending order, without duplicates")]
    Unsorted,
    #[error("a key written outside any bucket")]
    NoBucket,
}

/// A meta page's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    /// The high-water mark: pages at and beyond it are not part of the file's tree.
    pages: u64,
    txid: u64,
}

impl Meta {
    fn encode(&self) -> [u8; META_BYTES] {
        let mut bytes = [0u8; META_BYTES];
        let fields: [(usize, &[u8]); 7] = [
            (0, &MAGIC.to_le_bytes()),
            (4, &VERSION.to_le_bytes()),
            (8, &self.page_size.to_le_bytes()),
            (16, &self.root.to_le_bytes()),
            (32, &self.freelist.to_le_bytes()),
            (40, &self.pages.to_le_bytes()),
            (48, &self.txid.to_le_bytes()),
        ];
        for (offset, field) in fields {
            bytes[offset..offset + field.len()].copy_from_slice(field);
        }
        let checksum = fnv1a64(&bytes[..META_CHECKSUMMED_BYTES]);
        bytes[56..].copy_from_slice(&checksum.to_le_bytes());
        bytes
    }

    /// `None` unless the magic, the version and the checksum are right.
    fn decode(bytes: &[u8]) -> Option<Meta> {
        let bytes = bytes.get(..META_BYTES)?;
        let checksum = fnv1a64(&bytes[..META_CHECKSUMMED_BYTES]);
        let valid = le_u32(bytes, 0)? == MAGIC && le_u32(bytes, 4)? == VERSION && le_u64(bytes, 56)? == checksum;
        valid.then_some(())?;
        Some(Meta {
            page_size: le_u32(bytes, 8)?,
            root: le_u64(bytes, 16)?,
            freelist: le_u64(bytes, 32)?,
            pages: le_u64(bytes, 40)?,
            txid: le_u64(bytes, 48)?,
        })
    }
}

/// Whether `head` (a file's first bytes) starts with a valid bbolt meta page.
pub fn looks_like_bbolt(head: &[u8]) -> bool {
    head.get(PAGE_HEADER_BYTES..).and_then(Meta::decode).is_some()
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3))
}

fn le_u16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn le_u32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le_u64(bytes: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(bytes.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests;
