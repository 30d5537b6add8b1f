//! Leases: compared with etcd 3.5.1, expiry by the leader, and survival of a leader change.

use std::time::{Duration, Instant};

use etcd_client::{GetOptions, LeaseGrantOptions, LeaseTimeToLiveOptions, PutOptions};

use cairn_testkit::{assert_same_as_etcd, client, err_of, Cluster, Flavor, Options};

async fn script(endpoint: &str) -> Vec<String> {
    let mut c = client(endpoint).await;
    let mut out = Vec::new();
    let granted = c.lease_grant(1, None).await.expect("grant");
    out.push(format!("grant ttl=1 -> ttl={} id_set={}", granted.ttl(), granted.id() > 0));
    let lease = c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(1000))).await.expect("grant with id");
    out.push(format!("grant id=1000 -> id={} ttl={}", lease.id(), lease.ttl()));
    out.push(match c.lease_grant(60, Some(LeaseGrantOptions::new().with_id(1000))).await {
        Ok(resp) => format!("duplicate -> {}", resp.id()),
        Err(err) => format!("duplicate -> {}", err_of(err)),
    });
    out.push(match c.lease_grant(9_000_000_001, None).await {
        Ok(resp) => format!("huge -> {}", resp.ttl()),
        Err(err) => format!("huge -> {}", err_of(err)),
    });
    for key in ["l/a", "l/b"] {
        let resp = c.put(key, "v", Some(PutOptions::new().with_lease(1000))).await.expect("put");
        out.push(format!("put {key} lease -> rev {}", resp.header().expect("h").revision()));
    }
    let ttl = c.lease_time_to_live(1000, Some(LeaseTimeToLiveOptions::new().with_keys())).await.expect("ttl");
    let mut keys: Vec<String> = ttl.keys().iter().map(|key| String::from_utf8_lossy(key).into_owned()).collect();
    keys.sort();
    out.push(format!(
        "ttl -> id={} granted={} remaining_ok={} keys={keys:?}",
        ttl.id(),
        ttl.granted_ttl(),
        (58..=60).contains(&ttl.ttl())
    ));
    let (mut keeper, mut responses) = c.lease_keep_alive(1000).await.expect("keepalive");
    keeper.keep_alive().await.expect("send");
    let kept = responses.message().await.expect("message").expect("response");
    out.push(format!("keepalive -> id={} ttl={}", kept.id(), kept.ttl()));
    // The client turns etcd's TTL 0 for an unknown lease into an error.
    let unknown = c.lease_keep_alive(424242).await.map(|_| ());
    out.push(format!("keepalive unknown -> {unknown:?}"));
    let mut ids: Vec<i64> = c.leases().await.expect("leases").leases().iter().map(|lease| lease.id()).collect();
    ids.retain(|id| *id == 1000);
    out.push(format!("leases contains 1000: {}", ids.len()));
    let revoked = c.lease_revoke(1000).await.expect("revoke");
    out.push(format!("revoke -> rev {}", revoked.header().expect("h").revision()));
    let left = c.get("l/", Some(GetOptions::new().with_prefix())).await.expect("get");
    out.push(format!("after revoke: count={} rev={}", left.count(), left.header().expect("h").revision()));
    out.push(match c.lease_revoke(1000).await {
        Ok(_) => "revoke again -> ok".to_string(),
        Err(err) => format!("revoke again -> {}", err_of(err)),
    });
    let gone = c.lease_time_to_live(1000, None).await.expect("ttl");
    out.push(format!("ttl of revoked -> {}", gone.ttl()));
    out.push(match c.put("x", "v", Some(PutOptions::new().with_lease(1000))).await {
        Ok(_) => "put with revoked lease -> ok".to_string(),
        Err(err) => format!("put with revoked lease -> {}", err_of(err)),
    });
    out
}

#[tokio::test]
async fn t100_leases_match_etcd_3_5_1() {
    assert_same_as_etcd(&[], |endpoint| async move { script(&endpoint).await }).await;
}

