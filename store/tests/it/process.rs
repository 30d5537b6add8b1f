//! The `cairn` process: defaults, flags and environment, errors, signals, crash recovery.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use cairn_testkit::{cairn_binary, client, etcdctl, etcdctl_ok, free_url, Cluster, Flavor};

/// Runs cairn expecting it to exit by itself; returns (success, stderr).
fn run_to_exit(args: &[&str], cwd: &std::path::Path) -> (bool, String) {
    let mut child = Command::new(cairn_binary())
        .args(args)
        .current_dir(cwd)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            let out = child.wait_with_output().expect("output");
            return (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("cairn {args:?} did not exit");
}

#[tokio::test]
async fn t70_kill_9_keeps_every_acknowledged_write() {
    let mut cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    let mut kv = client(&endpoint).await.kv_client();
    let mut last_revision = 0;
    for i in 0..200 {
        let resp = kv.put(format!("durable/{i:03}"), format!("{i}"), None).await.expect("put");
        last_revision = resp.header().expect("header").revision();
    }
    cluster.members[0].kill();
    cluster.restart(0).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).await.expect("ready");
    let mut kv = client(&endpoint).await.kv_client();
    let resp = kv.get("durable/", Some(GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(resp.count(), 200);
    assert_eq!(resp.header().expect("header").revision(), last_revision);
    let next = kv.put("after", "restart", None).await.expect("put");
    assert_eq!(next.header().expect("header").revision(), last_revision + 1, "revisions continue");
}

#[test]
fn t80_no_flags_behaves_like_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = Command::new(cairn_binary())
        .current_dir(dir.path())
        .env_remove("ETCD_NAME")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listed = String::new();
    while Instant::now() < deadline {
        if let Ok(out) = etcdctl(&["http://127.0.0.1:2379"], &["member", "list", "-w", "simple"]) {
            listed = String::from_utf8_lossy(&out.stdout).into_owned();
            if out.status.success() && listed.contains("localhost:2379") {
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status();
    let status = child.wait().expect("exit");
    // etcd's own ID for a member started with no flags.
    assert_eq!(
        listed.trim(),
        "8e9e05c52164694d, started, default, http://localhost:2380, http://localhost:2379, false"
    );
    assert!(dir.path().join("default.etcd").is_dir(), "data dir named after the member");
    assert!(status.success(), "SIGTERM is a clean shutdown");
}

#[test]
fn t81_environment_variables_configure_like_flags() {
    let cluster_dir = tempfile::tempdir().expect("tempdir");
    let client_url = free_url();
    let peer_url = free_url();
    let mut child = Command::new(cairn_binary())
        .current_dir(cluster_dir.path())
        .env("ETCD_NAME", "from-env")
        .env("ETCD_LISTEN_CLIENT_URLS", &client_url)
        .env("ETCD_ADVERTISE_CLIENT_URLS", &client_url)
        .env("ETCD_LISTEN_PEER_URLS", &peer_url)
        .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", &peer_url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut listed = String::new();
    while Instant::now() < deadline && !listed.contains("from-env") {
        if let Ok(out) = etcdctl(&[&client_url], &["member", "list"]) {
            listed = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(listed.contains(", from-env, "), "{listed}");
    assert!(cluster_dir.path().join("from-env.etcd").is_dir());
}

#[tokio::test]
async fn t82_bad_input_gets_one_clear_line_and_damages_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (ok, err) = run_to_exit(&["--no-such-flag"], dir.path());
    assert!(!ok && err.contains("--no-such-flag"), "{err}");
    let (ok, err) = run_to_exit(&["--election-timeout", "200"], dir.path());
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "cairn: --election-timeout[200ms] should be at least as 5 times as --heartbeat-interval[100ms]"
    );
    // An etcd flag cairn has nothing to change for is refused, with the reason, never ignored.
    let (ok, err) = run_to_exit(&["--experimental-memory-mlock"], dir.path());
    assert!(!ok);
    assert_eq!(
        err.trim(),
        "cairn: --experimental-memory-mlock=true is not supported: cairn has no memory-mapped database file to lock"
    );
    let (ok, err) = run_to_exit(
        &["--watch-progress-notify-interval=1s", "--experimental-watch-progress-notify-interval=1s"],
        dir.path(),
    );
    assert!(!ok && err.contains("please use --watch-progress-notify-interval only"), "{err}");
    assert!(!dir.path().join("default.etcd").exists(), "a refused start writes nothing");

    // A port in use.
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let taken = &cluster.members[0].spec.client_url;
    let (ok, err) = run_to_exit(&["--listen-client-urls", taken, "--data-dir", "x"], dir.path());
    assert!(!ok);
    assert!(err.contains("bind: Address already in use") || err.contains("bind: address already in use"), "{err}");
    assert!(!dir.path().join("x").exists(), "nothing written before the bind check");
    drop(cluster);

    // A data dir of another cluster is refused, and stays usable by its own.
    let data = dir.path().join("data");
    let data_arg = data.to_string_lossy().to_string();
    let client_url = free_url();
    let peer_url = free_url();
    let base = [
        "--data-dir",
        &data_arg,
        "--listen-client-urls",
        &client_url,
        "--advertise-client-urls",
        &client_url,
        "--listen-peer-urls",
        &peer_url,
        "--initial-advertise-peer-urls",
        &peer_url,
    ];
    let first_log = dir.path().join("first.log");
    let log_file = std::fs::File::create(&first_log).expect("log file");
    let mut first = Command::new(cairn_binary()).args(base).stderr(log_file).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if etcdctl(&[&client_url], &["put", "keep", "me"]).is_ok_and(|out| out.status.success()) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = Command::new("kill").arg("-TERM").arg(first.id().to_string()).status();
    let status = first.wait().expect("exit");
    assert!(status.success(), "{status}: {}", std::fs::read_to_string(&first_log).unwrap_or_default());

    let mut foreign = base.to_vec();
    foreign.extend(["--initial-cluster-token", "another-cluster"]);
    let (ok, err) = run_to_exit(&foreign, dir.path());
    assert!(!ok);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("belongs to member") && err.contains("use another --data-dir"), "{err}");

    let mut again = Command::new(cairn_binary()).args(base).stderr(Stdio::null()).spawn().expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut value = String::new();
    while Instant::now() < deadline && value.trim() != "me" {
        value = etcdctl(&[&client_url], &["get", "keep", "--print-value-only"])
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = again.kill();
    let _ = again.wait();
    assert_eq!(value.trim(), "me", "the refused start damaged nothing");
}

/// openraft 0.10's statistics used to hold about 41 MiB of lookup tables in
/// every member (base2histogram's, for 16 bucket widths); the workspace
/// patches in `store/patched/base2histogram`, which has none. An idle member
/// had 79 MiB resident with them and has about 45 without.
#[tokio::test]
async fn t184_a_member_keeps_no_fixed_tables_resident() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let member = &cluster.members[0];
    // A write goes through every histogram openraft records into.
    client(member.endpoint()).await.kv_client().put("warm", "up", None).await.expect("put");
    let pid = member.pid().expect("running");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss_kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    assert!(rss_kib < 64 * 1024, "an idle member holds {} MiB resident", rss_kib / 1024);
}

#[tokio::test]
async fn t83_member_list_and_endpoint_status_work_with_etcdctl() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint();
    let status = etcdctl_ok(&[endpoint], &["endpoint", "status", "-w", "json"]);
    let json: serde_json::Value = serde_json::from_str(&status).expect("json");
    let status = &json[0]["Status"];
    assert_eq!(status["version"], "3.5.13", "kube-apiserver turns progress requests on from 3.5.13");
    assert_eq!(status["leader"], status["header"]["member_id"]);
    assert!(status["raftIndex"].as_u64().unwrap_or(0) >= 1);
}

#[tokio::test]
async fn t84_tls_flags_fail_as_etcds_and_auto_tls_serves_https() {
    let dir = tempfile::tempdir().expect("tempdir");
    let https = free_url().replacen("http://", "https://", 1);
    let (ok, err) = run_to_exit(&["--listen-client-urls", &https, "--advertise-client-urls", &https], dir.path());
    assert!(!ok);
    assert_eq!(
        err.trim(),
        format!(
            "cairn: TLS key/cert (--cert-file, --key-file) must be provided for client url {https} with HTTPS scheme"
        )
    );
    let (ok, err) = run_to_exit(&["--cipher-suites", "TLS_NOPE"], dir.path());
    assert!(!ok);
    assert_eq!(err.trim(), "cairn: unexpected TLS cipher suite \"TLS_NOPE\"");
    let (ok, err) = run_to_exit(&["--cert-file", "a.crt"], dir.path());
    assert!(!ok);
    assert_eq!(err.trim(), "cairn: KeyFile and CertFile must both be present[key: , cert: a.crt]");
    let (ok, err) = run_to_exit(&["--cert-file", "a.crt", "--key-file", "a.key", "--client-cert-auth"], dir.path());
    assert!(!ok && err.contains("--client-cert-auth needs --trusted-ca-file"), "{err}");
    assert!(!dir.path().join("default.etcd").exists(), "a refused start writes nothing");

    // --auto-tls: a self-signed certificate in the data dir, https on both sides.
    let data = dir.path().join("auto");
    let peer = free_url().replacen("http://", "https://", 1);
    let data_arg = data.to_string_lossy().to_string();
    let mut member = Command::new(cairn_binary())
        .args(["--data-dir", &data_arg, "--auto-tls", "--peer-auto-tls"])
        .args(["--listen-client-urls", &https, "--advertise-client-urls", &https])
        .args(["--listen-peer-urls", &peer, "--initial-advertise-peer-urls", &peer])
        .args(["--initial-cluster", &format!("default={peer}")])
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    // etcdctl's flags for a self-signed server, as with etcd's --auto-tls.
    let skip = ["--insecure-transport=false", "--insecure-skip-tls-verify", "put", "auto", "tls"];
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut put = false;
    while Instant::now() < deadline && !put {
        put = etcdctl(&[&https], &skip).is_ok_and(|out| out.status.success());
        std::thread::sleep(Duration::from_millis(100));
    }
    let verified =
        etcdctl(&[&https], &["--insecure-transport=false", "get", "auto"]).is_ok_and(|out| out.status.success());
    let _ = member.kill();
    let _ = member.wait();
    assert!(put, "a client that skips verification gets in");
    assert!(!verified, "a self-signed certificate does not verify");
    assert!(data.join("fixtures/client/cert.pem").is_file() && data.join("fixtures/peer/key.pem").is_file());
}

/// A member restarted with `failpoint` in `CAIRN_FAILPOINT`.
async fn member_with_failpoint(failpoint: &str) -> Cluster {
    let mut cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    assert!(cluster.members[0].terminate());
    cluster.members[0].spec.env = vec![("CAIRN_FAILPOINT".to_string(), failpoint.to_string())];
    cluster.restart(0).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).await.expect("ready");
    cluster
}

/// Waits for the member to stop by itself on the fault, then restarts it without the failpoint.
async fn expect_stop_then_restart(cluster: &mut Cluster, fault: &str) {
    let status = cluster.members[0].wait_exit(Duration::from_secs(15));
    let log = cluster.members[0].log_text();
    assert!(status.is_some_and(|status| status.code() == Some(1)), "the member exits 1 on {fault}: {status:?}\n{log}");
    assert!(log.contains("stopped on a fault") && log.contains(fault), "the fault is named: {log}");
    restart_without_failpoint(cluster).await;
}

async fn restart_without_failpoint(cluster: &mut Cluster) {
    cluster.members[0].spec.env.clear();
    cluster.restart(0).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).await.expect("ready");
}

