//! The garbage collector. Dependents whose owners are all gone are deleted
//! (background deletion). An owner deleted in the foreground keeps its
//! `foregroundDeletion` finalizer until its dependents are gone; one deleted
//! with `orphan` has its dependents' ownerReferences removed first. `plan` is
//! pure over the caches; an owner missing from the cache is confirmed with a
//! live read before anything is deleted, since caches lag.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject};
use kube::{Api, Resource};
use serde_json::json;

use super::Context;
use crate::client::informer::Changes;
use crate::client::writes::{Op, Propagation};
use crate::client::{self, Informer, Write};

/// An object as the collector sees it: where it is and whom it names as owners.
#[derive(Clone, Debug)]
pub struct Object {
    pub resource: Arc<ApiResource>,
    /// Only what the collector reads: names, owners, deletion and finalizers.
    pub meta: ObjectMeta,
}

/// How often at most a pass looks at every object.
const GC_PACE: Duration = Duration::from_secs(1);

impl Object {
    fn of<K: Resource<DynamicType = ()>>(object: &K, resource: &Arc<ApiResource>) -> Object {
        let meta = object.meta();
        let meta = ObjectMeta {
            name: meta.name.clone(),
            namespace: meta.namespace.clone(),
            uid: meta.uid.clone(),
            resource_version: meta.resource_version.clone(),
            owner_references: meta.owner_references.clone(),
            deletion_timestamp: meta.deletion_timestamp.clone(),
            finalizers: meta.finalizers.clone(),
            ..ObjectMeta::default()
        };
        Object { resource: resource.clone(), meta }
    }

    /// Every object of an informer's cache.
    fn all<K>(informer: &Informer<K>) -> impl Iterator<Item = Object>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + Sync + 'static,
    {
        let resource = Arc::new(ApiResource::erase::<K>(&()));
        informer.state().into_iter().map(move |o| Object::of(&*o, &resource))
    }

    fn uid(&self) -> &str {
        self.meta.uid.as_deref().unwrap_or_default()
    }

    fn write(&self, op: Op) -> Write {
        Write { resource: (*self.resource).clone(), namespace: self.meta.namespace.clone(), op }
    }

    fn name(&self) -> String {
        self.meta.name.clone().unwrap_or_default()
    }
}

fn finalizers(meta: &ObjectMeta) -> Vec<String> {
    meta.finalizers.clone().unwrap_or_default()
}

fn without_finalizer(owner: &Object, finalizer: &str) -> Write {
    let rest: Vec<String> = finalizers(&owner.meta).into_iter().filter(|f| f != finalizer).collect();
    let patch = json!({"metadata": {"finalizers": rest, "resourceVersion": owner.meta.resource_version}});
    owner.write(Op::Merge { name: owner.name(), patch, status: false })
}

/// What one collection pass does.
#[derive(Default)]
pub struct Plan {
    pub writes: Vec<Write>,
    /// Dependents whose owners the cache lacks: (dependent, owner kinds and names to confirm).
    pub suspects: Vec<Object>,
}

