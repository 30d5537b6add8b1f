//! What the fuzz targets (`apiserver/fuzz`) check, kept here so that the
//! unit tests run the same checks on mutated inputs in every CI run.
//!
//! Both run the registry's own decisions, the ones between a request body and
//! the compare-and-swap that stores it: a body that any of them refuses never
//! reaches the store. Nothing may panic, and what would be stored must be an
//! object the server reads back as it wrote it.

use http::header::{HeaderValue, CONTENT_TYPE};
use http::HeaderMap;
use serde_json::{json, Value};

use super::{check_create, decode, next_version, patched_version, prepare_create, FieldValidation, Step, WriteOptions};
use crate::patch::PatchType;
use crate::resources::{Kind, Resource, RESOURCES};
use crate::{meta, protobuf, storage};

const MEDIA: [&str; 3] = ["application/json", "application/yaml", protobuf::MEDIA_TYPE];
const MODES: [FieldValidation; 3] = [FieldValidation::Ignore, FieldValidation::Warn, FieldValidation::Strict];

fn resource(selector: u8) -> &'static Resource {
    &RESOURCES[usize::from(selector) % RESOURCES.len()]
}

fn namespace_of(resource: &Resource) -> &'static str {
    if resource.namespaced {
        "default"
    } else {
        ""
    }
}

fn options(mode: u8) -> WriteOptions {
    WriteOptions {
        field_validation: MODES[usize::from(mode) % MODES.len()],
        field_manager: "fuzz".into(),
        requester: json!({"username": "fuzz", "groups": ["system:authenticated"]}),
        ..WriteOptions::default()
    }
}

/// A create: `resource: u8, media and mode: u8, body`. Decoded as the
/// handler decodes a body, then decided as the registry decides a create.
/// Returns whether the create was accepted.
pub fn object_bodies(data: &[u8]) -> bool {
    let [selector, media, body @ ..] = data else { return false };
    let resource = resource(*selector);
    let mut headers = HeaderMap::new();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(MEDIA[usize::from(*media) % MEDIA.len()]));
    let Ok(body) = crate::http::handlers::decode_body(&headers, body) else { return false };
    let Some(object) = created(resource, body, &options(media / 3)) else { return false };
    assert!(!meta::name(&object).is_empty(), "a {} stored without a name", resource.kind_name);
    reads_back(resource, &object);
    // The same object sent back as an update is decided without a panic.
    let _ = next_version(resource, None, object.clone(), &object, &options(media / 3));
    true
}

/// A patch: `resource: u8, patch type and mode: u8, length: u16 (LE), the
/// object as created, the patch`. The patch types are JSON, merge,
/// strategic merge and server-side apply. Returns whether the patch was accepted.
pub fn patches(data: &[u8]) -> bool {
    let [selector, kind, low, high, rest @ ..] = data else { return false };
    let resource = resource(*selector);
    let length = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
    let (original, patch) = rest.split_at(length);
    let options = options(kind / 4);
    let Ok(original) = serde_json::from_slice(original) else { return false };
    let Some(mut current) = created(resource, original, &options) else { return false };
    meta::set_resource_version(&mut current, 7);
    let name = meta::name(&current).to_string();
    let namespace = namespace_of(resource);
    let step = match kind % 4 {
        0 => patched_version(resource, (namespace, &name), None, (PatchType::Json, patch), &current, &options),
        1 => patched_version(resource, (namespace, &name), None, (PatchType::Merge, patch), &current, &options),
        2 => patched_version(resource, (namespace, &name), None, (PatchType::Strategic, patch), &current, &options),
        _ => applied(resource, &current, patch, &options),
    };
    let Ok((Step::Write(next) | Step::Delete(next) | Step::Keep(next), _)) = step else { return false };
    for field in ["name", "namespace", "uid", "creationTimestamp"] {
        let at = |object: &Value| meta::at(object, &["metadata", field]).cloned();
        assert_eq!(at(&next), at(&current), "a patch of a {} changed metadata.{field}", resource.kind_name);
    }
    reads_back(resource, &next);
    true
}

