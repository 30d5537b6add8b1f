//! What the run observes: the store's own watch of every key under the API
//! server's prefix (the truth the watchers are held to), and one kube-rs
//! watcher per resource through the load balancer.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_chaos::kube::{
    EventSeen, LeaseVersion, NodeRenewal, NodeSeen, PodSeen, Seen, Session, StoreChange, WatchLog,
};
use etcd_client::{EventType, WatchOptions};
use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{ConfigMap, Endpoints, Event, Node, Pod, Service};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use super::{unix_us, Shared};

const PREFIX: &str = "/registry/";
const LEADER_LEASES: &str = "/registry/leases/kube-system/";
const NODE_LEASES: &str = "/registry/leases/kube-node-lease/";

/// The store's watch of everything under the prefix, from revision 1,
/// resumed on another member after a failure.
pub struct StoreWatch {
    /// The revision the watch has reached (events and progress notifications).
    pub reached: Arc<AtomicI64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StoreWatch {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StoreWatch {
    pub fn start(endpoints: Vec<String>, recorder: Shared) -> StoreWatch {
        let reached = Arc::new(AtomicI64::new(0));
        let task = tokio::spawn(store_watch(endpoints, recorder, reached.clone()));
        StoreWatch { reached, task }
    }
}

async fn store_watch(endpoints: Vec<String>, recorder: Shared, reached: Arc<AtomicI64>) {
    let mut next = 1;
    for attempt in 0usize.. {
        let endpoint = &endpoints[attempt % endpoints.len()];
        let Ok(mut client) = cairn_testkit::connect(endpoint, Duration::from_secs(2)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let options = WatchOptions::new().with_prefix().with_start_revision(next).with_progress_notify();
        let Ok(mut stream) = client.watch(PREFIX, Some(options)).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while let Ok(Some(response)) = stream.message().await {
            if response.canceled() {
                let why = format!("the store's watch was canceled at {next}: {}", response.cancel_reason());
                recorder.record().end.errors.push(why);
                return;
            }
            let mut run = recorder.record();
            for event in response.events() {
                let Some(kv) = event.kv() else { continue };
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                let deleted = event.event_type() == EventType::Delete;
                let revision = kv.mod_revision();
                if !deleted {
                    if let Some(lease) = key.strip_prefix(LEADER_LEASES) {
                        if let Some(version) = lease_version(lease, revision, kv.value()) {
                            run.leader_leases.push(version);
                        }
                    } else if let Some(node) = key.strip_prefix(NODE_LEASES) {
                        if let Some(version) = lease_version(node, revision, kv.value()) {
                            run.node_renewals.push(NodeRenewal {
                                node: node.into(),
                                revision,
                                renew_us: version.renew_us,
                            });
                        }
                    }
                }
                run.store.push(StoreChange { revision, key, deleted });
                next = next.max(revision + 1);
            }
            drop(run);
            let header = response.header().map_or(0, |header| header.revision());
            reached.fetch_max(header.max(next - 1), Ordering::Relaxed);
        }
    }
}

fn lease_version(name: &str, revision: i64, value: &[u8]) -> Option<LeaseVersion> {
    let lease: Lease = serde_json::from_slice(value).ok()?;
    let spec = lease.spec?;
    let micros = |time: Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime>| {
        time.map_or(0, |time| time.0.as_microsecond())
    };
    Some(LeaseVersion {
        lease: name.into(),
        revision,
        holder: spec.holder_identity.unwrap_or_default(),
        acquire_us: micros(spec.acquire_time),
        renew_us: micros(spec.renew_time),
        duration_s: i64::from(spec.lease_duration_seconds.unwrap_or(0)),
    })
}

/// The store key of an object: `<prefix><namespace>/<name>` or `<prefix><name>`.
fn key_of<K: Resource>(prefix: &str, object: &K) -> String {
    match object.meta().namespace.as_deref() {
        Some(namespace) if !namespace.is_empty() => format!("{prefix}{namespace}/{}", object.name_any()),
        _ => format!("{prefix}{}", object.name_any()),
    }
}

fn seen<K: Resource>(prefix: &str, object: &K, deleted: bool) -> Seen {
    let revision = object.meta().resource_version.as_deref().and_then(|rv| rv.parse().ok()).unwrap_or(0);
    Seen { key: key_of(prefix, object), revision, deleted }
}

/// What a watcher notes besides the change itself.
type Note<K> = Box<dyn FnMut(&Shared, &K, bool) + Send>;

fn watch<K>(client: &kube::Client, index: usize, recorder: &Shared, mut note: Note<K>) -> tokio::task::JoinHandle<()>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default,
{
    let api: Api<K> = Api::all(client.clone());
    let recorder = recorder.clone();
    tokio::spawn(async move {
        let prefix = recorder.record().watches[index].prefix.clone();
        let mut stream = watcher(api, watcher::Config::default()).default_backoff().boxed();
        while let Some(item) = stream.next().await {
            let event = match item {
                Ok(event) => event,
                Err(error) => {
                    let mut run = recorder.record();
                    let errors = &mut run.watches[index].errors;
                    if errors.len() < 100 {
                        errors.push(error.to_string());
                    }
                    continue;
                }
            };
            let (object, deleted) = match &event {
                watcher::Event::Init => {
                    let session = Session { started_us: unix_us(), ..Default::default() };
                    recorder.record().watches[index].sessions.push(session);
                    continue;
                }
                watcher::Event::InitDone => {
                    if let Some(session) = recorder.record().watches[index].sessions.last_mut() {
                        session.list_done = true;
                    }
                    continue;
                }
                watcher::Event::InitApply(object) | watcher::Event::Apply(object) => (object, false),
                watcher::Event::Delete(object) => (object, true),
            };
            note(&recorder, object, deleted);
            let change = seen(&prefix, object, deleted);
            let mut run = recorder.record();
            let Some(session) = run.watches[index].sessions.last_mut() else { continue };
            if matches!(event, watcher::Event::InitApply(_)) {
                session.listed.push(change);
            } else {
                session.events.push(change);
            }
        }
    })
}

fn nothing<K>() -> Note<K> {
    Box::new(|_, _, _| {})
}

/// Starts one watcher per resource; pods, nodes and events also note what the
/// binding, node-death and leader checkers need.
pub fn start_watchers(client: kube::Client, recorder: Shared) -> Vec<tokio::task::JoinHandle<()>> {
    let resources = [
        ("pods", "pods"),
        ("nodes", "minions"),
        ("deployments", "deployments"),
        ("replicasets", "replicasets"),
        ("services", "services/specs"),
        ("endpoints", "services/endpoints"),
        ("configmaps", "configmaps"),
        ("leases", "leases"),
        ("events", "events"),
    ];
    {
        let mut run = recorder.record();
        for (resource, folder) in resources {
            run.watches.push(WatchLog {
                resource: resource.into(),
                prefix: format!("{PREFIX}{folder}/"),
                ..Default::default()
            });
        }
    }
    let identities: Vec<String> =
        recorder.record().meta.leader_groups.iter().flat_map(|group| group.identities.clone()).collect();
    vec![
        watch::<Pod>(&client, 0, &recorder, note_pods()),
        watch::<Node>(&client, 1, &recorder, note_nodes()),
        watch::<Deployment>(&client, 2, &recorder, nothing()),
        watch::<ReplicaSet>(&client, 3, &recorder, nothing()),
        watch::<Service>(&client, 4, &recorder, nothing()),
        watch::<Endpoints>(&client, 5, &recorder, nothing()),
        watch::<ConfigMap>(&client, 6, &recorder, nothing()),
        watch::<Lease>(&client, 7, &recorder, nothing()),
        watch::<Event>(&client, 8, &recorder, note_events(identities)),
    ]
}

/// A pod's node and whether it is going, each time either changes.
fn note_pods() -> Note<Pod> {
    let mut last: HashMap<String, (String, bool)> = HashMap::new();
    Box::new(move |recorder, pod, deleted| {
        let uid = pod.uid().unwrap_or_default();
        let node = pod.spec.as_ref().and_then(|spec| spec.node_name.clone()).unwrap_or_default();
        let deleting = deleted || pod.metadata.deletion_timestamp.is_some();
        let state = (node.clone(), deleting);
        if last.get(&uid) == Some(&state) {
            return;
        }
        last.insert(uid.clone(), state);
        let key = key_of("/registry/pods/", pod);
        recorder.record().pods.push(PodSeen { at_us: unix_us(), uid, key, node, deleting });
    })
}

fn note_nodes() -> Note<Node> {
    let mut last: HashMap<String, (String, bool)> = HashMap::new();
    Box::new(move |recorder, node, _| {
        let ready = super::cluster::node_ready(node);
        let taints = node.spec.as_ref().and_then(|spec| spec.taints.as_ref());
        let unreachable_taint = taints.into_iter().flatten().any(|taint| taint.key == "node.kubernetes.io/unreachable");
        let state = (ready.clone(), unreachable_taint);
        if last.get(&node.name_any()) == Some(&state) {
            return;
        }
        last.insert(node.name_any(), state);
        recorder.record().nodes.push(NodeSeen { at_us: unix_us(), node: node.name_any(), ready, unreachable_taint });
    })
}

/// The leader-elected replicas' events (their actions, taint evictions among
/// them), and every Scheduled.
fn note_events(identities: Vec<String>) -> Note<Event> {
    let mut noted = std::collections::HashSet::new();
    Box::new(move |recorder, event, deleted| {
        let instance = event.reporting_instance.clone().unwrap_or_default();
        if deleted || !(identities.contains(&instance) || event.reason.as_deref() == Some("Scheduled")) {
            return;
        }
        if !noted.insert(event.uid().unwrap_or_default()) {
            return;
        }
        recorder.record().events.push(EventSeen {
            reason: event.reason.clone().unwrap_or_default(),
            instance,
            time_us: event.event_time.as_ref().map(|time| time.0.as_microsecond()),
            involved_uid: event.involved_object.uid.clone().unwrap_or_default(),
        });
    })
}
