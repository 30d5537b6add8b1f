//! The generic registry, as kube-apiserver's `generic/registry.Store`: one
//! implementation of every verb for every resource. What differs per kind is
//! in `kinds` (create/update preparation), `typed` (decoding and defaults),
//! `validation` and `admission`.

mod admission;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzz;
pub use admission::bootstrap_objects;
mod kinds;
mod list;
mod service_ips;
pub mod typed;
pub mod validation;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

pub use list::{ListOptions, Paging};
pub use service_ips::{parse_cidr, ServiceIps};

use crate::cacher::Cacher;
use crate::error::{ApiError, FieldError};
use crate::meta;
use crate::patch::{self, PatchType};
use crate::resources::{self, Kind, Resource, Subresource, RESOURCES};
use crate::storage::{keys::Keys, EventLeases, Storage, Stored, Swap};

/// How a write treats fields its kind does not have (`fieldValidation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(text: &str) -> Result<FieldValidation, ApiError> {
        match text {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Ignore" => Ok(FieldValidation::Ignore),
            "Strict" => Ok(FieldValidation::Strict),
            other => Err(ApiError::BadRequest(format!(
                "fieldValidation parameter unsupported: {other}, allowed values are Ignore, Warn, Strict"
            ))),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct WriteOptions {
    pub field_validation: FieldValidation,
    pub dry_run: bool,
    pub field_manager: String,
    pub force: bool,
    /// Set by server-side apply, which keeps `managedFields` itself.
    pub applying: bool,
    /// Who asks, as kube's UserInfo (`username`, `uid`, `groups`): a
    /// CertificateSigningRequest records it, whatever its body says.
    pub requester: Value,
}

/// A written object and the warnings to send with it.
#[derive(Debug)]
pub struct Written {
    pub object: Value,
    pub warnings: Vec<String>,
    pub created: bool,
}

/// What a delete did: removed the object, or marked it (grace period, finalizers).
#[derive(Debug)]
pub struct Deleted {
    pub object: Value,
    pub removed: bool,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub uid: Option<String>,
    pub resource_version: Option<String>,
    pub dry_run: bool,
    /// Foreground or Orphan; Background (or the kind's default) when None.
    pub propagation: Option<Propagation>,
}

/// What happens to an object's dependents when it is deleted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Propagation {
    Background,
    Foreground,
    Orphan,
}

impl Propagation {
    /// `propagationPolicy`, or the deprecated `orphanDependents`.
    pub fn parse(policy: Option<&str>, orphan_dependents: Option<bool>) -> Result<Option<Propagation>, String> {
        match (policy, orphan_dependents) {
            (Some("Background"), _) => Ok(Some(Propagation::Background)),
            (Some("Foreground"), _) => Ok(Some(Propagation::Foreground)),
            (Some("Orphan"), _) => Ok(Some(Propagation::Orphan)),
            (Some(other), _) => Err(format!(
                "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Unsupported value: \"{other}\": supported values: \"Foreground\", \"Background\", \"Orphan\", \"nil\""
            )),
            (None, Some(true)) => Ok(Some(Propagation::Orphan)),
            (None, Some(false)) => Ok(Some(Propagation::Background)),
            (None, None) => Ok(None),
        }
    }
}

impl DeleteOptions {
    /// Reads a `metav1.DeleteOptions` body; query parameters win where both are set.
    pub fn from_body(body: &Value) -> DeleteOptions {
        DeleteOptions {
            grace_period_seconds: body.get("gracePeriodSeconds").and_then(Value::as_i64),
            uid: meta::str_at(body, &["preconditions", "uid"]).map(String::from),
            resource_version: meta::str_at(body, &["preconditions", "resourceVersion"]).map(String::from),
            dry_run: body.get("dryRun").and_then(Value::as_array).is_some_and(|a| !a.is_empty()),
            propagation: Propagation::parse(
                body.get("propagationPolicy").and_then(Value::as_str),
                body.get("orphanDependents").and_then(Value::as_bool),
            )
            .ok()
            .flatten(),
        }
    }
}

/// The next step of a guaranteed update, decided from the current object.
enum Step {
    Write(Value),
    Delete(Value),
    Keep(Value),
}

