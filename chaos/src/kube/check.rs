//! The checkers of a whole-cluster chaos run. Each one reads the record only,
//! so that a saved history can be checked again offline.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use super::{CreateOutcome, KubeRecorded, Micros, Seen, Session, StoreChange, WatchLog};
use crate::check::Checked;
use crate::Verdict;

pub const LOST: &str = "no acknowledged object lost";
pub const BOUND_ONCE: &str = "no pod bound twice";
pub const ONE_LEADER: &str = "one leader at a time";
pub const CONVERGED: &str = "Deployments converged after healing";
pub const WATCHES: &str = "every watcher saw every change once, in order";
pub const NODE_DEATH: &str = "node-death timeline";
pub const END: &str = "no panic, end state gathered";

pub fn all(run: &KubeRecorded) -> Vec<Checked> {
    let checks = [
        (LOST, lost_objects(run)),
        (BOUND_ONCE, bound_once(run)),
        (ONE_LEADER, one_leader(run)),
        (CONVERGED, converged(run)),
        (WATCHES, watches(run)),
        (NODE_DEATH, node_death(run)),
        (END, end_state(run)),
    ];
    checks.into_iter().map(|(name, verdict)| Checked { name: name.into(), verdict }).collect()
}

fn fail_with(problems: Vec<String>) -> Verdict {
    if problems.is_empty() {
        return Verdict::Pass;
    }
    let shown: Vec<&str> = problems.iter().take(5).map(String::as_str).collect();
    let more = problems.len().saturating_sub(shown.len());
    let more = if more > 0 { format!(" (and {more} more)") } else { String::new() };
    Verdict::Fail(format!("{}{more}", shown.join("; ")))
}

/// Every create that returned 201 is there at the end, or someone deleted it:
/// the workload sent a delete, or the store saw the key deleted after it.
pub fn lost_objects(run: &KubeRecorded) -> Verdict {
    let Some(present) = &run.end.present else {
        return Verdict::Unknown("the objects could not be listed at the end".into());
    };
    let present: BTreeSet<(&str, &str)> = present.iter().map(|p| (p.key.as_str(), p.uid.as_str())).collect();
    let mut deleted_at: HashMap<&str, Vec<i64>> = HashMap::new();
    for change in run.store.iter().filter(|change| change.deleted) {
        deleted_at.entry(change.key.as_str()).or_default().push(change.revision);
    }
    let mut problems = Vec::new();
    for create in &run.creates {
        let CreateOutcome::Acknowledged { uid, revision } = &create.outcome else { continue };
        let there = present.contains(&(create.key.as_str(), uid.as_str()));
        let deleted_by_us = run.deletes.iter().any(|d| d.key == create.key && d.sent_us >= create.invoked_us);
        let deleted_by_someone =
            deleted_at.get(create.key.as_str()).is_some_and(|revisions| revisions.iter().any(|r| r > revision));
        if !(there || deleted_by_us || deleted_by_someone) {
            problems.push(format!(
                "{} (uid {uid}, created at revision {revision}) is gone and nobody deleted it",
                create.key
            ));
        }
    }
    fail_with(problems)
}

/// A pod's nodeName is set once: no uid was seen on two nodes, and the
/// scheduler reported Scheduled at most once per pod.
pub fn bound_once(run: &KubeRecorded) -> Verdict {
    let mut nodes: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for pod in run.pods.iter().filter(|pod| !pod.node.is_empty()) {
        nodes.entry(pod.uid.as_str()).or_default().insert(pod.node.as_str());
    }
    let mut problems: Vec<String> = nodes
        .iter()
        .filter(|(_, on)| on.len() > 1)
        .map(|(uid, on)| format!("pod {uid} was bound to {}", on.iter().copied().collect::<Vec<_>>().join(" and ")))
        .collect();
    let mut scheduled: BTreeMap<&str, usize> = BTreeMap::new();
    for event in run.events.iter().filter(|event| event.reason == "Scheduled") {
        *scheduled.entry(event.involved_uid.as_str()).or_default() += 1;
    }
    problems.extend(
        scheduled.iter().filter(|(_, n)| **n > 1).map(|(uid, n)| format!("pod {uid} was reported Scheduled {n} times")),
    );
    if run.pods.is_empty() {
        return Verdict::Unknown("no pod was seen".into());
    }
    fail_with(problems)
}