/// Puts `{prefix}000`, `{prefix}001`, ... (each value its number) until one
/// is refused, at most 200; returns how many were acknowledged.
async fn puts_until_refused(endpoint: &str, prefix: &str) -> usize {
    let mut kv = client(endpoint).await.kv_client();
    for i in 0..200 {
        if kv.put(format!("{prefix}{i:03}"), i.to_string(), None).await.is_err() {
            return i;
        }
    }
    200
}

#[tokio::test]
async fn t187_a_failed_raft_log_fsync_stops_the_member_and_loses_no_acknowledged_write() {
    // The 60th fdatasync fails: a few go to the start, the rest to the puts.
    let mut cluster = member_with_failpoint("wal-sync-error=60").await;
    let endpoint = cluster.members[0].endpoint().to_string();
    let acknowledged = puts_until_refused(&endpoint, "fsync/").await;
    assert!((1..200).contains(&acknowledged), "puts succeed until the fsync fails: {acknowledged}");
    // As etcd's fatal error: the member exits rather than stay up without its Raft core.
    expect_stop_then_restart(&mut cluster, "wal-sync-error").await;
    let mut kv = client(&endpoint).await.kv_client();
    let resp = kv.get("fsync/", Some(GetOptions::new().with_prefix())).await.expect("get");
    let values: Vec<_> = resp.kvs().iter().map(|kv| kv.value_str().expect("utf-8").to_string()).collect();
    assert!(values.len() >= acknowledged, "{} keys after the restart, {acknowledged} acknowledged", values.len());
    for (i, value) in values.iter().enumerate().take(acknowledged) {
        assert_eq!(value, &i.to_string(), "the acknowledged put of fsync/{i:03}");
    }
    kv.put("after", "restart", None).await.expect("the member takes writes again");
}

