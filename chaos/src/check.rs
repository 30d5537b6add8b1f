//! Every checker over one recorded run. Each verdict is named; the run passes
//! only if all of them pass.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use crate::history::{Call, Nanos, Outcome};
use crate::record::{AddOutcome, LeaseRecord, Recorded};
use crate::watch::Change;
use crate::{linearizable, revisions, watch, Verdict};

/// A read is linearized somewhere in its interval; leave this much for the
/// time between a keepalive's send and the leader's renewal on this machine.
const LEASE_SLACK: Nanos = 300_000_000;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Checked {
    pub name: String,
    pub verdict: Verdict,
}

pub fn all(run: &Recorded, budget: Duration) -> Vec<Checked> {
    let mut checks = vec![
        ("linearizability per key", linearizable::check(&run.register, budget)),
        ("revisions unique and monotonic", revisions::check(&run.observed)),
        ("no acknowledged set element lost", sets(run)),
        ("members agree at the end", members_agree(run)),
        ("HashKV equal on all members", hashes(run)),
        ("watch guarantees", watches(run)),
        ("paginated lists are snapshots", lists(run)),
        ("leases", leases(run)),
        ("no panic in member logs", panics(run)),
        ("recovery after a leader kill", recovery(run)),
    ];
    let gathered = if run.end.errors.is_empty() { Verdict::Pass } else { Verdict::Fail(run.end.errors.join("; ")) };
    checks.push(("end state gathered", gathered));
    checks.into_iter().map(|(name, verdict)| Checked { name: name.into(), verdict }).collect()
}

fn first_failure(mut verdicts: impl Iterator<Item = Verdict>) -> Verdict {
    verdicts.find(|verdict| !verdict.is_pass()).unwrap_or(Verdict::Pass)
}

fn sets(run: &Recorded) -> Verdict {
    first_failure(run.sets.iter().map(|set| {
        let Some(read) = &set.final_read else {
            return Verdict::Fail(format!("{}: no final read", set.key));
        };
        let mut present = HashSet::new();
        for element in read {
            if !present.insert(element.as_str()) {
                return Verdict::Fail(format!("{}: {element} is in the set twice", set.key));
            }
        }
        let attempted: HashSet<&str> = set
            .adds
            .iter()
            .filter(|(_, outcome)| *outcome != AddOutcome::Refused)
            .map(|(element, _)| element.as_str())
            .collect();
        if let Some(stray) = present.iter().find(|element| !attempted.contains(*element)) {
            return Verdict::Fail(format!("{}: {stray} is in the set but was never added", set.key));
        }
        let lost: Vec<&str> = set
            .adds
            .iter()
            .filter(|(element, outcome)| *outcome == AddOutcome::Acknowledged && !present.contains(element.as_str()))
            .map(|(element, _)| element.as_str())
            .collect();
        if !lost.is_empty() {
            return Verdict::Fail(format!("{}: {} acknowledged elements lost, first {}", set.key, lost.len(), lost[0]));
        }
        Verdict::Pass
    }))
}

fn members_agree(run: &Recorded) -> Verdict {
    let reads = &run.end.member_reads;
    if reads.is_empty() {
        return Verdict::Fail("no member answered the final reads".into());
    }
    let (first, expected) = &reads[0];
    first_failure(reads.iter().skip(1).map(|(member, got)| {
        if got == expected {
            return Verdict::Pass;
        }
        let differs = expected
            .iter()
            .zip(got)
            .find(|(a, b)| a != b)
            .map(|(a, b)| format!("{first} has {a:?}, {member} has {b:?}"))
            .unwrap_or_else(|| format!("{first} has {} keys, {member} has {}", expected.len(), got.len()));
        Verdict::Fail(differs)
    }))
}

fn hashes(run: &Recorded) -> Verdict {
    let hashes = &run.end.hashes;
    match hashes.first() {
        None => Verdict::Fail("no member answered HashKV".into()),
        Some(first) => first_failure(hashes.iter().map(|other| {
            if (other.1, other.2) == (first.1, first.2) {
                Verdict::Pass
            } else {
                Verdict::Fail(format!("{}: {:?}, {}: {:?}", first.0, (first.1, first.2), other.0, (other.1, other.2)))
            }
        })),
    }
}

