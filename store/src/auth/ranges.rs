//! A user's permissions merged into key ranges, as etcd's
//! `unifiedRangePermissions`: a request is allowed when one merged range covers it.

/// Where a range ends: before a key, or at the end of the key space.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum End {
    Before(Vec<u8>),
    Unbounded,
}

/// A half-open key range, as a request or a permission names it: no end is
/// the key alone, the end `\0` is every key from `key` on.
pub fn interval(key: &[u8], range_end: &[u8]) -> (Vec<u8>, End) {
    let end = match range_end {
        [] => {
            let mut next = key.to_vec();
            next.push(0);
            End::Before(next)
        }
        [0] => End::Unbounded,
        end => End::Before(end.to_vec()),
    };
    (key.to_vec(), end)
}

/// etcd 3.5.10's `isValidPermissionRange`: a key, and an end after it (or
/// none, or `\0` for every key from it on).
pub fn is_valid(key: &[u8], range_end: &[u8]) -> bool {
    !key.is_empty() && (range_end.is_empty() || key < range_end || range_end == [0])
}

/// Disjoint ranges sorted by start; touching ranges are merged, so that a
/// request spanning two grants is covered by one range.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ranges(Vec<(Vec<u8>, End)>);

impl Ranges {
    pub fn merge(mut intervals: Vec<(Vec<u8>, End)>) -> Self {
        intervals.retain(|(start, end)| End::Before(start.clone()) < *end);
        intervals.sort();
        let mut merged: Vec<(Vec<u8>, End)> = Vec::with_capacity(intervals.len());
        for (start, end) in intervals {
            if let Some(last) = merged.last_mut() {
                if End::Before(start.clone()) <= last.1 {
                    if end > last.1 {
                        last.1 = end;
                    }
                    continue;
                }
            }
            merged.push((start, end));
        }
        Ranges(merged)
    }

    pub fn covers(&self, key: &[u8], range_end: &[u8]) -> bool {
        let (start, end) = interval(key, range_end);
        let after = self.0.partition_point(|(from, _)| from.as_slice() <= start.as_slice());
        after > 0 && self.0[after - 1].1 >= end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ranges(grants: &[(&str, &str)]) -> Ranges {
        Ranges::merge(grants.iter().map(|(key, end)| interval(key.as_bytes(), end.as_bytes())).collect())
    }

    #[test]
    fn a_key_grant_covers_that_key_only() {
        let granted = ranges(&[("foo", "")]);
        assert!(granted.covers(b"foo", b""));
        assert!(!granted.covers(b"foo0", b""));
        assert!(!granted.covers(b"fo", b""));
        assert!(!granted.covers(b"foo", b"fop"), "a range over more than the key");
    }

    #[test]
    fn touching_grants_cover_a_request_across_them() {
        let granted = ranges(&[("a", "c"), ("c", "e")]);
        assert!(granted.covers(b"b", b"d"));
        assert!(granted.covers(b"a", b"e"));
        assert!(!granted.covers(b"a", b"f"));
        let gap = ranges(&[("a", "c"), ("d", "e")]);
        assert!(!gap.covers(b"b", b"d"));
    }

    #[test]
    fn from_key_grants_and_requests_run_to_the_end() {
        let granted = ranges(&[("k", "\0")]);
        assert!(granted.covers(b"k", b"\0"));
        assert!(granted.covers(b"zzz", b""));
        assert!(!granted.covers(b"a", b"\0"));
        let bounded = ranges(&[("k", "z")]);
        assert!(!bounded.covers(b"k", b"\0"), "a bounded grant never covers the rest of the key space");
        let everything = ranges(&[("\0", "\0")]);
        assert!(everything.covers(b"\0", b"\0"));
    }

    #[test]
    fn a_grant_needs_a_key_and_an_end_after_it() {
        assert!(is_valid(b"a", b""));
        assert!(is_valid(b"a", b"b"));
        assert!(is_valid(b"a", b"\0"));
        assert!(!is_valid(b"", b"\0"), "no key: refused, as etcd 3.5.10 and later");
        assert!(!is_valid(b"b", b"a"));
        assert!(!is_valid(b"a", b"a"));
    }

    #[test]
    fn an_empty_grant_grants_nothing() {
        let granted = ranges(&[("b", "a")]);
        assert!(!granted.covers(b"b", b""));
        assert_eq!(granted, Ranges::default());
    }
}
