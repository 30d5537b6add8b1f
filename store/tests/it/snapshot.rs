//! Snapshots: backup and restore with etcdctl 3.4 and 3.5, bad input, and
//! Raft snapshots for followers that fell behind, crash included.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, Txn, TxnOp};

use cairn_testkit::{cairn_binary, client, etcd_tool, plan, Cluster, Flavor};

/// Writes `keys` keys with txns of 100 puts, overwrites a third, deletes a
/// tenth, and compacts half way.
async fn populate(endpoint: &str, keys: usize) {
    let mut c = client(endpoint).await;
    for chunk in (0..keys).collect::<Vec<_>>().chunks(100) {
        let puts: Vec<TxnOp> = chunk.iter().map(|i| TxnOp::put(format!("key/{i:06}"), format!("v{i}"), None)).collect();
        c.txn(Txn::new().and_then(puts)).await.expect("txn");
    }
    let middle = c.get("key/", Some(GetOptions::new().with_count_only().with_prefix())).await.expect("get");
    for chunk in (0..keys).step_by(3).collect::<Vec<_>>().chunks(100) {
        let puts: Vec<TxnOp> =
            chunk.iter().map(|i| TxnOp::put(format!("key/{i:06}"), format!("overwritten{i}"), None)).collect();
        c.txn(Txn::new().and_then(puts)).await.expect("txn");
    }
    c.compact(middle.header().expect("h").revision(), None).await.expect("compact");
    for chunk in (0..keys).step_by(10).collect::<Vec<_>>().chunks(100) {
        let deletes: Vec<TxnOp> = chunk.iter().map(|i| TxnOp::delete(format!("key/{i:06}"), None)).collect();
        c.txn(Txn::new().and_then(deletes)).await.expect("txn");
    }
}

/// Every key with its value and revisions, and the store revision (a
/// linearizable read: it sees every write acknowledged before it).
async fn dump(endpoint: &str) -> (i64, Vec<(Vec<u8>, Vec<u8>, i64, i64, i64)>) {
    let mut c = client(endpoint).await;
    let resp = c.get("key/", Some(GetOptions::new().with_prefix())).await.expect("get");
    let kvs = resp
        .kvs()
        .iter()
        .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.create_revision(), kv.mod_revision(), kv.version()))
        .collect();
    (resp.header().expect("h").revision(), kvs)
}

async fn hash_kv(endpoint: &str, revision: i64) -> u32 {
    client(endpoint).await.hash_kv(revision).await.expect("hashkv").hash()
}

/// Extracts a shell procedure from docs/operations.md.
fn documented_procedure(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/operations.md")).expect("doc");
    let start = doc.find(&format!("<!-- procedure:{name} -->")).expect("marker");
    let block = &doc[start..];
    let begin = block.find("```sh\n").expect("fence") + 6;
    let end = block[begin..].find("```").expect("closing fence");
    block[begin..begin + end].to_string()
}