/// The KV history: acknowledged writes plus every event any watcher received.
/// Watchers must agree on each revision, and no revision may be missing.
fn kv_history(run: &Recorded) -> Result<Vec<Change>, String> {
    let mut by_revision: BTreeMap<(i64, &str), &Change> = BTreeMap::new();
    let received = run.watch_sessions.iter().flat_map(|session| session.received.iter().map(|r| &r.change));
    for change in run.writes.iter().chain(received) {
        match by_revision.insert((change.revision, change.key.as_str()), change) {
            Some(other) if other != change => {
                return Err(format!("two versions of one event: {other:?} and {change:?}"))
            }
            _ => {}
        }
    }
    let first_start = run.watch_sessions.iter().map(|session| session.start_revision).min().unwrap_or(1);
    let mut expected = first_start.max(2);
    for (revision, _) in by_revision.keys() {
        if *revision > expected {
            return Err(format!("revision {expected} is in no watcher's stream and was acknowledged to no client"));
        }
        expected = expected.max(revision + 1);
    }
    Ok(by_revision.into_values().cloned().collect())
}

fn watches(run: &Recorded) -> Verdict {
    if run.watch_sessions.is_empty() {
        return Verdict::Fail("no watch was recorded".into());
    }
    let history = match kv_history(run) {
        Ok(history) => history,
        Err(reason) => return Verdict::Fail(reason),
    };
    if let Some((watcher, _)) = run.end.watchers_caught_up.iter().find(|(_, caught_up)| !caught_up) {
        return Verdict::Fail(format!("watcher {watcher} never reached the fence revision {}", run.end.fence_revision));
    }
    first_failure(run.watch_sessions.iter().map(|session| {
        let (prefix, start) = (session.prefix.as_str(), session.start_revision);
        let verdict = match watch::check(&history, prefix, start, &session.received) {
            Verdict::Pass => watch::check_notifies(&history, prefix, start, &session.received, &session.notifies),
            other => other,
        };
        match verdict {
            Verdict::Fail(reason) => {
                Verdict::Fail(format!("watcher {} from revision {start}: {reason}", session.watcher))
            }
            other => other,
        }
    }))
}

/// A list read in pages at one revision must be the store's state at that
/// revision: every key under the prefix once, in key order, with its value then.
fn lists(run: &Recorded) -> Verdict {
    if run.lists.is_empty() {
        return Verdict::Pass;
    }
    let history = match kv_history(run) {
        Ok(history) => history,
        Err(reason) => return Verdict::Fail(reason),
    };
    first_failure(run.lists.iter().map(|list| {
        let mut state: BTreeMap<&str, &str> = BTreeMap::new();
        for change in history.iter().take_while(|change| change.revision <= list.revision) {
            if !change.key.starts_with(&list.prefix) {
                continue;
            }
            match &change.value {
                Some(value) => state.insert(&change.key, value),
                None => state.remove(change.key.as_str()),
            };
        }
        let listed: Vec<(&str, &str)> = list.items.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let expected: Vec<(&str, &str)> = state.into_iter().collect();
        if listed == expected {
            return Verdict::Pass;
        }
        let differs = expected
            .iter()
            .zip(&listed)
            .find(|(e, l)| e != l)
            .map(|(e, l)| format!("the store had {e:?}, the list gave {l:?}"))
            .unwrap_or_else(|| format!("the store had {} keys, the list gave {}", expected.len(), listed.len()));
        Verdict::Fail(format!(
            "client {}'s list of {} at revision {} in {} pages: {differs}",
            list.client, list.prefix, list.revision, list.pages
        ))
    }))
}

