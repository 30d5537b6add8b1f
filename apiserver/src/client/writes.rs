//! The writes a reconcile decides on, as values, and the one place that sends
//! them to the API server. Reconciles stay pure: they read caches and return
//! `Vec<Write>`; the component's loop performs them.

use kube::api::{
    ApiResource, DeleteParams, DynamicObject, Patch, PatchParams, PostParams, Preconditions, PropagationPolicy,
};
use kube::{Api, Client, Resource};
use serde_json::Value;

#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Create(Value),
    /// A JSON merge patch; a `metadata.resourceVersion` in it is a precondition.
    Merge {
        name: String,
        patch: Value,
        status: bool,
    },
    /// A PUT of a subresource (`finalize`) or of the whole object.
    Replace {
        name: String,
        object: Value,
        subresource: Option<&'static str>,
    },
    /// A POST to a subresource (`binding`, `eviction`).
    Post {
        name: String,
        subresource: &'static str,
        body: Value,
    },
    Delete {
        name: String,
        uid: Option<String>,
        grace_seconds: Option<u32>,
        propagation: Option<Propagation>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

#[derive(Clone, Debug)]
pub struct Write {
    pub resource: ApiResource,
    pub namespace: Option<String>,
    pub op: Op,
}

impl PartialEq for Write {
    fn eq(&self, other: &Write) -> bool {
        self.resource.kind == other.resource.kind && self.namespace == other.namespace && self.op == other.op
    }
}

fn resource_of<K: Resource<DynamicType = ()>>() -> ApiResource {
    ApiResource::erase::<K>(&())
}

fn namespace_of(namespace: &str) -> Option<String> {
    (!namespace.is_empty()).then(|| namespace.to_string())
}

impl Write {
    pub fn new<K: Resource<DynamicType = ()>>(namespace: &str, op: Op) -> Write {
        Write { resource: resource_of::<K>(), namespace: namespace_of(namespace), op }
    }

    pub fn create<K: Resource<DynamicType = ()>>(namespace: &str, object: Value) -> Write {
        Write::new::<K>(namespace, Op::Create(object))
    }

    pub fn merge<K: Resource<DynamicType = ()>>(namespace: &str, name: &str, patch: Value) -> Write {
        Write::new::<K>(namespace, Op::Merge { name: name.to_string(), patch, status: false })
    }

    pub fn merge_status<K: Resource<DynamicType = ()>>(namespace: &str, name: &str, patch: Value) -> Write {
        Write::new::<K>(namespace, Op::Merge { name: name.to_string(), patch, status: true })
    }

    /// Deletes the object if it still has this uid.
    pub fn delete<K: Resource<DynamicType = ()>>(namespace: &str, name: &str, uid: Option<&str>) -> Write {
        Write::new::<K>(
            namespace,
            Op::Delete {
                name: name.to_string(),
                uid: uid.map(String::from),
                grace_seconds: None,
                propagation: Some(Propagation::Background),
            },
        )
    }

    pub fn name(&self) -> &str {
        match &self.op {
            Op::Create(object) => object["metadata"]["name"]
                .as_str()
                .unwrap_or_else(|| object["metadata"]["generateName"].as_str().unwrap_or_default()),
            Op::Merge { name, .. } | Op::Replace { name, .. } | Op::Post { name, .. } | Op::Delete { name, .. } => name,
        }
    }

    fn verb(&self) -> &'static str {
        match self.op {
            Op::Create(_) => "create",
            Op::Merge { status: false, .. } => "patch",
            Op::Merge { status: true, .. } => "patch status of",
            Op::Replace { .. } => "replace",
            Op::Post { .. } => "post to",
            Op::Delete { .. } => "delete",
        }
    }

    /// Sends the write; returns the object the API server answered with.
    pub async fn perform(&self, client: &Client) -> Result<Value, kube::Error> {
        let api: Api<DynamicObject> = match &self.namespace {
            Some(namespace) => Api::namespaced_with(client.clone(), namespace, &self.resource),
            None => Api::all_with(client.clone(), &self.resource),
        };
        let post = PostParams::default();
        let object = match &self.op {
            Op::Create(object) => {
                let mut object: DynamicObject = crate::client::from_json(object.clone())?;
                object.types = Some(kube::api::TypeMeta {
                    api_version: self.resource.api_version.clone(),
                    kind: self.resource.kind.clone(),
                });
                crate::client::to_json(api.create(&post, &object).await?)?
            }
            Op::Merge { name, patch, status } => {
                let params = PatchParams::default();
                let patched = if *status {
                    api.patch_status(name, &params, &Patch::Merge(patch)).await?
                } else {
                    api.patch(name, &params, &Patch::Merge(patch)).await?
                };
                crate::client::to_json(patched)?
            }
            Op::Replace { name, object, subresource } => match subresource {
                Some(subresource) => {
                    crate::client::to_json(api.replace_subresource(subresource, name, &post, object).await?)?
                }
                None => {
                    let object: DynamicObject = crate::client::from_json(object.clone())?;
                    crate::client::to_json(api.replace(name, &post, &object).await?)?
                }
            },
            Op::Post { name, subresource, body } => {
                api.create_subresource::<Value, Value>(subresource, name, &post, body).await?
            }
            Op::Delete { name, uid, grace_seconds, propagation } => {
                let params = DeleteParams {
                    grace_period_seconds: *grace_seconds,
                    preconditions: uid.clone().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
                    propagation_policy: propagation.map(|p| match p {
                        Propagation::Background => PropagationPolicy::Background,
                        Propagation::Foreground => PropagationPolicy::Foreground,
                        Propagation::Orphan => PropagationPolicy::Orphan,
                    }),
                    ..DeleteParams::default()
                };
                match api.delete(name, &params).await? {
                    either::Either::Left(object) => crate::client::to_json(object)?,
                    either::Either::Right(status) => crate::client::to_json(status)?,
                }
            }
        };
        Ok(object)
    }
}

/// Performs every write, logging failures: the next pass decides again from
/// what the caches then show, so one failed write is never retried blindly.
pub async fn perform_all(client: &Client, component: &str, writes: Vec<Write>) -> Vec<Result<Value, kube::Error>> {
    let mut results = Vec::with_capacity(writes.len());
    for write in writes {
        results.push(perform_logged(client, component, write).await);
    }
    results
}

/// Performs independent writes (a set's pod creates, Events) `parallel` at
/// a time, as kube's controllers do with goroutines; results in the writes' order.
pub async fn perform_concurrently(
    client: &Client,
    component: &str,
    writes: Vec<Write>,
    parallel: usize,
) -> Vec<Result<Value, kube::Error>> {
    use futures::StreamExt;
    futures::stream::iter(writes.into_iter().map(|write| perform_logged(client, component, write)))
        .buffered(parallel.max(1))
        .collect()
        .await
}

async fn perform_logged(client: &Client, component: &str, write: Write) -> Result<Value, kube::Error> {
    let result = write.perform(client).await;
    match &result {
        Ok(_) => tracing::debug!(component, "{} {} {}", write.verb(), write.resource.kind, write.name()),
        // Conflicts and vanished objects are the normal races of level-triggered loops.
        Err(error) if super::is_conflict(error) || super::is_not_found(error) => {
            tracing::debug!(component, %error, "{} {} {}", write.verb(), write.resource.kind, write.name())
        }
        Err(error) => {
            tracing::warn!(component, %error, "{} {} {} failed", write.verb(), write.resource.kind, write.name())
        }
    }
    result
}
