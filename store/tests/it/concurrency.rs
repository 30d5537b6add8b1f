//! The Lock and Election services: compared with etcd 3.5.1, and a lock under
//! contention, with a waiter whose lease expires in the queue.

use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};

use cairn_proto::v3lockpb::LockRequest;
use cairn_testkit::http::curl_get;
use cairn_testkit::{assert_same_as_etcd, client, err_of, Cluster, Flavor};
use prost::Message;

/// What a holder's key says, with the lease ID (which differs between servers) named.
fn holder(key: &[u8], name: &str, lease: i64) -> String {
    let key = String::from_utf8_lossy(key);
    key.replace(&format!("{name}/{lease:x}"), &format!("{name}/<lease>"))
}

async fn script(endpoint: String) -> Vec<String> {
    let mut c = client(&endpoint).await;
    let mut out = Vec::new();
    let lease = c.lease_grant(60, None).await.expect("grant").id();
    let locked = c.lock("locks/a", Some(LockOptions::new().with_lease(lease))).await.expect("lock");
    out.push(format!(
        "lock -> {} rev {}",
        holder(locked.key(), "locks/a", lease),
        locked.header().expect("h").revision()
    ));
    let again = c.lock("locks/a", Some(LockOptions::new().with_lease(lease))).await.expect("lock again");
    out.push(format!("lock again, same lease -> {}", holder(again.key(), "locks/a", lease)));
    let unlocked = c.unlock(locked.key()).await.expect("unlock");
    out.push(format!("unlock -> rev {}", unlocked.header().expect("h").revision()));
    out.push(match c.lock("locks/b", Some(LockOptions::new().with_lease(424242))).await {
        Ok(resp) => format!("lock, unknown lease -> {:?}", resp.key()),
        Err(err) => format!("lock, unknown lease -> {}", err_of(err)),
    });

    out.push(match c.leader("elections/e").await {
        Ok(resp) => format!("leader of nothing -> {:?}", resp.kv().map(|kv| kv.value().to_vec())),
        Err(err) => format!("leader of nothing -> {}", err_of(err)),
    });
    let campaign = c.campaign("elections/e", "first", lease).await.expect("campaign");
    let leader = campaign.leader().expect("leader key").clone();
    out.push(format!(
        "campaign -> {} rev {} lease_ok {} header rev {}",
        holder(leader.key(), "elections/e", lease),
        leader.rev(),
        leader.lease() == lease,
        campaign.header().expect("h").revision()
    ));
    let mut observe = c.observe("elections/e").await.expect("observe");
    let seen = observe.message().await.expect("stream").expect("a leader");
    out.push(format!("observe -> {:?}", seen.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())));
    let proclaimed = c.proclaim("second", Some(ProclaimOptions::new().with_leader(leader.clone()))).await;
    out.push(format!("proclaim -> rev {}", proclaimed.expect("proclaim").header().expect("h").revision()));
    let seen = observe.message().await.expect("stream").expect("the new value");
    out.push(format!("observe -> {:?}", seen.kv().map(|kv| String::from_utf8_lossy(kv.value()).into_owned())));
    let now = c.leader("elections/e").await.expect("leader");
    let kv = now.kv().expect("kv");
    out.push(format!("leader -> {} {:?}", holder(kv.key(), "elections/e", lease), String::from_utf8_lossy(kv.value())));
    let resigned = c.resign(Some(ResignOptions::new().with_leader(leader.clone()))).await.expect("resign");
    out.push(format!("resign -> rev {}", resigned.header().expect("h").revision()));
    out.push(match c.proclaim("third", Some(ProclaimOptions::new().with_leader(leader.clone()))).await {
        Ok(_) => "proclaim after resign -> ok".to_string(),
        Err(err) => format!("proclaim after resign -> {}", err_of(err)),
    });
    let again = c.resign(Some(ResignOptions::new().with_leader(leader))).await.expect("resign again");
    out.push(format!("resign again -> rev {}", again.header().expect("h").revision()));
    out.push(match c.resign(None).await {
        Ok(_) => "resign without a leader -> ok".to_string(),
        Err(err) => format!("resign without a leader -> {}", err_of(err)),
    });
    // The calls above, counted per method and code (streams aside: etcd counts one when it ends).
    let metrics = curl_get(&format!("{endpoint}/metrics"));
    let mut handled: Vec<String> = metrics
        .lines()
        .filter(|line| line.starts_with("grpc_server_handled_total{") && line.contains("grpc_type=\"unary\""))
        .filter(|line| (line.contains("v3lockpb") || line.contains("v3electionpb")) && !line.ends_with(" 0"))
        .map(str::to_string)
        .collect();
    handled.sort();
    out.extend(handled);
    out
}