/// A lease kept alive must not lose its key; a revoked one must.
fn lease(record: &LeaseRecord) -> Verdict {
    let Some(attached) = record.attached else {
        return Verdict::Pass;
    };
    for read in &record.reads {
        if read.invoked < attached {
            continue;
        }
        if read.present {
            if let Some(revoked) = record.revoked.filter(|revoked| read.invoked > *revoked) {
                return Verdict::Fail(format!(
                    "lease {:x}: key {} read after the revoke was acknowledged ({} ms later)",
                    record.id,
                    record.key,
                    (read.invoked - revoked) / 1_000_000
                ));
            }
            continue;
        }
        if record.revoke_sent.is_some_and(|sent| read.invoked > sent) {
            continue;
        }
        // The newest renewal acknowledged before the read began keeps the lease
        // at least until its send time plus its TTL.
        let renewal =
            record.renewals.iter().filter(|renewal| renewal.acknowledged <= read.invoked).max_by_key(|r| r.sent);
        if let Some(renewal) = renewal {
            let alive_until = renewal.sent + renewal.ttl_s.max(0) as u64 * 1_000_000_000;
            if read.completed + LEASE_SLACK < alive_until {
                return Verdict::Fail(format!(
                    "lease {:x}: key {} gone {} ms before the lease could expire",
                    record.id,
                    record.key,
                    (alive_until - read.completed) / 1_000_000
                ));
            }
        }
    }
    Verdict::Pass
}

fn leases(run: &Recorded) -> Verdict {
    if let Some(key) = run.end.lease_keys_left.first() {
        return Verdict::Fail(format!(
            "{} lease keys outlived their leases by more than a TTL, first {key}",
            run.end.lease_keys_left.len()
        ));
    }
    first_failure(run.leases.iter().map(lease))
}

fn panics(run: &Recorded) -> Verdict {
    match run.end.panics.first() {
        None => Verdict::Pass,
        Some(line) => Verdict::Fail(format!("{} panic lines, first: {line}", run.end.panics.len())),
    }
}

/// Time from each leader kill to the first write acknowledged after it.
pub fn recovery_times(run: &Recorded) -> Vec<Option<Nanos>> {
    let mut writes: Vec<(Nanos, Nanos)> = run
        .register
        .iter()
        .filter(|op| {
            matches!(
                (&op.call, &op.outcome),
                (Call::Write(_), Outcome::Written) | (Call::Cas { .. }, Outcome::Cas(true))
            )
        })
        .filter_map(|op| Some((op.invoked, op.completed?)))
        .collect();
    writes.sort_unstable();
    run.leader_kills
        .iter()
        .map(|&killed| writes.iter().filter(|(invoked, _)| *invoked >= killed).map(|(_, done)| done - killed).min())
        .collect()
}

