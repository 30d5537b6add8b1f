//! The run report, in markdown for people and JSON for tools.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::check::{recovery_times, Checked};
use crate::history::Outcome;
use crate::record::{FaultEvent, OpKind, Recorded};

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Summary {
    pub passed: bool,
    pub meta: crate::record::Meta,
    pub checks: Vec<Checked>,
    pub operations: Vec<OpSummary>,
    pub register_outcomes: BTreeMap<String, usize>,
    pub watch_events: usize,
    pub watch_reconnects: u32,
    pub leases: usize,
    /// The Kubernetes-shaped traffic: paginated lists, compactions through
    /// `compact_rev_key`, and progress notifications on prefix watches.
    #[serde(default)]
    pub kube_lists: usize,
    #[serde(default)]
    pub kube_compactions: usize,
    #[serde(default)]
    pub progress_notifies: usize,
    pub faults: usize,
    pub recovery_ms: Vec<Option<u64>>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct OpSummary {
    pub kind: OpKind,
    pub ok: usize,
    pub failed: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

fn percentile(sorted: &[u64], fraction: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[index] as f64 / 1e6
}

pub fn summarize(run: &Recorded, checks: Vec<Checked>) -> Summary {
    let mut by_kind: BTreeMap<OpKind, (usize, usize, Vec<u64>)> = BTreeMap::new();
    for latency in &run.latencies {
        let entry = by_kind.entry(latency.kind).or_default();
        if latency.ok {
            entry.0 += 1;
            entry.2.push(latency.nanos);
        } else {
            entry.1 += 1;
        }
    }
    let operations = by_kind
        .into_iter()
        .map(|(kind, (ok, failed, mut nanos))| {
            nanos.sort_unstable();
            OpSummary {
                kind,
                ok,
                failed,
                p50_ms: percentile(&nanos, 0.5),
                p99_ms: percentile(&nanos, 0.99),
                max_ms: percentile(&nanos, 1.0),
            }
        })
        .collect();
    let mut register_outcomes = BTreeMap::new();
    for op in &run.register {
        let name = match op.outcome {
            Outcome::Read(_) => "read",
            Outcome::Written => "written",
            Outcome::Cas(true) => "cas succeeded",
            Outcome::Cas(false) => "cas refused",
            Outcome::Unknown => "unknown (timed out or failed)",
        };
        *register_outcomes.entry(name.to_string()).or_insert(0) += 1;
    }
    Summary {
        passed: checks.iter().all(|check| check.verdict.is_pass()),
        meta: run.meta.clone(),
        checks,
        operations,
        register_outcomes,
        watch_events: run.watch_sessions.iter().map(|session| session.received.len()).sum(),
        watch_reconnects: run.watch_sessions.iter().map(|session| session.reconnects).sum(),
        leases: run.leases.len(),
        kube_lists: run.lists.len(),
        kube_compactions: run.compactions.len(),
        progress_notifies: run.watch_sessions.iter().map(|session| session.notifies.len()).sum(),
        faults: run.timeline.len(),
        recovery_ms: recovery_times(run).into_iter().map(|time| time.map(|nanos| nanos / 1_000_000)).collect(),
    }
}

fn seconds(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1e9)
}

pub fn markdown(run: &Recorded, summary: &Summary) -> String {
    let meta = &summary.meta;
    let mut out = String::new();
    let verdict = if summary.passed { "PASS" } else { "FAIL" };
    let _ = writeln!(out, "# Chaos run: {verdict}\n");
    let _ = writeln!(out, "```\n{}\n```\n", meta.command);
    let _ = writeln!(
        out,
        "{} {} members, seed {}, {} s, election timeout {} ms, lease TTL {} s.",
        meta.system,
        meta.members,
        meta.seed,
        meta.duration_ms / 1000,
        meta.election_timeout_ms,
        meta.lease_ttl_s
    );
    let faults: Vec<&str> = meta.faults.iter().map(|fault| fault.name()).collect();
    let _ = writeln!(out, "Faults: {}.", faults.join(", "));
    for skipped in &meta.skipped {
        let _ = writeln!(out, "Skipped: {skipped}.");
    }
    if let Some(broken) = &meta.broken {
        let _ = writeln!(out, "Deliberately broken members: `{broken}` (this run is expected to fail).");
    }
    checks_table(&mut out, &summary.checks);
    let _ = writeln!(out, "\n## Operations\n\n| operation | ok | failed or timed out | p50 ms | p99 ms | max ms |");
    let _ = writeln!(out, "|---|---:|---:|---:|---:|---:|");
    for op in &summary.operations {
        let _ = writeln!(
            out,
            "| {:?} | {} | {} | {:.2} | {:.2} | {:.2} |",
            op.kind, op.ok, op.failed, op.p50_ms, op.p99_ms, op.max_ms
        );
    }
    let outcomes: Vec<String> =
        summary.register_outcomes.iter().map(|(name, count)| format!("{name} {count}")).collect();
    let _ = writeln!(out, "\nRegister history: {} operations ({}).", run.register.len(), outcomes.join(", "));
    let _ = writeln!(
        out,
        "Watch: {} events over {} sessions, {} reconnects. Leases: {}. Set elements: {}.",
        summary.watch_events,
        run.watch_sessions.len(),
        summary.watch_reconnects,
        summary.leases,
        run.sets.iter().map(|set| set.adds.len()).sum::<usize>()
    );
    let _ = writeln!(
        out,
        "Kubernetes-shaped: {} paginated lists ({} pages), {} compactions through compact_rev_key (last at {}), {} progress notifications on prefix watches.",
        summary.kube_lists,
        run.lists.iter().map(|list| list.pages as usize).sum::<usize>(),
        summary.kube_compactions,
        run.compactions.last().copied().unwrap_or(0),
        summary.progress_notifies
    );
    let recovery: Vec<String> =
        summary.recovery_ms.iter().map(|ms| ms.map_or("none".into(), |ms| format!("{ms} ms"))).collect();
    let _ = writeln!(out, "Recovery after leader kills (to the next acknowledged write): {}.", recovery.join(", "));
    timeline_table(&mut out, &run.timeline);
    out
}

/// The checkers' verdicts as a markdown table.
pub fn checks_table(out: &mut String, checks: &[Checked]) {
    let _ = writeln!(out, "\n## Checkers\n\n| checker | verdict |\n|---|---|");
    for check in checks {
        let verdict = match &check.verdict {
            crate::Verdict::Pass => "pass".to_string(),
            crate::Verdict::Fail(reason) => format!("**FAIL**: {reason}"),
            crate::Verdict::Unknown(reason) => format!("**UNDECIDED (fails the run)**: {reason}"),
        };
        let _ = writeln!(out, "| {} | {} |", check.name, verdict.replace('|', "\\|"));
    }
}

/// The faults as injected and healed, in seconds from the start.
pub fn timeline_table(out: &mut String, timeline: &[FaultEvent]) {
    let _ = writeln!(out, "\n## Fault timeline\n\n| at s | healed s | fault | detail |\n|---:|---:|---|---|");
    for event in timeline {
        let healed = event.healed.map_or("-".into(), seconds);
        let _ = writeln!(out, "| {} | {} | {} | {} |", seconds(event.at), healed, event.fault, event.detail);
    }
}