pub fn plan(owners: &[Object], dependents: &[Object]) -> Plan {
    let by_uid: HashMap<&str, &Object> = owners.iter().map(|o| (o.uid(), o)).collect();
    let mut plan = Plan::default();
    let mut waiting: HashMap<&str, usize> = HashMap::new();
    for dependent in dependents {
        let refs = dependent.meta.owner_references.clone().unwrap_or_default();
        if refs.is_empty() {
            continue;
        }
        let mut remove_refs = Vec::new();
        for reference in &refs {
            let Some(owner) = by_uid.get(reference.uid.as_str()) else { continue };
            if owner.meta.deletion_timestamp.is_none() {
                continue;
            }
            let owner_finalizers = finalizers(&owner.meta);
            if owner_finalizers.iter().any(|f| f == "orphan") {
                remove_refs.push(reference.uid.clone());
                *waiting.entry(owner.uid()).or_default() += 1;
            } else if owner_finalizers.iter().any(|f| f == "foregroundDeletion") {
                *waiting.entry(owner.uid()).or_default() += 1;
                if dependent.meta.deletion_timestamp.is_none() {
                    // Owners among the dependents go in the foreground too; leaves (pods) need not.
                    let cascade = if owner_resource(&dependent.resource.kind).is_some() {
                        Propagation::Foreground
                    } else {
                        Propagation::Background
                    };
                    plan.writes.push(dependent.write(Op::Delete {
                        name: dependent.name(),
                        uid: dependent.meta.uid.clone(),
                        grace_seconds: None,
                        propagation: Some(cascade),
                    }));
                }
            }
        }
        if !remove_refs.is_empty() {
            let kept: Vec<_> = refs.iter().filter(|r| !remove_refs.contains(&r.uid)).collect();
            let patch =
                json!({"metadata": {"ownerReferences": kept, "resourceVersion": dependent.meta.resource_version}});
            plan.writes.push(dependent.write(Op::Merge { name: dependent.name(), patch, status: false }));
            continue;
        }
        // Only owners of kinds this collector caches can be judged absent.
        let all_absent = refs.iter().all(|r| owner_resource(&r.kind).is_some() && !by_uid.contains_key(r.uid.as_str()));
        if all_absent && dependent.meta.deletion_timestamp.is_none() {
            plan.suspects.push(dependent.clone());
        }
    }
    // An object deleted in the foreground that owns nothing the collector tracks has no dependents to wait for.
    let leaves = dependents.iter().filter(|d| !by_uid.contains_key(d.uid()));
    for owner in owners.iter().chain(leaves).filter(|o| o.meta.deletion_timestamp.is_some()) {
        if waiting.contains_key(owner.uid()) {
            continue;
        }
        for finalizer in ["orphan", "foregroundDeletion"] {
            if finalizers(&owner.meta).iter().any(|f| f == finalizer) {
                plan.writes.push(without_finalizer(owner, finalizer));
                break;
            }
        }
    }
    plan
}

/// The kinds of owner the collector caches, and so can judge gone.
fn owner_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "ReplicaSet" => ApiResource::erase::<ReplicaSet>(&()),
        "Job" => ApiResource::erase::<Job>(&()),
        "Service" => ApiResource::erase::<Service>(&()),
        "Node" => ApiResource::erase::<Node>(&()),
        _ => return None,
    })
}

/// True when a live read confirms every owner is gone (or replaced by a new uid).
async fn owners_gone(client: &kube::Client, dependent: &Object) -> bool {
    for reference in dependent.meta.owner_references.iter().flatten() {
        let Some(resource) = owner_resource(&reference.kind) else { return false };
        let namespaced = reference.kind != "Node";
        let api: Api<DynamicObject> = match (&dependent.meta.namespace, namespaced) {
            (Some(namespace), true) => Api::namespaced_with(client.clone(), namespace, &resource),
            _ => Api::all_with(client.clone(), &resource),
        };
        match api.get_opt(&reference.name).await {
            Ok(Some(owner)) if owner.metadata.uid.as_deref() == Some(reference.uid.as_str()) => return false,
            Ok(_) => {}
            Err(_) => return false,
        }
    }
    true
}

