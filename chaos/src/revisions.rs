//! Revisions: every acknowledged write has its own, and no client ever sees
//! the store's revision go backwards, across restarts and leader changes.

use std::collections::HashMap;

use crate::Verdict;

/// A response a client received: its header revision, and whether it
/// acknowledged a write (then the revision is that write's).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Observed {
    pub client: u32,
    /// Order of completion at that client.
    pub sequence: u64,
    pub revision: i64,
    pub acknowledged_write: bool,
}

pub fn check(observed: &[Observed]) -> Verdict {
    let mut writes: HashMap<i64, u32> = HashMap::new();
    for seen in observed.iter().filter(|seen| seen.acknowledged_write) {
        if let Some(other) = writes.insert(seen.revision, seen.client) {
            return Verdict::Fail(format!(
                "revision {} acknowledged twice (clients {other} and {})",
                seen.revision, seen.client
            ));
        }
    }
    let mut by_client: HashMap<u32, Vec<&Observed>> = HashMap::new();
    for seen in observed {
        by_client.entry(seen.client).or_default().push(seen);
    }
    for (client, mut seen) in by_client {
        seen.sort_by_key(|seen| seen.sequence);
        for pair in seen.windows(2) {
            if pair[1].revision < pair[0].revision {
                return Verdict::Fail(format!(
                    "client {client} saw revision {} after {}: the revision went backwards",
                    pair[1].revision, pair[0].revision
                ));
            }
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(client: u32, sequence: u64, revision: i64, write: bool) -> Observed {
        Observed { client, sequence, revision, acknowledged_write: write }
    }

    #[test]
    fn unique_and_monotonic_passes() {
        let history = [seen(1, 0, 2, true), seen(1, 1, 3, false), seen(2, 0, 3, true), seen(2, 1, 3, false)];
        assert_eq!(check(&history), Verdict::Pass);
    }

    #[test]
    fn a_revision_going_backwards_is_flagged() {
        let history = [seen(1, 0, 5, false), seen(1, 1, 4, false)];
        assert!(matches!(check(&history), Verdict::Fail(message) if message.contains("backwards")));
    }

    #[test]
    fn a_revision_acknowledged_twice_is_flagged() {
        let history = [seen(1, 0, 5, true), seen(2, 0, 5, true)];
        assert!(matches!(check(&history), Verdict::Fail(message) if message.contains("twice")));
    }
}