/// Retries of a compare-and-swap lost to a concurrent writer, when the client
/// gave no resourceVersion; kube-apiserver retries these without bound.
const UPDATE_ATTEMPTS: usize = 64;
/// How long a read at a resourceVersion waits for the watch cache to reach it.
pub const CACHE_WAIT: Duration = Duration::from_secs(3);

pub struct Registry {
    pub storage: Storage,
    pub keys: Keys,
    cachers: HashMap<Kind, Arc<Cacher>>,
    events: EventLeases,
    pub service_ips: ServiceIps,
}

impl Registry {
    pub fn new(
        storage: Storage,
        prefix: &str,
        event_ttl: Duration,
        service_ips: ServiceIps,
        progress_requests: bool,
    ) -> Registry {
        let keys = Keys::new(prefix);
        let cachers = RESOURCES
            .iter()
            .map(|r| (r.kind, Cacher::start(storage.clone(), keys.resource(r), r, progress_requests)))
            .collect();
        Registry { storage, keys, cachers, events: EventLeases::new(event_ttl), service_ips }
    }

    pub fn cacher(&self, kind: Kind) -> &Arc<Cacher> {
        self.cachers.get(&kind).expect("a cacher per resource")
    }

    /// Whether every watch cache has listed once.
    pub fn caches_ready(&self) -> bool {
        self.cachers.values().all(|c| c.revision() > 0)
    }

    pub async fn get(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        resource_version: &str,
    ) -> Result<Value, ApiError> {
        let key = self.keys.object(resource, namespace, name);
        if resource_version.is_empty() {
            return match self.storage.get(&key).await? {
                Some(stored) => Ok(stored.object),
                None => Err(ApiError::not_found(resource, name)),
            };
        }
        let wanted = meta::parse_resource_version(resource_version)?;
        let cacher = self.cacher(resource.kind);
        cacher.wait_for(wanted, CACHE_WAIT).await.map_err(|seen| too_large(wanted, seen))?;
        cacher.get(&key).map(|v| (*v).clone()).ok_or_else(|| ApiError::not_found(resource, name))
    }

    pub async fn create(
        &self,
        resource: &'static Resource,
        namespace: &str,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let (mut object, warnings) = prepare_create(resource, namespace, body, options)?;
        admission::mutate_create(self, resource, &mut object).await?;
        check_create(resource, &mut object, options)?;
        let name = meta::name(&object).to_string();
        admission::namespace_lifecycle(self, resource, namespace, &name).await?;
        if options.dry_run {
            return Ok(Written { object, warnings, created: true });
        }
        let allocated =
            if resource.kind == Kind::Service { self.service_ips.allocate(self, &mut object).await? } else { None };
        let key = self.keys.object(resource, namespace, &name);
        let lease = self.lease_for(resource).await?;
        match self.storage.swap(&key, 0, &object, lease).await {
            Ok(Swap::Done(revision)) => {
                meta::set_resource_version(&mut object, revision);
                Ok(Written { object, warnings, created: true })
            }
            Ok(Swap::Lost(_)) => {
                if let Some(ip) = allocated {
                    self.service_ips.release(self, ip).await;
                }
                Err(ApiError::AlreadyExists { resource: crate::error::GroupResource::of(resource), name })
            }
            // The outcome is unknown: keeping the address allocated may waste it, never hand it out twice.
            Err(err) => Err(err.into()),
        }
    }

    async fn lease_for(&self, resource: &Resource) -> Result<Option<i64>, ApiError> {
        if resource.kind == Kind::Event {
            Ok(Some(self.events.lease(&self.storage).await?))
        } else {
            Ok(None)
        }
    }