/// Server-side apply to a live object, as the registry's rewrite runs it.
fn applied(
    resource: &'static Resource,
    current: &Value,
    body: &[u8],
    options: &WriteOptions,
) -> Result<(Step, Vec<String>), crate::error::ApiError> {
    let (namespace, name) = (namespace_of(resource), meta::name(current));
    let configuration = crate::apply::applied_configuration(resource, namespace, name, body)?;
    let options = &WriteOptions { applying: true, force: body.len().is_multiple_of(2), ..options.clone() };
    let merged = crate::apply::merge_applied(resource, current, &configuration, "fuzz", options.force)?;
    Ok((next_version(resource, None, merged, current, options)?, Vec::new()))
}

/// The object a create would store, or None when it is refused.
fn created(resource: &'static Resource, body: Value, options: &WriteOptions) -> Option<Value> {
    let (mut object, _) = prepare_create(resource, namespace_of(resource), body, options).ok()?;
    check_create(resource, &mut object, options).ok()?;
    Some(object)
}

/// What is stored decodes again, strictly: the server never writes a field it would refuse.
fn reads_back(resource: &'static Resource, object: &Value) {
    let stored = match storage::encode(object) {
        Ok(stored) => stored,
        Err(err) => panic!("a {} that cannot be stored: {err}", resource.kind_name),
    };
    let stored: Value = match serde_json::from_slice(&stored) {
        Ok(stored) => stored,
        Err(err) => panic!("a stored {} that is not JSON: {err}", resource.kind_name),
    };
    if let Err(err) = decode(resource, stored, FieldValidation::Strict) {
        panic!("a stored {} the server refuses to read: {err:?}", resource.kind_name);
    }
}

fn selector(kind: Kind) -> u8 {
    RESOURCES.iter().position(|r| r.kind == kind).and_then(|i| u8::try_from(i).ok()).unwrap_or(0)
}

/// Bodies a corpus starts from: one object of several kinds, in JSON.
pub fn body_seeds() -> Vec<Vec<u8>> {
    seed_objects()
        .into_iter()
        .map(|(kind, object)| [vec![selector(kind), 2 * 3], object.to_string().into_bytes()].concat())
        .collect()
}

/// Patches a corpus starts from: each patch type on each seed object.
pub fn patch_seeds() -> Vec<Vec<u8>> {
    let patches = seed_patches();
    let mut seeds = Vec::new();
    for (kind, object) in seed_objects() {
        let original = object.to_string().into_bytes();
        let length = u16::try_from(original.len()).unwrap_or(u16::MAX).to_le_bytes();
        for (patch_type, patch) in (0u8..).zip(&patches) {
            let head = [selector(kind), patch_type, length[0], length[1]];
            seeds.push([&head[..], &original, patch.to_string().as_bytes()].concat());
        }
    }
    seeds
}

/// One patch of each type: JSON, merge, strategic merge, apply.
fn seed_patches() -> [Value; 4] {
    [
        json!([{"op": "add", "path": "/metadata/labels", "value": {"a": "b"}}, {"op": "replace", "path": "/metadata/name", "value": "x"}]),
        json!({"metadata": {"labels": {"a": null, "b": "c"}, "annotations": {"n": "1"}}}),
        json!({"metadata": {"finalizers": ["f"]}, "spec": {"containers": [{"name": "c", "image": "i2"}]}}),
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"m": "fuzz"}}}),
    ]
}