pub async fn run(ctx: Arc<Context>) {
    let c = &ctx.caches;
    let reads = [
        c.deployments.changes(),
        c.replica_sets.changes(),
        c.jobs.changes(),
        c.services.changes(),
        c.nodes.changes(),
        c.pods.changes(),
        c.endpoint_slices.changes(),
        c.node_leases.changes(),
    ];
    let mut wake = Changes::any_of(&reads).subscribe();
    loop {
        client::informer::next_pass(&mut wake, Duration::from_secs(30)).await;
        // Every object is looked at each pass: at most one a second, as
        // kube's collector is no quicker than its graph's resync either.
        tokio::time::sleep(GC_PACE).await;
        let caches = &ctx.caches;
        let mut owners: Vec<Object> = Vec::new();
        owners.extend(Object::all(&caches.deployments));
        owners.extend(Object::all(&caches.replica_sets));
        owners.extend(Object::all(&caches.jobs));
        owners.extend(Object::all(&caches.services));
        owners.extend(Object::all(&caches.nodes));
        let mut dependents: Vec<Object> = Vec::new();
        dependents.extend(Object::all(&caches.pods));
        dependents.extend(Object::all(&caches.replica_sets));
        dependents.extend(Object::all(&caches.endpoint_slices));
        dependents.extend(Object::all(&caches.node_leases));
        let plan = plan(&owners, &dependents);
        let mut writes = plan.writes;
        for suspect in plan.suspects {
            if owners_gone(&ctx.client, &suspect).await {
                writes.push(suspect.write(Op::Delete {
                    name: suspect.name(),
                    uid: suspect.meta.uid.clone(),
                    grace_seconds: None,
                    propagation: Some(Propagation::Background),
                }));
            }
        }
        client::writes::perform_all(&ctx.client, "garbage-collector", writes).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;

    fn object(kind: &str, uid: &str, owner: Option<(&str, &str)>, deleting: Option<&str>) -> Object {
        let mut meta = json!({"name": uid, "namespace": "default", "uid": uid});
        if let Some((owner_kind, owner_uid)) = owner {
            meta["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": owner_kind, "name": owner_uid, "uid": owner_uid, "controller": true}]);
        }
        if let Some(finalizer) = deleting {
            meta["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            meta["finalizers"] = json!([finalizer]);
        }
        let resource = match kind {
            "ReplicaSet" => ApiResource::erase::<ReplicaSet>(&()),
            "Deployment" => ApiResource::erase::<Deployment>(&()),
            _ => ApiResource::erase::<Pod>(&()),
        };
        Object { resource: Arc::new(resource), meta: serde_json::from_value(meta).expect("meta") }
    }

    #[test]
    fn t10_dependents_of_vanished_owners_are_suspects_and_live_owners_keep_theirs() {
        let owners = vec![object("ReplicaSet", "rs-live", None, None)];
        let dependents = vec![
            object("Pod", "p1", Some(("ReplicaSet", "rs-live")), None),
            object("Pod", "p2", Some(("ReplicaSet", "rs-gone")), None),
        ];
        let plan = plan(&owners, &dependents);
        assert_eq!(plan.suspects.iter().map(Object::name).collect::<Vec<_>>(), vec!["p2"]);
        assert!(plan.writes.is_empty());
    }

    #[test]
    fn t11_foreground_deletes_dependents_first_and_orphan_unlinks_them() {
        let owners = vec![object("Deployment", "d", None, Some("foregroundDeletion"))];
        let with_child = plan(&owners, &[object("ReplicaSet", "rs", Some(("Deployment", "d")), None)]);
        assert!(matches!(with_child.writes[0].op, Op::Delete { .. }));
        assert_eq!(with_child.writes.len(), 1);
        let childless = plan(&owners, &[]);
        assert!(
            matches!(&childless.writes[0].op, Op::Merge { patch, .. } if patch["metadata"]["finalizers"] == json!([]))
        );

        // A pod deleted in the foreground owns nothing: its finalizer goes at once.
        let leaf = plan(&[], &[object("Pod", "p", Some(("ReplicaSet", "rs")), Some("foregroundDeletion"))]);
        assert!(matches!(&leaf.writes[0].op, Op::Merge { patch, .. } if patch["metadata"]["finalizers"] == json!([])));

        let orphaning = vec![object("Deployment", "d", None, Some("orphan"))];
        let unlinked = plan(&orphaning, &[object("ReplicaSet", "rs", Some(("Deployment", "d")), None)]);
        assert!(
            matches!(&unlinked.writes[0].op, Op::Merge { patch, .. } if patch["metadata"]["ownerReferences"] == json!([]))
        );
    }
}