#[tokio::test]
async fn t117_lock_and_election_match_etcd_3_5_1() {
    assert_same_as_etcd(&[], script).await;
}

/// Holds the lock for `hold`, checking that nobody else holds it meanwhile.
async fn hold(mut c: Client, lease: i64, holders: Arc<AtomicUsize>, hold: Duration) -> Result<(), String> {
    let locked = c.lock("contended", Some(LockOptions::new().with_lease(lease))).await.map_err(err_of)?;
    let others = holders.fetch_add(1, Ordering::SeqCst);
    tokio::time::sleep(hold).await;
    holders.fetch_sub(1, Ordering::SeqCst);
    assert_eq!(others, 0, "two holders at once");
    c.unlock(locked.key()).await.map_err(err_of)?;
    Ok(())
}

/// Five clients on three members take the lock ten times each, one holder at
/// a time; a sixth waits behind a holder with a lease that expires in the
/// queue, and must be told so rather than given the lock.
#[tokio::test]
async fn t118_one_lock_holder_at_a_time_and_an_expired_waiter_is_refused() {
    let cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let endpoints = cluster.endpoints();
    let holders = Arc::new(AtomicUsize::new(0));

    let mut first = client(&endpoints[0]).await;
    let long = first.lease_grant(60, None).await.expect("grant").id();
    let held = first.lock("contended", Some(LockOptions::new().with_lease(long))).await.expect("lock");
    let mut late = client(&endpoints[1]).await;
    let short = late.lease_grant(2, None).await.expect("grant").id();
    let waiter = tokio::spawn(async move { late.lock("contended", Some(LockOptions::new().with_lease(short))).await });
    // Its lease expires in the queue: it is told so once its key goes, while the holder still holds.
    let refused = tokio::time::timeout(Duration::from_secs(10), waiter).await.expect("answers").expect("joins");
    let refused = refused.map(|resp| resp.key().to_vec()).map_err(err_of);
    assert_eq!(refused, Err("ERR Unknown session expired".to_string()), "the expired waiter must not hold the lock");
    first.unlock(held.key()).await.expect("unlock");

    let mut tasks = Vec::new();
    for i in 0..5 {
        let mut c = client(&endpoints[i % 3]).await;
        let lease = c.lease_grant(60, None).await.expect("grant").id();
        let holders = holders.clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 {
                hold(c.clone(), lease, holders.clone(), Duration::from_millis(20)).await?;
            }
            Ok::<(), String>(())
        }));
    }
    for task in tasks {
        let result = tokio::time::timeout(Duration::from_secs(120), task).await.expect("in time").expect("joins");
        assert_eq!(result, Ok(()));
    }
}

/// A Lock that outlives its `grpc-timeout` is counted with the code it got.
/// tonic's server answers such a call itself with Cancelled, "Timeout
/// expired", where etcd 3.5.1 answers Unknown, "context deadline exceeded"
/// (docs/compatibility.md); the call was not counted at all before.
#[tokio::test]
async fn t189_a_call_cut_off_by_its_grpc_timeout_is_counted() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    let mut c = client(&endpoint).await;
    let holder = c.lease_grant(60, None).await.expect("grant").id();
    let waiter = c.lease_grant(60, None).await.expect("grant").id();
    c.lock("held", Some(LockOptions::new().with_lease(holder))).await.expect("lock");
    // One gRPC message, as curl sends it: no client-side deadline, only the header.
    let request = LockRequest { name: b"held".to_vec(), lease: waiter }.encode_to_vec();
    let mut frame = vec![0];
    frame.extend((request.len() as u32).to_be_bytes());
    frame.extend(request);
    let dir = tempfile::tempdir().expect("tempdir");
    let body = dir.path().join("lock.bin");
    std::fs::write(&body, frame).expect("write the request");
    let out = Command::new("curl")
        .args(["-s", "-D", "-", "-o", "/dev/null", "--max-time", "10", "--http2-prior-knowledge"])
        .args(["-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 300m"])
        .arg("--data-binary")
        .arg(format!("@{}", body.display()))
        .arg(format!("{endpoint}/v3lockpb.Lock/Lock"))
        .output()
        .expect("curl");
    let headers = String::from_utf8_lossy(&out.stdout);
    assert!(headers.contains("grpc-status: 1"), "the waiter was cut off at its timeout: {headers}");
    let metrics = curl_get(&format!("{endpoint}/metrics"));
    let counted = "grpc_server_handled_total{grpc_code=\"Canceled\",grpc_method=\"Lock\",grpc_service=\"v3lockpb.Lock\",grpc_type=\"unary\"} 1";
    assert!(metrics.contains(counted), "missing {counted}");
}
