//! Walking a bbolt file's trees, page by page from disk: bounded memory for
//! any file size, and every offset checked, so a damaged file is an error.

use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;

use super::*;

/// What visits a bucket's pairs.
pub type Visit<'a, E> = dyn FnMut(&[u8], &[u8]) -> Result<(), E> + 'a;
/// What visits a page's elements, with their flags.
type VisitElement<'a, E> = dyn FnMut(u32, &[u8], &[u8]) -> Result<(), E> + 'a;

/// Deeper trees than this mean a cycle in a damaged file (bbolt's are a few levels).
const MAX_DEPTH: usize = 32;

/// Where a bucket's tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Bucket {
    Page(u64),
    /// A small bucket stored as a page inside its parent's value.
    Inline(Vec<u8>),
}

impl Bucket {
    fn from_value(value: &[u8]) -> Result<Bucket, BboltError> {
        let root = le_u64(value, 0).filter(|_| value.len() >= BUCKET_HEADER_BYTES);
        match root {
            None => Err(BboltError::Corrupt(format!("bucket header of {} bytes", value.len()))),
            Some(0) => Ok(Bucket::Inline(value[BUCKET_HEADER_BYTES..].to_vec())),
            Some(page) => Ok(Bucket::Page(page)),
        }
    }
}

pub struct Reader {
    file: File,
    meta: Meta,
}

fn corrupt(detail: String) -> BboltError {
    BboltError::Corrupt(detail)
}

impl Reader {
    /// Opens the first `length` bytes of `file` (a snapshot's trailer is not
    /// part of the database): picks the valid meta page with the higher txid.
    pub fn open(file: File, length: u64) -> Result<Self, BboltError> {
        let read_meta = |offset: u64| {
            let mut page = [0u8; PAGE_HEADER_BYTES + META_BYTES];
            let fits = offset + page.len() as u64 <= length;
            (fits && file.read_exact_at(&mut page, offset).is_ok()).then(|| Meta::decode(&page[PAGE_HEADER_BYTES..]))?
        };
        let first = read_meta(0);
        // As bbolt: the page size comes from the first meta, or is the OS's.
        let page_size = first.map_or(PAGE_SIZE as u64, |meta| u64::from(meta.page_size));
        let second = read_meta(page_size);
        let meta = match (first, second) {
            (Some(first), Some(second)) => Some(if second.txid > first.txid { second } else { first }),
            (first, second) => first.or(second),
        };
        let meta = meta.ok_or(BboltError::NoValidMeta)?;
        let page_size = u64::from(meta.page_size);
        if !(512..=1 << 20).contains(&page_size) || !page_size.is_power_of_two() {
            return Err(corrupt(format!("page size {page_size}")));
        }
        let needed = meta.pages.checked_mul(page_size).ok_or_else(|| corrupt(format!("{} pages", meta.pages)))?;
        if needed > length {
            return Err(corrupt(format!(
                "truncated: {} pages of {page_size} bytes need {needed} bytes, found {length}",
                meta.pages
            )));
        }
        if meta.root < 2 || meta.root >= meta.pages {
            return Err(corrupt(format!("root page {} outside 2..{}", meta.root, meta.pages)));
        }
        Ok(Reader { file, meta })
    }

    /// The database's size as bbolt reports it (`tx.Size()`).
    pub fn size(&self) -> u64 {
        self.meta.pages * u64::from(self.meta.page_size)
    }

    /// A page with its overflow pages.
    fn page(&self, id: u64) -> Result<Vec<u8>, BboltError> {
        let page_size = u64::from(self.meta.page_size);
        if id < 2 || id >= self.meta.pages {
            return Err(corrupt(format!("page {id} outside 2..{}", self.meta.pages)));
        }
        let mut header = [0u8; PAGE_HEADER_BYTES];
        self.file.read_exact_at(&mut header, id * page_size)?;
        let overflow = u64::from(le_u32(&header, 12).unwrap_or_default());
        if le_u64(&header, 0) != Some(id) || id + overflow >= self.meta.pages {
            return Err(corrupt(format!("page {id}: header {header:02x?}")));
        }
        let mut page = vec![0u8; ((overflow + 1) * page_size) as usize];
        self.file.read_exact_at(&mut page, id * page_size)?;
        Ok(page)
    }

    /// The top-level buckets, in key order.
    pub fn buckets(&self) -> Result<Vec<(Vec<u8>, Bucket)>, BboltError> {
        let mut buckets = Vec::new();
        let mut walk = Walk::default();
        walk.visit(self.meta.root)?;
        walk.page::<BboltError>(self, &self.page(self.meta.root)?, 0, &mut |flags, key, value| {
            if flags & BUCKET_LEAF_FLAG != 0 {
                buckets.push((key.to_vec(), Bucket::from_value(value)?));
            }
            Ok(())
        })?;
        Ok(buckets)
    }

    /// Visits a bucket's keys and values in order (nested buckets are skipped).
    pub fn for_each<E: From<BboltError>>(&self, bucket: &Bucket, visit: &mut Visit<'_, E>) -> Result<(), E> {
        let mut visit_plain = |flags: u32, key: &[u8], value: &[u8]| {
            if flags & BUCKET_LEAF_FLAG == 0 {
                visit(key, value)?;
            }
            Ok(())
        };
        let mut walk = Walk::default();
        match bucket {
            Bucket::Page(id) => {
                walk.visit(*id)?;
                walk.page(self, &self.page(*id)?, 0, &mut visit_plain)
            }
            Bucket::Inline(page) => walk.page(self, page, MAX_DEPTH, &mut visit_plain),
        }
    }
}

/// One walk over a tree: each page at most once, as bbolt's own check demands,
/// so that a damaged file whose pages point at each other ends in an error.
#[derive(Default)]
struct Walk {
    visited: HashSet<u64>,
}

impl Walk {
    fn visit(&mut self, page: u64) -> Result<(), BboltError> {
        if !self.visited.insert(page) {
            return Err(corrupt(format!("page {page} is referenced twice")));
        }
        Ok(())
    }

    fn page<E: From<BboltError>>(
        &mut self,
        reader: &Reader,
        page: &[u8],
        depth: usize,
        visit: &mut VisitElement<'_, E>,
    ) -> Result<(), E> {
        let kind = le_u16(page, 8).ok_or_else(|| corrupt("short page".into()))?;
        let count = le_u16(page, 10).ok_or_else(|| corrupt("short page".into()))? as usize;
        for index in 0..count {
            let element = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
            let field =
                |at: usize| le_u32(page, element + at).ok_or_else(|| corrupt(format!("element {index} past the page")));
            let slice = |from: usize, len: usize| {
                page.get(from..from.saturating_add(len))
                    .ok_or_else(|| corrupt(format!("element {index} points past its page")))
            };
            match kind {
                LEAF_PAGE => {
                    let (flags, pos, key_len, value_len) = (field(0)?, field(4)?, field(8)?, field(12)?);
                    let key = slice(element + pos as usize, key_len as usize)?;
                    let value = slice(element + pos as usize + key_len as usize, value_len as usize)?;
                    visit(flags, key, value)?;
                }
                BRANCH_PAGE if depth < MAX_DEPTH => {
                    let child =
                        le_u64(page, element + 8).ok_or_else(|| corrupt(format!("element {index} past the page")))?;
                    self.visit(child)?;
                    self.page(reader, &reader.page(child)?, depth + 1, visit)?;
                }
                _ => return Err(corrupt(format!("a page of kind {kind:#x} at depth {depth} of a tree")).into()),
            }
        }
        Ok(())
    }
}