    /// kube-apiserver's `GuaranteedUpdate`: read, decide, compare-and-swap on
    /// mod_revision, and decide again from the fresh object when another write won.
    async fn guaranteed_update(
        &self,
        resource: &'static Resource,
        key: &str,
        name: &str,
        mut decide: impl FnMut(Option<&Stored>) -> Result<Step, ApiError>,
    ) -> Result<(Step, Option<Stored>), ApiError> {
        let mut current = self.storage.get(key).await?;
        for _ in 0..UPDATE_ATTEMPTS {
            let expected = current.as_ref().map(|c| c.mod_revision).unwrap_or(0);
            let outcome = match decide(current.as_ref())? {
                Step::Keep(object) => return Ok((Step::Keep(object), current)),
                Step::Write(mut object) => {
                    if let Some(cur) = &current {
                        if crate::storage::same_content(&cur.object, &object) {
                            return Ok((Step::Keep(cur.object.clone()), current));
                        }
                    }
                    let lease = self.lease_for(resource).await?;
                    match self.storage.swap(key, expected, &object, lease).await? {
                        Swap::Done(revision) => {
                            meta::set_resource_version(&mut object, revision);
                            return Ok((Step::Write(object), current));
                        }
                        Swap::Lost(now) => now,
                    }
                }
                Step::Delete(mut object) => match self.storage.delete(key, expected).await? {
                    Swap::Done(revision) => {
                        if resource.kind == Kind::Service {
                            self.service_ips.release_of(self, &object).await;
                        }
                        meta::set_resource_version(&mut object, revision);
                        return Ok((Step::Delete(object), current));
                    }
                    Swap::Lost(now) => now,
                },
            };
            current = outcome;
        }
        Err(ApiError::conflict(resource, name))
    }

    /// PUT on an object or its status subresource.
    pub async fn update(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        body: Value,
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let (mut given, warnings) = decode(resource, body, options.field_validation)?;
        check_identity(resource, &mut given, namespace, name)?;
        let precondition = precondition_of(&given);
        let key = self.keys.object(resource, namespace, name);
        let mut create_instead = false;
        let (step, _) = self
            .guaranteed_update(resource, &key, name, |current| {
                let Some(current) = current else {
                    if subresource.is_none() && kinds::allow_create_on_update(resource.kind) {
                        create_instead = true;
                        return Ok(Step::Keep(Value::Null));
                    }
                    return Err(ApiError::not_found(resource, name));
                };
                if !precondition.is_empty() && precondition != meta::resource_version(&current.object) {
                    return Err(ApiError::conflict(resource, name));
                }
                next_version(resource, subresource, given.clone(), &current.object, options)
            })
            .await?;
        if create_instead {
            meta::remove(&mut given, "resourceVersion");
            return self.create(resource, namespace, given, options).await;
        }
        Ok(written(step, warnings))
    }

    /// PATCH on an object or its status subresource.
    pub async fn patch(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        (kind, body): (PatchType, &[u8]),
        options: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if kind == PatchType::Apply {
            return crate::apply::apply(self, resource, namespace, name, subresource, body, options).await;
        }
        let key = self.keys.object(resource, namespace, name);
        let mut warnings = Vec::new();
        let (step, _) = self
            .guaranteed_update(resource, &key, name, |current| {
                let current = current.ok_or_else(|| ApiError::not_found(resource, name))?;
                let (step, unknown) =
                    patched_version(resource, (namespace, name), subresource, (kind, body), &current.object, options)?;
                warnings = unknown;
                Ok(step)
            })
            .await?;
        Ok(written(step, warnings))
    }

    /// Writes a whole decided object through the guaranteed update (apply, scale, binding).
    pub(crate) async fn rewrite(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        subresource: Option<Subresource>,
        options: &WriteOptions,
        mut change: impl FnMut(&Value) -> Result<Value, ApiError>,
    ) -> Result<Written, ApiError> {
        let key = self.keys.object(resource, namespace, name);
        let (step, _) = self
            .guaranteed_update(resource, &key, name, |current| {
                let current = current.ok_or_else(|| ApiError::not_found(resource, name))?;
                let given = change(&current.object)?;
                next_version(resource, subresource, given, &current.object, options)
            })
            .await?;
        Ok(written(step, Vec::new()))
    }

