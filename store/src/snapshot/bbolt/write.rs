//! Packed B+trees written front to back: a bucket's leaves go out as they
//! fill, its branch levels when it ends, the root bucket after every bucket,
//! and the two meta pages last, into the space kept for them at the start.

use std::io::{Seek, SeekFrom, Write};

use super::*;

/// One element of a page: a key with its value (leaf) or its child page (branch).
struct Item {
    flags: u32,
    key: Vec<u8>,
    value: Vec<u8>,
    child: u64,
}

/// A page with its overflow pages, as bytes: elements first, then their keys and values.
fn encode_page(id: u64, kind: u16, items: &[Item]) -> Vec<u8> {
    let data: usize = items.iter().map(|item| item.key.len() + item.value.len()).sum();
    let used = PAGE_HEADER_BYTES + items.len() * ELEMENT_BYTES + data;
    let pages = used.div_ceil(PAGE_SIZE).max(1);
    let mut page = vec![0u8; pages * PAGE_SIZE];
    page[0..8].copy_from_slice(&id.to_le_bytes());
    page[8..10].copy_from_slice(&kind.to_le_bytes());
    // Callers keep a page's count far below u16::MAX: a 4 KiB page holds at most 255 elements.
    page[10..12].copy_from_slice(&(items.len() as u16).to_le_bytes());
    page[12..16].copy_from_slice(&((pages - 1) as u32).to_le_bytes());
    let mut data_at = PAGE_HEADER_BYTES + items.len() * ELEMENT_BYTES;
    for (index, item) in items.iter().enumerate() {
        let element = PAGE_HEADER_BYTES + index * ELEMENT_BYTES;
        let pos = (data_at - element) as u32;
        let key_len = item.key.len() as u32;
        let fields: Vec<u8> = if kind == LEAF_PAGE {
            [item.flags, pos, key_len, item.value.len() as u32].iter().flat_map(|field| field.to_le_bytes()).collect()
        } else {
            [pos.to_le_bytes(), key_len.to_le_bytes()].concat().into_iter().chain(item.child.to_le_bytes()).collect()
        };
        page[element..element + ELEMENT_BYTES].copy_from_slice(&fields);
        page[data_at..data_at + item.key.len()].copy_from_slice(&item.key);
        data_at += item.key.len();
        page[data_at..data_at + item.value.len()].copy_from_slice(&item.value);
        data_at += item.value.len();
    }
    page
}

/// Pages go out in order, numbered as they go.
struct Pages<F> {
    file: F,
    next: u64,
}

impl<F: Write> Pages<F> {
    fn write(&mut self, kind: u16, items: &[Item]) -> Result<u64, BboltError> {
        let id = self.next;
        let page = encode_page(id, kind, items);
        self.file.write_all(&page)?;
        self.next += (page.len() / PAGE_SIZE) as u64;
        Ok(id)
    }
}

/// A bbolt file being written, one top-level bucket at a time.
pub struct Writer<F> {
    pages: Pages<F>,
    /// Each written bucket's name and root page.
    buckets: Vec<(Vec<u8>, u64)>,
    open: Option<(Vec<u8>, Tree)>,
}

impl<F: Write + Seek> Writer<F> {
    /// Starts a file: pages 0 and 1 are kept for the meta pages, page 2 is the (empty) freelist.
    pub fn new(mut file: F) -> Result<Self, BboltError> {
        file.write_all(&[0u8; 2 * PAGE_SIZE])?;
        let mut pages = Pages { file, next: 2 };
        pages.write(FREELIST_PAGE, &[])?;
        Ok(Writer { pages, buckets: Vec::new(), open: None })
    }

