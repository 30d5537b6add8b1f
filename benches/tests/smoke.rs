//! A smoke of every cairn-bench workload against one real cairn member: a few
//! hundred requests, and assertions on the shape of the output only (never on time).

use std::path::PathBuf;
use std::process::Command;

use cairn_testkit::{Cluster, Flavor};

fn bench_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn-bench"))
}

fn run_bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bench_binary()).args(args).args(["-w", "json"]).output().expect("cairn-bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[tokio::test]
async fn every_workload_reports_the_expected_shape() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("cairn starts");
    let client = cluster.endpoints()[0].clone();
    let endpoints = ["--endpoints", &client];
    for (workload, extra) in [
        ("put", vec!["--clients", "8", "--conns", "2", "--key-space-size", "100"]),
        ("range", vec!["--clients", "4", "--serializable"]),
        ("range", vec!["--clients", "2", "--whole-range"]),
        ("txn-put", vec!["--clients", "4"]),
        ("mixed", vec!["--clients", "4"]),
        ("lease-keepalive", vec!["--clients", "4"]),
        ("watch-latency", vec![]),
    ] {
        let mut args = vec![workload];
        args.extend(endpoints);
        args.extend(["--total", "300"]);
        args.extend(extra);
        let summary = run_bench(&args);
        assert_eq!(summary["total"], 300, "{workload}: {summary}");
        assert_eq!(summary["errors"], 0, "{workload}: {summary}");
        assert_eq!(summary["percentiles_ms"].as_array().map(Vec::len), Some(8), "{workload}");
        assert_eq!(summary["histogram"].as_array().map(Vec::len), Some(10), "{workload}");
        for field in ["slowest_ms", "fastest_ms", "average_ms", "stddev_ms", "requests_per_second"] {
            assert!(summary[field].as_f64().is_some_and(|value| value >= 0.0), "{workload}: {field}");
        }
        assert!(summary["fastest_ms"].as_f64() <= summary["slowest_ms"].as_f64());
    }
}
