//! Maintenance and HTTP: HashKV and Status against etcd 3.5.1, NOSPACE and
//! its recovery, leader moves, health and metrics, etcdctl lock/elect, and
//! Downgrade with etcdctl 3.6's view of `endpoint status`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use etcd_client::{AlarmAction, AlarmOptions, AlarmType, GetOptions};

use cairn_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use cairn_proto::etcdserverpb::DowngradeRequest;
use cairn_testkit::{assert_same_as_etcd, client, etcd_tool, etcdctl, etcdctl36, etcdctl_ok, Cluster, Flavor};

async fn hash_script(endpoint: &str) -> Vec<String> {
    let mut c = client(endpoint).await;
    let mut out = Vec::new();
    // Never overwritten: compaction keeps it, and etcd's hash of later revisions still covers it.
    c.put("h/kept", "v", None).await.expect("put");
    for i in 0..20 {
        c.put(format!("h/{}", i % 7), format!("v{i}"), None).await.expect("put");
    }
    c.delete("h/3", None).await.expect("delete");
    for revision in [0, 5, 15] {
        let hash = c.hash_kv(revision).await.expect("hashkv");
        out.push(format!("hashkv {revision}: hash={} compact={}", hash.hash(), hash.compact_version()));
    }
    c.compact(10, None).await.expect("compact");
    let hash = c.hash_kv(0).await.expect("hashkv");
    out.push(format!("hashkv after compaction: hash={} compact={}", hash.hash(), hash.compact_version()));
    let status = c.status().await.expect("status");
    out.push(format!(
        "status: version 3.5.x={} leader_is_self={} errors={:?} learner={} revision={}",
        // Cairn reports 3.5.13 (whose progress semantics it has) beside 3.5.1.
        status.version().starts_with("3.5."),
        status.leader() == status.header().expect("h").member_id(),
        status.errors(),
        status.is_learner(),
        status.header().expect("h").revision()
    ));
    out
}

#[tokio::test]
async fn t110_hashkv_and_status_match_etcd_3_5_1() {
    assert_same_as_etcd(&[], |endpoint| async move { hash_script(&endpoint).await }).await;
}

#[tokio::test]
async fn t111_hashkv_is_equal_on_all_members() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let mut c = client(&endpoints[0]).await;
    for i in 0..200 {
        c.put(format!("k{}", i % 37), format!("{i}"), None).await.expect("put");
    }
    c.compact(100, None).await.expect("compact");
    let revision = c.get("k0", None).await.expect("get").header().expect("h").revision();
    let mut hashes = Vec::new();
    for endpoint in &endpoints {
        let mut member = client(endpoint).await;
        // Each member answers once it has applied up to the revision.
        member.get("k0", None).await.expect("linearizable read");
        hashes.push(member.hash_kv(revision).await.expect("hashkv").hash());
    }
    assert!(hashes.windows(2).all(|pair| pair[0] == pair[1]), "{hashes:?}");
}

/// Writes 100 kB values over five keys until a put is refused: its error.
pub(crate) async fn fill_until_refused(c: &mut etcd_client::Client) -> Option<String> {
    let value = "x".repeat(100_000);
    // Each write compares a size read up to 100 ms before, so a quick burst
    // passes the quota by what it writes meanwhile (docs/operations.md): keep
    // writing until refused, well past the 40 puts that fill 4 MB.
    for i in 0..2_000 {
        if let Err(err) = c.put(format!("big/{}", i % 5), value.clone(), None).await {
            return Some(err.to_string());
        }
    }
    None
}

