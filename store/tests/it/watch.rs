//! Watch: compared with etcd 3.5.1, and checked against the KV history for
//! etcd's guarantees (ordered, no duplicates, no gaps, atomic revisions,
//! correct prev_kv, resumable on any member).

use std::time::Duration;

use etcd_client::{
    DeleteOptions, EventType, GetOptions, Txn, TxnOp, WatchFilterType, WatchOptions, WatchResponse, WatchStream,
};

use cairn_testkit::{assert_same_as_etcd, client, Cluster, Flavor};

const WAIT: Duration = Duration::from_secs(10);

fn describe(resp: &WatchResponse, events: &[etcd_client::Event]) -> String {
    let events: Vec<String> = events
        .iter()
        .map(|event| {
            let kv = event.kv().expect("kv");
            format!(
                "{:?} {}={} m{} c{} v{} prev={:?}",
                event.event_type(),
                String::from_utf8_lossy(kv.key()),
                String::from_utf8_lossy(kv.value()),
                kv.mod_revision(),
                kv.create_revision(),
                kv.version(),
                event.prev_kv().map(|prev| (String::from_utf8_lossy(prev.value()).into_owned(), prev.mod_revision()))
            )
        })
        .collect();
    format!(
        "id={} created={} canceled={} compact={} reason={:?} rev={} events=[{}]",
        resp.watch_id(),
        resp.created(),
        resp.canceled(),
        resp.compact_revision(),
        resp.cancel_reason(),
        resp.header().map_or(-1, |header| header.revision()),
        events.join("; ")
    )
}

/// Reads responses until none arrives for a while (at least `count` are
/// awaited first), one line per event or control response. Different
/// watchers' responses interleave in any order, and a watcher may batch
/// revisions differently, so the lines are sorted.
async fn read(stream: &mut WatchStream, count: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut responses = 0;
    loop {
        let wait = if responses < count { WAIT } else { Duration::from_millis(500) };
        match tokio::time::timeout(wait, stream.message()).await {
            Ok(Ok(Some(resp))) => {
                responses += 1;
                if resp.events().is_empty() {
                    out.push(describe(&resp, &[]));
                }
                for event in resp.events() {
                    out.push(describe(&resp, std::slice::from_ref(event)));
                }
            }
            Ok(other) => {
                out.push(format!("stream ended: {other:?}"));
                break;
            }
            Err(_) if responses >= count => break,
            Err(_) => {
                out.push("timed out".to_string());
                break;
            }
        }
    }
    out.sort();
    out
}

