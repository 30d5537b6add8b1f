//! etcd's health checks compared with etcd 3.6 request by request: `/health`
//! with kubeadm's probe queries, `/livez` and `/readyz` with their named
//! checks, the counters they keep, and the gRPC health service; with a
//! NOSPACE alarm raised, and on a member that has lost its leader.

use std::time::{Duration, Instant};

use cairn_proto::grpc::health::v1::{health_client::HealthClient, HealthCheckRequest};
use cairn_testkit::binaries::{etcd36_bin_dir, require};
use cairn_testkit::http::{self, Request};
use cairn_testkit::{assert_same_as_etcd36, client, Cluster, Flavor, Options};

/// The paths a prober asks; `non_learner` (3.6's, not 3.5's) left out.
const PROBES: [&str; 12] = [
    "/health",
    "/health?serializable=true",
    "/health?exclude=NOSPACE&serializable=true",
    "/health?exclude=nospace",
    "/health?serializable=false&exclude=CORRUPT",
    "/livez",
    "/livez?verbose",
    "/readyz",
    "/readyz?verbose&exclude=non_learner&exclude=missing",
    "/readyz/linearizable_read?verbose",
    "/readyz/data_corruption",
    "/livez/serializable_read",
];

async fn get(endpoint: &str, method: &'static str, path: &str) -> String {
    let request = Request { method, path, headers: &[], body: "" };
    let reply = http::send(endpoint, &request).await.expect("an HTTP answer");
    let mut body = String::from_utf8_lossy(&reply.body).into_owned();
    // etcd runs /readyz's checks in a Go map's order, which changes from call to call.
    if body.starts_with('[') {
        let (mut checks, rest): (Vec<&str>, Vec<&str>) =
            body.split_inclusive('\n').partition(|line| line.starts_with('['));
        checks.sort();
        body = checks.into_iter().chain(rest).collect();
    }
    let headers: Vec<String> = ["content-type", "x-content-type-options", "allow"]
        .iter()
        .filter_map(|name| reply.header(name).map(|value| format!("{name}: {value}")))
        .collect();
    format!("{method} {path} -> {} {headers:?} {body:?}", reply.status)
}

async fn probe_all(endpoint: &str, steps: &mut Vec<String>) {
    for path in PROBES {
        steps.push(get(endpoint, "GET", path).await);
    }
}

/// The health counters' lines, less 3.6's `non_learner`.
fn health_metrics(endpoint: &str) -> Vec<String> {
    let text = cairn_testkit::http::curl_get(&format!("{endpoint}/metrics"));
    let mut lines: Vec<String> = text
        .lines()
        .filter(|line| line.starts_with("etcd_server_health") && !line.contains("non_learner"))
        .map(str::to_string)
        .collect();
    lines.sort();
    lines
}

async fn grpc_health(endpoint: &str, steps: &mut Vec<String>) {
    let channel = tonic::transport::Channel::from_shared(endpoint.to_string()).expect("url");
    let mut health = HealthClient::new(channel.connect().await.expect("connects"));
    for service in ["", "etcdserverpb.KV"] {
        let check = health.check(HealthCheckRequest { service: service.to_string() }).await;
        steps.push(match check {
            Ok(answer) => format!("Check {service:?}: {:?}", answer.into_inner().status()),
            Err(status) => format!("Check {service:?}: {:?} {}", status.code(), status.message()),
        });
        let mut watch =
            health.watch(HealthCheckRequest { service: service.to_string() }).await.expect("watch").into_inner();
        let first = tokio::time::timeout(Duration::from_secs(5), watch.message()).await.expect("in time");
        steps.push(format!("Watch {service:?}: {:?}", first.expect("a message").expect("not ended").status()));
    }
    let text = cairn_testkit::http::curl_get(&format!("{endpoint}/metrics"));
    // etcd lists every method at 0 from the start; cairn each once called.
    let calls = text.lines().filter(|line| line.contains("grpc.health.v1") && !line.ends_with(" 0"));
    // etcd 3.6 counts an error answer as a message sent; 3.5, whose counters
    // cairn keeps (`t191`), does not.
    let calls = calls.filter(|line| !(line.starts_with("grpc_server_msg_sent_total") && line.contains("\"Check\"")));
    // A Watch dropped a moment ago may not have ended yet on the server.
    let calls = calls.filter(|line| !(line.starts_with("grpc_server_handled_total") && line.contains("\"Watch\"")));
    let mut calls: Vec<String> = calls.map(str::to_string).collect();
    calls.sort();
    steps.push(format!("counted: {calls:?}"));
}