    pub async fn delete(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        options: &DeleteOptions,
    ) -> Result<Deleted, ApiError> {
        let key = self.keys.object(resource, namespace, name);
        let (step, _) = self
            .guaranteed_update(resource, &key, name, |current| {
                let current = current.ok_or_else(|| ApiError::not_found(resource, name))?;
                check_preconditions(resource, name, &current.object, options)?;
                let step = kinds::delete_step(
                    resource.kind,
                    &current.object,
                    options.grace_period_seconds,
                    options.propagation,
                );
                if options.dry_run {
                    return Ok(Step::Keep(match step {
                        Step::Write(o) | Step::Delete(o) | Step::Keep(o) => o,
                    }));
                }
                Ok(step)
            })
            .await?;
        Ok(match step {
            Step::Delete(object) => Deleted { object, removed: true },
            Step::Write(object) | Step::Keep(object) => Deleted { object, removed: false },
        })
    }

    /// Deletes every object the options select; returns the list kube-apiserver returns.
    pub async fn delete_collection(
        &self,
        resource: &'static Resource,
        namespace: &str,
        list_options: &ListOptions,
        options: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        let listed = self.list(resource, namespace, list_options).await?;
        let mut items = Vec::new();
        for item in listed["items"].as_array().into_iter().flatten() {
            let item_namespace = meta::namespace(item).to_string();
            match self.delete(resource, &item_namespace, meta::name(item), options).await {
                Ok(deleted) => items.push(deleted.object),
                Err(ApiError::NotFound { .. }) => {}
                Err(err) => return Err(err),
            }
        }
        let mut list =
            list::empty_list(resource, meta::str_at(&listed, &["metadata", "resourceVersion"]).unwrap_or(""));
        list["items"] = Value::Array(items);
        Ok(list)
    }

    /// The autoscaling/v1 Scale of a deployment or replica set.
    pub async fn get_scale(&self, resource: &'static Resource, namespace: &str, name: &str) -> Result<Value, ApiError> {
        let object = self.get(resource, namespace, name, "").await?;
        Ok(kinds::scale_of(&object))
    }

    /// Writes a Scale (PUT or PATCH) to the object's spec.replicas.
    pub async fn set_scale(
        &self,
        resource: &'static Resource,
        namespace: &str,
        name: &str,
        patch: Option<PatchType>,
        body: &[u8],
        options: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let written = self
            .rewrite(resource, namespace, name, None, options, |current| {
                let scale = kinds::scale_of(current);
                let wanted: Value = match patch {
                    Some(kind) => patch::apply("io.k8s.api.autoscaling.v1.Scale", &scale, kind, body)?,
                    None => serde_json::from_slice(body).map_err(|e| ApiError::BadRequest(e.to_string()))?,
                };
                let precondition = meta::resource_version(&wanted);
                if !precondition.is_empty() && precondition != meta::resource_version(current) {
                    return Err(ApiError::conflict(resource, name));
                }
                let replicas = match meta::at(&wanted, &["spec", "replicas"]) {
                    None | Some(Value::Null) => 0,
                    Some(value) => value.as_i64().ok_or_else(|| {
                        ApiError::BadRequest(format!("Scale in version \"v1\" cannot be handled as a Scale: spec.replicas: {value} is not an integer"))
                    })?,
                };
                if replicas < 0 {
                    return Err(ApiError::Invalid {
                        group: "autoscaling".into(),
                        kind: "Scale".into(),
                        name: name.to_string(),
                        causes: vec![FieldError::invalid(
                            "spec.replicas",
                            replicas.to_string(),
                            "must be greater than or equal to 0",
                        )],
                    });
                }
                let mut next = current.clone();
                next["spec"]["replicas"] = json!(replicas);
                Ok(next)
            })
            .await?;
        Ok(kinds::scale_of(&written.object))
    }

    /// POST pods/{name}/binding: the scheduler's assignment of a pod to a node.
    pub async fn bind(&self, namespace: &str, name: &str, body: &Value) -> Result<(), ApiError> {
        let pods = resources::of(Kind::Pod);
        let node = meta::str_at(body, &["target", "name"]).unwrap_or("").to_string();
        if node.is_empty() {
            return Err(ApiError::invalid(pods, name, vec![FieldError::required("target.name", "")]));
        }
        let binding_conflict = |detail: String| ApiError::Conflict {
            resource: crate::error::GroupResource { group: String::new(), resource: "pods/binding".into() },
            name: name.to_string(),
            detail,
        };
        self.rewrite(pods, namespace, name, Some(Subresource::Binding), &WriteOptions::default(), |current| {
            if meta::is_deleting(current) {
                return Err(binding_conflict(format!("pod {name} is being deleted, cannot be assigned to a host")));
            }
            if let Some(assigned) = meta::str_at(current, &["spec", "nodeName"]).filter(|n| !n.is_empty()) {
                return Err(binding_conflict(format!("pod {name} is already assigned to node {assigned:?}")));
            }
            Ok(kinds::bound(current, &node))
        })
        .await?;
        Ok(())
    }
}

