//! Real clients: kube-rs's typed API and `runtime::watcher`, and optimistic
//! concurrency under eight writers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use cairn_testkit::Flavor;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::watcher;

use crate::{cluster_and_apiserver, kube_client};

fn config_map(name: &str, data: &[(&str, &str)]) -> ConfigMap {
    ConfigMap {
        metadata: kube::api::ObjectMeta { name: Some(name.into()), ..Default::default() },
        data: Some(data.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<BTreeMap<_, _>>()),
        ..Default::default()
    }
}

#[tokio::test]
async fn t30_kube_rs_creates_lists_patches_watches_and_deletes() {
    let (_cluster, api) = cluster_and_apiserver(Flavor::Cairn, 3, &[]).await.expect("start");
    let client = kube_client(&api).await.expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");

    let (seen_tx, mut seen_rx) = tokio::sync::mpsc::unbounded_channel();
    let watched = maps.clone();
    let watch_task = tokio::spawn(async move {
        let mut stream = watcher(watched, watcher::Config::default()).boxed();
        while let Ok(Some(event)) = stream.try_next().await {
            let _ = seen_tx.send(event);
        }
    });

    let created = maps.create(&PostParams::default(), &config_map("a", &[("k", "1")])).await.expect("create");
    assert!(created.metadata.uid.is_some() && created.metadata.creation_timestamp.is_some());
    let listed = maps.list(&ListParams::default().labels("!nope")).await.expect("list");
    assert!(listed.items.iter().any(|c| c.metadata.name.as_deref() == Some("a")));
    let patched = maps
        .patch("a", &PatchParams::default(), &Patch::Merge(serde_json::json!({"data": {"k": "2"}})))
        .await
        .expect("patch");
    assert_eq!(patched.data.as_ref().and_then(|d| d.get("k")).map(String::as_str), Some("2"));
    let applied = maps
        .patch("b", &PatchParams::apply("t30"), &Patch::Apply(serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}, "data": {"x": "y"}})))
        .await
        .expect("server-side apply creates");
    assert_eq!(applied.metadata.managed_fields.as_ref().map(Vec::len), Some(1));
    maps.delete("a", &DeleteParams::default()).await.expect("delete");
    assert!(matches!(maps.get("a").await, Err(kube::Error::Api(e)) if e.code == 404));

    // The watcher saw the create, the patch and the delete of "a".
    let mut saw = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !saw.iter().any(|s: &String| s == "delete a") {
        let event =
            tokio::time::timeout_at(deadline, seen_rx.recv()).await.expect("watch events arrive").expect("open");
        match event {
            watcher::Event::Apply(cm) | watcher::Event::InitApply(cm) => {
                let value = cm.data.as_ref().and_then(|d| d.get("k")).cloned().unwrap_or_default();
                saw.push(format!("apply {} {value}", cm.metadata.name.unwrap_or_default()));
            }
            watcher::Event::Delete(cm) => saw.push(format!("delete {}", cm.metadata.name.unwrap_or_default())),
            _ => {}
        }
    }
    let mine: Vec<&String> = saw.iter().filter(|s| s.contains(" a")).collect();
    assert_eq!(mine, ["apply a 1", "apply a 2", "delete a"], "{saw:?}");
    watch_task.abort();
}

#[tokio::test]
async fn t31_eight_writers_increment_one_counter_to_2000() {
    let (_cluster, api) = cluster_and_apiserver(Flavor::Cairn, 3, &[]).await.expect("start");
    let client = kube_client(&api).await.expect("client");
    let maps: Api<ConfigMap> = Api::namespaced(client, "default");
    maps.create(&PostParams::default(), &config_map("counter", &[("n", "0")])).await.expect("create");
    let conflicts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut writers = Vec::new();
    for _ in 0..8 {
        let maps = maps.clone();
        let conflicts = conflicts.clone();
        writers.push(tokio::spawn(async move {
            for _ in 0..250 {
                loop {
                    let mut current = maps.get("counter").await.expect("get");
                    let n: u64 =
                        current.data.as_ref().and_then(|d| d.get("n")).and_then(|n| n.parse().ok()).expect("a number");
                    current.data.get_or_insert_with(Default::default).insert("n".into(), (n + 1).to_string());
                    match maps.replace("counter", &PostParams::default(), &current).await {
                        Ok(_) => break,
                        Err(kube::Error::Api(e)) if e.code == 409 => {
                            assert_eq!(e.reason, "Conflict");
                            conflicts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(other) => panic!("update failed: {other}"),
                    }
                }
            }
        }));
    }
    for writer in writers {
        writer.await.expect("writer");
    }
    let end = maps.get("counter").await.expect("get");
    assert_eq!(end.data.as_ref().and_then(|d| d.get("n")).map(String::as_str), Some("2000"));
    assert!(conflicts.load(std::sync::atomic::Ordering::Relaxed) > 0, "eight writers never collided");
}
