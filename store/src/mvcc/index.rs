//! The in-memory key index: key → [`KeyIndex`], as etcd's `treeIndex`.
//! It holds revisions only; values live in the engine, keyed by revision.

use std::collections::BTreeMap;
use std::ops::Bound;

use super::key_index::{KeyAt, KeyIndex};
use super::Revision;

/// A key range as etcd's API expresses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRange<'a> {
    /// `range_end` empty: exactly `key`.
    Single(&'a [u8]),
    /// `[key, end)`; `end = None` is etcd's `\0` (to the end of the keyspace).
    Span { start: &'a [u8], end: Option<&'a [u8]> },
}

impl<'a> KeyRange<'a> {
    pub fn new(key: &'a [u8], range_end: &'a [u8]) -> Self {
        match range_end {
            [] => KeyRange::Single(key),
            [0] => KeyRange::Span { start: key, end: None },
            end => KeyRange::Span { start: key, end: Some(end) },
        }
    }

    pub fn contains(&self, key: &[u8]) -> bool {
        match *self {
            KeyRange::Single(single) => single == key,
            KeyRange::Span { start, end } => key >= start && end.is_none_or(|end| key < end),
        }
    }
}

/// How much of the index one [`Index::compact_chunk`] may compact.
#[derive(Debug, Clone, Copy)]
pub struct ChunkLimit {
    /// Keys visited.
    pub keys: usize,
    /// Revisions dropped; a key's history is never split, so a chunk may drop more.
    pub removed: usize,
}

#[derive(Debug, Default)]
pub struct CompactedChunk {
    /// The revisions whose values can go, in no order. All of a key's are in one chunk.
    pub removed: Vec<Revision>,
    /// Where the next chunk starts (after this key); `None` once the walk is over.
    pub resume_after: Option<Vec<u8>>,
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
    /// Keys live at the latest revision; deleted keys stay in `keys` until compacted.
    live: usize,
}