/// The committed log id is not stored (the state machine's applied id is):
/// entries a crash left committed but unapplied are applied once the member
/// commits again, here at its first election, alone.
#[tokio::test]
async fn t194_entries_committed_but_not_applied_at_a_crash_are_applied_after_the_restart() {
    // The 40th apply aborts: a few go to the start, the rest to the puts.
    let mut cluster = member_with_failpoint("apply-abort=40").await;
    let endpoint = cluster.members[0].endpoint().to_string();
    let acknowledged = puts_until_refused(&endpoint, "apply/").await;
    assert!((1..200).contains(&acknowledged), "puts succeed until an apply aborts: {acknowledged}");
    let status = cluster.members[0].wait_exit(Duration::from_secs(15));
    assert!(status.is_some_and(|status| !status.success()), "the member aborted: {status:?}");
    restart_without_failpoint(&mut cluster).await;
    let mut kv = client(&endpoint).await.kv_client();
    // The put in flight at the abort was fsynced, so committed, before the apply it never finished.
    let resp = kv.get("apply/", Some(GetOptions::new().with_prefix())).await.expect("get");
    let keys: Vec<_> = resp.kvs().iter().map(|kv| kv.key_str().expect("utf-8").to_string()).collect();
    let expected: Vec<_> = (0..=acknowledged).map(|i| format!("apply/{i:03}")).collect();
    assert_eq!(keys, expected, "every put up to the one the abort cut short, after the restart");
    assert!(resp.kvs().iter().all(|kv| kv.version() == 1), "each put applied once: {:?}", resp.kvs());
    let next = kv.put("after", "restart", None).await.expect("the member takes writes again");
    let revision = next.header().expect("header").revision();
    assert_eq!(revision, resp.header().expect("header").revision() + 1, "revisions go on from the applied ones");
}

