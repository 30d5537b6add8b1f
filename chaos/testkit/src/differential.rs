//! Differential runs: the same script against a real etcd and against Cairn.

use crate::binaries::{etcd36_bin_dir, require};
use crate::cluster::{Cluster, Flavor, Options};

/// Runs `script` against a fresh single-member etcd 3.5.1 and a fresh cairn
/// started with the same `flags`, and asserts that every line is the same.
/// Returns cairn's lines for further checks.
pub async fn assert_same_as_etcd<F, Fut>(flags: &[&str], script: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    assert_same_as(Options::new(Flavor::Etcd, 1), flags, script).await
}

/// [`assert_same_as_etcd`] against the newer etcd (3.6).
pub async fn assert_same_as_etcd36<F, Fut>(flags: &[&str], script: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let mut etcd36 = Options::new(Flavor::Etcd, 1);
    etcd36.binary = Some(require(etcd36_bin_dir().join("etcd")).expect("`.ci/etcd-3.6.sh` builds etcd 3.6"));
    assert_same_as(etcd36, flags, script).await
}

async fn assert_same_as<F, Fut>(etcd: Options, flags: &[&str], script: F) -> Vec<String>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let etcd = etcd.args(flags).start().await.expect("etcd starts");
    let cairn = Cluster::start_with(Flavor::Cairn, 1, flags).await.expect("cairn starts");
    let expected = script(etcd.members[0].endpoint().to_string()).await;
    let actual = script(cairn.members[0].endpoint().to_string()).await;
    let diffs: Vec<String> = expected
        .iter()
        .zip(&actual)
        .enumerate()
        .filter(|(_, (expected, actual))| expected != actual)
        .map(|(i, (expected, actual))| format!("#{i}\netcd : {expected}\ncairn: {actual}"))
        .collect();
    assert_eq!(expected.len(), actual.len(), "etcd: {expected:#?}\ncairn: {actual:#?}");
    assert!(diffs.is_empty(), "{} differences:\n{}", diffs.len(), diffs.join("\n"));
    actual
}

/// An error as the comparisons print it: the gRPC code and etcd's message.
pub fn err_of(err: etcd_client::Error) -> String {
    match err {
        etcd_client::Error::GRpcStatus(status) => format!("ERR {:?} {}", status.code(), status.message()),
        other => format!("ERR {other}"),
    }
}