/// What a create decides from the body alone, before admission reads the store.
fn prepare_create(
    resource: &'static Resource,
    namespace: &str,
    body: Value,
    options: &WriteOptions,
) -> Result<(Value, Vec<String>), ApiError> {
    let (mut object, warnings) = decode(resource, body, options.field_validation)?;
    if resource.namespaced {
        let given = meta::namespace(&object);
        if !given.is_empty() && given != namespace {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        meta::set(&mut object, "namespace", json!(namespace));
    } else {
        meta::remove(&mut object, "namespace");
    }
    kinds::generate_name(&mut object);
    kinds::fill_system_fields(resource, &mut object);
    kinds::prepare_for_create(resource.kind, &mut object);
    if resource.kind == Kind::CertificateSigningRequest {
        kinds::stamp_requester(&mut object, &options.requester);
    }
    let mut object = typed::default(resource.kind, object).map_err(ApiError::BadRequest)?;
    typed::finish(resource.kind, &mut object);
    Ok((object, warnings))
}

/// What a create checks once admission has mutated the object.
fn check_create(resource: &'static Resource, object: &mut Value, options: &WriteOptions) -> Result<(), ApiError> {
    if !options.applying {
        crate::apply::track_update(resource, &options.field_manager, None, None, object);
    }
    let name = meta::name(object).to_string();
    let errors = validation::validate(resource.kind, object, None);
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource, &name, errors));
    }
    if resource.kind == Kind::CertificateSigningRequest {
        admission::certificate_subject_restriction(object).map_err(|detail| ApiError::Forbidden {
            resource: crate::error::GroupResource::of(resource),
            name,
            detail,
        })?;
    }
    Ok(())
}

/// The object an update stores, from what the client sent and what is there.
fn next_version(
    resource: &'static Resource,
    subresource: Option<Subresource>,
    given: Value,
    current: &Value,
    options: &WriteOptions,
) -> Result<Step, ApiError> {
    let name = meta::name(current).to_string();
    let object = kinds::prepare_for_update(resource, subresource, given, current);
    let mut object = typed::default(resource.kind, object).map_err(ApiError::BadRequest)?;
    typed::finish(resource.kind, &mut object);
    if !options.applying {
        crate::apply::track_update(resource, &options.field_manager, subresource, Some(current), &mut object);
    }
    let errors = validation::validate(resource.kind, &object, Some(current));
    if !errors.is_empty() {
        return Err(ApiError::invalid(resource, &name, errors));
    }
    if options.dry_run {
        return Ok(Step::Keep(object));
    }
    if kinds::should_delete_during_update(resource.kind, &object, current) {
        return Ok(Step::Delete(object));
    }
    Ok(Step::Write(object))
}

/// The object a JSON, merge or strategic patch makes of `current`.
fn patched_version(
    resource: &'static Resource,
    (namespace, name): (&str, &str),
    subresource: Option<Subresource>,
    (kind, body): (PatchType, &[u8]),
    current: &Value,
    options: &WriteOptions,
) -> Result<(Step, Vec<String>), ApiError> {
    let patched = patch::apply(resource.schema, current, kind, body)?;
    let precondition = precondition_of(&patched);
    if !precondition.is_empty() && precondition != meta::resource_version(current) {
        return Err(ApiError::conflict(resource, name));
    }
    let (mut given, warnings) = decode(resource, patched, options.field_validation)?;
    check_identity(resource, &mut given, namespace, name)?;
    Ok((next_version(resource, subresource, given, current, options)?, warnings))
}

