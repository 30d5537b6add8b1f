//! etcd's watch guarantees, checked against the KV history: ordered, no
//! duplicates, no gaps, all events of a revision in one response, and
//! `prev_kv` equal to the key's previous value.

use std::collections::{BTreeMap, HashSet};

use crate::Verdict;

/// One change in the store, as the KV history (or a watcher) has it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub revision: i64,
    pub key: String,
    /// `None` for a delete.
    pub value: Option<String>,
}

/// An event a watcher received, with the response that carried it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Received {
    pub response: u64,
    pub change: Change,
    pub prev_value: Option<String>,
}

/// Checks one watcher on keys with `prefix` from `start_revision`, given every
/// change the store made in revision order.
pub fn check(history: &[Change], prefix: &str, start_revision: i64, received: &[Received]) -> Verdict {
    let mut last: Option<(i64, &str)> = None;
    let mut seen: HashSet<(i64, &str)> = HashSet::new();
    let mut response_of_revision: BTreeMap<i64, u64> = BTreeMap::new();
    for event in received {
        let id = (event.change.revision, event.change.key.as_str());
        if !seen.insert(id) {
            return Verdict::Fail(format!("duplicate event: {id:?}"));
        }
        if last.is_some_and(|last| event.change.revision < last.0) {
            return Verdict::Fail(format!("event {id:?} after revision {}: out of order", last.map_or(0, |l| l.0)));
        }
        last = Some(id);
        if let Some(response) = response_of_revision.insert(event.change.revision, event.response) {
            if response != event.response {
                return Verdict::Fail(format!("revision {} split across responses", event.change.revision));
            }
        }
    }
    let Some((through, _)) = last else {
        return Verdict::Pass;
    };
    let mut previous: BTreeMap<&str, Option<&str>> = BTreeMap::new();
    let mut expected = Vec::new();
    for change in history {
        if change.key.starts_with(prefix) && change.revision >= start_revision && change.revision <= through {
            expected.push((change, previous.get(change.key.as_str()).copied().flatten()));
        }
        previous.insert(&change.key, change.value.as_deref());
    }
    if expected.len() != received.len() {
        let missing = expected
            .iter()
            .find(|(change, _)| !seen.contains(&(change.revision, change.key.as_str())))
            .map(|(change, _)| format!("{} at revision {}", change.key, change.revision));
        return Verdict::Fail(format!(
            "gap: {} events expected through revision {through}, {} received; first missing: {}",
            expected.len(),
            received.len(),
            missing.unwrap_or_else(|| "none (extra events)".into())
        ));
    }
    for ((change, prev), event) in expected.iter().zip(received) {
        if *change != &event.change {
            return Verdict::Fail(format!("expected {change:?}, received {:?}", event.change));
        }
        if event.prev_value.as_deref() != *prev {
            return Verdict::Fail(format!(
                "prev_kv of {} at {} is {:?}, the store had {prev:?}",
                change.key, change.revision, event.prev_value
            ));
        }
    }
    Verdict::Pass
}

/// Progress notifications on one watcher: a notify at R promises that every
/// event through R came before it, and none after it.
pub fn check_notifies(
    history: &[Change],
    prefix: &str,
    start_revision: i64,
    received: &[Received],
    notifies: &[crate::record::Notify],
) -> Verdict {
    for notify in notifies {
        let (before, after) = received.split_at(notify.after.min(received.len()));
        if let Some(late) = after.iter().find(|event| event.change.revision <= notify.revision) {
            return Verdict::Fail(format!(
                "{} at revision {} arrived after a progress notify at {}",
                late.change.key, late.change.revision, notify.revision
            ));
        }
        let delivered: HashSet<(i64, &str)> =
            before.iter().map(|event| (event.change.revision, event.change.key.as_str())).collect();
        let missing = history.iter().find(|change| {
            change.key.starts_with(prefix)
                && (start_revision..=notify.revision).contains(&change.revision)
                && !delivered.contains(&(change.revision, change.key.as_str()))
        });
        if let Some(change) = missing {
            return Verdict::Fail(format!(
                "a progress notify at {} came before {} at revision {}",
                notify.revision, change.key, change.revision
            ));
        }
    }
    Verdict::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(revision: i64, key: &str, value: Option<&str>) -> Change {
        Change { revision, key: key.into(), value: value.map(String::from) }
    }

    fn history() -> Vec<Change> {
        vec![
            change(2, "w/a", Some("1")),
            change(3, "w/b", Some("1")),
            change(4, "w/a", Some("2")),
            change(4, "w/b", None),
            change(5, "x", Some("1")),
            change(6, "w/a", Some("3")),
        ]
    }

    fn received(response: u64, c: Change, prev: Option<&str>) -> Received {
        Received { response, change: c, prev_value: prev.map(String::from) }
    }

    fn good() -> Vec<Received> {
        vec![
            received(1, change(2, "w/a", Some("1")), None),
            received(1, change(3, "w/b", Some("1")), None),
            received(2, change(4, "w/a", Some("2")), Some("1")),
            received(2, change(4, "w/b", None), Some("1")),
            received(3, change(6, "w/a", Some("3")), Some("2")),
        ]
    }

    #[test]
    fn a_faithful_watcher_passes() {
        assert_eq!(check(&history(), "w/", 2, &good()), Verdict::Pass);
        assert_eq!(check(&history(), "w/", 4, &good()[2..]), Verdict::Pass, "a later start");
    }

    #[test]
    fn a_duplicated_event_is_flagged() {
        let mut events = good();
        events.insert(3, events[2].clone());
        assert!(matches!(check(&history(), "w/", 2, &events), Verdict::Fail(m) if m.contains("duplicate")));
    }

    #[test]
    fn a_gap_is_flagged() {
        let mut events = good();
        events.remove(1);
        assert!(matches!(check(&history(), "w/", 2, &events), Verdict::Fail(m) if m.contains("gap")));
    }

    #[test]
    fn disorder_split_revisions_and_wrong_prev_kv_are_flagged() {
        let mut events = good();
        events.swap(1, 2);
        assert!(matches!(check(&history(), "w/", 2, &events), Verdict::Fail(m) if m.contains("out of order")));
        let mut events = good();
        events[3].response = 3;
        assert!(matches!(check(&history(), "w/", 2, &events), Verdict::Fail(m) if m.contains("split")));
        let mut events = good();
        events[4].prev_value = Some("1".into());
        assert!(matches!(check(&history(), "w/", 2, &events), Verdict::Fail(m) if m.contains("prev_kv")));
    }

    #[test]
    fn a_progress_notify_ahead_of_its_events_is_flagged() {
        use crate::record::Notify;
        let events = good();
        let on_time = [Notify { after: 2, revision: 3 }, Notify { after: 5, revision: 6 }];
        assert_eq!(check_notifies(&history(), "w/", 2, &events, &on_time), Verdict::Pass);
        // Revision 5 changed only "x": a notify at 5 after the events of 4 is right.
        assert_eq!(check_notifies(&history(), "w/", 2, &events, &[Notify { after: 4, revision: 5 }]), Verdict::Pass);
        let early = [Notify { after: 2, revision: 4 }];
        assert!(
            matches!(check_notifies(&history(), "w/", 2, &events, &early), Verdict::Fail(m) if m.contains("arrived after"))
        );
        let mut short = events.clone();
        short.remove(1);
        let skipped = [Notify { after: 1, revision: 3 }];
        assert!(
            matches!(check_notifies(&history(), "w/", 2, &short, &skipped), Verdict::Fail(m) if m.contains("came before"))
        );
    }
}
