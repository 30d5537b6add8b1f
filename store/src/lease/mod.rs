//! The replicated lease table: which leases exist, their granted TTL, and
//! which keys each one holds. Pure: expiry is decided by the leader's
//! [`Lessor`] and carried out as a replicated revoke by `server::lessor`.

mod lessor;

pub use lessor::Lessor;

use std::collections::{BTreeMap, BTreeSet, HashMap};

/// etcd's largest TTL, in seconds.
pub const MAX_LEASE_TTL: i64 = 9_000_000_000;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lease {
    /// Seconds, after the minimum was applied.
    pub ttl: i64,
    pub keys: BTreeSet<Vec<u8>>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Leases {
    leases: BTreeMap<i64, Lease>,
    /// The lease each attached key is on (etcd's `itemMap`), so that a put
    /// learns which lease it takes the key from without reading its old value.
    owners: HashMap<Vec<u8>, i64>,
    /// Shorter TTLs are raised to this (etcd's `minLeaseTTL`).
    pub min_ttl: i64,
}

impl Leases {
    pub fn new(min_ttl: i64) -> Self {
        Self { leases: BTreeMap::new(), owners: HashMap::new(), min_ttl }
    }

    pub fn contains(&self, id: i64) -> bool {
        self.leases.contains_key(&id)
    }

    pub fn get(&self, id: i64) -> Option<&Lease> {
        self.leases.get(&id)
    }

    pub fn ids(&self) -> impl Iterator<Item = i64> + '_ {
        self.leases.keys().copied()
    }

    /// Grants a lease and returns its effective TTL.
    pub fn grant(&mut self, id: i64, ttl: i64) -> i64 {
        let ttl = ttl.max(self.min_ttl);
        self.leases.insert(id, Lease { ttl, keys: BTreeSet::new() });
        ttl
    }

    pub fn remove(&mut self, id: i64) -> Option<Lease> {
        let lease = self.leases.remove(&id)?;
        for key in &lease.keys {
            self.owners.remove(key);
        }
        Some(lease)
    }

    /// Attaches `key` to lease `id`, if it exists. The caller detaches the
    /// key from any other lease first.
    pub fn attach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            lease.keys.insert(key.to_vec());
            self.owners.insert(key.to_vec(), id);
        }
    }

    pub fn detach(&mut self, id: i64, key: &[u8]) {
        if let Some(lease) = self.leases.get_mut(&id) {
            if lease.keys.remove(key) {
                self.owners.remove(key);
            }
        }
    }

    /// The lease `key` is attached to, 0 for none.
    pub fn lease_of(&self, key: &[u8]) -> i64 {
        self.owners.get(key).copied().unwrap_or(0)
    }
}

/// etcd's minimum lease TTL: one and a half election timeouts, rounded up to seconds.
pub fn min_ttl_seconds(election_timeout_ms: u64) -> i64 {
    let millis = election_timeout_ms * 3 / 2;
    millis.div_ceil(1000) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_is_raised_to_the_minimum_and_keys_follow_attachments() {
        assert_eq!(min_ttl_seconds(1000), 2);
        let mut leases = Leases::new(2);
        assert_eq!(leases.grant(7, 1), 2);
        assert_eq!(leases.grant(8, 60), 60);
        leases.attach(7, b"a");
        leases.attach(7, b"b");
        leases.detach(7, b"a");
        leases.attach(99, b"ignored");
        assert_eq!(leases.get(7).map(|lease| lease.keys.len()), Some(1));
        assert_eq!((leases.lease_of(b"a"), leases.lease_of(b"b"), leases.lease_of(b"ignored")), (0, 7, 0));
        leases.detach(8, b"b");
        assert_eq!(leases.lease_of(b"b"), 7, "a detach from another lease leaves the key where it is");
        assert_eq!(leases.remove(7).map(|lease| lease.ttl), Some(2));
        assert!(!leases.contains(7));
        assert_eq!(leases.lease_of(b"b"), 0, "a removed lease holds no key");
    }
}