/// kubeadm probes `/health?exclude=NOSPACE&serializable=true` for liveness:
/// a member out of space must still pass it, or the kubelet restarts it
/// while the operator compacts.
#[tokio::test]
async fn t192_health_checks_answer_as_etcd_36_with_and_without_a_nospace_alarm() {
    assert_same_as_etcd36(&["--quota-backend-bytes", "4000000"], |endpoint| async move {
        let mut steps = Vec::new();
        probe_all(&endpoint, &mut steps).await;
        steps.push(get(&endpoint, "POST", "/health").await);
        steps.push(get(&endpoint, "PUT", "/readyz").await);
        steps.push(get(&endpoint, "GET", "/livez/linearizable_read").await);
        let refused = crate::maintenance::fill_until_refused(&mut client(&endpoint).await).await;
        steps.push(format!("refused: {}", refused.is_some()));
        probe_all(&endpoint, &mut steps).await;
        steps.push(format!("metrics: {:?}", health_metrics(&endpoint)));
        grpc_health(&endpoint, &mut steps).await;
        steps
    })
    .await;
}

/// What a member that lost its leader answers: `/health` fails at once on
/// the leader, a serializable `/health` and `/livez` pass, and `/readyz`
/// fails its linearizable read once the request timeout has passed.
#[tokio::test]
async fn t193_a_member_without_a_leader_is_live_but_neither_healthy_nor_ready_as_in_etcd_36() {
    let mut etcd = Options::new(Flavor::Etcd, 3);
    etcd.binary = Some(require(etcd36_bin_dir().join("etcd")).expect("`.ci/etcd-3.6.sh` builds etcd 3.6"));
    let expected = leaderless_probes(etcd.start().await.expect("etcd 3.6 starts")).await;
    let actual = leaderless_probes(Cluster::start(Flavor::Cairn, 3).await.expect("cairn starts")).await;
    assert_eq!(actual, expected);
}

async fn leaderless_probes(mut cluster: Cluster) -> Vec<String> {
    let leader = cluster.leader_index().await.expect("a leader");
    let survivor = (leader + 1) % 3;
    for index in (0..3).filter(|index| *index != survivor) {
        cluster.members[index].kill();
    }
    let endpoint = cluster.members[survivor].endpoint().to_string();
    // Its leader is gone once an election timeout has passed without it.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut health = get(&endpoint, "GET", "/health").await;
    while !health.contains("RAFT NO LEADER") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        health = get(&endpoint, "GET", "/health").await;
    }
    let mut steps = vec![health];
    let metrics = cairn_testkit::http::curl_get(&format!("{endpoint}/metrics"));
    steps.extend(metrics.lines().filter(|line| line.starts_with("etcd_server_has_leader")).map(str::to_string));
    let status = client(&endpoint).await.status().await.expect("Status needs no leader");
    steps.push(format!("Status names a leader: {}", status.leader() != 0));
    for path in [
        "/health?serializable=true",
        "/health?exclude=NOSPACE&serializable=true",
        "/livez",
        "/readyz/serializable_read",
    ] {
        steps.push(get(&endpoint, "GET", path).await);
    }
    // The linearizable read's error is the request timeout's in both; the
    // time it takes is not compared.
    let ready = get(&endpoint, "GET", "/readyz?verbose&exclude=non_learner").await;
    steps.push(ready.split(" failed: ").next().unwrap_or_default().to_string());
    steps.push(format!("names the timeout: {}", ready.contains("request timed out")));
    steps
}
