//! The report of a whole-cluster run: markdown for people, JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write;

use super::check::{node_timelines, NodeTimeline};
use super::{CreateOutcome, KubeRecorded};
use crate::check::Checked;
use crate::report::{checks_table, timeline_table};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct KubeSummary {
    pub passed: bool,
    pub meta: super::KubeMeta,
    pub checks: Vec<Checked>,
    /// Per resource: creates acknowledged, refused, unknown.
    pub creates: BTreeMap<String, [usize; 3]>,
    pub deletes: usize,
    pub store_changes: usize,
    /// Per resource: sessions (relists + 1) and events seen.
    pub watchers: BTreeMap<String, (usize, usize)>,
    pub leader_transitions: BTreeMap<String, usize>,
    pub faults: usize,
    pub converged_after_ms: Option<i64>,
    pub node_timelines: Vec<NodeTimeline>,
}

pub fn summarize(run: &KubeRecorded, checks: Vec<Checked>) -> KubeSummary {
    let mut creates: BTreeMap<String, [usize; 3]> = BTreeMap::new();
    for create in &run.creates {
        let slot = match create.outcome {
            CreateOutcome::Acknowledged { .. } => 0,
            CreateOutcome::Refused(_) => 1,
            CreateOutcome::Unknown(_) => 2,
        };
        creates.entry(create.resource.clone()).or_default()[slot] += 1;
    }
    let watchers = run
        .watches
        .iter()
        .map(|log| (log.resource.clone(), (log.sessions.len(), log.sessions.iter().map(|s| s.events.len()).sum())))
        .collect();
    let mut leader_transitions = BTreeMap::new();
    for group in &run.meta.leader_groups {
        let mut versions: Vec<_> = run.leader_leases.iter().filter(|v| v.lease == group.lease).collect();
        versions.sort_by_key(|v| v.revision);
        let changes = versions.windows(2).filter(|pair| pair[0].holder != pair[1].holder).count();
        leader_transitions.insert(group.lease.clone(), changes);
    }
    KubeSummary {
        passed: checks.iter().all(|check| check.verdict.is_pass()),
        meta: run.meta.clone(),
        checks,
        creates,
        deletes: run.deletes.len(),
        store_changes: run.store.len(),
        watchers,
        leader_transitions,
        faults: run.timeline.len(),
        converged_after_ms: run.convergence.as_ref().and_then(|c| c.converged_us.map(|at| (at - c.healed_us) / 1000)),
        node_timelines: node_timelines(run),
    }
}

pub fn markdown(run: &KubeRecorded, summary: &KubeSummary) -> String {
    let meta = &summary.meta;
    let timing = &meta.timing;
    let mut out = String::new();
    let verdict = if summary.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "# Whole-cluster chaos run: {verdict}\n");
    let _ = writeln!(out, "```\n{}\n```\n", meta.command);
    let _ = writeln!(
        out,
        "{} store members, {} API servers behind a load balancer, {} controller-managers and {} schedulers \
         (leader-elected), {} hollow nodes; seed {}, {} s.",
        meta.store_members,
        meta.apiservers,
        meta.replicas,
        meta.replicas,
        meta.nodes,
        meta.seed,
        meta.duration_ms / 1000
    );
    let faults: Vec<&str> = meta.faults.iter().map(|fault| fault.name()).collect();
    let _ = writeln!(out, "Faults: {}.\n", faults.join(", "));
    let _ = writeln!(
        out,
        "Bounds: renew deadline {} ms; node grace {} ms, monitor period {} ms; pods tolerate an unreachable \
         node {} s; node-death slack {} ms; Deployments converge within {} ms of healing.",
        timing.renew_deadline_ms,
        timing.node_grace_ms,
        timing.node_monitor_period_ms,
        timing.toleration_s,
        timing.slack_ms,
        timing.converge_limit_ms
    );
    checks_table(&mut out, &summary.checks);
    let _ = writeln!(out, "\n## Workload\n\n| resource | created (201) | refused | unknown |\n|---|---:|---:|---:|");
    for (resource, [ok, refused, unknown]) in &summary.creates {
        let _ = writeln!(out, "| {resource} | {ok} | {refused} | {unknown} |");
    }
    let _ = writeln!(out, "\nDeletes sent: {}. Store changes recorded: {}.", summary.deletes, summary.store_changes);
    if let Some(ms) = summary.converged_after_ms {
        let _ = writeln!(out, "Deployments and Endpoints converged {ms} ms after the last fault was healed.");
    }
    let transitions: Vec<String> = summary.leader_transitions.iter().map(|(lease, n)| format!("{lease} {n}")).collect();
    let _ = writeln!(out, "Leader changes: {}.", transitions.join(", "));
    let _ = writeln!(
        out,
        "Replicas that exited on losing their lease and were started again: {}.",
        if run.restarts.is_empty() { "none".to_string() } else { run.restarts.join(", ") }
    );
    let _ = writeln!(out, "\n## Watchers\n\n| resource | sessions (relists + 1) | events |\n|---|---:|---:|");
    for (resource, (sessions, events)) in &summary.watchers {
        let _ = writeln!(out, "| {resource} | {sessions} | {events} |");
    }
    if !summary.node_timelines.is_empty() {
        let _ = writeln!(
            out,
            "\n## Node deaths\n\n| node | Unknown after its last renewal (ms) | pods evicted after Unknown (ms) | pods deleted otherwise | Ready again after heal (ms) |\n|---|---:|---|---:|---:|"
        );
        for timeline in &summary.node_timelines {
            let evicted: Vec<String> = timeline
                .evicted_after_ms
                .iter()
                .map(|ms| if *ms == i64::MAX { "never".into() } else { ms.to_string() })
                .collect();
            let or_never = |value: Option<i64>| value.map_or("never".into(), |v| v.to_string());
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} |",
                timeline.node,
                or_never(timeline.unknown_after_ms),
                if evicted.is_empty() { "no pods".into() } else { evicted.join(", ") },
                timeline.deleted_otherwise,
                or_never(timeline.ready_again_after_heal_ms)
            );
        }
    }
    timeline_table(&mut out, &run.timeline);
    out
}