/// One holder's run of a leader Lease.
#[derive(Debug, Clone, PartialEq)]
struct Tenure {
    holder: String,
    acquire_us: Micros,
    last_renew_us: Micros,
    duration_s: i64,
}

fn tenures(run: &KubeRecorded, lease: &str) -> Vec<Tenure> {
    let mut versions: Vec<_> = run.leader_leases.iter().filter(|v| v.lease == lease && !v.holder.is_empty()).collect();
    versions.sort_by_key(|v| v.revision);
    let mut tenures: Vec<Tenure> = Vec::new();
    for version in versions {
        match tenures.last_mut() {
            Some(current) if current.holder == version.holder && current.acquire_us == version.acquire_us => {
                current.last_renew_us = current.last_renew_us.max(version.renew_us);
            }
            _ => tenures.push(Tenure {
                holder: version.holder.clone(),
                acquire_us: version.acquire_us,
                last_renew_us: version.renew_us,
                duration_s: version.duration_s,
            }),
        }
    }
    tenures
}

/// From the Lease history: a new holder took each lease only a whole lease
/// duration after the last renewal of the one before. From the recorded
/// writes: every action of a replica (its Events, stamped when it acted) falls
/// within one of its own tenures, ending a renew deadline after its last
/// renewal, and before the next holder took over.
pub fn one_leader(run: &KubeRecorded) -> Verdict {
    let timing = &run.meta.timing;
    let tolerance = timing.clock_tolerance_ms * 1000;
    let mut problems = Vec::new();
    let mut actions = 0;
    for group in &run.meta.leader_groups {
        let tenures = tenures(run, &group.lease);
        if tenures.is_empty() {
            problems.push(format!("{}: no holder was ever recorded", group.lease));
            continue;
        }
        for pair in tenures.windows(2) {
            let (before, after) = (&pair[0], &pair[1]);
            let free_from = before.last_renew_us + before.duration_s * 1_000_000;
            if after.acquire_us + tolerance < free_from {
                problems.push(format!(
                    "{}: {} took it {} ms after {}'s last renewal, within its {} s lease",
                    group.lease,
                    after.holder,
                    (after.acquire_us - before.last_renew_us) / 1000,
                    before.holder,
                    before.duration_s
                ));
            }
        }
        for event in run.events.iter().filter(|event| group.identities.contains(&event.instance)) {
            let Some(at) = event.time_us else {
                problems.push(format!("an event of {} has no eventTime", event.instance));
                continue;
            };
            actions += 1;
            let within = tenures.iter().enumerate().any(|(i, tenure)| {
                let end = tenure.last_renew_us + timing.renew_deadline_ms * 1000;
                let end = tenures.get(i + 1).map_or(end, |next| end.min(next.acquire_us));
                tenure.holder == event.instance && at + tolerance >= tenure.acquire_us && at <= end + tolerance
            });
            if !within {
                let leader = tenures.iter().rev().find(|t| t.acquire_us <= at).map_or("nobody", |t| t.holder.as_str());
                problems.push(format!(
                    "{} acted ({}) at {} while {leader} held {}",
                    event.instance,
                    event.reason,
                    since_start(run, at),
                    group.lease
                ));
            }
        }
    }
    if actions == 0 && problems.is_empty() {
        return Verdict::Unknown("no action of a leader was recorded".into());
    }
    fail_with(problems)
}

fn since_start(run: &KubeRecorded, at: Micros) -> String {
    format!("{:.3} s", (at - run.meta.started_us) as f64 / 1e6)
}

pub fn converged(run: &KubeRecorded) -> Verdict {
    let Some(convergence) = &run.convergence else {
        return Verdict::Unknown("convergence was not measured".into());
    };
    let limit = run.meta.timing.converge_limit_ms;
    match convergence.converged_us {
        Some(at) if (at - convergence.healed_us) / 1000 <= limit => Verdict::Pass,
        Some(at) => Verdict::Fail(format!(
            "converged {} ms after healing, past the {limit} ms bound",
            (at - convergence.healed_us) / 1000
        )),
        None => Verdict::Fail(format!("not converged {limit} ms after healing: {}", convergence.state)),
    }
}

