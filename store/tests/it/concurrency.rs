//! The Lock and Election services: compared with etcd 3.5.1, and a lock under
//! contention, with a waiter whose lease expires in the queue.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{Client, LockOptions, ProclaimOptions, ResignOptions};

use cairn_testkit::{assert_same_as_etcd, client, err_of, Cluster, Flavor};

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
