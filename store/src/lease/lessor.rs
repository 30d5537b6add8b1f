//! Lease liveness, kept by the leader in memory: deadlines and keepalives.
//! Pure: the caller passes the time in. Expiry is carried out as a replicated
//! revoke by `server::lessor`. A new leader gives every lease its full TTL
//! again, so a leader change never shortens a lease.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Revokes proposed per tick at most (etcd's revoke rate limit, per second, spread out).
const MAX_REVOKES_PER_TICK: usize = 250;
/// A revoke that has not taken effect by then is proposed again.
const REVOKE_RETRY: Duration = Duration::from_secs(3);

#[derive(Default)]
pub struct Lessor {
    inner: Mutex<LessorState>,
}

#[derive(Default)]
struct LessorState {
    /// The term in which this member last took over as leader; `None` while following.
    leading_term: Option<u64>,
    deadlines: HashMap<i64, Instant>,
    revoking: HashMap<i64, Instant>,
}

impl Lessor {
    /// Extends a lease by its TTL and returns the TTL, or 0 for a lease that
    /// has expired: its revoke is on the way, and a late keepalive must not
    /// bring it back (etcd's lessor answers "not found" too). Found by chaos.
    pub fn renew(&self, id: i64, ttl: i64, now: Instant) -> i64 {
        let mut state = self.inner.lock();
        let expired = state.revoking.contains_key(&id) || state.deadlines.get(&id).is_some_and(|due| *due <= now);
        if expired {
            return 0;
        }
        state.deadlines.insert(id, now + Duration::from_secs(ttl.max(0) as u64));
        ttl
    }

    /// Seconds left, truncated as etcd reports them.
    pub fn remaining(&self, id: i64, ttl: i64, now: Instant) -> i64 {
        match self.inner.lock().deadlines.get(&id) {
            Some(deadline) => deadline.saturating_duration_since(now).as_secs() as i64,
            None => ttl,
        }
    }

    /// One pass: follow leadership, track new and revoked leases, and return the expired ones.
    pub fn tick(&self, leading_term: Option<u64>, leases: &[(i64, i64)], now: Instant) -> Vec<i64> {
        let mut state = self.inner.lock();
        if leading_term.is_none() {
            *state = LessorState::default();
            return Vec::new();
        }
        if state.leading_term != leading_term {
            // A new leader does not know when keepalives last arrived: full TTLs for all.
            state.leading_term = leading_term;
            state.deadlines.clear();
            state.revoking.clear();
        }
        let known: HashSet<i64> = leases.iter().map(|(id, _)| *id).collect();
        state.deadlines.retain(|id, _| known.contains(id));
        state.revoking.retain(|id, _| known.contains(id));
        let mut expired = Vec::new();
        for (id, ttl) in leases {
            let deadline = *state.deadlines.entry(*id).or_insert(now + Duration::from_secs(*ttl as u64));
            let retry_due = state.revoking.get(id).is_none_or(|proposed| now >= *proposed + REVOKE_RETRY);
            if deadline <= now && retry_due && expired.len() < MAX_REVOKES_PER_TICK {
                expired.push(*id);
            }
        }
        for id in &expired {
            state.revoking.insert(*id, now);
        }
        expired
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_leader_expires_and_a_new_term_resets_deadlines() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = [(1, 5), (2, 60)];
        assert!(lessor.tick(None, &leases, start).is_empty());
        assert!(lessor.tick(Some(3), &leases, start).is_empty());
        let later = start + Duration::from_secs(6);
        assert_eq!(lessor.tick(Some(3), &leases, later), vec![1]);
        assert!(lessor.tick(Some(3), &leases, later).is_empty(), "not proposed twice at once");
        // A new term: everyone gets a full TTL from now.
        assert!(lessor.tick(Some(4), &leases, later).is_empty());
        assert_eq!(lessor.tick(Some(4), &leases, later + Duration::from_secs(5)), vec![1]);
    }

    #[test]
    fn an_expired_lease_is_not_renewed() {
        let lessor = Lessor::default();
        let start = Instant::now();
        let leases = [(1, 5), (2, 60)];
        assert!(lessor.tick(Some(3), &leases, start).is_empty());
        assert_eq!(lessor.renew(1, 5, start + Duration::from_secs(4)), 5, "renewed in time");
        // Past its deadline, before the tick that proposes the revoke.
        assert_eq!(lessor.renew(1, 5, start + Duration::from_secs(10)), 0);
        let later = start + Duration::from_secs(10);
        assert_eq!(lessor.tick(Some(3), &leases, later), vec![1]);
        assert_eq!(lessor.renew(1, 5, later), 0, "revoke proposed");
        assert_eq!(lessor.renew(2, 60, later), 60);
    }
}