#[tokio::test]
async fn t140_backup_and_restore_procedure_on_three_members() {
    let mut old = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = old.endpoints();
    populate(&endpoints[0], 50_000).await;
    let before = dump(&endpoints[1]).await;
    assert!(before.1.len() == 45_000, "{} keys", before.1.len());

    let (dir, specs) = plan(3).expect("plan");
    let backup = dir.path().join("backup.db");
    let bin_dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(cairn_binary(), bin_dir.path().join("cairn")).expect("link");
    std::os::unix::fs::symlink(etcd_tool("etcdctl"), bin_dir.path().join("etcdctl")).expect("link");
    let run = |procedure: &str| {
        let mut script = Command::new("bash");
        script
            .args(["-euo", "pipefail", "-c", &documented_procedure(procedure)])
            .env("PATH", format!("{}:{}", bin_dir.path().display(), std::env::var("PATH").unwrap_or_default()))
            .env("ENDPOINT", &endpoints[1])
            .env("BACKUP", &backup)
            .env("NEW_TOKEN", "restored-cluster")
            .env("INITIAL_CLUSTER", &specs[0].initial_cluster);
        for (i, spec) in specs.iter().enumerate() {
            script.env(format!("NAME_{}", i + 1), &spec.name);
            script.env(format!("DATA_DIR_{}", i + 1), &spec.data_dir);
            script.env(format!("PEER_URL_{}", i + 1), &spec.peer_url);
        }
        let out = script.output().expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
        stdout
    };
    let status = run("backup");
    assert!(status.contains("| REVISION |"), "{status}");
    for member in &mut old.members {
        let clean = member.terminate();
        assert!(clean, "{}", member.log_text());
    }
    drop(old);
    run("restore");

    let restored = Cluster::launch(Flavor::Cairn, dir, specs, &["--initial-cluster-token", "restored-cluster"])
        .await
        .expect("the restored cluster starts");
    let restored_endpoints = restored.endpoints();
    let after = dump(&restored_endpoints[0]).await;
    assert_eq!(after, before, "every key, value and revision is as before");
    let hashes = [
        hash_kv(&restored_endpoints[0], before.0).await,
        hash_kv(&restored_endpoints[1], before.0).await,
        hash_kv(&restored_endpoints[2], before.0).await,
    ];
    assert!(hashes[0] == hashes[1] && hashes[1] == hashes[2], "{hashes:?}");
    client(&restored_endpoints[2]).await.put("key/new", "v", None).await.expect("the restored cluster takes writes");
}

fn restore(file: &Path, data_dir: &Path, extra: &[&str]) -> (bool, String) {
    let out = Command::new(cairn_binary())
        .args(["snapshot", "restore"])
        .arg(file)
        .arg("--data-dir")
        .arg(data_dir)
        .args(extra)
        .output()
        .expect("cairn runs");
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test]
async fn t141_etcdctl_3_4_snapshots_restore_too() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    populate(&endpoint, 1000).await;
    let lease = client(&endpoint).await.lease_grant(3600, None).await.expect("lease");
    let mut c = client(&endpoint).await;
    c.put("key/leased", "v", Some(etcd_client::PutOptions::new().with_lease(lease.id()))).await.expect("put");
    let before = dump(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("from-3.4.db");
    let out = Command::new("/usr/bin/etcdctl")
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["snapshot", "save"])
        .arg(&file)
        .output()
        .expect("etcdctl 3.4 (Debian's etcd-client) runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(cluster);
    let (dir2, specs) = plan(1).expect("plan");
    let (ok, err) = restore(
        &file,
        &specs[0].data_dir,
        &[
            "--name",
            "m0",
            "--initial-cluster",
            &specs[0].initial_cluster,
            "--initial-advertise-peer-urls",
            &specs[0].peer_url,
        ],
    );
    assert!(ok, "{err}");
    let restored = Cluster::launch(Flavor::Cairn, dir2, specs, &[]).await.expect("starts");
    let restored_endpoint = restored.members[0].endpoint();
    assert_eq!(dump(restored_endpoint).await, before);
    let ttl = client(restored_endpoint).await.lease_time_to_live(lease.id(), None).await.expect("ttl");
    assert!(ttl.ttl() > 3500, "the lease has its full TTL again: {}", ttl.ttl());
}

