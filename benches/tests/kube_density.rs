//! The density run's CI smoke: 20 hollow nodes and 200 pods through the whole
//! cluster of real processes, with its results page checked for shape and
//! completeness (never for time: speed is what the documented run reports).

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn a_small_density_run_writes_its_results_page() {
    let out = tempfile::tempdir().expect("temp dir");
    let run = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_cairn-bench")))
        .args(["kube", "--nodes", "20", "--nodes-per-kubelet", "10", "--pods-per-node", "10"])
        .args(["--deployment-replicas", "50", "--pods-per-second", "50", "--latency-pods", "10"])
        .args(["--latency-pods-per-second", "5", "--watchers", "50", "--watched-pods", "20"])
        .args(["--store-members", "1", "--gets", "20", "--lists", "2", "--out"])
        .arg(out.path())
        .output()
        .expect("cairn-bench runs");
    let progress = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{progress}");
    assert!(progress.contains("nodes Ready"), "progress is shown: {progress}");

    let text = std::fs::read_to_string(out.path().join("results.json")).expect("results.json");
    let results: Value = serde_json::from_str(&text).expect("results are JSON");
    assert_eq!(results["nodes_ready"], 20);
    assert_eq!(results["saturation_running"], 200, "every saturation pod ran");
    assert_eq!(results["latency_startup"]["create_to_running"]["count"], 10);
    let startup = &results["saturation_startup"]["watched_to_running"];
    assert!(startup["p50"].as_f64() <= startup["p99"].as_f64(), "{startup}");
    assert!(results["scheduling"]["average"].as_f64().is_some_and(|rate| rate > 0.0));
    assert!(results["store_db_bytes"].as_i64().is_some_and(|bytes| bytes > 0));

    let watchers = &results["watchers"];
    assert_eq!(watchers["complete"], 50, "each watcher got every event: {watchers}");
    assert!(watchers["expected_events"].as_u64().is_some_and(|events| events >= 40), "{watchers}");

    // The API server's own histograms cover the writes every component made.
    let series = results["server_latencies"].as_array().expect("server latencies");
    for (verb, resource) in [("POST", "pods"), ("POST", "events"), ("PATCH", "leases")] {
        assert!(
            series.iter().any(|s| s["verb"] == verb && s["resource"] == resource && s["count"].as_u64() > Some(0)),
            "{verb} {resource} measured at the server"
        );
    }
    for component in ["apiserver", "controller-manager", "scheduler", "kubelets", "store-0"] {
        let rss = results["usage"][component]["max_rss_bytes"].as_u64();
        assert!(rss.is_some_and(|bytes| bytes > 1 << 20), "{component} RSS measured: {rss:?}");
    }
    let rows = results["slos"].as_array().expect("SLO rows");
    assert!(rows.iter().any(|r| r["name"].as_str().is_some_and(|n| n.starts_with("pod startup p99, latency pods"))));

    let page = std::fs::read_to_string(out.path().join("results.md")).expect("results.md");
    assert!(page.contains("| what | target | measured |"), "the SLO table");
    for chart in ["pods.svg", "startup.svg", "rss.svg"] {
        let svg = std::fs::read_to_string(out.path().join(chart)).expect("chart written");
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{chart} has lines");
        assert!(page.contains(chart), "results.md shows {chart}");
    }
}