/// The store's changes on one prefix, in revision order.
struct History<'a> {
    changes: Vec<&'a StoreChange>,
}

impl<'a> History<'a> {
    fn new(store: &'a [StoreChange], prefix: &str) -> History<'a> {
        let mut changes: Vec<&StoreChange> = store.iter().filter(|c| c.key.starts_with(prefix)).collect();
        changes.sort_by_key(|c| c.revision);
        History { changes }
    }

    /// The live keys and their revisions once every change up to `revision` applied.
    fn state_at(&self, revision: i64) -> BTreeMap<&'a str, i64> {
        let mut state = BTreeMap::new();
        for change in self.changes.iter().take_while(|c| c.revision <= revision) {
            apply(&mut state, change);
        }
        state
    }

    fn between(&self, first: i64, last: i64) -> impl Iterator<Item = &&'a StoreChange> {
        self.changes.iter().filter(move |c| c.revision >= first && c.revision <= last)
    }
}

fn apply<'a>(state: &mut BTreeMap<&'a str, i64>, change: &'a StoreChange) {
    if change.deleted {
        state.remove(change.key.as_str());
    } else {
        state.insert(change.key.as_str(), change.revision);
    }
}

/// Whether the watcher's current view (its last session, list then events)
/// is the store's latest state on its prefix: the end fence waits for this.
pub fn caught_up(store: &[StoreChange], log: &WatchLog) -> bool {
    let mut view: BTreeMap<&str, i64> = BTreeMap::new();
    for seen in log.sessions.last().into_iter().flat_map(|session| session.listed.iter().chain(&session.events)) {
        if seen.deleted {
            view.remove(seen.key.as_str());
        } else {
            view.insert(&seen.key, seen.revision);
        }
    }
    History::new(store, &log.prefix).state_at(i64::MAX) == view
}

fn listed(session: &Session) -> BTreeMap<&str, i64> {
    session.listed.iter().map(|seen| (seen.key.as_str(), seen.revision)).collect()
}

/// One session: its list is the store at some revision L, and its events are
/// exactly the store's changes after L, in order, each once.
fn session_problem(history: &History, session: &Session) -> Option<String> {
    if !session.list_done {
        return (!session.events.is_empty()).then(|| "events before the list was done".into());
    }
    for pair in session.events.windows(2) {
        if pair[1].revision <= pair[0].revision {
            return Some(format!("revision {} came after {}", pair[1].revision, pair[0].revision));
        }
    }
    let list = listed(session);
    let Some(first) = session.events.first() else {
        // Only a list: it must be the store's state at some revision.
        let floor = list.values().copied().max().unwrap_or(0);
        let mut state = history.state_at(floor);
        if state == list {
            return None;
        }
        for change in history.changes.iter().filter(|c| c.revision > floor) {
            apply(&mut state, change);
            if state == list {
                return None;
            }
        }
        return Some(format!("a list of {} objects matches no revision of the store", list.len()));
    };
    let state = history.state_at(first.revision - 1);
    if state != list {
        let missing = state.keys().filter(|k| !list.contains_key(*k)).count();
        let extra = list.keys().filter(|k| !state.contains_key(*k)).count();
        return Some(format!(
            "the list before revision {} differs from the store ({missing} missing, {extra} extra)",
            first.revision
        ));
    }
    let last = session.events.last().map_or(first.revision, |seen| seen.revision);
    let expected: Vec<Seen> = history
        .between(first.revision, last)
        .map(|c| Seen { key: c.key.clone(), revision: c.revision, deleted: c.deleted })
        .collect();
    if expected != session.events {
        let missed = expected.iter().find(|e| !session.events.contains(e));
        let extra = session.events.iter().find(|e| !expected.contains(e));
        return Some(match (missed, extra) {
            (Some(missed), _) => format!("missed {} at revision {}", missed.key, missed.revision),
            (_, Some(extra)) => format!("{} at revision {} is not a change of the store", extra.key, extra.revision),
            _ => "the events differ from the store's changes".into(),
        });
    }
    None
}