#[tokio::test]
async fn t142_bad_snapshots_are_refused_and_leave_nothing_behind() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    populate(&endpoint, 300).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let good = dir.path().join("good.db");
    let out = Command::new(etcd_tool("etcdctl"))
        .arg(format!("--endpoints={endpoint}"))
        .args(["snapshot", "save"])
        .arg(&good)
        .output()
        .expect("etcdctl");
    assert!(out.status.success());
    let bytes = std::fs::read(&good).expect("read");

    let truncated = dir.path().join("truncated.db");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).expect("write");
    let corrupted = dir.path().join("corrupted.db");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0xff;
    std::fs::write(&corrupted, &flipped).expect("write");
    // Garbage where the records start: caught by the structure checks even without the checksum.
    let mangled = dir.path().join("mangled.db");
    let mut garbage = bytes.clone();
    garbage[8..40].fill(0xff);
    std::fs::write(&mangled, &garbage).expect("write");
    // A real etcd's snapshot is a bbolt file: foreign to cairn.
    let etcd = Cluster::start(Flavor::Etcd, 1).await.expect("etcd starts");
    let foreign = dir.path().join("etcd.db");
    let out = Command::new(etcd_tool("etcdctl"))
        .arg(format!("--endpoints={}", etcd.members[0].endpoint()))
        .args(["snapshot", "save"])
        .arg(&foreign)
        .output()
        .expect("etcdctl");
    assert!(out.status.success());

    let target = dir.path().join("target.etcd");
    let cases = [
        (&truncated, vec![], "checksum mismatch"),
        (&corrupted, vec![], "checksum mismatch"),
        (&mangled, vec!["--skip-hash-check"], "snapshot is corrupted"),
        (&foreign, vec![], "not a cairn snapshot"),
        (&good, vec!["--bump-revision", "5"], "--mark-compacted required"),
    ];
    for (file, extra, expected) in cases {
        let (ok, err) = restore(file, &target, &extra);
        assert!(!ok, "{} should be refused", file.display());
        assert!(err.contains(expected), "{}: {err}", file.display());
        assert_eq!(err.trim().lines().count(), 1, "one clear line: {err}");
        assert!(!target.exists(), "nothing left behind after {}", file.display());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .filter(|entry| entry.file_name().to_string_lossy().contains("restoring"))
            .collect();
        assert!(leftovers.is_empty(), "no temporary folder left");
    }
    std::fs::create_dir_all(target.join("member")).expect("mkdir");
    let (ok, err) = restore(&good, &target, &[]);
    assert!(!ok && err.contains("not empty"), "{err}");
    assert_eq!(std::fs::read_dir(&target).expect("list").count(), 1, "the existing data dir is untouched");
}

/// Writes `txns` transactions of 50 puts: one log entry each.
async fn write_entries(endpoint: &str, txns: usize, prefix: &str) {
    let mut c = client(endpoint).await;
    for t in 0..txns {
        let puts: Vec<TxnOp> =
            (0..50).map(|i| TxnOp::put(format!("{prefix}/{t:04}/{i:02}"), "x".repeat(64), None)).collect();
        c.txn(Txn::new().and_then(puts)).await.expect("txn");
    }
}

fn purged_index(member: &cairn_testkit::Member) -> u64 {
    member
        .metrics()
        .lines()
        .find_map(|line| line.strip_prefix("cairn_raft_log_purged_index ").and_then(|value| value.parse().ok()))
        .unwrap_or(0)
}