#[tokio::test]
async fn t112_nospace_alarm_refuses_writes_until_compact_defrag_disarm() {
    let cluster = Cluster::start_with(Flavor::Cairn, 1, &["--quota-backend-bytes", "4000000"]).await.expect("starts");
    let endpoint = cluster.members[0].endpoint();
    let mut c = client(endpoint).await;
    let refused = fill_until_refused(&mut c).await.expect("the quota was reached");
    assert!(refused.contains("etcdserver: mvcc: database space exceeded"), "{refused}");
    let alarms = etcdctl_ok(&[endpoint], &["alarm", "list"]);
    assert!(alarms.contains("alarm:NOSPACE"), "{alarms}");
    let health = reqwest_like_get(endpoint, "/health");
    assert!(health.contains("\"health\":\"false\"") && health.contains("ALARM NOSPACE"), "{health}");
    // Reads and deletes still work; puts do not.
    assert!(c.get("big/0", None).await.is_ok());
    assert!(c.put("small", "v", None).await.is_err());
    let last = c.delete("big/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    c.compact(last.header().expect("h").revision(), Some(etcd_client::CompactionOptions::new().with_physical()))
        .await
        .expect("compact");
    etcdctl_ok(&[endpoint], &["defrag"]);
    etcdctl_ok(&[endpoint], &["alarm", "disarm"]);
    assert!(c
        .alarm(AlarmAction::Get, AlarmType::None, Some(AlarmOptions::new()))
        .await
        .expect("alarms")
        .alarms()
        .is_empty());
    c.put("small", "v", None).await.expect("writes accepted again");
    let health = reqwest_like_get(endpoint, "/health");
    assert!(health.contains("\"health\":\"true\""), "{health}");
}

/// A plain HTTP GET with curl, as an operator would.
fn reqwest_like_get(endpoint: &str, path: &str) -> String {
    cairn_testkit::http::curl_get(&format!("{endpoint}{path}"))
}

/// The gRPC counters an etcd dashboard reads (its "Active Streams" is started
/// less handled): a stream is started when it opens and handled when it
/// ends, with the code etcd's handler ends it with when its client goes.
#[tokio::test]
async fn t191_grpc_streams_are_counted_when_they_end_as_in_etcd() {
    use cairn_proto::etcdserverpb::{lease_client::LeaseClient, watch_client::WatchClient};
    use cairn_proto::etcdserverpb::{watch_request, LeaseGrantRequest, LeaseKeepAliveRequest, SnapshotRequest};
    use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
    use cairn_proto::v3electionpb::{election_client::ElectionClient, CampaignRequest, LeaderRequest};

    assert_same_as_etcd(&[], |endpoint| async move {
        let channel = tonic::transport::Channel::from_shared(endpoint.clone()).expect("url");
        let channel = channel.connect().await.expect("connects");
        let mut steps = Vec::new();

        // The requests stay open until the client has dropped the answers: the
        // stream then ends as when a client goes away (RST_STREAM, CANCEL).
        let create = WatchRequest {
            request_union: Some(watch_request::RequestUnion::CreateRequest(WatchCreateRequest {
                key: b"w".to_vec(),
                ..Default::default()
            })),
        };
        let (requests, stream) = futures::channel::mpsc::unbounded();
        requests.unbounded_send(create).expect("queued");
        let mut watch = WatchClient::new(channel.clone()).watch(stream).await.expect("watch").into_inner();
        assert!(watch.message().await.expect("created").expect("a response").created);
        steps.push(format!("watch open: {:?}", grpc_stream_counts(&endpoint)));
        drop((watch, requests));
        steps.push(format!("watch gone: {:?}", grpc_counts_once_handled(&endpoint, "Watch").await));

        let mut lease = LeaseClient::new(channel.clone());
        let grant = LeaseGrantRequest { ttl: 60, id: 0 };
        let id = lease.lease_grant(grant).await.expect("grant").into_inner().id;
        let (requests, stream) = futures::channel::mpsc::unbounded();
        requests.unbounded_send(LeaseKeepAliveRequest { id }).expect("queued");
        let mut keep_alive = lease.lease_keep_alive(stream).await.expect("keepalive").into_inner();
        assert_eq!(keep_alive.message().await.expect("renewed").expect("a response").id, id);
        drop((keep_alive, requests));
        steps.push(format!("keepalive gone: {:?}", grpc_counts_once_handled(&endpoint, "LeaseKeepAlive").await));

        // Observe answers with the leader at once, so there is one.
        let mut election = ElectionClient::new(channel.clone());
        let campaign = CampaignRequest { name: b"e".to_vec(), lease: id, value: b"v".to_vec() };
        election.campaign(campaign).await.expect("campaign");
        let observe = LeaderRequest { name: b"e".to_vec() };
        let mut observe = election.observe(observe).await.expect("observe").into_inner();
        assert!(observe.message().await.expect("the leader").is_some());
        drop(observe);
        steps.push(format!("observe gone: {:?}", grpc_counts_once_handled(&endpoint, "Observe").await));

        let snapshot = MaintenanceClient::new(channel).snapshot(SnapshotRequest {}).await.expect("snapshot");
        let (mut snapshot, mut chunks) = (snapshot.into_inner(), 0);
        while snapshot.message().await.expect("a chunk").is_some() {
            chunks += 1;
        }
        assert!(chunks > 0);
        steps.push(format!("snapshot read: {:?}", grpc_counts_once_handled(&endpoint, "Snapshot").await));
        steps
    })
    .await;
}

/// The non-zero gRPC counters of the calls `t191` makes, sorted as etcd lists them.
fn grpc_stream_counts(endpoint: &str) -> Vec<String> {
    let methods = ["Watch\",grpc_service=\"etcdserverpb.Watch", "LeaseKeepAlive", "Observe", "Campaign", "Snapshot"];
    reqwest_like_get(endpoint, "/metrics")
        .lines()
        .filter(|line| {
            ["started_total{", "handled_total{", "msg_received_total{", "msg_sent_total{"]
                .iter()
                .any(|name| line.starts_with(&format!("grpc_server_{name}")))
        })
        .filter(|line| !line.ends_with(" 0"))
        // A snapshot's chunks follow its size, which is not etcd's.
        .filter(|line| !(line.starts_with("grpc_server_msg_sent_total{") && line.contains("\"Snapshot\"")))
        .filter(|line| methods.iter().any(|method| line.contains(&format!("grpc_method=\"{method}\""))))
        .map(|line| line.trim_start_matches("grpc_server_").to_string())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// [`grpc_stream_counts`] once `method` has a handled call, or after 5 s.
async fn grpc_counts_once_handled(endpoint: &str, method: &str) -> Vec<String> {
    let handled = format!("grpc_method=\"{method}\"");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let counts = grpc_stream_counts(endpoint);
        let done = counts.iter().any(|line| line.starts_with("handled") && line.contains(&handled));
        if done || Instant::now() > deadline {
            return counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn t113_health_version_and_metrics_over_http() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoint = cluster.members[0].endpoint();
    etcdctl_ok(&[endpoint], &["put", "m", "v"]);
    etcdctl_ok(&[endpoint], &["get", "m"]);
    // A deleted key leaves etcd's key count at once, compacted or not.
    etcdctl_ok(&[endpoint], &["put", "gone", "v"]);
    etcdctl_ok(&[endpoint], &["del", "gone"]);
    assert_eq!(reqwest_like_get(endpoint, "/health"), r#"{"health":"true","reason":""}"#);
    assert_eq!(reqwest_like_get(endpoint, "/livez"), "ok\n");
    assert!(reqwest_like_get(endpoint, "/version").contains("\"etcdserver\":\"3.5.13\""));
    let metrics = reqwest_like_get(endpoint, "/metrics");
    for name in [
        "etcd_server_has_leader 1",
        "etcd_server_leader_changes_seen_total",
        "etcd_server_proposals_committed_total",
        "etcd_server_proposals_applied_total",
        "etcd_server_proposals_pending",
        "etcd_server_proposals_failed_total",
        "etcd_disk_wal_fsync_duration_seconds_bucket",
        "etcd_disk_backend_commit_duration_seconds_bucket",
        "etcd_mvcc_db_total_size_in_bytes",
        "etcd_debugging_mvcc_keys_total 1\n",
        "etcd_network_peer_round_trip_time_seconds_bucket{To=",
        "grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\"",
        "cairn_proposal_batches_total",
    ] {
        assert!(metrics.contains(name), "missing {name}");
    }
}

#[tokio::test]
async fn t114_move_leader() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let leader = cluster.leader_index().await.expect("leader");
    let target = (leader + 1) % 3;
    let mut c = client(&endpoints[target]).await;
    let target_id = c.status().await.expect("status").header().expect("h").member_id();
    // A follower answers as etcd does.
    let err = c.move_leader(target_id).await.expect_err("not the leader");
    assert!(err.to_string().contains("etcdserver: not leader"), "{err}");
    let all: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let out = etcdctl_ok(&all, &["move-leader", &format!("{target_id:x}")]);
    assert!(out.contains("Leadership transferred"), "{out}");
    assert_eq!(cluster.leader_index().await.expect("leader"), target);
    c.put("after-move", "v", None).await.expect("writes work after the move");
}

/// Runs a command that must finish by itself within `limit`.
fn run_bounded(command: &mut Command, limit: Duration) -> String {
    let mut child = command.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("spawn");
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let out = child.wait_with_output().expect("output");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `probe` every 50 ms until it returns true or `limit` passes.
async fn eventually(limit: Duration, mut probe: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test]
async fn t115_etcdctl_lock_and_elect_between_two_clients() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let etcdctl_cmd = |endpoint: &str| {
        let mut command = Command::new(etcd_tool("etcdctl"));
        command.arg(format!("--endpoints={endpoint}")).stdout(Stdio::null()).stderr(Stdio::null());
        command
    };
    // Both holders append to one file while they hold the lock: with mutual
    // exclusion, the second line can never come between the first's two.
    let dir = tempfile::tempdir().expect("tempdir");
    let trace = dir.path().join("trace");
    let trace_text = || std::fs::read_to_string(&trace).unwrap_or_default();
    let first_script = format!("echo first-start >> {0}; sleep 1; echo first-end >> {0}", trace.display());
    let mut first =
        etcdctl_cmd(&endpoints[0]).args(["lock", "mylock", "--", "sh", "-c", &first_script]).spawn().expect("spawn");
    assert!(
        eventually(Duration::from_secs(10), || trace_text().contains("first-start")).await,
        "the first holder got the lock"
    );
    let second_script = format!("echo second >> {}", trace.display());
    let mut second =
        etcdctl_cmd(&endpoints[1]).args(["lock", "mylock", "--", "sh", "-c", &second_script]).spawn().expect("spawn");
    let both_done = eventually(Duration::from_secs(20), || {
        matches!(first.try_wait(), Ok(Some(_))) && matches!(second.try_wait(), Ok(Some(_)))
    })
    .await;
    for child in [&mut first, &mut second] {
        let _ = child.kill();
        let _ = child.wait();
    }
    assert!(both_done, "both lock holders finished: {:?}", trace_text());
    assert_eq!(trace_text(), "first-start\nfirst-end\nsecond\n", "one holder at a time, in order");

    // Election: the first campaigner leads; observe sees it.
    let mut leader = etcdctl_cmd(&endpoints[0]).args(["elect", "myelection", "alpha"]).spawn().expect("spawn");
    let observed = eventually(Duration::from_secs(10), || {
        run_bounded(
            Command::new(etcd_tool("etcdctl")).arg(format!("--endpoints={}", endpoints[2])).args([
                "elect",
                "-l",
                "myelection",
            ]),
            Duration::from_secs(2),
        )
        .contains("alpha")
    })
    .await;
    assert!(observed, "observe sees the leader alpha");
    // A killed campaigner's key stays until its session lease expires (60 s): exactly one candidate.
    let _ = leader.kill();
    let _ = leader.wait();
    let mut kv = client(&endpoints[1]).await.kv_client();
    let keys = kv.get("myelection", Some(GetOptions::new().with_prefix())).await.expect("get");
    let values: Vec<&[u8]> = keys.kvs().iter().map(|kv| kv.value()).collect();
    assert_eq!(values, vec![b"alpha".as_slice()]);
}

/// kubeadm's etcd flags (less TLS): the metrics URL serves the HTTP endpoints
/// alone, and the member behaves as usual on its client URL.
#[tokio::test]
async fn t115_kubeadm_etcd_flags_with_a_metrics_url() {
    let metrics_url = cairn_testkit::free_url();
    let flags = [
        "--experimental-initial-corrupt-check=true",
        "--experimental-watch-progress-notify-interval=5s",
        "--snapshot-count=10000",
        "--listen-metrics-urls",
        &metrics_url,
    ];
    let cluster = Cluster::start_with(Flavor::Cairn, 1, &flags).await.expect("starts with kubeadm's flags");
    etcdctl_ok(&[cluster.members[0].endpoint()], &["put", "k", "v"]);
    // kubeadm's probes: liveness, startup, and the /livez and /readyz of etcd 3.6's manifests.
    for probe in ["/health?exclude=NOSPACE&serializable=true", "/health?serializable=false"] {
        assert_eq!(reqwest_like_get(&metrics_url, probe), r#"{"health":"true","reason":""}"#);
    }
    assert_eq!(reqwest_like_get(&metrics_url, "/livez"), "ok\n");
    assert_eq!(reqwest_like_get(&metrics_url, "/readyz"), "ok\n");
    assert!(reqwest_like_get(&metrics_url, "/metrics").contains("etcd_server_has_leader 1"));
    let grpc = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "5", "-X", "POST"])
        .arg(format!("{metrics_url}/etcdserverpb.KV/Range"))
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&grpc.stdout), "404", "no gRPC on the metrics URL");
}