fn watch_problem(store: &[StoreChange], log: &WatchLog) -> Option<String> {
    let history = History::new(store, &log.prefix);
    if log.sessions.is_empty() {
        return Some("never listed".into());
    }
    log.sessions
        .iter()
        .enumerate()
        .find_map(|(i, session)| session_problem(&history, session).map(|problem| format!("session {i}: {problem}")))
}

pub fn watches(run: &KubeRecorded) -> Verdict {
    if run.watches.is_empty() {
        return Verdict::Unknown("no watcher ran".into());
    }
    let mut problems: Vec<String> = run
        .watches
        .iter()
        .filter_map(|log| watch_problem(&run.store, log).map(|problem| format!("{}: {problem}", log.resource)))
        .collect();
    for (resource, caught_up) in &run.end.watchers_caught_up {
        if !caught_up {
            problems.push(format!("{resource}: never reached the store's last change"));
        }
    }
    fail_with(problems)
}

/// What the node-death checker measured for one cut.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NodeTimeline {
    pub node: String,
    /// From the node's last renewal before the cut.
    pub unknown_after_ms: Option<i64>,
    /// From the node going Unknown to the taint manager's eviction, per pod
    /// that was on it (`i64::MAX`: never evicted).
    pub evicted_after_ms: Vec<i64>,
    /// Pods of the node deleted after the cut by someone else (a scale-down or
    /// a Deployment's deletion sent just before it).
    #[serde(default)]
    pub deleted_otherwise: usize,
    pub ready_again_after_heal_ms: Option<i64>,
}

/// The reason the taint eviction controller gives its Events.
pub const EVICTED: &str = "TaintManagerEviction";

pub fn node_timelines(run: &KubeRecorded) -> Vec<NodeTimeline> {
    run.node_cuts
        .iter()
        .map(|cut| {
            let renewal = run
                .node_renewals
                .iter()
                .filter(|r| r.node == cut.node && r.renew_us <= cut.cut_us)
                .map(|r| r.renew_us)
                .max();
            let unknown = run
                .nodes
                .iter()
                .filter(|n| n.node == cut.node && n.at_us > cut.cut_us && n.ready == "Unknown")
                .map(|n| n.at_us)
                .min();
            let mut evicted = Vec::new();
            let mut deleted_otherwise = 0;
            if let Some(unknown) = unknown {
                let on_node: BTreeSet<&str> = run
                    .pods
                    .iter()
                    .filter(|p| p.node == cut.node && p.at_us <= cut.cut_us)
                    .map(|p| p.uid.as_str())
                    .collect();
                for uid in on_node {
                    let history: Vec<_> = run.pods.iter().filter(|p| p.uid == uid).collect();
                    let live_at_cut = history.iter().rev().find(|p| p.at_us <= cut.cut_us).is_some_and(|p| !p.deleting);
                    if !live_at_cut {
                        continue;
                    }
                    let eviction = run
                        .events
                        .iter()
                        .filter(|e| e.reason == EVICTED && e.involved_uid == uid)
                        .filter_map(|e| e.time_us)
                        .filter(|at| *at > cut.cut_us)
                        .min();
                    let deleted = history.iter().any(|p| p.deleting && p.at_us > cut.cut_us);
                    match eviction {
                        Some(at) => evicted.push((at - unknown) / 1000),
                        None if deleted => deleted_otherwise += 1,
                        None => evicted.push(i64::MAX),
                    }
                }
            }
            let ready_again = cut.healed_us.and_then(|healed| {
                run.nodes
                    .iter()
                    .filter(|n| n.node == cut.node && n.at_us > healed && n.ready == "True")
                    .map(|n| (n.at_us - healed) / 1000)
                    .min()
            });
            NodeTimeline {
                node: cut.node.clone(),
                unknown_after_ms: renewal.zip(unknown).map(|(renewal, unknown)| (unknown - renewal) / 1000),
                evicted_after_ms: evicted,
                deleted_otherwise,
                ready_again_after_heal_ms: ready_again,
            }
        })
        .collect()
}

