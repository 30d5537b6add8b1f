//! A revision: the main revision of a write transaction and the sub-revision
//! of one change within it, as etcd's `revision`.

/// `main` is the store revision a transaction produced; `sub` numbers its changes from 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Revision {
    pub main: i64,
    pub sub: i64,
}

/// Length of an encoded revision: 8 bytes main, `_`, 8 bytes sub (etcd's layout).
pub const REVISION_BYTES: usize = 17;
const TOMBSTONE_MARK: u8 = b't';

impl Revision {
    pub fn new(main: i64, sub: i64) -> Self {
        Self { main, sub }
    }

    /// The storage key of this revision; tombstones carry a trailing `t`.
    pub fn to_key(self, tombstone: bool) -> Vec<u8> {
        let mut key = Vec::with_capacity(REVISION_BYTES + 1);
        key.extend_from_slice(&self.main.to_be_bytes());
        key.push(b'_');
        key.extend_from_slice(&self.sub.to_be_bytes());
        if tombstone {
            key.push(TOMBSTONE_MARK);
        }
        key
    }

    /// Parses a storage key into the revision and whether it is a tombstone.
    pub fn from_key(key: &[u8]) -> Option<(Self, bool)> {
        let tombstone = match key.len() {
            REVISION_BYTES => false,
            len if len == REVISION_BYTES + 1 && key[REVISION_BYTES] == TOMBSTONE_MARK => true,
            _ => return None,
        };
        let main = i64::from_be_bytes(key[0..8].try_into().ok()?);
        let sub = i64::from_be_bytes(key[9..17].try_into().ok()?);
        Some((Self { main, sub }, tombstone))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sort_by_revision() {
        let a = Revision::new(5, 1);
        let b = Revision::new(6, 0);
        assert_eq!(Revision::from_key(&a.to_key(false)), Some((a, false)));
        assert_eq!(Revision::from_key(&b.to_key(true)), Some((b, true)));
        assert!(a.to_key(true) < b.to_key(false));
        assert_eq!(Revision::from_key(b"short"), None);
    }
}
