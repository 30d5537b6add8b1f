//! The revision history of one key, as etcd's `keyIndex`.
//!
//! A key lives through generations: a generation starts at a create and ends
//! at a tombstone. The last generation is the live one (possibly empty).

use super::Revision;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Generation {
    /// Number of puts in this generation, tombstone included.
    version: i64,
    created: Revision,
    revs: Vec<Revision>,
}

/// What a read of the key at some revision sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAt {
    pub modified: Revision,
    pub created: Revision,
    pub version: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyIndex {
    modified: Revision,
    generations: Vec<Generation>,
}

impl Default for KeyIndex {
    fn default() -> Self {
        Self { modified: Revision::default(), generations: vec![Generation::default()] }
    }
}

impl KeyIndex {
    pub fn put(&mut self, rev: Revision) {
        let generation = self.live_generation();
        if generation.revs.is_empty() {
            generation.created = rev;
        }
        generation.revs.push(rev);
        generation.version += 1;
        self.modified = rev;
    }

    /// A put read back from storage at a start: the value's own creation
    /// revision and version hold, also where a compaction removed the
    /// generation's earlier revisions (etcd's `keyIndex.restore`).
    pub fn restore(&mut self, rev: Revision, created: i64, version: i64) {
        self.put(rev);
        let generation = self.live_generation();
        if generation.revs.len() == 1 && created != rev.main {
            generation.created = Revision::new(created, 0);
        }
        generation.version = version;
    }

    /// Records a delete; the caller only tombstones a key that is live.
    pub fn tombstone(&mut self, rev: Revision) {
        self.put(rev);
        self.generations.push(Generation::default());
    }

    fn live_generation(&mut self) -> &mut Generation {
        if self.generations.is_empty() {
            self.generations.push(Generation::default());
        }
        let last = self.generations.len() - 1;
        &mut self.generations[last]
    }

    /// The latest revision at or below `at`, unless the key was deleted then.
    pub fn get(&self, at: i64) -> Option<KeyAt> {
        let generation = self.find_generation(at)?;
        let position = generation.revs.iter().rposition(|rev| rev.main <= at)?;
        let newer = (generation.revs.len() - position - 1) as i64;
        Some(KeyAt {
            modified: generation.revs[position],
            created: generation.created,
            version: generation.version - newer,
        })
    }

    fn find_generation(&self, at: i64) -> Option<&Generation> {
        let last = self.generations.len().checked_sub(1)?;
        for (position, generation) in self.generations.iter().enumerate().rev() {
            let Some(first) = generation.revs.first() else { continue };
            if position != last {
                let tombstone = generation.revs.last().map_or(0, |rev| rev.main);
                if tombstone <= at {
                    return None;
                }
            }
            if first.main <= at {
                return Some(generation);
            }
        }
        None
    }

    /// Drops revisions superseded at `at` and returns them, so their values can
    /// be deleted. The revision visible at `at` is kept, unless it is a tombstone.
    pub fn compact(&mut self, at: i64) -> Vec<Revision> {
        let mut removed = Vec::new();
        let mut first_kept_generation = 0;
        while first_kept_generation + 1 < self.generations.len() {
            let generation = &self.generations[first_kept_generation];
            let tombstone = generation.revs.last().map_or(0, |rev| rev.main);
            if tombstone > at {
                break;
            }
            removed.extend_from_slice(&generation.revs);
            first_kept_generation += 1;
        }
        self.generations.drain(..first_kept_generation);
        let is_last = self.generations.len() == 1;
        if let Some(generation) = self.generations.first_mut() {
            if let Some(visible) = generation.revs.iter().rposition(|rev| rev.main <= at) {
                removed.extend(generation.revs.drain(..visible));
                // A generation left with only its tombstone is over.
                if generation.revs.len() == 1 && !is_last {
                    removed.append(&mut generation.revs);
                    self.generations.remove(0);
                }
            }
        }
        removed
    }

    /// The key exists at the latest revision: its last generation has begun.
    pub fn is_live(&self) -> bool {
        self.generations.last().is_some_and(|generation| !generation.revs.is_empty())
    }

    /// Nothing left to keep: the key can leave the index.
    pub fn is_empty(&self) -> bool {
        self.generations.len() == 1 && self.generations[0].revs.is_empty()
    }

    /// Every revision kept, oldest first.
    #[cfg(test)]
    pub fn revisions(&self) -> impl Iterator<Item = Revision> + '_ {
        self.generations.iter().flat_map(|generation| generation.revs.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(main: i64) -> Revision {
        Revision::new(main, 0)
    }

    #[test]
    fn get_sees_versions_and_generations() {
        let mut ki = KeyIndex::default();
        ki.put(rev(2));
        ki.put(rev(4));
        ki.tombstone(rev(6));
        ki.put(rev(8));
        assert_eq!(ki.get(1), None);
        assert_eq!(ki.get(3), Some(KeyAt { modified: rev(2), created: rev(2), version: 1 }));
        assert_eq!(ki.get(5), Some(KeyAt { modified: rev(4), created: rev(2), version: 2 }));
        assert_eq!(ki.get(6), None, "deleted at 6");
        assert_eq!(ki.get(7), None);
        assert_eq!(ki.get(9), Some(KeyAt { modified: rev(8), created: rev(8), version: 1 }));
    }

    #[test]
    fn a_restored_key_keeps_the_creation_and_version_its_values_carry() {
        // Revisions 2 and 4 were compacted away; 6 is the third version of a key created at 2.
        let mut ki = KeyIndex::default();
        ki.restore(rev(6), 2, 3);
        assert_eq!(ki.get(6), Some(KeyAt { modified: rev(6), created: rev(2), version: 3 }));
        ki.restore(rev(7), 2, 4);
        ki.tombstone(rev(8));
        ki.restore(rev(9), 9, 1);
        assert_eq!(ki.get(7), Some(KeyAt { modified: rev(7), created: rev(2), version: 4 }));
        assert_eq!(ki.get(9), Some(KeyAt { modified: rev(9), created: rev(9), version: 1 }));
    }

    #[test]
    fn compact_keeps_the_visible_revision() {
        let mut ki = KeyIndex::default();
        ki.put(rev(2));
        ki.put(rev(4));
        ki.put(rev(6));
        assert_eq!(ki.compact(5), vec![rev(2)]);
        assert_eq!(ki.get(5).map(|at| at.modified), Some(rev(4)));
        assert_eq!(ki.get(5).map(|at| at.version), Some(2), "version survives compaction");
        assert_eq!(ki.compact(6), vec![rev(4)]);
        assert!(!ki.is_empty());
    }

    #[test]
    fn compact_drops_deleted_generations_and_tombstones() {
        let mut ki = KeyIndex::default();
        ki.put(rev(2));
        ki.tombstone(rev(3));
        ki.put(rev(5));
        assert_eq!(ki.compact(4), vec![rev(2), rev(3)]);
        assert_eq!(ki.revisions().collect::<Vec<_>>(), vec![rev(5)]);

        let mut gone = KeyIndex::default();
        gone.put(rev(2));
        gone.tombstone(rev(3));
        assert_eq!(gone.compact(3), vec![rev(2), rev(3)]);
        assert!(gone.is_empty());
    }

    #[test]
    fn compact_before_tombstone_keeps_it() {
        let mut ki = KeyIndex::default();
        ki.put(rev(2));
        ki.put(rev(3));
        ki.tombstone(rev(5));
        assert_eq!(ki.compact(4), vec![rev(2)]);
        assert_eq!(ki.get(4).map(|at| at.modified), Some(rev(3)));
        assert_eq!(ki.get(5), None);
    }
}
