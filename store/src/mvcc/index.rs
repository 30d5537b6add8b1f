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

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Index {
    keys: BTreeMap<Vec<u8>, KeyIndex>,
}

impl Index {
    pub fn put(&mut self, key: &[u8], rev: Revision) {
        self.update(key, |ki| ki.put(rev));
    }

    /// See [`KeyIndex::restore`].
    pub fn restore(&mut self, key: &[u8], rev: Revision, created: i64, version: i64) {
        self.update(key, |ki| ki.restore(rev, created, version));
    }

    /// Changes the key's history, made empty first if the key is new.
    fn update(&mut self, key: &[u8], change: impl FnOnce(&mut KeyIndex)) {
        match self.keys.get_mut(key) {
            Some(ki) => change(ki),
            None => {
                let mut ki = KeyIndex::default();
                change(&mut ki);
                self.keys.insert(key.to_vec(), ki);
            }
        }
    }

    /// Ends the key's generation at `rev`; false if the index has no such key.
    pub fn tombstone(&mut self, key: &[u8], rev: Revision) -> bool {
        match self.keys.get_mut(key) {
            Some(ki) => {
                ki.tombstone(rev);
                true
            }
            None => false,
        }
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
        let mut removed = Vec::new();
        self.keys.retain(|_, ki| {
            removed.extend(ki.compact(at));
            !ki.is_empty()
        });
        removed
    }

    pub fn len(&self) -> usize {
        self.keys.len()
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
}