/// Checks apiVersion and kind, decodes through the kind's type and applies
/// the field validation mode. Returns the decoded object and warnings.
fn decode(resource: &Resource, mut body: Value, mode: FieldValidation) -> Result<(Value, Vec<String>), ApiError> {
    let Some(map) = body.as_object_mut() else {
        return Err(ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: the object must be a JSON object",
            resource.kind_name, resource.version, resource.kind_name
        )));
    };
    let api_version = resource.api_version();
    match map.get("apiVersion").and_then(Value::as_str) {
        Some(v) if !v.is_empty() && v != api_version => {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({v}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {}
    }
    match map.get("kind").and_then(Value::as_str) {
        Some(k) if !k.is_empty() && k != resource.kind_name => {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({k}) does not match the expected kind ({})",
                resource.kind_name
            )))
        }
        _ => {}
    }
    map.insert("apiVersion".into(), json!(api_version));
    map.insert("kind".into(), json!(resource.kind_name));
    let cannot = |detail: String| {
        ApiError::BadRequest(format!(
            "{} in version {:?} cannot be handled as a {}: {detail}",
            resource.kind_name, resource.version, resource.kind_name
        ))
    };
    let decoded = typed::normalize(resource.kind, body.clone()).map_err(cannot)?;
    let unknown = if mode == FieldValidation::Ignore { Vec::new() } else { typed::unknown_fields(&body, &decoded) };
    let unknown: Vec<String> = unknown.iter().map(|f| format!("unknown field {f:?}")).collect();
    if mode == FieldValidation::Strict && !unknown.is_empty() {
        return Err(cannot(format!("strict decoding error: {}", unknown.join(", "))));
    }
    Ok((decoded, unknown))
}

fn written(step: Step, warnings: Vec<String>) -> Written {
    match step {
        Step::Write(object) | Step::Keep(object) | Step::Delete(object) => Written { object, warnings, created: false },
    }
}

/// The resourceVersion a write is conditional on; "" and "0" are unconditional.
fn precondition_of(object: &Value) -> String {
    match meta::resource_version(object) {
        "0" => String::new(),
        other => other.to_string(),
    }
}

fn too_large(wanted: i64, seen: i64) -> ApiError {
    ApiError::Timeout(format!("Too large resource version: {wanted}, current: {seen}"))
}

/// The name and namespace in the body must be the ones in the URL.
pub(crate) fn check_identity(
    resource: &Resource,
    object: &mut Value,
    namespace: &str,
    name: &str,
) -> Result<(), ApiError> {
    let given = meta::name(object).to_string();
    if given.is_empty() {
        meta::set(object, "name", json!(name));
    } else if given != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    if resource.namespaced {
        let given = meta::namespace(object);
        if !given.is_empty() && given != namespace {
            return Err(ApiError::BadRequest(
                "the namespace of the provided object does not match the namespace sent on the request".into(),
            ));
        }
        meta::set(object, "namespace", json!(namespace));
    } else {
        meta::remove(object, "namespace");
    }
    Ok(())
}

fn check_preconditions(
    resource: &Resource,
    name: &str,
    object: &Value,
    options: &DeleteOptions,
) -> Result<(), ApiError> {
    // kube-apiserver's generic registry names the kind here, not the resource.
    let failed = |what: &str, wanted: &str, actual: &str, why: &str| ApiError::Conflict {
        resource: crate::error::GroupResource {
            group: resource.group.to_string(),
            resource: resource.kind_name.to_string(),
        },
        name: name.to_string(),
        detail: format!(
            "the {what} in the precondition ({wanted}) does not match the {what} in record ({actual}). {why}"
        ),
    };
    if let Some(uid) = options.uid.as_deref().filter(|u| !u.is_empty()) {
        if uid != meta::uid(object) {
            return Err(failed("UID", uid, meta::uid(object), "The object might have been deleted and then recreated"));
        }
    }
    if let Some(rv) = options.resource_version.as_deref().filter(|r| !r.is_empty()) {
        if rv != meta::resource_version(object) {
            let actual = meta::resource_version(object);
            return Err(failed("ResourceVersion", rv, actual, "The object might have been modified"));
        }
    }
    Ok(())
}
