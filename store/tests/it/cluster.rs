//! Multi-member behaviour: replication, forwarding, leader failure, catch-up.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use etcd_client::GetOptions;

use cairn_testkit::{client, etcdctl_ok, Cluster, Flavor};

/// Reads every key under `prefix` from one member, locally (serializable).
async fn local_keys(endpoint: &str, prefix: &str) -> Vec<String> {
    let mut kv = client(endpoint).await.kv_client();
    let resp = kv
        .get(prefix, Some(GetOptions::new().with_prefix().with_serializable().with_keys_only()))
        .await
        .expect("serializable get");
    resp.kvs().iter().map(|kv| String::from_utf8_lossy(kv.key()).into_owned()).collect()
}

/// Waits (bounded) until a member's local copy holds `expected` keys under `prefix`.
async fn wait_for_keys(endpoint: &str, prefix: &str, expected: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let keys = local_keys(endpoint, prefix).await;
        if keys.len() >= expected || Instant::now() > deadline {
            return keys;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn t40_three_members_replicate_and_forward() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let follower = (leader + 1) % 3;
    let endpoints = cluster.endpoints();

    // A write sent to a follower is forwarded; a linearizable read on another
    // follower sees it at once.
    etcdctl_ok(&[&endpoints[follower]], &["put", "fwd", "v"]);
    let other = (leader + 2) % 3;
    assert_eq!(etcdctl_ok(&[&endpoints[other]], &["get", "fwd", "--print-value-only"]).trim(), "v");

    // Headers carry the cluster ID, the serving member's ID and the term.
    let mut kv = client(&endpoints[follower]).await.kv_client();
    let resp = kv.get("fwd", None).await.expect("get");
    let header = resp.header().expect("header");
    assert!(header.cluster_id() != 0 && header.member_id() != 0 && header.raft_term() >= 1);
    assert_eq!(header.revision(), 2);

    // Member list names all three with their URLs.
    let list = etcdctl_ok(&[&endpoints[0]], &["member", "list"]);
    for (index, member) in cluster.members.iter().enumerate() {
        assert!(list.contains(&format!("m{index}")), "{list}");
        assert!(list.contains(&member.spec.peer_url), "{list}");
        assert!(list.contains(member.endpoint()), "{list}");
    }
    let ids: Vec<u64> = {
        let mut cl = client(&endpoints[0]).await.cluster_client();
        let members = cl.member_list().await.expect("member list");
        members.members().iter().map(|member| member.id()).collect()
    };
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&header.member_id()));

    for endpoint in &endpoints {
        assert_eq!(wait_for_keys(endpoint, "fwd", 1).await, vec!["fwd".to_string()]);
    }
}

