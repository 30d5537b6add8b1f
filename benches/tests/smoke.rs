//! A smoke of every cairn-bench workload against one real cairn member: a few
//! hundred requests, and assertions on the shape of the output only (never on time).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Member(Child);

impl Drop for Member {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn bench_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn-bench"))
}

/// `cairn` is built into the same folder as `cairn-bench` by the workspace build.
fn cairn_binary() -> PathBuf {
    bench_binary().with_file_name("cairn")
}

fn endpoint() -> String {
    let pid = std::process::id();
    format!("127.{}.{}.{}", 200 + (pid >> 16) % 50, (pid >> 8) & 0xff, (pid & 0xff).max(1))
}

fn run_bench(args: &[&str]) -> serde_json::Value {
    let out = Command::new(bench_binary()).args(args).args(["-w", "json"]).output().expect("cairn-bench runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json output")
}

#[test]
fn every_workload_reports_the_expected_shape() {
    let ip = endpoint();
    let client = format!("http://{ip}:2379");
    let peer = format!("http://{ip}:2380");
    let dir = tempfile::tempdir().expect("tempdir");
    assert!(cairn_binary().exists(), "build the workspace first: {}", cairn_binary().display());
    let _member = Member(
        Command::new(cairn_binary())
            .args(["--data-dir", &dir.path().join("d").to_string_lossy()])
            .args(["--listen-client-urls", &client, "--advertise-client-urls", &client])
            .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("cairn starts"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(format!("{ip}:2379")).is_err() {
        assert!(Instant::now() < deadline, "cairn listens");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    let endpoints = ["--endpoints", &client];
    for (workload, extra) in [
        ("put", vec!["--clients", "8", "--conns", "2", "--key-space-size", "100"]),
        ("range", vec!["--clients", "4", "--serializable"]),
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
