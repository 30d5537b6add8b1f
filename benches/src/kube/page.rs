//! The density run's results page: results.md with the SLO table, results.json,
//! and SVG charts.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;

use super::measure::{Distribution, Startup};
use super::Results;
use crate::svg::line_chart;

const MIB: f64 = 1024.0 * 1024.0;

fn startup_rows(out: &mut String, name: &str, startup: &Startup) {
    let rows: [(&str, &Distribution); 4] = [
        ("creation → running (ClusterLoader2)", &startup.create_to_running),
        ("first watched → running", &startup.watched_to_running),
        ("creation → bound", &startup.create_to_scheduled),
        ("bound → running", &startup.scheduled_to_running),
    ];
    for (what, d) in rows {
        let _ = writeln!(
            out,
            "| {name} | {what} | {} | {:.3} | {:.3} | {:.3} | {:.3} |",
            d.count, d.p50, d.p90, d.p99, d.max
        );
    }
}

pub fn markdown(results: &Results) -> String {
    let o = &results.options;
    let mut out = String::new();
    let _ = writeln!(out, "# Density: {} hollow nodes, {} pods\n", o.nodes, results.saturation_pods);
    let _ = writeln!(
        out,
        "Reproduce with `cargo run --release -p cairn-bench -- kube --nodes {} --nodes-per-kubelet {} --pods-per-node {} \
         --deployment-replicas {} --pods-per-second {} --latency-pods {} --watchers {} --store-members {}`, \
         on one machine with every process of the cluster. Pod startup is measured as ClusterLoader2 does: from the \
         pod's `creationTimestamp` (whole seconds, so up to 1 s early) until the bench's watch sees it Running and \
         Ready. API latencies come from the API server's `apiserver_request_duration_seconds` histograms (p99 \
         interpolated within kube-apiserver's buckets), over every client of the run, and from the bench's own calls.\n",
        o.nodes,
        o.nodes_per_kubelet,
        o.pods_per_node,
        o.deployment_replicas,
        o.pods_per_second,
        o.latency_pods,
        o.watchers,
        o.store_members
    );
    out.push_str("## SLOs\n\n| what | target | measured | |\n|---|---|---|---|\n");
    for row in &results.slos {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            row.name,
            row.target,
            row.measured,
            if row.pass { "pass" } else { "**fail**" }
        );
    }
    out.push_str("\n## Pod startup (seconds)\n\n| pods | interval | count | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|---|\n");
    startup_rows(&mut out, "saturation", &results.saturation_startup);
    startup_rows(&mut out, "latency", &results.latency_startup);
    let _ = writeln!(
        out,
        "\n![pods over time](pods.svg)\n\n![pod startup](startup.svg)\n\n## Run\n\n\
         - nodes Ready: {} in {:.1} s\n- saturation: {} of {} pods running, {:.1} s after the first Deployment\n\
         - scheduler throughput: {:.1} pods/s on average from the first binding to the last; per second p50 {:.0}, p90 {:.0}, max {:.0}\n\
         - store: {:.1} MiB database, {} keys",
        results.nodes_ready,
        results.node_registration_seconds,
        results.saturation_running,
        results.saturation_pods,
        results.saturation_seconds,
        results.scheduling.average,
        results.scheduling.p50,
        results.scheduling.p90,
        results.scheduling.max,
        results.store_db_bytes as f64 / MIB,
        results.store_keys
    );
    if let Some(w) = &results.watchers {
        let _ = writeln!(
            out,
            "- watchers: {} of {} pod watchers got every one of the {} events the store's watch delivered ({} broken \
             streams), all within {:.2} s of the last write; API server RSS {:.0} MiB before them, {:.0} MiB with them",
            w.complete,
            w.watchers,
            w.expected_events,
            w.broken,
            w.drain_seconds,
            w.apiserver_rss_before as f64 / MIB,
            w.apiserver_rss_with_watchers as f64 / MIB
        );
    }
    out.push_str(
        "\n## Processes\n\n| component | processes | max RSS (MiB) | average CPU (cores) |\n|---|---|---|---|\n",
    );
    for (name, usage) in &results.usage {
        let _ = writeln!(
            out,
            "| {name} | {} | {:.0} | {:.2} |",
            usage.processes,
            usage.max_rss_bytes as f64 / MIB,
            usage.average_cores
        );
    }
    out.push_str("\n![memory](rss.svg)\n\n## API calls from the bench (seconds)\n\n| call | count | p50 | p90 | p99 | max |\n|---|---|---|---|---|---|\n");
    for (name, d) in &results.client_calls {
        let _ = writeln!(out, "| {name} | {} | {:.3} | {:.3} | {:.3} | {:.3} |", d.count, d.p50, d.p90, d.p99, d.max);
    }
    out.push_str("\n## API calls at the server (p99, seconds)\n\n| verb | resource | scope | count | p99 |\n|---|---|---|---|---|\n");
    let mut series: Vec<_> =
        results.server_latencies.iter().filter(|s| !s.resource.is_empty() && s.count > 0).collect();
    series.sort_by_key(|s| std::cmp::Reverse(s.count));
    for s in series {
        let resource =
            if s.subresource.is_empty() { s.resource.clone() } else { format!("{}/{}", s.resource, s.subresource) };
        let _ = writeln!(out, "| {} | {resource} | {} | {} | {:.3} |", s.verb, s.scope, s.count, s.p99);
    }
    out
}

pub fn write(dir: &Path, results: &Results) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join("results.md"), markdown(results))?;
    std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(results)?)?;
    let progress = |pick: fn(&(f64, usize, usize, usize)) -> usize| -> Vec<(f64, f64)> {
        results.progress.iter().map(|p| (p.0, pick(p) as f64)).collect()
    };
    let pods = line_chart(
        "Saturation: pods over time",
        "seconds since the first Deployment",
        "pods",
        &[
            ("created".into(), progress(|p| p.1)),
            ("bound".into(), progress(|p| p.2)),
            ("running".into(), progress(|p| p.3)),
        ],
    );
    std::fs::write(dir.join("pods.svg"), pods)?;
    let curve = |d: &Distribution| vec![(50.0, d.p50), (90.0, d.p90), (99.0, d.p99), (100.0, d.max)];
    let startup = line_chart(
        "Pod startup latency",
        "percentile",
        "seconds",
        &[
            ("saturation, creation → running".into(), curve(&results.saturation_startup.create_to_running)),
            ("latency, creation → running".into(), curve(&results.latency_startup.create_to_running)),
            ("latency, watched → running".into(), curve(&results.latency_startup.watched_to_running)),
        ],
    );
    std::fs::write(dir.join("startup.svg"), startup)?;
    let memory: Vec<(String, Vec<(f64, f64)>)> = results
        .usage
        .iter()
        .map(|(name, usage)| (name.clone(), usage.rss_series.iter().map(|(t, rss)| (*t, *rss as f64 / MIB)).collect()))
        .collect();
    std::fs::write(dir.join("rss.svg"), line_chart("Resident memory", "seconds", "MiB", &memory))?;
    Ok(())
}
