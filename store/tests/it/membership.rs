//! Membership changes with etcdctl, as etcd's runtime-reconfiguration guide does them.

use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use cairn_testkit::{client, etcdctl, etcdctl_ok, Cluster, Flavor};

/// The `ETCD_INITIAL_CLUSTER` line that `etcdctl member add` prints.
fn initial_cluster_of(member_add_output: &str) -> String {
    member_add_output
        .lines()
        .find_map(|line| line.strip_prefix("ETCD_INITIAL_CLUSTER=\"").and_then(|rest| rest.strip_suffix('"')))
        .expect("member add prints ETCD_INITIAL_CLUSTER")
        .to_string()
}

fn member_id_of(member_add_output: &str) -> String {
    let line = member_add_output.lines().next().expect("a first line");
    // "Member 8e9e05c52164694d added to cluster cdf818194e3a8c32"
    line.split_whitespace().nth(1).expect("an id").to_string()
}

/// Waits (bounded) until a member serves `key` locally.
async fn wait_for_key(endpoint: &str, key: &str) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if let Ok(mut c) = etcd_client::Client::connect([endpoint], None).await {
            if c.get(key, Some(GetOptions::new().with_serializable())).await.is_ok_and(|resp| resp.count() == 1) {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn t120_learner_is_added_catches_up_and_is_promoted() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let all: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let mut kv = client(&endpoints[0]).await.kv_client();
    for i in 0..200 {
        kv.put(format!("before/{i}"), "v", None).await.expect("put");
    }
    let (client_url, peer_url) = cluster.new_member_urls();
    let added = etcdctl_ok(&all, &["member", "add", "learner1", &format!("--peer-urls={peer_url}"), "--learner"]);
    let id = member_id_of(&added);
    let listed = etcdctl_ok(&all, &["member", "list"]);
    assert!(listed.contains(&format!("{id}, unstarted, , {peer_url}, , true")), "{listed}");
    // One learner at a time, as etcd's --max-learners default has it.
    let (_, second_peer) = cluster.new_member_urls();
    let refused = etcdctl(&all, &["member", "add", "learner2", &format!("--peer-urls={second_peer}"), "--learner"])
        .expect("etcdctl");
    let refused = String::from_utf8_lossy(&refused.stderr);
    assert!(refused.contains("etcdserver: too many learner members in cluster"), "{refused}");

    let index = cluster
        .start_added("learner1", (client_url.clone(), peer_url.clone()), &initial_cluster_of(&added))
        .expect("start the learner");
    assert!(wait_for_key(&client_url, "before/199").await, "{}", cluster.members[index].log_text());
    // A started member publishes its name and client URLs through Raft soon after it starts.
    let started = format!("{id}, started, learner1, {peer_url}, {client_url}, true");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut listed = etcdctl_ok(&all, &["member", "list"]);
    while !listed.contains(&started) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
        listed = etcdctl_ok(&all, &["member", "list"]);
    }
    assert!(listed.contains(&started), "{listed}");

    // Promoting a voter is refused as etcd refuses it.
    let voter_id =
        format!("{:x}", client(&endpoints[0]).await.status().await.expect("status").header().expect("h").member_id());
    let refused = etcdctl(&all, &["member", "promote", &voter_id]).expect("etcdctl");
    assert!(String::from_utf8_lossy(&refused.stderr).contains("can only promote a learner member"));

    let promoted = etcdctl_ok(&all, &["member", "promote", &id]);
    assert!(promoted.contains("promoted in cluster"), "{promoted}");
    let listed = etcdctl_ok(&all, &["member", "list"]);
    assert!(listed.contains(&format!("{id}, started, learner1, {peer_url}, {client_url}, false")), "{listed}");
    // It refuses writes until it has the promotion itself, as etcd's learner does.
    let mut promoted_member = client(&client_url).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    while promoted_member.status().await.expect("status").is_learner() {
        assert!(Instant::now() < deadline, "the promoted member learns it votes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The promoted member takes writes (forwarded) and its data matches.
    etcdctl_ok(&[&client_url], &["put", "after-promote", "v"]);
    for endpoint in &endpoints {
        assert!(wait_for_key(endpoint, "after-promote").await);
    }
}

/// How a call ended, as the test compares it: "ok", or the gRPC code and message.
fn outcome<T>(result: Result<T, etcd_client::Error>) -> String {
    match result {
        Ok(_) => "ok".to_string(),
        Err(etcd_client::Error::GRpcStatus(status)) => format!("{:?}: {}", status.code(), status.message()),
        Err(err) => err.to_string(),
    }
}

/// The gRPC health service's answer for the whole server.
async fn grpc_health_check(endpoint: &str) -> String {
    use cairn_proto::grpc::health::v1::{health_client::HealthClient, HealthCheckRequest};
    let Ok(mut health) = HealthClient::connect(endpoint.to_string()).await else { return "no connection".into() };
    match health.check(HealthCheckRequest { service: String::new() }).await {
        Ok(answer) => format!("{:?}", answer.into_inner().status()),
        Err(status) => format!("{:?}: {}", status.code(), status.message()),
    }
}

/// A learner serves Status and serializable reads, and refuses the rest with
/// etcd's error and code, as etcd 3.5.1's learner does (run first).
#[tokio::test]
async fn t123_a_learner_refuses_what_etcd_learners_refuse() {
    let mut seen = Vec::new();
    for flavor in [Flavor::Etcd, Flavor::Cairn] {
        let mut cluster = Cluster::start(flavor, 1).await.expect("starts");
        let voter = cluster.endpoints()[0].clone();
        let (client_url, peer_url) = cluster.new_member_urls();
        let added =
            etcdctl_ok(&[&voter], &["member", "add", "learner1", &format!("--peer-urls={peer_url}"), "--learner"]);
        cluster.start_added("learner1", (client_url.clone(), peer_url), &initial_cluster_of(&added)).expect("start");
        // Written after the learner was added: once the learner has it, it knows it is one.
        etcdctl_ok(&[&voter], &["put", "k", "v"]);
        assert!(wait_for_key(&client_url, "k").await, "{flavor:?}: the learner catches up");
        let mut learner = client(&client_url).await;
        let watched = match learner.watch("k", None).await {
            Ok(mut stream) => outcome(stream.message().await),
            Err(err) => outcome::<()>(Err(err)),
        };
        let outcomes = vec![
            ("put", outcome(learner.put("k", "v2", None).await)),
            ("linearizable get", outcome(learner.get("k", None).await)),
            ("serializable get", outcome(learner.get("k", Some(GetOptions::new().with_serializable())).await)),
            ("txn", outcome(learner.txn(etcd_client::Txn::new()).await)),
            ("lease grant", outcome(learner.lease_grant(10, None).await)),
            ("member list", outcome(learner.member_list().await)),
            ("status", outcome(learner.status().await)),
            ("defragment", outcome(learner.defragment().await)),
            ("watch", watched),
            ("grpc health check", grpc_health_check(&client_url).await),
            ("/health", cairn_testkit::http::curl_get(&format!("{client_url}/health?serializable=true"))),
        ];
        seen.push(outcomes);
    }
    assert_eq!(seen[0], seen[1], "etcd 3.5.1 first, cairn second");
    let refused = "Unavailable: etcdserver: rpc not supported for learner";
    assert!(seen[1].iter().any(|(call, outcome)| *call == "put" && outcome == refused), "{:?}", seen[1]);
    assert!(seen[1].iter().any(|(call, outcome)| *call == "serializable get" && outcome == "ok"), "{:?}", seen[1]);
    assert!(seen[1].iter().any(|(call, outcome)| *call == "grpc health check" && outcome == refused), "{:?}", seen[1]);
}

#[tokio::test]
async fn t121_member_is_removed_and_replaced() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let leader = cluster.leader_index().await.expect("leader");
    let victim = (leader + 1) % 3;
    let victim_id = format!(
        "{:x}",
        client(&endpoints[victim]).await.status().await.expect("status").header().expect("h").member_id()
    );
    let survivors: Vec<&str> =
        endpoints.iter().enumerate().filter(|(i, _)| *i != victim).map(|(_, e)| e.as_str()).collect();
    let removed = etcdctl_ok(&survivors, &["member", "remove", &victim_id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    cluster.members[victim].kill();
    assert!(!etcdctl_ok(&survivors, &["member", "list"]).contains(&victim_id));
    etcdctl_ok(&survivors, &["put", "while-two", "v"]);

    let (client_url, peer_url) = cluster.new_member_urls();
    let added = etcdctl_ok(&survivors, &["member", "add", "replacement", &format!("--peer-urls={peer_url}")]);
    cluster.start_added("replacement", (client_url.clone(), peer_url), &initial_cluster_of(&added)).expect("start");
    assert!(wait_for_key(&client_url, "while-two").await);
    etcdctl_ok(&[&client_url], &["put", "from-replacement", "v"]);
    for endpoint in &survivors {
        assert!(wait_for_key(endpoint, "from-replacement").await);
    }
    let listed = etcdctl_ok(&survivors, &["member", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");
}

#[tokio::test]
async fn t122_peer_urls_are_updated_and_the_leader_is_removed() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let all: Vec<&str> = endpoints.iter().map(String::as_str).collect();
    let leader = cluster.leader_index().await.expect("leader");

    // Move a follower to a new peer URL, then restart it there, as etcd's guide does.
    let member = (leader + 1) % 3;
    let member_id = format!(
        "{:x}",
        client(&endpoints[member]).await.status().await.expect("status").header().expect("h").member_id()
    );
    let old_url = cluster.members[member].spec.peer_url.clone();
    let new_url = cluster.new_member_urls().1;
    // Asked of the others: the moved member cannot hear from the leader until it restarts.
    let others: Vec<&str> = all.iter().enumerate().filter(|(i, _)| *i != member).map(|(_, e)| *e).collect();
    let updated = etcdctl_ok(&others, &["member", "update", &member_id, &format!("--peer-urls={new_url}")]);
    assert!(updated.contains("updated in cluster"), "{updated}");
    assert!(etcdctl_ok(&others, &["member", "list"]).contains(&new_url));
    cluster.members[member].kill();
    let spec = &mut cluster.members[member].spec;
    spec.initial_cluster = spec.initial_cluster.replace(&old_url, &new_url);
    spec.peer_url = new_url;
    cluster.restart(member).expect("restart on the new URL");
    etcdctl_ok(&all, &["put", "after-update", "v"]);
    assert!(wait_for_key(&endpoints[member], "after-update").await, "{}", cluster.members[member].log_text());

    let missing = etcdctl(&all, &["member", "remove", "1234"]).expect("etcdctl");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("etcdserver: member not found"));

    // Remove the leader: the others elect a new one and take writes.
    let leader = cluster.leader_index().await.expect("leader");
    let leader_id = format!(
        "{:x}",
        client(&endpoints[leader]).await.status().await.expect("status").header().expect("h").member_id()
    );
    let removed = etcdctl_ok(&all, &["member", "remove", &leader_id]);
    assert!(removed.contains("removed from cluster"), "{removed}");
    // Like etcd, the removed member stops by itself.
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline && cluster.members[leader].is_running() {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!cluster.members[leader].is_running(), "the removed leader still runs");
    assert!(cluster.members[leader].log_text().contains("permanently removed from the cluster"));
    let rest: Vec<&str> = endpoints.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, e)| e.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut written = false;
    while Instant::now() < deadline && !written {
        written = etcdctl(&rest, &["put", "after-leader-removal", "v"]).is_ok_and(|out| out.status.success());
    }
    assert!(written, "writes after removing the leader");
    assert_eq!(etcdctl_ok(&rest, &["member", "list"]).lines().count(), 2);
}