/// Keys under `prefix` on `endpoint`, counted.
async fn count(endpoint: &str, prefix: &str) -> i64 {
    let options = GetOptions::new().with_prefix().with_count_only();
    client(endpoint).await.get(prefix, Some(options)).await.expect("count").count()
}

/// `etcdctl make-mirror` from `from` to `to` while `prefix` is written on
/// `from`, until `to` has every key; the mirror is stopped after.
async fn mirror(from: &str, to: &str, prefix: &str) {
    let mut c = client(from).await;
    for i in 0..50 {
        c.put(format!("{prefix}{i:02}"), format!("v{i}"), None).await.expect("put");
    }
    let mut mirror = Command::new(etcd_tool("etcdctl"))
        .args([format!("--endpoints={from}"), "make-mirror".into(), "--prefix".into(), prefix.into(), to.into()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("make-mirror starts");
    // Written while the mirror runs: it follows the source's watch.
    for i in 50..60 {
        c.put(format!("{prefix}{i:02}"), format!("v{i}"), None).await.expect("put");
    }
    c.delete(format!("{prefix}00"), None).await.expect("delete");
    let mirrored = eventually_async(Duration::from_secs(20), || count(to, prefix), 59).await;
    let _ = mirror.kill();
    let _ = mirror.wait();
    assert!(mirrored, "{from} -> {to}: {} keys of 59", count(to, prefix).await);
    let value = client(to).await.get(format!("{prefix}55"), None).await.expect("get");
    assert_eq!(value.kvs()[0].value(), b"v55");
}

/// Polls `probe` every 100 ms until it returns `wanted` or `limit` passes.
async fn eventually_async<F: std::future::Future<Output = i64>>(
    limit: Duration,
    mut probe: impl FnMut() -> F,
    wanted: i64,
) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        if probe().await == wanted {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// What operators run from etcdctl 3.5.1: the cluster-wide endpoint views,
/// `check perf` and `check datascale` (which reads the process metrics), and
/// `make-mirror` from cairn to etcd and from etcd to cairn.
#[tokio::test]
async fn t116_etcdctl_operator_commands() {
    let cairn = Cluster::start(Flavor::Cairn, 3).await.expect("cairn starts");
    let etcd = Cluster::start(Flavor::Etcd, 1).await.expect("etcd starts");
    let endpoints = cairn.endpoints();
    let first = [endpoints[0].as_str()];

    let status: serde_json::Value =
        serde_json::from_str(&etcdctl_ok(&first, &["endpoint", "status", "--cluster", "-w", "json"])).expect("json");
    let statuses = status.as_array().expect("one status a member");
    assert_eq!(statuses.len(), 3, "{status}");
    let leaders: Vec<_> = statuses.iter().map(|s| s["Status"]["leader"].as_u64()).collect();
    assert!(leaders.iter().all(|leader| leader.is_some() && *leader == leaders[0]), "one leader: {status}");
    let hashes = etcdctl_ok(&first, &["endpoint", "hashkv", "--cluster", "-w", "json"]);
    let hashes: serde_json::Value = serde_json::from_str(&hashes).expect("json");
    let hashes: Vec<_> = hashes.as_array().expect("array").iter().map(|h| h["HashKV"]["hash"].as_u64()).collect();
    assert!(hashes.len() == 3 && hashes.iter().all(|hash| hash.is_some() && *hash == hashes[0]), "{hashes:?}");

    // etcd's Cluster service puts no revision in its headers.
    for endpoint in [endpoints[0].as_str(), etcd.members[0].endpoint()] {
        let list: serde_json::Value =
            serde_json::from_str(&etcdctl_ok(&[endpoint], &["member", "list", "-w", "json"])).expect("json");
        let header = list["header"].as_object().expect("header");
        let mut fields: Vec<&str> = header.keys().map(String::as_str).collect();
        fields.sort();
        assert_eq!(fields, ["cluster_id", "member_id", "raft_term"], "{endpoint}: {list}");
    }

    let datascale = etcdctl_ok(&first, &["check", "datascale", "--load=s"]);
    assert!(datascale.contains("PASS: Approximate system memory used"), "{datascale}");
    // Its verdict depends on the machine's load (the suite runs beside it): it must run to the end
    // and judge all three measures, each either way ("PASS: Throughput is" or "FAIL: Throughput too low").
    let perf = etcdctl(&first, &["check", "perf", "--load=s"]).expect("check perf runs");
    let perf = String::from_utf8_lossy(&perf.stdout).into_owned();
    let judged = |passed: &str, failed: &str| perf.lines().any(|line| line.contains(passed) || line.contains(failed));
    assert!(judged("PASS: Throughput is", "FAIL: Throughput too low"), "{perf}");
    assert!(judged("PASS: Slowest request took", "Slowest request took too long"), "{perf}");
    assert!(judged("PASS: Stddev is", "FAIL: Stddev too high"), "{perf}");
    assert!(perf.lines().any(|line| line == "PASS" || line == "FAIL"), "a final verdict: {perf}");

    mirror(&endpoints[1], etcd.members[0].endpoint(), "to-etcd/").await;
    mirror(etcd.members[0].endpoint(), &endpoints[2], "to-cairn/").await;
}

/// etcdctl 3.6's `downgrade` commands and a raw unknown action, and what
/// etcdctl 3.5 and 3.6 show of `endpoint status`, with the endpoint named.
async fn downgrade_and_status(endpoint: String) -> Vec<String> {
    let mut out = Vec::new();
    let show = |output: std::process::Output| {
        let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        // The client's own log lines carry times and ports.
        let said: Vec<&str> = text.lines().filter(|line| !line.starts_with("{\"level\"")).collect();
        format!("exit {:?}: {}", output.status.code(), said.join(" / ").replace(&endpoint, "<endpoint>"))
    };
    let downgrades: [&[&str]; 5] = [
        &["downgrade", "validate", "v3.4"],
        &["downgrade", "validate", "3.6"],
        &["downgrade", "enable", "3.3.0"],
        &["downgrade", "enable", "x"],
        &["downgrade", "cancel"],
    ];
    for args in downgrades {
        out.push(format!("etcdctl 3.6 {args:?} -> {}", show(etcdctl36(&[&endpoint], args).expect("runs"))));
    }
    let mut maintenance = MaintenanceClient::connect(endpoint.clone()).await.expect("connects");
    let unknown = maintenance.downgrade(DowngradeRequest { action: 7, version: "3.4".into() }).await;
    out.push(format!(
        "action 7 -> {:?}",
        unknown.map(|_| ()).map_err(|status| (status.code(), status.message().to_string()))
    ));

    // The fields each etcdctl prints: the same set from a 3.5 server, whichever it is.
    let keys = |json: &str| -> Vec<String> {
        let value: serde_json::Value = serde_json::from_str(json).expect("json");
        let status = value.pointer("/0/Status").and_then(|status| status.as_object()).expect("a status");
        status.keys().cloned().collect()
    };
    out.push(format!("3.5 json fields {:?}", keys(&etcdctl_ok(&[&endpoint], &["endpoint", "status", "-w", "json"]))));
    let json36 = etcdctl36(&[&endpoint], &["endpoint", "status", "-w", "json"]).expect("runs");
    out.push(format!("3.6 json fields {:?}", keys(&String::from_utf8_lossy(&json36.stdout))));
    let table = etcdctl36(&[&endpoint], &["endpoint", "status", "-w", "table"]).expect("runs");
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    let rows: Vec<Vec<String>> = table
        .lines()
        .filter(|line| line.starts_with('|'))
        .map(|line| line.split('|').map(|cell| cell.trim().to_string()).collect())
        .collect();
    assert_eq!(rows.len(), 2, "a header and one endpoint: {table}");
    let column = |name: &str| {
        let at = rows[0].iter().position(|cell| cell == name).unwrap_or_else(|| panic!("no {name} column: {table}"));
        rows[1][at].clone()
    };
    out.push(format!("3.6 table columns {:?}", rows[0]));
    for name in ["STORAGE VERSION", "DOWNGRADE TARGET VERSION", "DOWNGRADE ENABLED", "IS LEARNER"] {
        out.push(format!("3.6 table {name} = {:?}", column(name)));
    }
    out
}

#[tokio::test]
async fn t119_downgrade_and_endpoint_status_match_etcd_3_5_1() {
    assert_same_as_etcd(&[], downgrade_and_status).await;
    // The one target etcd 3.5 takes, and cairn cannot: no etcd 3.4 member can join it.
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint();
    for action in ["validate", "enable"] {
        let refused = etcdctl36(&[endpoint], &["downgrade", action, "3.4"]).expect("runs");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{action} 3.4 must be refused");
        assert!(stderr.contains("etcdserver: invalid downgrade target version"), "{stderr}");
    }
    let cancel = etcdctl36(&[endpoint], &["downgrade", "cancel"]).expect("runs");
    assert!(String::from_utf8_lossy(&cancel.stderr).contains("etcdserver: no inflight downgrade job"));
}