/// Waits (bounded) until `key` is gone; returns how long it took.
async fn wait_until_gone(kv: &mut etcd_client::KvClient, key: &str, limit: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if kv.get(key, None).await.is_ok_and(|resp| resp.count() == 0) {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

#[tokio::test]
async fn t101_expired_lease_deletes_its_keys_on_every_member() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let leader = cluster.leader_index().await.expect("leader");
    let follower = (leader + 1) % 3;
    let mut c = client(&endpoints[follower]).await;
    let lease = c.lease_grant(2, None).await.expect("grant through a follower");
    c.put("expiring", "v", Some(PutOptions::new().with_lease(lease.id()))).await.expect("put");
    let kept = c.lease_grant(3, None).await.expect("grant");
    c.put("kept", "v", Some(PutOptions::new().with_lease(kept.id()))).await.expect("put");
    // Keep one lease alive through a follower while the other expires.
    let (mut keeper, mut responses) = c.lease_keep_alive(kept.id()).await.expect("keepalive");
    let mut kv = c.kv_client();
    let start = Instant::now();
    let mut expired_after = None;
    while start.elapsed() < Duration::from_secs(10) && expired_after.is_none() {
        keeper.keep_alive().await.expect("send");
        let ttl = responses.message().await.expect("message").expect("response").ttl();
        assert_eq!(ttl, 3, "a keepalive through a follower renews on the leader");
        if kv.get("expiring", None).await.expect("get").count() == 0 {
            expired_after = Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let expired_after = expired_after.expect("the unrenewed lease expired");
    assert!(expired_after >= Duration::from_millis(1500), "not before its TTL: {expired_after:?}");
    assert_eq!(kv.get("kept", None).await.expect("get").count(), 1, "the renewed lease lives");
    for endpoint in &endpoints {
        let mut kv = client(endpoint).await.kv_client();
        assert!(wait_until_gone(&mut kv, "expiring", Duration::from_secs(5)).await.is_some());
    }
}

#[tokio::test]
async fn t102_a_leader_change_does_not_shorten_a_lease() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let leader = cluster.leader_index().await.expect("leader");
    let survivor = (leader + 1) % 3;
    let mut c = client(&endpoints[survivor]).await;
    let lease = c.lease_grant(6, None).await.expect("grant");
    // The timeline is measured from the grant: its original deadline is granted + 6 s.
    let granted = Instant::now();
    c.put("leased", "v", Some(PutOptions::new().with_lease(lease.id()))).await.expect("put");
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(granted.elapsed())).await;
    cluster.members[leader].kill();
    let killed = Instant::now();
    // The new leader gives the lease its full TTL from its election, which is
    // after the kill: the new deadline is at least granted + 8 s.
    let mut ttl_after = None;
    while killed.elapsed() < Duration::from_secs(5) && ttl_after.is_none() {
        match c.lease_time_to_live(lease.id(), None).await {
            Ok(resp) => ttl_after = Some(resp.ttl()),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
    let ttl_after = ttl_after.expect("time to live after failover");
    assert!(ttl_after >= 4, "lease was shortened: {ttl_after}s left");
    tokio::time::sleep(Duration::from_millis(6500).saturating_sub(granted.elapsed())).await;
    let checked_at = granted.elapsed();
    assert_eq!(c.get("leased", None).await.expect("get").count(), 1, "still there past the original deadline");
    assert!(checked_at < Duration::from_secs(8), "checked at {checked_at:?}: inside the window that tells");
    // And it does expire under the new leader.
    let mut kv = c.kv_client();
    assert!(wait_until_gone(&mut kv, "leased", Duration::from_secs(12)).await.is_some());
}

/// Found by the chaos harness: a leader cut off from the others went on
/// answering keepalives, so a client thought its lease renewed while the new
/// leader let it expire. A keepalive must confirm leadership first.
#[tokio::test]
async fn t103_a_leader_without_a_quorum_does_not_renew_leases() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let leader = cluster.leader_index().await.expect("leader");
    let mut c = client(cluster.members[leader].endpoint()).await;
    let lease = c.lease_grant(30, None).await.expect("grant").id();
    let (mut keeper, mut responses) = c.lease_keep_alive(lease).await.expect("keepalive");
    keeper.keep_alive().await.expect("send");
    let kept = responses.message().await.expect("message").expect("response");
    assert_eq!(kept.ttl(), 30, "renewed while the cluster is whole");

    let followers: Vec<usize> = (0..3).filter(|index| *index != leader).collect();
    for follower in &followers {
        cluster.members[*follower].pause();
    }
    let started = Instant::now();
    let renewed_ttl = renew_once(&mut c, lease, Duration::from_secs(20)).await.unwrap_or(0);
    for follower in &followers {
        cluster.members[*follower].resume();
    }
    assert!(
        renewed_ttl <= 0,
        "a leader without a quorum renewed the lease (TTL {renewed_ttl}) after {:?}",
        started.elapsed()
    );
}

/// One keepalive on a fresh stream, bounded: the TTL granted, or `None`.
async fn renew_once(c: &mut etcd_client::Client, lease: i64, limit: Duration) -> Option<i64> {
    let renewed = tokio::time::timeout(limit, async {
        let (mut keeper, mut responses) = c.lease_keep_alive(lease).await?;
        keeper.keep_alive().await?;
        responses.message().await
    })
    .await;
    match renewed {
        Ok(Ok(Some(response))) => Some(response.ttl()),
        _ => None,
    }
}

/// Found by the chaos harness: a leader cut off past a lease's deadline,
/// still believing it led, proposed a revoke on its stale clock; when the
/// partition healed, its write path forwarded the revoke to the new leader,
/// which was keeping the lease alive. Only a leader that has confirmed its
/// leadership revokes, and it never forwards the revoke.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t104_a_deposed_leader_does_not_revoke_a_lease_kept_alive_elsewhere() {
    let cluster = Options::new(Flavor::Cairn, 3).proxies().start().await.expect("starts");
    let old_leader = cluster.leader_index().await.expect("leader");
    let follower = (old_leader + 1) % 3;
    let mut c = client(cluster.members[follower].endpoint()).await;
    let lease = c.lease_grant(3, None).await.expect("grant").id();
    c.put("kept", "v", Some(PutOptions::new().with_lease(lease))).await.expect("put");

    cluster.isolate(old_leader);
    let cut = Instant::now();
    // Renew through the follower while the old leader's deadline passes and
    // it proposes its revoke (it cannot commit it while cut off).
    let mut renewed_by_new_leader = false;
    while cut.elapsed() < Duration::from_secs(6) {
        renewed_by_new_leader |= renew_once(&mut c, lease, Duration::from_secs(1)).await == Some(3);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    cluster.heal_links();
    assert!(renewed_by_new_leader, "a new leader took over and renewed the lease");

    // The old leader learns of the new term, and its pending revoke is dropped.
    let healed = Instant::now();
    let mut renewals = Vec::new();
    while healed.elapsed() < Duration::from_secs(4) {
        renewals.push(renew_once(&mut c, lease, Duration::from_secs(1)).await);
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let kept = c.get("kept", None).await.expect("get").count();
    let left = c.lease_time_to_live(lease, None).await.expect("time to live").ttl();
    assert!(kept == 1 && left > 0, "the kept lease was revoked: key count {kept}, TTL {left}, renewals {renewals:?}");
}

/// Found by etcd-client's suite run in parallel: a lease granted through one
/// member must be listed by every member right after, across leader moves.
#[tokio::test]
async fn t105_leases_are_listed_on_every_member_across_leader_moves() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let mut clients = Vec::new();
    for endpoint in &endpoints {
        clients.push(client(endpoint).await);
    }
    for round in 0..6 {
        let granted = clients[round % 3].lease_grant(60, None).await.expect("grant").id();
        for (member, c) in clients.iter_mut().enumerate() {
            let listed = c.leases().await.expect("leases").leases().iter().any(|lease| lease.id() == granted);
            assert!(listed, "round {round}: lease {granted:x} missing on member {member}");
            let ttl = c.lease_time_to_live(granted, None).await.expect("ttl").ttl();
            assert!(ttl > 50, "round {round}: member {member} gives {ttl}");
        }
        let leader = cluster.leader_index().await.expect("leader");
        let target = (leader + 1) % 3;
        let target_id = clients[target].status().await.expect("status").header().expect("h").member_id();
        let moved = clients[leader].move_leader(target_id).await.expect("move leader");
        assert!(moved.header().is_none(), "etcd answers a leader move without a header");
    }
}
