//! The real-Kubernetes smoke CI runs: the upstream kube-apiserver,
//! controller-manager and scheduler (v1.33.7) with hollow nodes on a 3-member
//! Cairn, on etcd 3.5.1 and on etcd 3.6.16; the kubectl smoke and the upstream
//! `[sig-api-machinery] Watchers` e2e tests on each. The full selection is the
//! documented run in docs/kubernetes.md.

use std::path::PathBuf;
use std::process::Command;

use cairn_chaos::upstream::{Outcome, StoreRun};

#[test]
fn upstream_kubernetes_runs_on_cairn_as_on_etcd() {
    for binary in [cairn_testkit::binaries::cairn(), cairn_testkit::binaries::workspace_tool("cairn-kube")] {
        if let Err(missing) = cairn_testkit::binaries::require(binary) {
            panic!("{missing}");
        }
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("upstream");
    let status = Command::new(PathBuf::from(env!("CARGO_BIN_EXE_cairn-upstream")))
        .args(["--focus", r"\[sig-api-machinery\] Watchers", "--procs", "3", "--out", &out.to_string_lossy()])
        .status()
        .expect("cairn-upstream runs");
    let page = std::fs::read_to_string(out.join("report.md")).unwrap_or_default();
    assert!(status.success(), "cairn-upstream failed:\n{page}");
    let runs: Vec<StoreRun> =
        serde_json::from_str(&std::fs::read_to_string(out.join("runs.json")).expect("runs.json")).expect("JSON");
    let stores: Vec<&str> = runs.iter().map(|run| run.store.as_str()).collect();
    assert_eq!(stores, ["cairn", "etcd-3.5.1", "etcd-3.6.16"]);
    for run in &runs {
        assert!(run.smoke_passed(), "{}:\n{page}", run.store);
        assert_eq!(run.count(Outcome::Passed), 5, "the five Watchers tests on {}:\n{page}", run.store);
        assert_eq!(run.count(Outcome::Failed), 0, "{}:\n{page}", run.store);
    }
}
