//! The Python etcd3 client works against cairn: KV, txn, watch, leases, locks.

use std::process::Command;

use cairn_testkit::{Cluster, Flavor};

fn python_path() -> String {
    std::env::var("CAIRN_PYTHON_PATH").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/cairn/python")
    })
}

#[tokio::test]
async fn t130_python_etcd3_client_through_a_follower() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let leader = cluster.leader_index().await.expect("leader");
    let follower = &cluster.members[(leader + 1) % 3];
    let url = follower.endpoint().trim_start_matches("http://").to_string();
    let (host, port) = url.rsplit_once(':').expect("host:port");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/client_check.py");
    let out = Command::new("timeout")
        .args(["120", "python3", script, host, port])
        .env("PYTHONPATH", python_path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