impl Index {
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        self.update(key, |ki| ki.put(rev));
    }

    /// See [`KeyIndex::restore`].
    pub fn restore(&mut self, key: &[u8], rev: Revision, created: i64, version: i64) {
        self.update(key, |ki| ki.restore(rev, created, version));
    }

    /// Changes the key's history, made empty first if the key is new. A put
    /// (or a restored one) leaves the key live; it is created if it was not.
    fn update(&mut self, key: &[u8], change: impl FnOnce(&mut KeyIndex)) {
        let created = |ki: &mut KeyIndex| {
            let was_live = ki.is_live();
            change(ki);
            !was_live
        };
        let created = match self.keys.get_mut(key) {
            Some(ki) => created(ki),
            None => {
                let mut ki = KeyIndex::default();
                let created = created(&mut ki);
                self.keys.insert(key.to_vec(), ki);
                created
            }
        };
        self.live += usize::from(created);
    }

    /// Ends the key's generation at `rev`; false if the index has no such key.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        let Some(ki) = self.keys.get_mut(key) else { return false };
        self.live -= usize::from(ki.is_live());
        ki.tombstone(rev);
        true
    }

    pub fn get(&self, key: &[u8], at: i64) -> Option<KeyAt> {
        self.keys.get(key)?.get(at)
    }

    /// Visits keys visible at `at` in `range`, in key order, until `visit` returns false.
    pub fn visit(&self, range: KeyRange<'_>, at: i64, mut visit: impl FnMut(&[u8], KeyAt) -> bool) {
        match range {
            KeyRange::Single(key) => {
                if let Some(found) = self.get(key, at) {
                    visit(key, found);
                }
            }
            KeyRange::Span { start, end } => {
                if end.is_some_and(|end| end <= start) {
                    return;
                }
                let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
                for (key, ki) in self.keys.range::<[u8], _>((Bound::Included(start), upper)) {
                    if let Some(found) = ki.get(at) {
                        if !visit(key, found) {
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Keys live at the latest revision in `range`.
    pub fn live_keys(&self, range: KeyRange<'_>, at: i64) -> Vec<(Vec<u8>, KeyAt)> {
        let mut found = Vec::new();
        self.visit(range, at, |key, key_at| {
            found.push((key.to_vec(), key_at));
            true
        });
        found
    }

    /// Compacts every key at `at`; returns the revisions whose values can go, in no order.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        self.compact_chunk(at, None, ChunkLimit { keys: usize::MAX, removed: usize::MAX }).removed
    }

    /// Compacts at `at` the keys after `after` (from the first when `None`),
    /// in key order, until `limit` is reached. A compaction of the whole index
    /// holds the caller's lock for as long as a million revisions take to walk;
    /// in chunks, writes get the lock in between.
    pub fn compact_chunk(&mut self, at: i64, after: Option<&[u8]>, limit: ChunkLimit) -> CompactedChunk {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let mut chunk = CompactedChunk::default();
        let mut emptied = Vec::new();
        for (visited, (key, ki)) in self.keys.range_mut::<[u8], _>((lower, Bound::Unbounded)).enumerate() {
            chunk.removed.extend(ki.compact(at));
            if ki.is_empty() {
                emptied.push(key.clone());
            }
            if visited + 1 >= limit.keys || chunk.removed.len() >= limit.removed {
                chunk.resume_after = Some(key.clone());
                break;
            }
        }
        for key in emptied {
            self.keys.remove(&key);
        }
        chunk
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Keys live at the latest revision, as etcd's `keys_total` counts them:
    /// a delete takes its key off at once, not when a compaction drops it.
    pub fn live_count(&self) -> usize {
        self.live
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_follow_etcd_range_end_rules() {
        let mut index = Index::default();
        for (main, key) in [(2, "a"), (3, "b"), (4, "c")] {
            index.put(key.as_bytes(), Revision::new(main, 0));
        }
        let keys = |range| index.live_keys(range, 10).into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(keys(KeyRange::new(b"b", b"")), vec![b"b".to_vec()]);
        assert_eq!(keys(KeyRange::new(b"a", b"c")), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(keys(KeyRange::new(b"b", b"\0")), vec![b"b".to_vec(), b"c".to_vec()]);
        assert!(keys(KeyRange::new(b"c", b"a")).is_empty());
        assert_eq!(index.live_keys(KeyRange::new(b"a", b"\0"), 3).len(), 2, "c is not visible at 3");
    }

    /// Keys a..e, key i written i+2 times from revision 10i; c deleted at its end.
    fn history() -> Index {
        let mut index = Index::default();
        for (i, key) in ["a", "b", "c", "d", "e"].iter().enumerate() {
            let first = 10 * i as i64 + 2;
            for main in first..first + i as i64 + 2 {
                index.put(key.as_bytes(), Revision::new(main, 0));
            }
            if *key == "c" {
                index.tombstone(b"c", Revision::new(first + 4, 0));
            }
        }
        index
    }

    #[test]
    fn a_compaction_in_chunks_drops_what_a_whole_one_does() {
        let mut whole = history();
        let mut expected = whole.compact(40);
        expected.sort_unstable();
        for limit in [ChunkLimit { keys: 1, removed: usize::MAX }, ChunkLimit { keys: 100, removed: 2 }] {
            let mut chunked = history();
            let (mut removed, mut after, mut chunks) = (Vec::new(), None, 0);
            loop {
                let chunk = chunked.compact_chunk(40, after.as_deref(), limit);
                assert!(chunk.removed.len() <= 5, "a chunk stops at its limit, or after the key that reached it");
                removed.extend(chunk.removed);
                chunks += 1;
                match chunk.resume_after {
                    Some(key) => after = Some(key),
                    None => break,
                }
                assert!(chunks < 10, "the walk ends");
            }
            removed.sort_unstable();
            assert_eq!(removed, expected, "{limit:?}");
            assert_eq!(chunked, whole, "{limit:?}");
            assert!(chunked.get(b"c", 40).is_none(), "c's deleted generation is gone");
            assert!(chunks > 2, "{limit:?} took {chunks} chunks");
        }
    }

    #[test]
    fn live_keys_are_counted_as_etcd_counts_them() {
        let mut index = history();
        assert_eq!((index.len(), index.live_count()), (5, 4), "c is deleted but not yet compacted");
        assert!(!index.tombstone(b"z", Revision::new(60, 0)), "no such key");
        index.tombstone(b"a", Revision::new(61, 0));
        index.put(b"c", Revision::new(62, 0));
        index.restore(b"f", Revision::new(63, 0), 63, 1);
        assert_eq!(index.live_count(), 5, "a deleted; c created again; f read back");
        index.compact(70);
        assert_eq!((index.len(), index.live_count()), (5, 5), "a compaction drops a, but a is not counted");
    }
}