async fn script(endpoint: &str) -> Vec<String> {
    let mut c = client(endpoint).await;
    let mut kv = c.kv_client();
    for (key, value) in [("a", "1"), ("b", "2")] {
        kv.put(key, value, None).await.expect("put");
    }
    kv.delete("a", None).await.expect("delete");
    // Written while no watcher wants previous values: a later watcher's prev_kv is read back.
    kv.put("a", "3", None).await.expect("put");
    kv.put("a", "4", None).await.expect("put");

    let mut out = Vec::new();
    let mut stream =
        c.watch("a", Some(WatchOptions::new().with_start_revision(1).with_prev_key())).await.expect("watch");
    out.extend(read(&mut stream, 2).await);
    stream
        .watch(
            "",
            Some(WatchOptions::new().with_all_keys().with_start_revision(3).with_filters([WatchFilterType::NoPut])),
        )
        .await
        .expect("second watcher");
    out.extend(read(&mut stream, 2).await);
    stream.request_progress().await.expect("progress");
    out.extend(read(&mut stream, 1).await);
    stream.watch("live/", Some(WatchOptions::new().with_prefix().with_prev_key())).await.expect("live watcher");
    out.extend(read(&mut stream, 1).await);
    kv.put("live/x", "1", None).await.expect("put");
    kv.put("live/x", "2", None).await.expect("put");
    kv.delete("live/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    out.extend(read(&mut stream, 3).await);
    stream.cancel(0).await.expect("cancel");
    out.extend(read(&mut stream, 1).await);

    kv.compact(5, None).await.expect("compact");
    let mut compacted = c.watch("a", Some(WatchOptions::new().with_start_revision(2))).await.expect("watch");
    out.extend(read(&mut compacted, 2).await);
    out
}

#[tokio::test]
async fn t90_watch_matches_etcd_3_5_1() {
    let actual = assert_same_as_etcd(&[], |endpoint| async move { script(&endpoint).await }).await;
    assert!(actual.iter().any(|line| line.contains("compact=5")), "{actual:#?}");
}

/// Collects events until `last_revision` is reached or the wait runs out.
async fn collect_events(stream: &mut WatchStream, last_revision: i64) -> Vec<(i64, EventType, String, Option<String>)> {
    let mut events = Vec::new();
    let mut responses_seen = 0;
    loop {
        if events.last().is_some_and(|(rev, _, _, _): &(i64, EventType, String, Option<String>)| *rev >= last_revision)
        {
            return events;
        }
        let Ok(Ok(Some(resp))) = tokio::time::timeout(WAIT, stream.message()).await else { return events };
        responses_seen += 1;
        let mut revisions_in_response = Vec::new();
        for event in resp.events() {
            let kv = event.kv().expect("kv");
            revisions_in_response.push(kv.mod_revision());
            events.push((
                kv.mod_revision(),
                event.event_type(),
                String::from_utf8_lossy(kv.key()).into_owned(),
                event.prev_kv().map(|prev| String::from_utf8_lossy(prev.value()).into_owned()),
            ));
        }
        assert!(responses_seen < 100_000, "bounded");
    }
}

/// The expected events under `prefix` from the KV history: one put per key per revision here.
fn check_against_history(events: &[(i64, EventType, String, Option<String>)], first: i64, last: i64, keys: usize) {
    let revisions: Vec<i64> = events.iter().map(|(rev, _, _, _)| *rev).collect();
    let expected: Vec<i64> = (first..=last).collect();
    assert_eq!(revisions.len(), expected.len(), "no gaps and no duplicates");
    assert_eq!(revisions, expected, "ordered by revision");
    for (i, (rev, kind, key, prev)) in events.iter().enumerate() {
        assert_eq!(*kind, EventType::Put);
        let n = (rev - first) as usize;
        assert_eq!(key, &format!("g/{:03}", n % keys));
        // The previous value of this key is the value written `keys` revisions earlier.
        let expected_prev = (n >= keys).then(|| format!("{}", n - keys));
        assert_eq!(prev, &expected_prev, "prev_kv of event {i}");
    }
}

#[tokio::test]
async fn t91_slow_watcher_catches_up_from_storage_without_gaps() {
    // A tiny in-memory event log forces watchers onto the storage path.
    let cluster = Cluster::start_with(Flavor::Cairn, 1, &["--watch-event-log-size", "16"]).await.expect("starts");
    let endpoint = cluster.members[0].endpoint();
    let mut c = client(endpoint).await;
    let mut kv = c.kv_client();
    let keys = 50;
    let total = 2500;
    for n in 0..total {
        kv.put(format!("g/{:03}", n % keys), format!("{n}"), None).await.expect("put");
    }
    let last = kv.get("g/", Some(GetOptions::new().with_prefix())).await.expect("get").header().expect("h").revision();
    assert_eq!(last, total as i64 + 1);
    let mut stream = c
        .watch("g/", Some(WatchOptions::new().with_prefix().with_start_revision(2).with_prev_key()))
        .await
        .expect("watch");
    let events = collect_events(&mut stream, last).await;
    check_against_history(&events, 2, last, keys);
}

#[tokio::test]
async fn t92_watch_resumes_on_another_member_across_a_leader_kill() {
    let mut cluster = Cluster::start(Flavor::Cairn, 3).await.expect("starts");
    let leader = cluster.leader_index().await.expect("leader");
    let endpoints = cluster.endpoints();
    let watched = (leader + 1) % 3;
    let other = (leader + 2) % 3;
    let keys = 10;

    let mut writer = client(&endpoints[other]).await.kv_client();
    let mut stream = client(&endpoints[watched])
        .await
        .watch("g/", Some(WatchOptions::new().with_prefix().with_start_revision(2).with_prev_key()))
        .await
        .expect("watch");
    for n in 0..100 {
        writer.put(format!("g/{:03}", n % keys), format!("{n}"), None).await.expect("put");
    }
    let first_half = collect_events(&mut stream, 101).await;
    let resume_from = first_half.last().map_or(2, |(rev, _, _, _)| rev + 1);
    drop(stream);

    cluster.members[leader].kill();
    let mut written = 100;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while written < 200 && std::time::Instant::now() < deadline {
        if writer.put(format!("g/{:03}", written % keys), format!("{written}"), None).await.is_ok() {
            written += 1;
        }
    }
    assert_eq!(written, 200, "writes resumed after the leader kill");
    // Resume on a different member than before.
    let mut resumed = client(&endpoints[other])
        .await
        .watch("g/", Some(WatchOptions::new().with_prefix().with_start_revision(resume_from).with_prev_key()))
        .await
        .expect("watch");
    let second_half = collect_events(&mut resumed, 201).await;
    let all: Vec<_> = first_half.into_iter().chain(second_half).collect();
    check_against_history(&all, 2, 201, keys);
}

async fn progress_and_fragment_script(endpoint: &str) -> Vec<String> {
    let mut c = client(endpoint).await;
    c.put("p", "1", None).await.expect("put");
    let mut out = Vec::new();
    let mut stream =
        c.watch("p", Some(WatchOptions::new().with_progress_notify())).await.expect("watch with progress notify");
    out.extend(read(&mut stream, 1).await);
    // With nothing happening, a progress notification arrives by itself.
    match tokio::time::timeout(Duration::from_secs(5), stream.message()).await {
        Ok(Ok(Some(resp))) => out.push(format!("periodic: {}", describe(&resp, resp.events()))),
        other => out.push(format!("no progress notification: {other:?}")),
    }
    // A small delete whose events carry large previous values outgrows the
    // fragment size (the request limit plus etcd's 512 KiB gRPC allowance).
    let value = "x".repeat(290_000);
    for i in 0..4 {
        c.put(format!("f/{i}"), value.clone(), None).await.expect("put");
    }
    let options = WatchOptions::new().with_prefix().with_fragment().with_prev_key();
    let mut fragmented = c.watch("f/", Some(options)).await.expect("watch");
    out.extend(read(&mut fragmented, 1).await);
    c.delete("f/", Some(etcd_client::DeleteOptions::new().with_prefix())).await.expect("delete");
    let mut sizes = Vec::new();
    while let Ok(Ok(Some(resp))) = tokio::time::timeout(Duration::from_millis(1500), fragmented.message()).await {
        sizes.push(format!("{} events", resp.events().len()));
    }
    out.push(format!("fragments: {sizes:?}"));
    out
}

#[tokio::test]
async fn t93_progress_notify_and_fragments_match_etcd_3_5_1() {
    let flags = ["--experimental-watch-progress-notify-interval", "1s", "--max-request-bytes", "300000"];
    let actual =
        assert_same_as_etcd(&flags, |endpoint| async move { progress_and_fragment_script(&endpoint).await }).await;
    assert!(
        actual.iter().any(|line| line.starts_with("periodic: id=0") && line.contains("rev=2 events=[]")),
        "{actual:?}"
    );
    assert!(actual.iter().any(|line| line.starts_with("fragments: [\"2 events\", \"2 events\"]")), "{actual:?}");
}

/// Progress requests as kube-apiserver sends them: answered once every watcher
/// on the stream is synced, never on a stream without watchers, and not while a
/// watcher starts past the current revision (etcd 3.5.13+ and 3.6).
async fn progress_request_script(endpoint: &str) -> Vec<String> {
    let mut c = client(endpoint).await;
    c.put("a", "1", None).await.expect("put");
    let mut out = Vec::new();
    let mut stream = c.watch("a", None).await.expect("watch");
    out.extend(read(&mut stream, 1).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("synced: {:?}", read(&mut stream, 1).await));
    c.put("a", "2", None).await.expect("put");
    out.extend(read(&mut stream, 1).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("after a write: {:?}", read(&mut stream, 1).await));
    stream.watch("b", Some(WatchOptions::new().with_start_revision(50))).await.expect("future watcher");
    out.extend(read(&mut stream, 1).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("with a future watcher: {:?}", read(&mut stream, 0).await));
    stream.cancel(1).await.expect("cancel");
    out.extend(read(&mut stream, 1).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("future watcher gone: {:?}", read(&mut stream, 1).await));
    // A watcher canceled by compaction holds progress back until the client
    // cancels it too; a new watcher takes the next ID, never a freed one.
    c.put("a", "3", None).await.expect("put");
    out.extend(read(&mut stream, 1).await);
    c.compact(4, None).await.expect("compact");
    stream.watch("b", Some(WatchOptions::new().with_start_revision(2))).await.expect("compacted watcher");
    out.extend(read(&mut stream, 2).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("while a compacted watcher is on the stream: {:?}", read(&mut stream, 0).await));
    stream.cancel(2).await.expect("cancel the compacted watcher");
    out.extend(read(&mut stream, 1).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("after a compacted watcher: {:?}", read(&mut stream, 1).await));
    stream.cancel(0).await.expect("cancel");
    out.extend(read(&mut stream, 1).await);
    stream.request_progress().await.expect("progress");
    out.push(format!("no watchers: {:?}", read(&mut stream, 0).await));
    out
}

#[tokio::test]
async fn t96_progress_requests_match_etcd_3_6() {
    let actual =
        cairn_testkit::assert_same_as_etcd36(&[], |endpoint| async move { progress_request_script(&endpoint).await })
            .await;
    let synced = actual.iter().find(|line| line.starts_with("synced")).expect("line");
    assert!(synced.contains("id=-1") && synced.contains("rev=2"), "{actual:#?}");
    assert!(actual.contains(&"no watchers: []".to_string()), "{actual:#?}");
    let compacted = actual.iter().find(|line| line.starts_with("after a compacted watcher")).expect("line");
    assert!(compacted.contains("id=-1") && compacted.contains("rev=4"), "{actual:#?}");
}

/// A watcher far behind on the same stream holds the answer back until it has
/// caught up; the notify then covers every event it was sent before it.
#[tokio::test]
async fn t97_progress_request_waits_for_a_watcher_catching_up() {
    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let mut c = client(cluster.members[0].endpoint()).await;
    for i in 0..3000 {
        c.put(format!("k/{}", i % 50), i.to_string(), None).await.expect("put");
    }
    let current = c.get("k/0", None).await.expect("get").header().expect("header").revision();
    let mut stream =
        c.watch("k/", Some(WatchOptions::new().with_prefix().with_start_revision(1))).await.expect("watch");
    stream.request_progress().await.expect("progress");
    let (mut last_event, mut notify) = (0, None);
    while notify.is_none() {
        let resp = tokio::time::timeout(WAIT, stream.message()).await.expect("in time").expect("ok").expect("open");
        if resp.created() {
            continue;
        }
        match resp.events().last() {
            Some(event) => last_event = event.kv().expect("kv").mod_revision(),
            None => notify = Some((resp.watch_id(), resp.header().expect("header").revision())),
        }
    }
    let (id, revision) = notify.expect("a notify");
    assert_eq!(id, -1);
    assert!(revision >= current, "the notify promises at least the revision asked at: {revision} < {current}");
    assert_eq!(last_event, revision, "every event up to the notify's revision came before it");
}

/// A delete of more keys than cairn keeps in its in-memory event log: a
/// watcher with prev_kv still sees every delete with the key's last value, one
/// without sees none, and the revisions are etcd's.
#[tokio::test]
async fn t98_a_delete_larger_than_the_event_log_matches_etcd_3_5_1() {
    async fn script(endpoint: &str) -> Vec<String> {
        // More than cairn's default event log (4096 events), in txns of etcd's 128 ops at most.
        const KEYS: usize = 5000;
        let mut c = client(endpoint).await;
        let with_prev = WatchOptions::new().with_prefix().with_prev_key();
        let mut prev_watch = c.watch("big/", Some(with_prev)).await.expect("watch");
        let mut bare_watch = c.watch("big/", Some(WatchOptions::new().with_prefix())).await.expect("watch");
        let keys: Vec<String> = (0..KEYS).map(|i| format!("big/{i:05}")).collect();
        for chunk in keys.chunks(128) {
            let puts: Vec<TxnOp> = chunk.iter().map(|key| TxnOp::put(key.as_str(), format!("v-{key}"), None)).collect();
            c.txn(Txn::new().and_then(puts)).await.expect("txn");
        }
        let deleted = c.delete("big/", Some(DeleteOptions::new().with_prefix())).await.expect("delete");
        let delete_rev = deleted.header().expect("header").revision();
        let after = c.put("big/after", "1", None).await.expect("put").header().expect("header").revision();
        let mut out = vec![format!("deleted {} at revision {delete_rev}, then a put at {after}", deleted.deleted())];
        for (name, stream) in [("with prev_kv", &mut prev_watch), ("without", &mut bare_watch)] {
            let events = collect_events(stream, after).await;
            let deletes: Vec<_> = events.iter().filter(|(_, kind, _, _)| *kind == EventType::Delete).collect();
            let at_delete_rev = deletes.iter().all(|(rev, _, _, _)| *rev == delete_rev);
            let keys_in_order = deletes.iter().map(|(_, _, key, _)| key).eq(keys.iter());
            let prevs_right = deletes.iter().all(|(_, _, key, prev)| prev.as_deref() == Some(&format!("v-{key}")));
            let prevs_none = deletes.iter().all(|(_, _, _, prev)| prev.is_none());
            out.push(format!(
                "{name}: {} events, {} deletes, all at the delete's revision {at_delete_rev}, keys in order \
                 {keys_in_order}, every prev_kv the key's last value {prevs_right}, none {prevs_none}, last at {:?}",
                events.len(),
                deletes.len(),
                events.last().map(|(rev, _, key, _)| (rev, key.clone())),
            ));
        }
        out
    }
    let actual = assert_same_as_etcd(&[], |endpoint| async move { script(&endpoint).await }).await;
    assert!(actual[0].starts_with("deleted 5000 "), "{actual:#?}");
    assert!(actual[1].contains("5000 deletes") && actual[1].contains("last value true"), "{actual:#?}");
    assert!(actual[2].contains("5000 deletes") && actual[2].contains("none true"), "{actual:#?}");
}
