//! The whole-cluster chaos smoke CI runs: the HA cluster of real processes
//! under a store leader kill, an API server kill, a paused controller-manager
//! leader and a hollow node cut off, checked by every checker. The checkers'
//! failures on bad histories are unit tests in `cairn_chaos::kube::check`.

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

#[test]
fn the_whole_cluster_survives_its_faults_and_every_checker_passes() {
    for binary in [cairn_testkit::binaries::cairn(), cairn_testkit::binaries::workspace_tool("cairn-kube")] {
        if let Err(missing) = cairn_testkit::binaries::require(binary) {
            panic!("{missing}");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("kube");
    let status = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_cairn-chaos")))
        .args(["kube", "--duration", "100s", "--seed", "7", "--out", &out.to_string_lossy()])
        .args(["--faults", "store-kill-leader,apiserver-kill,cm-pause-leader,node-cut"])
        .status()
        .expect("cairn-chaos runs");
    let text = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
    assert!(status.success(), "the whole-cluster smoke run failed:\n{text}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("report.json")).expect("report.json")).expect("JSON");
    assert_eq!(report["passed"], true);
    assert!(report["faults"].as_u64().unwrap_or(0) >= 3, "too few faults injected:\n{text}");
    for check in report["checks"].as_array().expect("checks") {
        assert_eq!(check["verdict"], "Pass", "{}:\n{text}", check["name"]);
    }
    // The run did what it says: objects were created, a node died and came back.
    assert!(report["creates"]["configmaps"][0].as_u64().unwrap_or(0) > 50, "{text}");
    let timelines = report["node_timelines"].as_array().expect("node_timelines");
    assert!(
        !timelines.is_empty() && timelines[0]["evicted_after_ms"].as_array().is_some_and(|e| !e.is_empty()),
        "{text}"
    );
}