/// A follower forwards concurrent writes and linearizable reads to the
/// leader in batches; every client still gets its own answer.
#[tokio::test]
async fn t41_a_follower_batches_what_it_forwards_and_answers_each_request() {
    const CLIENTS: usize = 64;
    const PUTS: usize = 10;
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let follower = (leader + 1) % 3;
    let endpoint = cluster.endpoints()[follower].clone();
    let member = &cluster.members[follower];
    // A member forwards a write of its own too, publishing its name: counted
    // from after every member's name is known.
    let mut members = client(&endpoint).await.cluster_client();
    let deadline = Instant::now() + Duration::from_secs(10);
    while members.member_list().await.expect("member list").members().iter().any(|member| member.name().is_empty()) {
        assert!(Instant::now() < deadline, "every member publishes its name");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let counted = |kind: &str| {
        let requests = member.metric(&format!("cairn_forwarded_{kind}_requests_total")).expect("requests counted");
        let rpcs = member.metric(&format!("cairn_forwarded_{kind}_rpcs_total")).expect("rpcs counted");
        (requests, rpcs)
    };
    let before = [counted("write"), counted("read_index")];
    let clients = (0..CLIENTS).map(|c| {
        let endpoint = endpoint.clone();
        tokio::spawn(async move {
            let mut kv = client(&endpoint).await.kv_client();
            let mut revisions = Vec::new();
            for i in 0..PUTS {
                let (key, value) = (format!("batch/{c:02}/{i}"), format!("{c}-{i}"));
                let put = kv.put(key.clone(), value.clone(), None).await.expect("forwarded put");
                let revision = put.header().expect("header").revision();
                // The follower's read index covers this client's own write.
                let got = kv.get(key, None).await.expect("linearizable get");
                assert_eq!(got.kvs().first().map(|kv| kv.value()), Some(value.as_bytes()));
                assert!(got.header().expect("header").revision() >= revision);
                revisions.push(revision);
            }
            revisions
        })
    });
    let mut revisions: Vec<i64> = futures::future::join_all(clients)
        .await
        .into_iter()
        .flat_map(|revisions| revisions.expect("client task"))
        .collect();
    revisions.sort_unstable();
    revisions.dedup();
    assert_eq!(revisions.len(), CLIENTS * PUTS, "every write has its own revision");
    let mut kv = client(&cluster.endpoints()[leader]).await.kv_client();
    let count = kv.get("batch/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count");
    assert_eq!(count.count(), (CLIENTS * PUTS) as i64);

    for (kind, (requests_before, rpcs_before)) in ["write", "read_index"].into_iter().zip(before) {
        let (requests, rpcs) = counted(kind);
        let (requests, rpcs) = (requests - requests_before, rpcs - rpcs_before);
        // More if a forward was retried (after a leader change, say).
        assert!(requests >= (CLIENTS * PUTS) as u64, "{kind}: {requests} requests");
        assert!(rpcs < requests, "{kind}: {rpcs} RPCs carried {requests} requests");
    }
}

/// A write answered by a member is seen by a serializable read there next,
/// and a watch created there next starts after it, as in etcd: a follower
/// answers a forwarded KV write at once and holds its local reads until it
/// has applied the write. Against etcd 3.5.1 first, then cairn.
#[tokio::test]
async fn t42_a_serializable_read_on_a_follower_sees_the_write_it_answered() {
    const CLIENTS: usize = 16;
    const PUTS: usize = 100;
    /// Every this many puts, a watch is created as well.
    const WATCH_EVERY: usize = 5;
    for flavor in [Flavor::Etcd, Flavor::Cairn] {
        let cluster = Cluster::start(flavor, 3).await.expect("cluster starts");
        let leader = cluster.leader_index().await.expect("leader");
        let followers: Vec<String> = (1..3).map(|step| cluster.endpoints()[(leader + step) % 3].clone()).collect();
        let clients = (0..CLIENTS).map(|c| {
            let endpoint = followers[c % followers.len()].clone();
            tokio::spawn(async move {
                let mut member = client(&endpoint).await;
                let mut kv = member.kv_client();
                let key = format!("ryw/{c:02}");
                let (mut missed, mut watched_before) = (0, 0);
                for i in 0..PUTS {
                    let value = i.to_string();
                    let put = kv.put(key.clone(), value.clone(), None).await.expect("put");
                    let revision = put.header().expect("header").revision();
                    if i % WATCH_EVERY == 0 {
                        let mut watch = member.watch(key.clone(), None).await.expect("watch");
                        let created = tokio::time::timeout(Duration::from_secs(10), watch.message())
                            .await
                            .expect("created in time")
                            .expect("watch stream")
                            .expect("created");
                        if created.header().expect("header").revision() < revision {
                            watched_before += 1;
                        }
                    }
                    let serializable = Some(GetOptions::new().with_serializable());
                    let got = kv.get(key.clone(), serializable).await.expect("serializable get");
                    if got.kvs().first().map(|kv| kv.value()) != Some(value.as_bytes()) {
                        missed += 1;
                    }
                }
                (missed, watched_before)
            })
        });
        let (mut missed, mut watched_before) = (0, 0);
        for counts in futures::future::join_all(clients).await {
            let (client_missed, client_watched_before) = counts.expect("client");
            missed += client_missed;
            watched_before += client_watched_before;
        }
        assert_eq!(missed, 0, "{flavor:?}: {missed} of {} reads missed the write just answered", CLIENTS * PUTS);
        let watches = CLIENTS * PUTS / WATCH_EVERY;
        assert_eq!(watched_before, 0, "{flavor:?}: {watched_before} of {watches} watches started before the write");
    }
}

#[tokio::test]
async fn t45_five_members_serve_writes_on_every_member() {
    let cluster = Cluster::start(Flavor::Cairn, 5).await.expect("cluster starts");
    let endpoints = cluster.endpoints();
    for (index, endpoint) in endpoints.iter().enumerate() {
        etcdctl_ok(&[endpoint], &["put", &format!("five/{index}"), "x"]);
    }
    for endpoint in &endpoints {
        assert_eq!(wait_for_keys(endpoint, "five/", 5).await.len(), 5);
    }
    let revision = client(&endpoints[0]).await.kv_client().get("five/", None).await.expect("get");
    assert_eq!(revision.header().expect("header").revision(), 6, "five writes, five revisions");
}

#[tokio::test]
async fn t50_leader_kill_loses_no_acknowledged_write() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let endpoints = cluster.endpoints();

    // A writer streams writes across all members; it records what was acknowledged.
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let acknowledged = acknowledged.clone();
        let stop = stop.clone();
        let survivors: Vec<String> =
            endpoints.iter().enumerate().filter(|(i, _)| *i != leader).map(|(_, e)| e.clone()).collect();
        tokio::spawn(async move {
            let mut kv = client(&survivors[0]).await.kv_client();
            let mut failures = 0;
            for i in 0..100_000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let key = format!("stream/{i:06}");
                match kv.put(key.clone(), "v", None).await {
                    Ok(_) => acknowledged.lock().expect("lock").push(key),
                    Err(_) => failures += 1,
                }
            }
            failures
        })
    };
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before_kill = acknowledged.lock().expect("lock").len();
    assert!(before_kill > 0, "writes flowed before the kill");
    cluster.members[leader].kill();
    let killed_at = Instant::now();

    // A new leader accepts writes within two election rounds: followers
    // campaign within [1, 1.5) x the election timeout (1 s), and a split vote
    // takes one more round. How fast recovery is, is measured by chaos, not here.
    let survivor = &endpoints[(leader + 1) % 3];
    let mut kv = client(survivor).await.kv_client();
    let mut recovered = None;
    while killed_at.elapsed() < Duration::from_secs(10) {
        if kv.put("after-kill", "v", None).await.is_ok() {
            recovered = Some(killed_at.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovered = recovered.expect("a new leader accepts writes");
    assert!(recovered < Duration::from_secs(4), "took {recovered:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(acknowledged.len() > before_kill, "writes continued after the kill");

    // The killed member comes back and holds every acknowledged write, as do the others.
    cluster.restart(leader).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).await.expect("ready");
    for endpoint in &endpoints {
        let keys = wait_for_keys(endpoint, "stream/", acknowledged.len()).await;
        let missing: Vec<&String> = acknowledged.iter().filter(|key| !keys.contains(key)).collect();
        assert!(
            missing.is_empty(),
            "{endpoint} lost {} acknowledged writes: {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

#[tokio::test]
async fn t60_member_down_during_writes_catches_up_from_the_log() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let down = (leader + 1) % 3;
    let endpoints = cluster.endpoints();
    assert!(cluster.members[down].terminate(), "SIGTERM stops a member cleanly");
    // The leader's AppendEntries streams into it end with the stop rather than hold it up.
    let log = cluster.members[down].log_text();
    assert!(log.contains("shutting down") && !log.contains("did not stop in time"), "{log}");
    let mut kv = client(&endpoints[leader]).await.kv_client();
    for i in 0..300 {
        kv.put(format!("catchup/{i:04}"), format!("{i}"), None).await.expect("write with one member down");
    }
    cluster.restart(down).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).await.expect("ready");
    assert_eq!(wait_for_keys(&endpoints[down], "catchup/", 300).await.len(), 300);
    let resp = client(&endpoints[down])
        .await
        .kv_client()
        .get("catchup/0299", Some(GetOptions::new().with_serializable()))
        .await
        .expect("get");
    assert_eq!(resp.kvs()[0].value(), b"299");
    assert_eq!(resp.kvs()[0].mod_revision(), 301);
}

/// Requests of the largest size a client may send, from 64 clients at once:
/// entries and peer messages are bounded by bytes, so a follower that was down
/// catches up over more than the 256 MiB one peer message may carry.
#[tokio::test]
async fn t62_large_values_from_64_clients_replicate_to_a_member_that_was_down() {
    const CLIENTS: usize = 64;
    const PUTS_PER_CLIENT: usize = 3;
    // --max-request-bytes (1.5 MiB) bounds the encoded request; leave room for the key.
    const VALUE_BYTES: usize = 1536 * 1024 - 64;
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let down = (leader + 1) % 3;
    let endpoints = cluster.endpoints();
    assert!(cluster.members[down].terminate(), "the follower stops");

    let value = Arc::new(vec![b'x'; VALUE_BYTES]);
    let mut writers = Vec::new();
    for writer in 0..CLIENTS {
        let (endpoint, value) = (endpoints[leader].clone(), value.clone());
        writers.push(tokio::spawn(async move {
            let mut kv = client(&endpoint).await.kv_client();
            for put in 0..PUTS_PER_CLIENT {
                kv.put(format!("big/{writer:02}/{put}"), value.as_slice(), None)
                    .await
                    .map_err(|err| err.to_string())?;
            }
            Ok::<(), String>(())
        }));
    }
    for writer in writers {
        writer.await.expect("writer").expect("every large put is acknowledged");
    }

    cluster.restart(down).expect("restart");
    cluster.wait_ready(Duration::from_secs(60)).await.expect("ready");
    let expected = CLIENTS * PUTS_PER_CLIENT;
    for endpoint in &endpoints {
        assert_eq!(wait_for_keys(endpoint, "big/", expected).await.len(), expected, "{endpoint} has every value");
    }
    let mut kv = client(&endpoints[down]).await.kv_client();
    let last =
        kv.get(format!("big/{:02}/{}", CLIENTS - 1, PUTS_PER_CLIENT - 1), Some(GetOptions::new().with_serializable()));
    let last = last.await.expect("get");
    assert_eq!(last.kvs()[0].value().len(), VALUE_BYTES, "the caught-up member holds whole values");
}

/// A follower forwards writes and read-index requests to the leader on
/// long-lived streams, links of their own (`raft::link`), reused from request
/// to request. When the leader restarts the streams into it end, and the next
/// forward opens a new one rather than fail on one that has ended.
#[tokio::test]
async fn t185_a_follower_forwards_on_streams_and_opens_new_ones_after_the_leader_restarts() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let follower = (leader + 1) % 3;
    let endpoints = cluster.endpoints();
    let opened = |cluster: &Cluster| {
        cluster.members[follower].metric("cairn_forward_streams_opened_total").expect("streams opened are counted")
    };
    let read_streams = |cluster: &Cluster| {
        let metric = "cairn_read_index_streams_opened_total";
        cluster.members[follower].metric(metric).expect("read-index streams opened are counted")
    };
    // Every stream opened is a link: the members are of one build.
    let all_on_links = |cluster: &Cluster| {
        let follower = &cluster.members[follower];
        for kind in ["forward", "read_index"] {
            let streams = follower.metric(&format!("cairn_{kind}_streams_opened_total")).expect("counted");
            let links = follower.metric(&format!("cairn_{kind}_link_streams_opened_total")).expect("counted");
            assert_eq!(links, streams, "{kind}: {links} of {streams} streams are links");
        }
    };
    // Linearizable gets through the follower, one after another; each sees the
    // last put, and returns how many read-index streams they opened.
    let gets = |cluster: &Cluster, last: String| {
        let before = read_streams(cluster);
        let endpoint = endpoints[follower].clone();
        async move {
            let mut kv = client(&endpoint).await.kv_client();
            for _ in 0..20 {
                let got = kv.get(last.clone(), None).await.expect("linearizable get through the follower");
                assert_eq!(got.kvs().len(), 1, "the get sees {last}");
            }
            before
        }
    };
    let mut kv = client(&endpoints[follower]).await.kv_client();
    // The first put may go beside the member's own publish of its attributes,
    // each on a stream of its own; after it, at least one stream is idle.
    kv.put("stream-fwd/first", "v", None).await.expect("forwarded put");
    let before = opened(&cluster);
    for i in 0..20 {
        kv.put(format!("stream-fwd/{i:02}"), "v", None).await.expect("forwarded put");
    }
    // At most one: a publish still retrying may take the idle stream once.
    let streams = opened(&cluster) - before;
    assert!(streams <= 1, "20 forwards one after another opened {streams} streams");
    let before = gets(&cluster, "stream-fwd/19".into()).await;
    // The member's own reads at start may have opened the stream already.
    let streams = read_streams(&cluster) - before;
    assert!(streams <= 1, "20 read-index requests one after another opened {streams} streams");
    assert!(read_streams(&cluster) >= 1, "read-index requests go on a stream");
    all_on_links(&cluster);

    let read_streams_before_restart = read_streams(&cluster);
    assert!(cluster.members[leader].terminate(), "the leader stops");
    cluster.restart(leader).expect("restart");
    cluster.wait_ready(Duration::from_secs(30)).await.expect("ready");
    // The restarted member leads again, so that the follower forwards to it.
    let leader_id =
        client(&endpoints[leader]).await.status().await.expect("status").header().expect("header").member_id();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let current = cluster.leader_index().await.expect("a leader");
        if current == leader {
            break;
        }
        assert!(Instant::now() < deadline, "leadership moves back to the restarted member");
        let _ = client(&endpoints[current]).await.maintenance_client().move_leader(leader_id).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let before = opened(&cluster);
    for i in 20..40 {
        kv.put(format!("stream-fwd/{i:02}"), "v", None).await.expect("forwarded put after the leader restarted");
    }
    assert!(opened(&cluster) > before, "a new stream into the restarted leader");
    gets(&cluster, "stream-fwd/39".into()).await;
    let streams = read_streams(&cluster);
    assert!(streams > read_streams_before_restart, "a new read-index stream into the restarted leader");
    all_on_links(&cluster);
    let mut on_leader = client(&endpoints[leader]).await.kv_client();
    let count =
        on_leader.get("stream-fwd/", Some(GetOptions::new().with_prefix().with_count_only())).await.expect("count");
    assert_eq!(count.count(), 41);
}

/// Heartbeats travel on long-lived AppendEntries streams: an idle leader
/// reuses them for the ten heartbeats a second it sends each follower, where a
/// stream of their own would open one each. (A heartbeat that times out on a
/// busy machine drops its stream, and the next opens one.)
#[tokio::test]
async fn t186_heartbeats_reuse_long_lived_streams() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let opened =
        || cluster.members[leader].metric("cairn_append_streams_opened_total").expect("append streams are counted");
    // Answered heartbeats: each is a timed round trip, summed over the followers.
    let heartbeats_sent = || -> u64 {
        let metrics = cluster.members[leader].metrics();
        let counts = metrics.lines().filter(|line| line.starts_with("etcd_network_peer_round_trip_time_seconds_count"));
        counts.filter_map(|line| line.rsplit(' ').next()?.parse::<u64>().ok()).sum()
    };
    let (streams, heartbeats) = (opened(), heartbeats_sent());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (streams, heartbeats) = (opened() - streams, heartbeats_sent() - heartbeats);
    assert!(streams * 5 <= heartbeats, "{heartbeats} heartbeats opened {streams} streams");
    assert!(heartbeats >= 20, "2 s of heartbeats to 2 followers: {heartbeats} round trips");
}

/// Replication travels on links of its own beside the gRPC peer service on
/// the peer URL (`raft::link`): the leader opens one to each follower
/// and keeps it across writes, and every member holds every write.
#[tokio::test]
async fn t195_replication_travels_on_long_lived_links_of_its_own() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("cluster starts");
    let leader = cluster.leader_index().await.expect("leader");
    let links = || cluster.members[leader].metric("cairn_link_streams_opened_total").expect("links are counted");
    let mut kv = client(cluster.members[leader].endpoint()).await.kv_client();
    kv.put("link/warm", "v", None).await.expect("put");
    let opened = links();
    assert!(opened >= 2, "a link to each follower: {opened}");
    for i in 0..200 {
        kv.put(format!("link/{i:03}"), "v", None).await.expect("put");
    }
    // A link that a slow answer dropped is opened again, but not one per write.
    assert!(links() - opened < 20, "{} links for 200 writes", links() - opened);
    for member in &cluster.members {
        let keys = wait_for_keys(member.endpoint(), "link/", 201).await;
        assert_eq!(keys.len(), 201, "every write on {}", member.endpoint());
    }
}