fn seed_objects() -> Vec<(Kind, Value)> {
    vec![
        (
            Kind::Pod,
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"app": "a"}},
                   "spec": {"containers": [{"name": "c", "image": "i", "ports": [{"containerPort": 80}]}]}}),
        ),
        (
            Kind::ConfigMap,
            json!({"metadata": {"generateName": "cm-"}, "data": {"k": "v"}, "binaryData": {"b": "AAE="}}),
        ),
        (
            Kind::Deployment,
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                   "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "a"}},
                            "template": {"metadata": {"labels": {"app": "a"}},
                                         "spec": {"containers": [{"name": "c", "image": "i"}]}}}}),
        ),
        (
            Kind::Service,
            json!({"metadata": {"name": "s"}, "spec": {"selector": {"app": "a"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        ),
        (Kind::Namespace, json!({"metadata": {"name": "n", "labels": {"x": "y"}}})),
        (
            Kind::Role,
            json!({"metadata": {"name": "r"}, "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]}),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use cairn_testkit::mutate::Mutator;

    use super::*;

    #[test]
    fn seeds_are_accepted_and_read_back() {
        for seed in body_seeds() {
            let body: Value = serde_json::from_slice(&seed[2..]).expect("a seed is JSON");
            assert!(created(resource(seed[0]), body, &options(2)).is_some(), "seed refused: {seed:?}");
            assert!(object_bodies(&seed));
        }
        let accepted = patch_seeds().iter().filter(|seed| patches(seed)).count();
        assert!(accepted >= patch_seeds().len() / 2, "only {accepted} seed patches accepted");
    }

    #[test]
    fn mutated_bodies_and_patches_never_panic_and_store_what_reads_back() {
        let mut mutator = Mutator::new(0x2545_f491_4f6c_dd1d);
        for input in mutator.inputs(&body_seeds(), 2000).iter().chain(&mutator.inputs(&patch_seeds(), 2000)) {
            object_bodies(input);
            patches(input);
        }
        // Changes to the JSON itself: enough of them pass every check for
        // the checks on what is stored to run.
        let (mut bodies, mut patched) = (0, 0);
        for round in 0..3000 {
            let objects = seed_objects();
            let (kind, object) = &objects[round % objects.len()];
            let body = mutator.mutate_json(object.clone()).to_string().into_bytes();
            bodies += usize::from(object_bodies(&[&[selector(*kind), 0][..], &body].concat()));
            let original = object.to_string().into_bytes();
            let length = u16::try_from(original.len()).expect("a small seed").to_le_bytes();
            // Every patch type on every kind: the type changes once per round of kinds.
            let patch_type = u8::try_from((round / objects.len()) % 4).expect("below 4");
            let head = [selector(*kind), patch_type, length[0], length[1]];
            let patch = mutator.mutate_json(seed_patches()[usize::from(patch_type)].clone()).to_string().into_bytes();
            patched += usize::from(patches(&[&head[..], &original, &patch].concat()));
        }
        assert!(bodies >= 150, "only {bodies} of 3000 mutated bodies accepted");
        assert!(patched >= 300, "only {patched} of 3000 mutated patches accepted");
    }

    #[test]
    fn a_patch_that_renames_is_refused() {
        let pod = &seed_objects()[0].1;
        let original = pod.to_string().into_bytes();
        let length = u16::try_from(original.len()).expect("small").to_le_bytes();
        let rename = br#"[{"op": "replace", "path": "/metadata/name", "value": "other"}]"#;
        let input = [&[selector(Kind::Pod), 0, length[0], length[1]][..], &original, rename].concat();
        let current = created(resource(selector(Kind::Pod)), pod.clone(), &options(0)).expect("valid");
        let step = patched_version(
            resource(selector(Kind::Pod)),
            ("default", "p"),
            None,
            (PatchType::Json, rename),
            &current,
            &options(0),
        );
        assert!(step.is_err(), "a rename must be refused");
        assert!(!patches(&input));
        // Server-side apply too, and a configuration that names no object is applied.
        let renamed = br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q", "labels": {"m": "x"}}}"#;
        assert!(applied(resource(selector(Kind::Pod)), &current, renamed, &options(0)).is_err());
        let unnamed = br#"{"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"m": "x"}}}"#;
        assert!(applied(resource(selector(Kind::Pod)), &current, unnamed, &options(0)).is_ok());
    }
}
