//! Snapshots: backup and restore with etcdctl 3.4 and 3.5, migration from
//! etcd 3.4 and 3.5 and back to etcd, bad input, and
//! Raft snapshots for followers that fell behind, crash included.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::{GetOptions, Txn, TxnOp};

use cairn_testkit::binaries::{etcd34_bin_dir, require};
use cairn_testkit::{cairn_binary, client, etcd_tool, plan, Cluster, Flavor, Options};

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

/// The store revision, and every key with its value, create and mod revisions and version.
type Dump = (i64, Vec<(Vec<u8>, Vec<u8>, i64, i64, i64)>);

/// Every key with its value and revisions, and the store revision (a
/// linearizable read: it sees every write acknowledged before it).
async fn dump(endpoint: &str) -> Dump {
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

/// `NAME_i`, `DATA_DIR_i` and `PEER_URL_i` for each member, from 1.
fn member_variables(specs: &[cairn_testkit::MemberSpec]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        env.push((format!("NAME_{}", i + 1), spec.name.clone()));
        env.push((format!("DATA_DIR_{}", i + 1), spec.data_dir.display().to_string()));
        env.push((format!("PEER_URL_{}", i + 1), spec.peer_url.clone()));
    }
    env
}

/// Runs a procedure of docs/operations.md as written, with `cairn` and etcd
/// 3.5.1's `etcdctl` and `etcdutl` on the PATH; returns its standard output.
fn run_documented(procedure: &str, env: &[(String, String)]) -> String {
    let bin_dir = tempfile::tempdir().expect("tempdir");
    std::os::unix::fs::symlink(cairn_binary(), bin_dir.path().join("cairn")).expect("link");
    for tool in ["etcdctl", "etcdutl"] {
        std::os::unix::fs::symlink(etcd_tool(tool), bin_dir.path().join(tool)).expect("link");
    }
    let out = Command::new("bash")
        .args(["-euo", "pipefail", "-c", &documented_procedure(procedure)])
        .env("PATH", format!("{}:{}", bin_dir.path().display(), std::env::var("PATH").unwrap_or_default()))
        .envs(env.iter().map(|(key, value)| (key, value)))
        .output()
        .expect("bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{procedure}: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
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
    let run = |procedure: &str| {
        let mut env = vec![
            ("ENDPOINT".to_string(), endpoints[1].clone()),
            ("BACKUP".to_string(), backup.display().to_string()),
            ("NEW_TOKEN".to_string(), "restored-cluster".to_string()),
            ("INITIAL_CLUSTER".to_string(), specs[0].initial_cluster.clone()),
        ];
        env.extend(member_variables(&specs));
        run_documented(procedure, &env)
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

/// `etcdctl snapshot save` with Debian's etcdctl 3.4; returns where that etcdctl is.
fn etcdctl34_snapshot_save(endpoint: &str, file: &Path) -> std::path::PathBuf {
    let etcdctl34 = require("/usr/bin/etcdctl".into()).expect("etcdctl 3.4 (Debian's etcd-client)");
    let out = Command::new(&etcdctl34)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoint}"))
        .args(["snapshot", "save"])
        .arg(file)
        .output()
        .expect("etcdctl 3.4 runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    etcdctl34
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
    etcdctl34_snapshot_save(&endpoint, &file);
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
    // Whole pages off the end: what is left ends in 32 bytes that are not its checksum.
    std::fs::write(&truncated, &bytes[..bytes.len() - 8192]).expect("write");
    let corrupted = dir.path().join("corrupted.db");
    let mut flipped = bytes.clone();
    flipped[bytes.len() / 3] ^= 0xff;
    std::fs::write(&corrupted, &flipped).expect("write");
    // Garbage over both meta pages: no longer a snapshot of either format.
    let mangled = dir.path().join("mangled.db");
    let mut garbage = bytes.clone();
    garbage[16..80].fill(0xff);
    garbage[4096 + 16..4096 + 80].fill(0xff);
    std::fs::write(&mangled, &garbage).expect("write");
    // Garbage over a page of the key bucket: caught by the structure checks even without the checksum.
    let damaged = dir.path().join("damaged.db");
    let mut garbage = bytes.clone();
    garbage[3 * 4096..3 * 4096 + 64].fill(0xff);
    std::fs::write(&damaged, &garbage).expect("write");
    // A bbolt file without the checksum, as copied from a data dir.
    let unhashed = dir.path().join("unhashed.db");
    std::fs::write(&unhashed, &bytes[..bytes.len() - 32]).expect("write");

    let target = dir.path().join("target.etcd");
    let cases = [
        (&truncated, vec![], "checksum mismatch"),
        (&corrupted, vec![], "checksum mismatch"),
        (&mangled, vec!["--skip-hash-check"], "not a snapshot"),
        (&damaged, vec!["--skip-hash-check"], "snapshot is corrupted"),
        (&unhashed, vec![], "snapshot missing hash but --skip-hash-check=false"),
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
    member.metric("cairn_raft_log_purged_index").unwrap_or(0)
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
    assert!(cluster.members[late].wait_exit(Duration::from_secs(30)).is_some(), "the failpoint fired");
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

/// A user with a role that may read `key/`, through the Auth API (auth stays disabled).
async fn add_reader(endpoint: &str) {
    let mut c = client(endpoint).await;
    c.role_add("reader").await.expect("role add");
    let permission = etcd_client::Permission::read("key/").with_prefix();
    c.role_grant_permission("reader", permission).await.expect("grant");
    c.user_add("alice", "secret", None).await.expect("user add");
    c.user_grant_role("alice", "reader").await.expect("grant role");
}

async fn assert_reader(endpoint: &str) {
    let mut c = client(endpoint).await;
    let user = c.user_get("alice").await.expect("the user came along");
    assert_eq!(user.roles(), ["reader"]);
    let role = c.role_get("reader").await.expect("the role came along");
    let permission = &role.permissions()[0];
    assert_eq!((permission.key(), permission.range_end()), (&b"key/"[..], &b"key0"[..]));
    let token = c.auth_client().authenticate("alice".into(), "secret".into()).await;
    assert!(token.is_err(), "auth is still disabled: {token:?}");
}

/// A store to back up: many revisions, a compaction, a lease with a key, a user with a role.
struct Source {
    keys: Dump,
    hash: u32,
    lease: i64,
}

impl Source {
    async fn populate(endpoint: &str) -> Source {
        populate(endpoint, 5_000).await;
        let lease = client(endpoint).await.lease_grant(3600, None).await.expect("lease").id();
        let leased = etcd_client::PutOptions::new().with_lease(lease);
        client(endpoint).await.put("key/leased", "v", Some(leased)).await.expect("put");
        add_reader(endpoint).await;
        let keys = dump(endpoint).await;
        let hash = hash_kv(endpoint, keys.0).await;
        Source { keys, hash, lease }
    }

    /// The restored store serves the same keys, history, lease and user, and
    /// takes writes that continue the revisions.
    async fn assert_restored_on(&self, endpoint: &str) {
        assert_eq!(dump(endpoint).await, self.keys, "every key, value and revision");
        assert_eq!(hash_kv(endpoint, self.keys.0).await, self.hash, "the same history");
        let ttl = client(endpoint).await.lease_time_to_live(self.lease, None).await.expect("ttl");
        assert!(ttl.ttl() > 3500, "the lease is there: {}", ttl.ttl());
        assert_reader(endpoint).await;
        let put = client(endpoint).await.put("key/after", "v", None).await.expect("takes writes");
        assert_eq!(put.header().expect("header").revision(), self.keys.0 + 1);
    }
}

fn status_json(tool: &Path, file: &Path) -> serde_json::Value {
    let out = Command::new(tool).args(["snapshot", "status", "-w", "json"]).arg(file).output().expect("runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("json")
}

/// A snapshot saved from cairn is etcd's own format: etcdutl reads it as cairn
/// does, and a real etcd 3.5.1 restored from it serves the same keys at the
/// same revisions, with the same history, leases and users.
#[tokio::test]
async fn t146_a_cairn_snapshot_restores_into_etcd() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoint = cluster.members[1].endpoint().to_string();
    let source = Source::populate(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("cairn.db");
    let out = Command::new(etcd_tool("etcdctl"))
        .arg(format!("--endpoints={endpoint}"))
        .args(["snapshot", "save"])
        .arg(&file)
        .output()
        .expect("etcdctl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    drop(cluster);

    let etcd_status = status_json(&etcd_tool("etcdutl"), &file);
    assert_eq!(status_json(&cairn_binary(), &file), etcd_status, "cairn reads the file as etcdutl does");
    assert_eq!(etcd_status["revision"], source.keys.0);

    let (dir2, specs) = plan(1).expect("plan");
    let out = Command::new(etcd_tool("etcdutl"))
        .args(["snapshot", "restore"])
        .arg(&file)
        .args(["--name", &specs[0].name, "--initial-cluster", &specs[0].initial_cluster])
        .args(["--initial-advertise-peer-urls", &specs[0].peer_url, "--data-dir"])
        .arg(&specs[0].data_dir)
        .output()
        .expect("etcdutl");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let etcd = Cluster::launch(Flavor::Etcd, dir2, specs, &[]).await.expect("etcd starts from it");
    source.assert_restored_on(etcd.members[0].endpoint()).await;
}

/// An etcd user moves to cairn with the documented commands: a snapshot of
/// etcd 3.5.1, restored by `cairn snapshot restore`, on a new cairn member.
#[tokio::test]
async fn t147_migrating_from_etcd_by_its_snapshot() {
    let etcd = Cluster::start(Flavor::Etcd, 1).await.expect("etcd starts");
    let endpoint = etcd.members[0].endpoint().to_string();
    let source = Source::populate(&endpoint).await;

    let (dir, specs) = plan(1).expect("plan");
    let mut env = vec![
        ("ETCD_ENDPOINT".to_string(), endpoint.clone()),
        ("BACKUP".to_string(), dir.path().join("etcd.db").display().to_string()),
        ("INITIAL_CLUSTER".to_string(), specs[0].initial_cluster.clone()),
    ];
    env.extend(member_variables(&specs));
    let status = run_documented("migrate", &env);
    assert!(status.contains(&format!("| {:8} |", source.keys.0)), "the revision: {status}");
    drop(etcd);

    let cairn = Cluster::launch(Flavor::Cairn, dir, specs, &[]).await.expect("cairn starts from it");
    source.assert_restored_on(cairn.members[0].endpoint()).await;
}

/// The same move from etcd 3.4 (Debian's etcd-server): a snapshot taken by
/// etcdctl 3.4 reads as etcdctl 3.4 reads it, and restores into cairn with
/// every key, revision, the history, the lease and the user.
#[tokio::test]
async fn t148_migrating_from_etcd_3_4_by_its_snapshot() {
    let mut options = Options::new(Flavor::Etcd, 1);
    options.binary = Some(require(etcd34_bin_dir().join("etcd")).expect("`.ci/setup.sh --with-etcd` unpacks etcd 3.4"));
    let etcd = options.start().await.expect("etcd 3.4 starts");
    let endpoint = etcd.members[0].endpoint().to_string();
    let source = Source::populate(&endpoint).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("etcd-3.4.db");
    let etcdctl34 = etcdctl34_snapshot_save(&endpoint, &file);
    drop(etcd);

    let etcd_status = status_json(&etcdctl34, &file);
    assert_eq!(status_json(&cairn_binary(), &file), etcd_status, "cairn reads the file as etcdctl 3.4 does");
    let (dir2, specs) = plan(1).expect("plan");
    let spec = &specs[0];
    let flags = ["--name", &spec.name, "--initial-cluster", &spec.initial_cluster];
    let (ok, err) =
        restore(&file, &spec.data_dir, &[&flags[..], &["--initial-advertise-peer-urls", &spec.peer_url]].concat());
    assert!(ok, "{err}");
    let cairn = Cluster::launch(Flavor::Cairn, dir2, specs, &[]).await.expect("cairn starts from it");
    source.assert_restored_on(cairn.members[0].endpoint()).await;
}
