//! The chaos smoke CI runs: real cairn members, a leader kill and partitions,
//! the real checkers. Then the same harness against a deliberately broken
//! cairn, which must fail, and the saved history checked again offline.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn chaos_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_cairn-chaos"))
}

fn run(out: &Path, extra: &[&str]) -> (bool, Value) {
    if let Err(missing) = cairn_testkit::binaries::require(cairn_testkit::binaries::cairn()) {
        panic!("{missing}");
    }
    let status = Command::new(chaos_binary())
        .arg("run")
        .args(["--out", &out.to_string_lossy()])
        .args(extra)
        .status()
        .expect("cairn-chaos runs");
    let report = std::fs::read_to_string(out.join("report.json")).expect("a run writes report.json");
    (status.success(), serde_json::from_str(&report).expect("report.json is JSON"))
}

fn verdict<'a>(report: &'a Value, name: &str) -> &'a Value {
    let checks = report["checks"].as_array().expect("checks");
    &checks.iter().find(|check| check["name"] == name).unwrap_or_else(|| panic!("no checker {name}"))["verdict"]
}

#[test]
fn leader_kills_and_partitions_pass_then_a_broken_member_fails() {
    let dir = tempfile::tempdir().expect("temp dir");

    // A correct cluster under a leader kill and partitions: every checker passes.
    let good = dir.path().join("good");
    let (passed, report) = run(
        &good,
        // Correctness, and recovery at all; how fast recovery is belongs to the
        // documented 30-minute runs, not to CI on a shared machine.
        &[
            "--duration",
            "60s",
            "--seed",
            "11",
            "--faults",
            "kill-leader,partition-leader,partition-majority",
            "--recovery-limit",
            "10s",
        ],
    );
    let text = std::fs::read_to_string(good.join("report.md")).unwrap_or_default();
    assert!(passed, "the smoke run failed:\n{text}");
    assert_eq!(report["passed"], true);
    assert!(report["faults"].as_u64().unwrap_or(0) >= 3, "too few faults injected:\n{text}");
    assert!(!report["recovery_ms"].as_array().expect("recovery_ms").is_empty(), "no leader kill:\n{text}");
    for name in ["linearizability per key", "watch guarantees", "HashKV equal on all members"] {
        assert_eq!(verdict(&report, name), "Pass", "{name}");
    }
    assert!(!good.join("history.json").exists(), "a passing run saves no history unless asked");

    // A member that serves linearizable reads locally, without ReadIndex: caught
    // by a stale read, of a register, of a lease's key, or of a header
    // revision behind one the client saw, whichever the timing exposes first.
    // Whether a client reads from the cut-off leader in time is up to the
    // scheduler of a loaded machine: up to three seeds, and one must catch it.
    let caught = ["12", "13", "14"].into_iter().find_map(|seed| {
        let broken = dir.path().join(format!("broken-{seed}"));
        let args = ["--duration", "30s", "--seed", seed, "--faults", "partition-leader,partition-majority"];
        let (passed, report) = run(&broken, &[&args[..], &["--broken", "unsafe-local-reads"]].concat());
        (!passed).then_some((broken, report))
    });
    let (broken, report) = caught.expect("the broken member was not caught with any of three seeds");
    let stale_read = ["linearizability per key", "leases", "revisions unique and monotonic"]
        .into_iter()
        .find_map(|name| verdict(&report, name)["Fail"].as_str())
        .unwrap_or_else(|| panic!("no stale read was found: {report:#}"));
    // A cut-off leader that has not seen a lease's key put elsewhere reads it
    // as gone while the lease is alive: a stale read too.
    let symptoms =
        ["not linearizable", "read after the revoke", "before the lease could expire", "the revision went backwards"];
    assert!(symptoms.iter().any(|symptom| stale_read.contains(symptom)), "{stale_read}");

    // The saved history fails again offline, for the same reason.
    let history = broken.join("history.json");
    let status = Command::new(chaos_binary()).arg("check").arg(&history).output().expect("check runs");
    assert!(!status.status.success());
    let expected = format!("**FAIL**: {}", stale_read.replace('|', "\\|"));
    assert!(String::from_utf8_lossy(&status.stdout).contains(&expected), "{expected}");
}