/// Each node cut off went Unknown a grace period after its last renewal, and
/// its pods were evicted (by the taint manager, as its Events say) a
/// toleration after that, each within a monitor period (plus the slack);
/// healed, it was Ready again.
pub fn node_death(run: &KubeRecorded) -> Verdict {
    let timing = &run.meta.timing;
    let period = timing.node_monitor_period_ms;
    let mut problems = Vec::new();
    let timelines = node_timelines(run);
    if timelines.is_empty() {
        // A run whose faults leave out node-cut has no timeline to judge.
        if !run.meta.faults.contains(&crate::schedule::KubeFault::NodeCut) {
            return Verdict::Pass;
        }
        return Verdict::Unknown("no node was cut off".into());
    }
    for timeline in &timelines {
        let node = &timeline.node;
        match timeline.unknown_after_ms {
            None => problems.push(format!("{node} never went Unknown (or had no renewal before the cut)")),
            Some(after) => {
                let (low, high) = (timing.node_grace_ms - period, timing.node_grace_ms + period + timing.slack_ms);
                if after < low || after > high {
                    problems
                        .push(format!("{node} went Unknown {after} ms after its last renewal, outside {low}..{high}"));
                }
            }
        }
        let toleration = timing.toleration_s * 1000;
        let (low, high) = (toleration - period, toleration + period + timing.slack_ms);
        for after in &timeline.evicted_after_ms {
            if *after == i64::MAX {
                problems.push(format!("a pod on {node} was never evicted"));
            } else if *after < low || *after > high {
                problems.push(format!(
                    "a pod on {node} was evicted {after} ms after it went Unknown, outside {low}..{high}"
                ));
            }
        }
        if timeline.ready_again_after_heal_ms.is_none() {
            problems.push(format!("{node} was not Ready again after it was healed"));
        }
    }
    fail_with(problems)
}