#[tokio::test]
async fn t188_a_failed_compactor_write_stops_the_member_and_the_restart_compacts() {
    let mut cluster = member_with_failpoint("compactor-write-error").await;
    let endpoint = cluster.members[0].endpoint().to_string();
    let mut c = client(&endpoint).await;
    let mut last = 0;
    for round in 0..3 {
        for key in 0..10 {
            last = c
                .put(format!("compact/{key}"), format!("{round}"), None)
                .await
                .expect("put")
                .header()
                .expect("h")
                .revision();
        }
    }
    let compacted = c.compact(last, Some(etcd_client::CompactionOptions::new().with_physical())).await;
    assert!(compacted.is_err(), "a physical compaction whose deletes failed is not reported done: {compacted:?}");
    expect_stop_then_restart(&mut cluster, "compactor-write-error").await;
    let mut c = client(&endpoint).await;
    let old = c.get("compact/0", Some(GetOptions::new().with_revision(last - 1))).await;
    assert!(
        old.as_ref().is_err_and(|err| err.to_string().contains("required revision has been compacted")),
        "the compaction's entry was applied before the fault: {old:?}"
    );
    let resp = c.get("compact/", Some(GetOptions::new().with_prefix())).await.expect("get");
    assert_eq!(resp.kvs().len(), 10, "every key's last value stays");
    assert!(resp.kvs().iter().all(|kv| kv.value() == b"2"));
    // What the failed walk left is scheduled again at the start, ahead of the next compaction.
    let next = c.put("compact/0", "3", None).await.expect("put").header().expect("h").revision();
    c.compact(next, Some(etcd_client::CompactionOptions::new().with_physical())).await.expect("compacts again");
}

#[tokio::test]
async fn t190_a_panic_in_a_background_task_stops_the_member() {
    // From the 12th tick of 250 ms: the member serves for about 3 s first.
    let mut cluster = member_with_failpoint("lessor-panic=12").await;
    let endpoint = cluster.members[0].endpoint().to_string();
    let mut c = client(&endpoint).await;
    let before = c.put("panic/before", "kept", None).await.expect("put before the panic");
    // Tokio would catch the panic and go on without the lessor, never expiring a lease.
    expect_stop_then_restart(&mut cluster, "failpoint lessor-panic").await;
    let mut c = client(&endpoint).await;
    let resp = c.get("panic/before", None).await.expect("get");
    assert_eq!(resp.kvs().first().map(|kv| kv.value()), Some(&b"kept"[..]));
    assert!(resp.header().expect("h").revision() >= before.header().expect("h").revision());
    let lease = c.lease_grant(3, None).await.expect("grant").id();
    c.put("panic/leased", "v", Some(etcd_client::PutOptions::new().with_lease(lease))).await.expect("put");
    let deadline = Instant::now() + Duration::from_secs(15);
    while c.get("panic/leased", None).await.expect("get").count() == 1 {
        assert!(Instant::now() < deadline, "the restarted member's lessor expires a 3 s lease");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