fn recovery(run: &Recorded) -> Verdict {
    let limit_ms = run.meta.recovery_limit_ms.unwrap_or(2 * run.meta.election_timeout_ms);
    let limit = Duration::from_millis(limit_ms).as_nanos() as u64;
    let times = recovery_times(run);
    if times.iter().any(Option::is_none) {
        return Verdict::Fail("no write succeeded after a leader kill".into());
    }
    let mut times: Vec<Nanos> = times.into_iter().flatten().collect();
    if times.is_empty() {
        return Verdict::Pass;
    }
    times.sort_unstable();
    let p99 = times[(times.len() * 99).div_ceil(100) - 1];
    if p99 > limit {
        return Verdict::Fail(format!(
            "p99 {} ms over {} leader kills, limit {} ms",
            p99 / 1_000_000,
            times.len(),
            limit / 1_000_000
        ));
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{LeaseRead, Renewal, SetRecord};

    #[test]
    fn a_lost_set_element_is_flagged() {
        let mut run = Recorded::default();
        run.sets.push(SetRecord {
            key: "s/0".into(),
            adds: vec![("a".into(), AddOutcome::Acknowledged), ("b".into(), AddOutcome::Unknown)],
            final_read: Some(vec!["b".into()]),
        });
        assert!(matches!(sets(&run), Verdict::Fail(m) if m.contains("lost")));
        run.sets[0].final_read = Some(vec!["a".into()]);
        assert_eq!(sets(&run), Verdict::Pass, "an unknown add may be missing");
        run.sets[0].final_read = Some(vec!["a".into(), "z".into()]);
        assert!(matches!(sets(&run), Verdict::Fail(m) if m.contains("never added")));
    }

    #[test]
    fn a_revision_missing_from_every_stream_is_flagged() {
        let mut run = Recorded::default();
        let change = |revision: i64| Change { revision, key: "k".into(), value: Some(revision.to_string()) };
        run.writes = vec![change(2), change(4)];
        assert!(matches!(kv_history(&run), Err(m) if m.contains("revision 3")));
        run.writes.insert(1, change(3));
        assert!(kv_history(&run).is_ok());
        run.writes.push(Change { value: Some("other".into()), ..change(3) });
        assert!(matches!(kv_history(&run), Err(m) if m.contains("two versions")));
    }

    #[test]
    fn a_list_that_is_not_one_snapshot_is_flagged() {
        use crate::record::ListRecord;
        let mut run = Recorded::default();
        let put =
            |revision: i64, key: &str, value: &str| Change { revision, key: key.into(), value: Some(value.into()) };
        run.writes = vec![put(2, "/o/a", "1"), put(3, "/o/b", "1"), put(4, "x", "1"), put(5, "/o/a", "2")];
        run.writes.push(Change { revision: 6, key: "/o/b".into(), value: None });
        let item = |k: &str, v: &str| (k.to_string(), v.to_string());
        let list = |revision: i64, items: Vec<(String, String)>| ListRecord {
            client: 0,
            prefix: "/o/".into(),
            revision,
            pages: 2,
            items,
        };
        run.lists = vec![list(4, vec![item("/o/a", "1"), item("/o/b", "1")]), list(6, vec![item("/o/a", "2")])];
        assert_eq!(lists(&run), Verdict::Pass);
        // A page read at a later revision: a value of revision 5 in a list at 4.
        run.lists = vec![list(4, vec![item("/o/a", "2"), item("/o/b", "1")])];
        assert!(matches!(lists(&run), Verdict::Fail(m) if m.contains("the list gave")));
        // A deleted key still listed, and a key listed twice.
        run.lists = vec![list(6, vec![item("/o/a", "2"), item("/o/b", "1")])];
        assert!(matches!(lists(&run), Verdict::Fail(_)));
        run.lists = vec![list(4, vec![item("/o/a", "1"), item("/o/a", "1"), item("/o/b", "1")])];
        assert!(matches!(lists(&run), Verdict::Fail(_)));
    }

    #[test]
    fn a_lease_key_lost_while_kept_alive_is_flagged() {
        let second = 1_000_000_000;
        let mut record = LeaseRecord {
            id: 1,
            key: "l/1".into(),
            attached: Some(second),
            renewals: vec![Renewal { sent: 2 * second, acknowledged: 2 * second + 1, ttl_s: 5 }],
            ..Default::default()
        };
        record.reads.push(LeaseRead { invoked: 3 * second, completed: 3 * second + 5, present: false });
        assert!(matches!(lease(&record), Verdict::Fail(m) if m.contains("before the lease could expire")));
        record.reads[0] = LeaseRead { invoked: 8 * second, completed: 8 * second + 5, present: false };
        assert_eq!(lease(&record), Verdict::Pass, "after the TTL the key may go");
        record.revoke_sent = Some(9 * second - 5);
        record.revoked = Some(9 * second);
        record.reads.push(LeaseRead { invoked: 9 * second + 1, completed: 9 * second + 5, present: false });
        assert_eq!(lease(&record), Verdict::Pass, "a revoked lease's key is gone");
        record.reads.push(LeaseRead { invoked: 10 * second, completed: 10 * second + 5, present: true });
        assert!(matches!(lease(&record), Verdict::Fail(m) if m.contains("after the revoke")));
    }

    #[test]
    fn slow_recovery_is_flagged() {
        let mut run = Recorded::default();
        run.meta.election_timeout_ms = 1000;
        let write = |invoked: Nanos, completed: Nanos| crate::history::Operation {
            client: 1,
            key: "k".into(),
            call: Call::Write(invoked.to_string()),
            outcome: Outcome::Written,
            invoked,
            completed: Some(completed),
        };
        run.leader_kills = vec![10_000_000_000];
        run.register = vec![write(10_500_000_000, 12_000_000_000)];
        assert_eq!(recovery(&run), Verdict::Pass);
        run.register = vec![write(10_500_000_000, 14_000_000_000)];
        assert!(matches!(recovery(&run), Verdict::Fail(_)));
        run.meta.recovery_limit_ms = Some(5000);
        assert_eq!(recovery(&run), Verdict::Pass, "within a limit given explicitly");
        run.register.clear();
        assert!(matches!(recovery(&run), Verdict::Fail(_)), "no write at all after the kill");
    }
}