fn end_state(run: &KubeRecorded) -> Verdict {
    let mut problems: Vec<String> = run.end.panics.iter().map(|panic| format!("panic: {panic}")).collect();
    problems.extend(run.end.errors.iter().cloned());
    fail_with(problems)
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    const S: i64 = 1_000_000;

    fn base() -> KubeRecorded {
        let mut run = KubeRecorded::default();
        run.meta.timing = Timing {
            renew_deadline_ms: 3000,
            node_grace_ms: 12_000,
            node_monitor_period_ms: 2000,
            toleration_s: 10,
            converge_limit_ms: 60_000,
            slack_ms: 2000,
            clock_tolerance_ms: 100,
        };
        run.meta.leader_groups =
            vec![LeaderGroup { lease: "kube-scheduler".into(), identities: vec!["s-0".into(), "s-1".into()] }];
        run.end.present = Some(Vec::new());
        run
    }

    fn lease(revision: i64, holder: &str, acquire: i64, renew: i64) -> LeaseVersion {
        LeaseVersion {
            lease: "kube-scheduler".into(),
            revision,
            holder: holder.into(),
            acquire_us: acquire,
            renew_us: renew,
            duration_s: 4,
        }
    }

    fn action(instance: &str, at: i64) -> EventSeen {
        EventSeen {
            reason: "Scheduled".into(),
            instance: instance.into(),
            time_us: Some(at),
            involved_uid: format!("p{at}"),
        }
    }

    fn change(revision: i64, key: &str, deleted: bool) -> StoreChange {
        StoreChange { revision, key: key.into(), deleted }
    }

    fn acknowledged(key: &str, uid: &str, revision: i64) -> Create {
        Create {
            resource: "configmaps".into(),
            key: key.into(),
            invoked_us: revision * S,
            outcome: CreateOutcome::Acknowledged { uid: uid.into(), revision },
        }
    }

    #[test]
    fn a_lost_object_fails_and_deleted_or_present_ones_pass() {
        let mut run = base();
        run.creates = vec![acknowledged("/c/a", "ua", 5), acknowledged("/c/b", "ub", 6), acknowledged("/c/c", "uc", 7)];
        run.end.present = Some(vec![Present { key: "/c/a".into(), uid: "ua".into() }]);
        run.deletes = vec![Delete { key: "/c/b".into(), sent_us: 9 * S, acknowledged: false }];
        run.store = vec![change(5, "/c/a", false), change(6, "/c/b", false), change(7, "/c/c", false)];
        let verdict = lost_objects(&run);
        assert!(matches!(&verdict, Verdict::Fail(why) if why.contains("/c/c") && !why.contains("/c/b")), "{verdict:?}");
        // Deleted by someone else (the garbage collector, say): not lost.
        run.store.push(change(12, "/c/c", true));
        assert_eq!(lost_objects(&run), Verdict::Pass);
        // The same name with another uid is not the acknowledged object.
        run.store.pop();
        if let Some(present) = run.end.present.as_mut() {
            present.push(Present { key: "/c/c".into(), uid: "other".into() });
        }
        assert!(!lost_objects(&run).is_pass());
        run.end.present = None;
        assert!(matches!(lost_objects(&run), Verdict::Unknown(_)));
    }

    #[test]
    fn a_double_binding_fails() {
        let mut run = base();
        let seen = |node: &str, at: i64| PodSeen {
            at_us: at,
            uid: "u1".into(),
            key: "/p/a".into(),
            node: node.into(),
            deleting: false,
        };
        run.pods = vec![seen("", 1), seen("n1", 2), seen("n1", 3)];
        assert_eq!(bound_once(&run), Verdict::Pass);
        run.pods.push(seen("n2", 4));
        assert!(matches!(bound_once(&run), Verdict::Fail(why) if why.contains("n1 and n2")));
        run.pods.pop();
        let scheduled = EventSeen {
            reason: "Scheduled".into(),
            instance: "s-0".into(),
            time_us: Some(1),
            involved_uid: "u1".into(),
        };
        run.events = vec![scheduled.clone(), scheduled];
        assert!(matches!(bound_once(&run), Verdict::Fail(why) if why.contains("2 times")));
    }

    #[test]
    fn two_leaders_at_once_fail() {
        let mut run = base();
        // s-0 leads from 10 s and renews until 20 s; s-1 takes over at 25 s (20 + 4 + margin).
        run.leader_leases = vec![
            lease(1, "s-0", 10 * S, 10 * S),
            lease(2, "s-0", 10 * S, 20 * S),
            lease(3, "s-1", 25 * S, 25 * S),
            lease(4, "s-1", 25 * S, 30 * S),
        ];
        run.events = vec![action("s-0", 15 * S), action("s-0", 22 * S), action("s-1", 26 * S)];
        assert_eq!(one_leader(&run), Verdict::Pass);

        // The old leader acts after the new one took over: two leaders at once.
        run.events.push(action("s-0", 25 * S + 500_000));
        assert!(
            matches!(one_leader(&run), Verdict::Fail(why) if why.contains("s-0 acted") && why.contains("while s-1"))
        );
        run.events.pop();
        // ... or past its renew deadline, before anyone else took over.
        run.events.push(action("s-0", 23 * S + 500_000));
        assert!(!one_leader(&run).is_pass());
        run.events.pop();

        // A takeover within the old holder's lease duration.
        run.leader_leases[2] = lease(3, "s-1", 22 * S, 22 * S);
        run.leader_leases[3] = lease(4, "s-1", 22 * S, 30 * S);
        run.events = vec![action("s-1", 26 * S)];
        assert!(matches!(one_leader(&run), Verdict::Fail(why) if why.contains("within its 4 s lease")));
    }

    fn seen(key: &str, revision: i64, deleted: bool) -> Seen {
        Seen { key: key.into(), revision, deleted }
    }

    #[test]
    fn watchers_must_see_the_store_history_once_in_order() {
        let mut run = base();
        run.store = vec![
            change(1, "/r/a", false),
            change(2, "/r/b", false),
            change(3, "/r/a", false),
            change(4, "/r/b", true),
            change(5, "/x/z", false),
        ];
        let session = Session {
            started_us: 0,
            listed: vec![seen("/r/a", 1, false)],
            list_done: true,
            events: vec![seen("/r/b", 2, false), seen("/r/a", 3, false), seen("/r/b", 4, true)],
        };
        let log = |session: Session| WatchLog {
            resource: "r".into(),
            prefix: "/r/".into(),
            sessions: vec![session],
            errors: vec![],
        };
        run.watches = vec![log(session.clone())];
        assert_eq!(watches(&run), Verdict::Pass);
        assert!(caught_up(&run.store, &run.watches[0]));

        let mut missed = session.clone();
        missed.events.remove(1);
        run.watches = vec![log(missed)];
        assert!(matches!(watches(&run), Verdict::Fail(why) if why.contains("missed /r/a at revision 3")));

        let mut repeated = session.clone();
        repeated.events.insert(1, seen("/r/b", 2, false));
        run.watches = vec![log(repeated)];
        assert!(matches!(watches(&run), Verdict::Fail(why) if why.contains("came after")));

        let mut wrong_list = session.clone();
        wrong_list.listed.clear();
        run.watches = vec![log(wrong_list)];
        assert!(!watches(&run).is_pass());

        // A relist (after a 410) that lists the store at revision 3.
        let relisted = Session {
            started_us: 0,
            listed: vec![seen("/r/a", 3, false), seen("/r/b", 2, false)],
            list_done: true,
            events: vec![],
        };
        run.watches = vec![WatchLog { sessions: vec![session, relisted], ..log(Session::default()) }];
        assert_eq!(watches(&run), Verdict::Pass);
        // That relist is behind the store's last change (the delete of /r/b).
        assert!(!caught_up(&run.store, &run.watches[0]));
        run.end.watchers_caught_up = vec![("r".into(), false)];
        assert!(!watches(&run).is_pass());
    }

    #[test]
    fn the_node_death_timeline_is_bounded_both_ways() {
        let mut run = base();
        assert_eq!(node_death(&run), Verdict::Pass, "node-cut was not among the faults");
        run.meta.faults = vec![crate::schedule::KubeFault::NodeCut];
        assert!(matches!(node_death(&run), Verdict::Unknown(_)), "node-cut was scheduled but never happened");
        let node = |at: i64, ready: &str| NodeSeen {
            at_us: at,
            node: "n2".into(),
            ready: ready.into(),
            unreachable_taint: ready == "Unknown",
        };
        let pod = |at: i64, deleting: bool| PodSeen {
            at_us: at,
            uid: "u".into(),
            key: "/p".into(),
            node: "n2".into(),
            deleting,
        };
        run.node_cuts = vec![NodeCut { node: "n2".into(), cut_us: 100 * S, healed_us: Some(140 * S) }];
        run.node_renewals = vec![NodeRenewal { node: "n2".into(), revision: 1, renew_us: 99 * S }];
        run.nodes = vec![node(50 * S, "True"), node(112 * S, "Unknown"), node(141 * S, "True")];
        run.pods = vec![pod(60 * S, false), pod(123 * S, true)];
        let eviction = |at: i64| EventSeen {
            reason: EVICTED.into(),
            instance: "cm-0".into(),
            time_us: Some(at),
            involved_uid: "u".into(),
        };
        run.events = vec![eviction(122 * S)];
        assert_eq!(node_death(&run), Verdict::Pass, "{:?}", node_timelines(&run));
        // Unknown too early: 5 s after the last renewal, against a 12 s grace.
        run.nodes[1] = node(104 * S, "Unknown");
        assert!(matches!(node_death(&run), Verdict::Fail(why) if why.contains("went Unknown")));
        run.nodes[1] = node(112 * S, "Unknown");
        // Evicted long after the toleration, or too early.
        run.events = vec![eviction(139 * S)];
        assert!(matches!(node_death(&run), Verdict::Fail(why) if why.contains("evicted")));
        run.events = vec![eviction(115 * S)];
        assert!(matches!(node_death(&run), Verdict::Fail(why) if why.contains("evicted")));
        // Deleted by someone else: not the node controller's to answer for.
        run.events.clear();
        assert_eq!(node_death(&run), Verdict::Pass);
        assert_eq!(node_timelines(&run)[0].deleted_otherwise, 1);
        run.pods.pop();
        assert!(matches!(node_death(&run), Verdict::Fail(why) if why.contains("never evicted")));
    }
}