async fn wait_for_count(endpoint: &str, prefix: &str, expected: i64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(40);
    let mut count = 0;
    while Instant::now() < deadline {
        if let Ok(mut c) = etcd_client::Client::connect([endpoint], None).await {
            if let Ok(resp) =
                c.get(prefix, Some(GetOptions::new().with_prefix().with_count_only().with_serializable())).await
            {
                count = resp.count();
                if count >= expected {
                    return count;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    count
}

/// A cluster whose leader has purged its log well past the start, and a new
/// member added with `member add` that can only catch up by snapshot.
async fn cluster_with_purged_log(prefix: &str, env: Vec<(String, String)>) -> (Cluster, usize, usize) {
    let mut cluster = Cluster::start_with(Flavor::Cairn, 3, &["--snapshot-count", "100"]).await.expect("starts");
    let leader = cluster.leader_index().await.expect("leader");
    let endpoints = cluster.endpoints();
    write_entries(&endpoints[leader], 400, prefix).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while purged_index(&cluster.members[leader]) <= 100 {
        assert!(Instant::now() < deadline, "the leader purged its log");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let (client_url, peer_url) = cluster.new_member_urls();
    let added = cairn_testkit::etcdctl_ok(&all, &["member", "add", "late", &format!("--peer-urls={peer_url}")]);
    let initial = added
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER=\"").and_then(|rest| rest.strip_suffix('"')))
        .expect("ETCD_INITIAL_CLUSTER")
        .to_string();
    let index = cluster.start_added_with_env("late", (client_url, peer_url), &initial, env).expect("start");
    (cluster, leader, index)
}

#[tokio::test]
async fn t143_a_member_behind_the_purged_log_catches_up_by_snapshot() {
    let (cluster, leader, late) = cluster_with_purged_log("snap", Vec::new()).await;
    let endpoint = cluster.members[late].endpoint().to_string();
    assert_eq!(wait_for_count(&endpoint, "snap/", 20_000).await, 20_000, "{}", cluster.members[late].log_text());
    let metrics = cluster.members[late].metrics();
    assert!(
        metrics.lines().any(|line| line.starts_with("cairn_snapshots_installed_total ") && !line.ends_with(" 0")),
        "the new member installed a snapshot"
    );
    assert!(cluster.members[late].log_text().contains("installed a raft snapshot"));
    let leader_endpoint = cluster.members[leader].endpoint().to_string();
    let revision =
        client(&leader_endpoint).await.get("snap/", None).await.expect("get").header().expect("h").revision();
    assert_eq!(hash_kv(&endpoint, revision).await, hash_kv(&leader_endpoint, revision).await);
}

#[tokio::test]
async fn t144_a_crash_during_snapshot_install_recovers() {
    let failpoint = vec![("CAIRN_FAILPOINT".to_string(), "snapshot-load-midway".to_string())];
    let (mut cluster, leader, late) = cluster_with_purged_log("crash", failpoint).await;
    // The new member aborts half way through loading the snapshot, as a kill -9 would.
    let deadline = Instant::now() + Duration::from_secs(30);
    while cluster.members[late].is_running() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!cluster.members[late].is_running(), "the failpoint fired");
    assert!(cluster.members[late].log_text().contains("failpoint snapshot-load-midway hit"));
    cluster.members[late].kill();
    cluster.members[late].spec.env.clear();
    cluster.restart(late).expect("restart");
    let endpoint = cluster.members[late].endpoint().to_string();
    assert_eq!(wait_for_count(&endpoint, "crash/", 20_000).await, 20_000, "{}", cluster.members[late].log_text());
    let leader_endpoint = cluster.members[leader].endpoint().to_string();
    let revision =
        client(&leader_endpoint).await.get("crash/", None).await.expect("get").header().expect("h").revision();
    assert_eq!(hash_kv(&endpoint, revision).await, hash_kv(&leader_endpoint, revision).await);
}

#[tokio::test]
async fn t145_an_isolated_follower_past_the_snapshot_count_catches_up_by_snapshot() {
    let mut cluster = Cluster::start_with(Flavor::Cairn, 3, &["--snapshot-count", "100"]).await.expect("starts");
    let leader = cluster.leader_index().await.expect("leader");
    let follower = (leader + 1) % 3;
    let endpoints = cluster.endpoints();
    assert!(cluster.members[follower].terminate());
    write_entries(&endpoints[leader], 400, "iso").await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while purged_index(&cluster.members[leader]) <= 100 {
        assert!(Instant::now() < deadline, "the leader purged its log with a follower down");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    cluster.restart(follower).expect("restart");
    assert_eq!(wait_for_count(&endpoints[follower], "iso/", 20_000).await, 20_000);
    assert!(cluster.members[follower].log_text().contains("installed a raft snapshot"));
    let revision =
        client(&endpoints[leader]).await.get("iso/", None).await.expect("get").header().expect("h").revision();
    assert_eq!(hash_kv(&endpoints[follower], revision).await, hash_kv(&endpoints[leader], revision).await);
}