    /// Starts a top-level bucket (ending the one before); its keys must come in ascending order.
    pub fn begin_bucket(&mut self, name: &[u8]) -> Result<(), BboltError> {
        self.end_bucket()?;
        self.open = Some((name.to_vec(), Tree::default()));
        Ok(())
    }

    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), BboltError> {
        let (_, tree) = self.open.as_mut().ok_or(BboltError::NoBucket)?;
        tree.push(&mut self.pages, Item { flags: 0, key: key.to_vec(), value: value.to_vec(), child: 0 })
    }

    pub fn end_bucket(&mut self) -> Result<(), BboltError> {
        if let Some((name, tree)) = self.open.take() {
            let root = tree.finish(&mut self.pages)?;
            self.buckets.push((name, root));
        }
        Ok(())
    }

    /// Writes a whole bucket from sorted pairs.
    pub fn bucket_from(&mut self, name: &[u8], pairs: &[(Vec<u8>, Vec<u8>)]) -> Result<(), BboltError> {
        self.begin_bucket(name)?;
        for (key, value) in pairs {
            self.put(key, value)?;
        }
        self.end_bucket()
    }

    /// Writes the root bucket and the meta pages; returns the file, positioned
    /// at its end, and its length.
    pub fn finish(mut self) -> Result<(F, u64), BboltError> {
        self.end_bucket()?;
        let mut buckets = std::mem::take(&mut self.buckets);
        buckets.sort();
        let mut root = Tree::default();
        for (name, page) in buckets {
            let mut header = page.to_le_bytes().to_vec();
            header.resize(BUCKET_HEADER_BYTES, 0);
            root.push(&mut self.pages, Item { flags: BUCKET_LEAF_FLAG, key: name, value: header, child: 0 })?;
        }
        let root = root.finish(&mut self.pages)?;
        let Pages { mut file, next: pages } = self.pages;
        file.seek(SeekFrom::Start(0))?;
        // Two identical metas, as a new bbolt file has: bbolt uses the higher txid.
        for txid in 0..2u64 {
            let mut page = vec![0u8; PAGE_SIZE];
            page[0..8].copy_from_slice(&txid.to_le_bytes());
            page[8..10].copy_from_slice(&META_PAGE.to_le_bytes());
            let meta = Meta { page_size: PAGE_SIZE as u32, root, freelist: 2, pages, txid };
            page[PAGE_HEADER_BYTES..PAGE_HEADER_BYTES + META_BYTES].copy_from_slice(&meta.encode());
            file.write_all(&page)?;
        }
        let length = pages * PAGE_SIZE as u64;
        file.seek(SeekFrom::Start(length))?;
        file.flush()?;
        Ok((file, length))
    }
}

/// A tree under construction: the leaf being filled and the leaves written so far.
#[derive(Default)]
struct Tree {
    leaf: Vec<Item>,
    leaf_bytes: usize,
    /// Each written leaf's first key and page.
    leaves: Vec<(Vec<u8>, u64)>,
}

impl Tree {
    fn push<F: Write>(&mut self, pages: &mut Pages<F>, item: Item) -> Result<(), BboltError> {
        let last = self.leaf.last().map(|last| &last.key).or(self.leaves.last().map(|(key, _)| key));
        if item.key.is_empty() || last.is_some_and(|last| item.key <= *last) {
            return Err(BboltError::Unsorted);
        }
        let size = ELEMENT_BYTES + item.key.len() + item.value.len();
        if !self.leaf.is_empty() && PAGE_HEADER_BYTES + self.leaf_bytes + size > PAGE_SIZE {
            self.flush_leaf(pages)?;
        }
        self.leaf_bytes += size;
        self.leaf.push(item);
        Ok(())
    }

    fn flush_leaf<F: Write>(&mut self, pages: &mut Pages<F>) -> Result<(), BboltError> {
        let items = std::mem::take(&mut self.leaf);
        self.leaf_bytes = 0;
        let id = pages.write(LEAF_PAGE, &items)?;
        // An empty tree is one empty leaf; its first key is never compared.
        let first = items.into_iter().next().map(|item| item.key).unwrap_or_default();
        self.leaves.push((first, id));
        Ok(())
    }

    /// Writes the last leaf and the branch levels above the leaves; returns the root page.
    fn finish<F: Write>(mut self, pages: &mut Pages<F>) -> Result<u64, BboltError> {
        if !self.leaf.is_empty() || self.leaves.is_empty() {
            self.flush_leaf(pages)?;
        }
        let mut level = self.leaves;
        while level.len() > 1 {
            let mut above = Vec::new();
            let mut page: Vec<Item> = Vec::new();
            let mut bytes = 0;
            for (key, child) in level {
                let size = ELEMENT_BYTES + key.len();
                // At least two children a page, so that every level is at most half the one below.
                if page.len() >= 2 && PAGE_HEADER_BYTES + bytes + size > PAGE_SIZE {
                    above.push(write_branch(pages, std::mem::take(&mut page))?);
                    bytes = 0;
                }
                bytes += size;
                page.push(Item { flags: 0, key, value: Vec::new(), child });
            }
            above.push(write_branch(pages, page)?);
            level = above;
        }
        Ok(level[0].1)
    }
}

fn write_branch<F: Write>(pages: &mut Pages<F>, items: Vec<Item>) -> Result<(Vec<u8>, u64), BboltError> {
    let id = pages.write(BRANCH_PAGE, &items)?;
    let first = items.into_iter().next().map(|item| item.key).unwrap_or_default();
    Ok((first, id))
}
