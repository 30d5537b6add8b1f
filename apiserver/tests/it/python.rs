//! The Python `kubernetes` client (PyPI, installed by `.ci/setup.sh --with-etcd`).

use std::process::Command;

use cairn_testkit::Flavor;

use crate::cluster_and_apiserver;

fn python_path() -> String {
    std::env::var("CAIRN_PYTHON_KUBE_PATH").unwrap_or_else(|_| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        format!("{home}/.cache/cairn/python-kube")
    })
}

#[tokio::test]
async fn t35_python_kubernetes_client() {
    let (_cluster, api) = cluster_and_apiserver(Flavor::Cairn, 3, &[]).await.expect("start");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/python/kube_client_check.py");
    let out = Command::new("timeout")
        .args(["120", "python3", script])
        .arg(&api.kubeconfig)
        .env("PYTHONPATH", python_path())
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("all checks passed"), "{stdout}");
}
