//! Server-side apply: each field manager owns the fields it applied (kept in
//! `metadata.managedFields` as FieldsV1). Applying a field another manager
//! owns with a different value is a conflict unless forced; fields a manager
//! stops applying are removed when nobody else owns them.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::meta;
use crate::openapi;
use crate::registry::{Registry, WriteOptions, Written};
use crate::resources::{Resource, Subresource};

/// A field path in FieldsV1 notation: `f:spec`, `k:{"name":"c"}`, `v:"x"`.
type Path = Vec<String>;

pub async fn apply(
    registry: &Registry,
    resource: &'static Resource,
    namespace: &str,
    name: &str,
    subresource: Option<Subresource>,
    body: &[u8],
    options: &WriteOptions,
) -> Result<Written, ApiError> {
    let applied = applied_configuration(resource, namespace, name, body)?;
    let manager = options.field_manager.clone();
    let options = &WriteOptions { applying: true, ..options.clone() };
    if manager.is_empty() {
        return Err(ApiError::BadRequest("PATCH, application/apply-patch+yaml requires fieldManager to be set".into()));
    }
    let key = registry.keys.object(resource, namespace, name);
    if registry.storage.get(&key).await?.is_none() {
        if subresource.is_some() {
            return Err(ApiError::not_found(resource, name));
        }
        let mut object = applied.clone();
        let owned = owned_fields(resource, &applied);
        meta::set(&mut object, "managedFields", json!([manager_entry(resource, &manager, &owned)]));
        return registry.create(resource, namespace, object, options).await;
    }
    registry
        .rewrite(resource, namespace, name, subresource, options, |live| {
            merge_applied(resource, live, &applied, &manager, options.force)
        })
        .await
}

/// Decodes an apply body, which must name the object of the URL, if it names one.
pub(crate) fn applied_configuration(
    resource: &Resource,
    namespace: &str,
    name: &str,
    body: &[u8],
) -> Result<Value, ApiError> {
    let applied = parse_applied(body)?;
    crate::registry::check_identity(resource, &mut applied.clone(), namespace, name)?;
    Ok(applied)
}

/// Decodes an apply body: one object, in YAML (of which JSON is a part).
fn parse_applied(body: &[u8]) -> Result<Value, ApiError> {
    let applied: Value =
        serde_yaml_ng::from_slice(body).map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::BadRequest("error decoding YAML: the applied configuration must be an object".into()));
    }
    Ok(applied)
}

/// The fields an applied configuration sets.
fn owned_fields(resource: &Resource, applied: &Value) -> BTreeSet<Path> {
    let schema = openapi::schemas().get(resource.schema);
    let mut owned = BTreeSet::new();
    collect(applied, schema, &mut Vec::new(), &mut owned, true);
    owned
}

/// A manager's Apply entry in `managedFields`.
fn manager_entry(resource: &Resource, manager: &str, owned: &BTreeSet<Path>) -> Value {
    json!({
        "manager": manager,
        "operation": "Apply",
        "apiVersion": resource.api_version(),
        "time": meta::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(owned),
    })
}

/// The live object once `manager` has applied `applied` to it: a conflict
/// with another manager's field fails unless forced.
pub(crate) fn merge_applied(
    resource: &Resource,
    live: &Value,
    applied: &Value,
    manager: &str,
    force: bool,
) -> Result<Value, ApiError> {
    let owned = owned_fields(resource, applied);
    let mut managers: Vec<Value> =
        meta::at(live, &["metadata", "managedFields"]).and_then(Value::as_array).cloned().unwrap_or_default();
    let mine_before: BTreeSet<Path> = managers
        .iter()
        .filter(|m| m["manager"] == manager && m["operation"] == "Apply")
        .flat_map(|m| from_fields_v1(&m["fieldsV1"]))
        .collect();
    let mut conflicts: Vec<(String, String)> = Vec::new();
    for other in managers.iter().filter(|m| !(m["manager"] == manager && m["operation"] == "Apply")) {
        // A list item itself is never a conflict: only the values inside it are.
        for path in
            from_fields_v1(&other["fieldsV1"]).into_iter().filter(|p| !p.last().is_some_and(|e| e.starts_with("k:")))
        {
            if owned.contains(&path)
                && lookup(live, &path) != lookup(applied, &path)
                && lookup(applied, &path).is_some()
            {
                conflicts.push((other["manager"].as_str().unwrap_or("").to_string(), render(&path)));
            }
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(conflict_error(&conflicts));
    }
    // Forced: the fields move to this manager.
    for other in managers.iter_mut() {
        let mut set = from_fields_v1(&other["fieldsV1"]);
        if other["manager"] == manager && other["operation"] == "Apply" {
            continue;
        }
        set.retain(|p| !(owned.contains(p) && conflicts.iter().any(|(_, c)| *c == render(p))));
        other["fieldsV1"] = to_fields_v1(&set);
    }
    let others: BTreeSet<Path> = managers
        .iter()
        .filter(|m| !(m["manager"] == manager && m["operation"] == "Apply"))
        .flat_map(|m| from_fields_v1(&m["fieldsV1"]))
        .collect();
    let mut next = live.clone();
    for dropped in mine_before.difference(&owned).filter(|p| !others.contains(*p)) {
        remove(&mut next, dropped);
    }
    let mut patch_body = applied.clone();
    if let Some(map) = patch_body.get_mut("metadata").and_then(Value::as_object_mut) {
        map.remove("managedFields");
        map.remove("resourceVersion");
    }
    next = crate::patch::apply(
        resource.schema,
        &next,
        crate::patch::PatchType::Strategic,
        patch_body.to_string().as_bytes(),
    )?;
    // The same fields applied again keep their entry, its time and its
    // place: a no-op apply writes nothing.
    let mine = |m: &Value| m["manager"] == manager && m["operation"] == "Apply";
    match managers.iter().position(&mine) {
        Some(i) if from_fields_v1(&managers[i]["fieldsV1"]) == owned => {}
        Some(i) => managers[i] = manager_entry(resource, manager, &owned),
        None => managers.push(manager_entry(resource, manager, &owned)),
    }
    managers.retain(|m| mine(m) || m["fieldsV1"].as_object().is_some_and(|f| !f.is_empty()));
    meta::set(&mut next, "managedFields", Value::Array(managers));
    Ok(next)
}

/// Records a create, update or patch in `managedFields`, as kube-apiserver
/// does for every write: the manager's Update entry gains the fields it
/// changed, which every other manager loses, and fields it removed leave all
/// sets. A write that changes no field keeps the entries as they were.
pub fn track_update(
    resource: &Resource,
    manager: &str,
    subresource: Option<Subresource>,
    old: Option<&Value>,
    new: &mut Value,
) {
    if manager.is_empty() {
        return;
    }
    let schema = openapi::schemas().get(resource.schema);
    let fields = |object: &Value| {
        let mut set = BTreeSet::new();
        collect(object, schema, &mut Vec::new(), &mut set, true);
        set
    };
    let before = old.map(fields).unwrap_or_default();
    let after = fields(new);
    let empty = Value::Null;
    // A list item counts as changed when it appears; the values inside it count on their own.
    let changed: BTreeSet<Path> = after
        .iter()
        .filter(|p| match old {
            None => true,
            Some(o) if p.last().is_some_and(|e| e.starts_with("k:")) => lookup(o, p).is_none(),
            Some(o) => lookup(new, p) != lookup(o, p),
        })
        .cloned()
        .collect();
    let removed: BTreeSet<Path> = before.difference(&after).cloned().collect();
    // Entries the client rewrote itself (kubectl's migration from client-side
    // apply does) replace the stored ones, as kube-apiserver accepts them.
    let stored = old.and_then(|o| meta::at(o, &["metadata", "managedFields"])).and_then(Value::as_array).cloned();
    let supplied = meta::at(new, &["metadata", "managedFields"]).and_then(Value::as_array).cloned();
    let mut managers: Vec<Value> = match (supplied, stored) {
        (Some(given), stored) if old.is_some() && Some(&given) != stored.as_ref() => given,
        (_, stored) => stored.unwrap_or_default(),
    };
    if changed.is_empty() && removed.is_empty() {
        if !managers.is_empty() {
            meta::set(new, "managedFields", Value::Array(managers));
        }
        return;
    }
    let subresource = subresource.map(|s| s.name()).unwrap_or("");
    let is_mine = |m: &Value| {
        m["manager"] == manager && m["operation"] == "Update" && m["subresource"].as_str().unwrap_or("") == subresource
    };
    let mut mine: BTreeSet<Path> =
        managers.iter().filter(|m| is_mine(m)).flat_map(|m| from_fields_v1(&m["fieldsV1"])).collect();
    for other in managers.iter_mut().filter(|m| !is_mine(m)) {
        let mut set = from_fields_v1(&other["fieldsV1"]);
        set.retain(|p| !changed.contains(p) && !removed.contains(p));
        other["fieldsV1"] = to_fields_v1(&set);
    }
    mine.extend(changed);
    mine.retain(|p| !removed.contains(p) && lookup(new, p).unwrap_or(&empty) != &empty);
    managers.retain(|m| !is_mine(m) && m["fieldsV1"].as_object().is_some_and(|f| !f.is_empty()));
    let mut entry = json!({
        "manager": manager,
        "operation": "Update",
        "apiVersion": resource.api_version(),
        "time": meta::now(),
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(&mine),
    });
    if !subresource.is_empty() {
        entry["subresource"] = json!(subresource);
    }
    managers.push(entry);
    meta::set(new, "managedFields", Value::Array(managers));
}

/// kube-apiserver's conflict message: fields grouped by the manager that owns them.
fn conflict_error(conflicts: &[(String, String)]) -> ApiError {
    let mut by_manager: Vec<(&str, Vec<&str>)> = Vec::new();
    for (manager, field) in conflicts {
        match by_manager.iter_mut().find(|(m, _)| m == manager) {
            Some((_, fields)) => fields.push(field),
            None => by_manager.push((manager, vec![field])),
        }
    }
    let groups: Vec<String> = by_manager
        .iter()
        .map(|(manager, fields)| match fields.as_slice() {
            [one] => format!("conflict with {manager:?}: {one}"),
            many => format!(
                "conflicts with {manager:?}:\n{}",
                many.iter().map(|f| format!("- {f}")).collect::<Vec<_>>().join("\n")
            ),
        })
        .collect();
    let count = conflicts.len();
    let plural = if count == 1 { "conflict" } else { "conflicts" };
    let detail = format!("Apply failed with {count} {plural}: {}", groups.join("\n"));
    ApiError::ApplyConflict { detail, conflicts: conflicts.to_vec() }
}

/// The merge key of a list, from the OpenAPI list-map keys or patch merge key.
fn list_key(node: Option<&Value>) -> Option<String> {
    let node = node?;
    node.get("x-kubernetes-list-map-keys")
        .and_then(|k| k.get(0))
        .or_else(|| node.get("x-kubernetes-patch-merge-key"))
        .and_then(Value::as_str)
        .map(String::from)
}

fn child_schema(schema: Option<&'static Value>, key: &str) -> (Option<&'static Value>, Option<&'static Value>) {
    let Some(schema) = schema else { return (None, None) };
    let node = schema.get("properties").and_then(|p| p.get(key)).or_else(|| schema.get("additionalProperties"));
    match node {
        Some(node) => (openapi::resolve(node).or(Some(node)), Some(node)),
        None => (None, None),
    }
}

/// The leaf paths (and list items) a configuration sets.
fn collect(value: &Value, schema: Option<&'static Value>, path: &mut Path, out: &mut BTreeSet<Path>, top: bool) {
    let Value::Object(map) = value else {
        out.insert(path.clone());
        return;
    };
    if map.is_empty() && !top {
        out.insert(path.clone());
    }
    for (key, child) in map {
        if top && (key == "apiVersion" || key == "kind") {
            continue;
        }
        if top && key == "metadata" {
            for inner in ["labels", "annotations"] {
                if let Some(Value::Object(entries)) = child.get(inner) {
                    for entry in entries.keys() {
                        out.insert(vec!["f:metadata".into(), format!("f:{inner}"), format!("f:{entry}")]);
                    }
                }
            }
            continue;
        }
        let (inner_schema, node) = child_schema(schema, key);
        path.push(format!("f:{key}"));
        match child {
            Value::Array(items) => match list_key(node) {
                Some(merge_key) => {
                    let item_schema = node.and_then(|n| n.get("items")).and_then(|i| openapi::resolve(i).or(Some(i)));
                    for item in items {
                        let Some(id) = item.get(&merge_key) else { continue };
                        path.push(format!("k:{}", json!({ merge_key.clone(): id })));
                        out.insert(path.clone());
                        collect(item, item_schema, path, out, false);
                        path.pop();
                    }
                }
                None => {
                    out.insert(path.clone());
                }
            },
            _ => collect(child, inner_schema, path, out, false),
        }
        path.pop();
    }
}

fn to_fields_v1(set: &BTreeSet<Path>) -> Value {
    let mut root = Map::new();
    for path in set {
        let mut node = &mut root;
        for element in path {
            let entry = node.entry(element.clone()).or_insert_with(|| json!({}));
            node = entry.as_object_mut().expect("fieldsV1 nodes are objects");
        }
    }
    // A member that also has members below it is marked with ".".
    for path in set {
        let node = path.iter().try_fold(&mut root, |node, element| node.get_mut(element)?.as_object_mut());
        if let Some(node) = node {
            if !node.is_empty() {
                node.insert(".".into(), json!({}));
            }
        }
    }
    Value::Object(root)
}

fn from_fields_v1(fields: &Value) -> BTreeSet<Path> {
    fn walk(node: &Value, path: &mut Path, out: &mut BTreeSet<Path>) {
        let Some(map) = node.as_object() else { return };
        if (map.is_empty() || map.contains_key(".")) && !path.is_empty() {
            out.insert(path.clone());
        }
        for (key, child) in map {
            if key == "." {
                continue;
            }
            path.push(key.clone());
            walk(child, path, out);
            path.pop();
        }
    }
    let mut out = BTreeSet::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

fn step<'a>(node: &'a Value, element: &str) -> Option<&'a Value> {
    if let Some(field) = element.strip_prefix("f:") {
        return node.get(field);
    }
    if let Some(key) = element.strip_prefix("k:") {
        let wanted: Map<String, Value> = serde_json::from_str(key).ok()?;
        return node.as_array()?.iter().find(|item| wanted.iter().all(|(k, v)| item.get(k) == Some(v)));
    }
    None
}

fn lookup<'a>(object: &'a Value, path: &Path) -> Option<&'a Value> {
    path.iter().try_fold(object, |node, element| step(node, element))
}

fn remove(object: &mut Value, path: &Path) {
    let Some((last, parents)) = path.split_last() else { return };
    let mut node = object;
    for element in parents {
        let next = if let Some(field) = element.strip_prefix("f:") {
            node.get_mut(field)
        } else if let Some(key) = element.strip_prefix("k:") {
            let Ok(wanted) = serde_json::from_str::<Map<String, Value>>(key) else { return };
            node.as_array_mut()
                .and_then(|items| items.iter_mut().find(|item| wanted.iter().all(|(k, v)| item.get(k) == Some(v))))
        } else {
            None
        };
        let Some(next) = next else { return };
        node = next;
    }
    if let Some(field) = last.strip_prefix("f:") {
        if let Some(map) = node.as_object_mut() {
            map.remove(field);
        }
    } else if let Some(key) = last.strip_prefix("k:") {
        if let (Ok(wanted), Some(items)) = (serde_json::from_str::<Map<String, Value>>(key), node.as_array_mut()) {
            items.retain(|item| !wanted.iter().all(|(k, v)| item.get(k) == Some(v)));
        }
    }
}

/// A path as kube-apiserver prints it in conflicts: `.spec.replicas`, `.spec.containers[name="c"].image`.
fn render(path: &Path) -> String {
    let mut out = String::new();
    for element in path {
        if let Some(field) = element.strip_prefix("f:") {
            out.push('.');
            out.push_str(field);
        } else if let Some(key) = element.strip_prefix("k:") {
            let pairs: Vec<String> = serde_json::from_str::<Map<String, Value>>(key)
                .map(|m| m.iter().map(|(k, v)| format!("{k}={v}")).collect())
                .unwrap_or_default();
            out.push_str(&format!("[{}]", pairs.join(",")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_sets_round_trip_through_fields_v1() {
        let deploy = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d", "labels": {"a": "b"}},
            "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}}});
        let schema = openapi::schemas().get("io.k8s.api.apps.v1.Deployment");
        let mut set = BTreeSet::new();
        collect(&deploy, schema, &mut Vec::new(), &mut set, true);
        let rendered: Vec<String> = set.iter().map(render).collect();
        assert!(rendered.contains(&".spec.replicas".to_string()), "{rendered:?}");
        assert!(rendered.contains(&".spec.template.spec.containers[name=\"c\"].image".to_string()), "{rendered:?}");
        assert_eq!(from_fields_v1(&to_fields_v1(&set)), set);
        let image = set.iter().find(|p| render(p).ends_with(".image")).expect("test data");
        assert_eq!(lookup(&deploy, image), Some(&json!("i")));
    }
}

#[cfg(test)]
mod update_tests {
    use super::*;
    use crate::resources::{of, Kind};

    #[test]
    fn updates_take_the_fields_they_change() {
        let deployments = of(Kind::Deployment);
        let mut created = json!({"metadata": {"name": "d"}, "spec": {"replicas": 1, "paused": false}});
        track_update(deployments, "creator", None, None, &mut created);
        let mut scaled = created.clone();
        scaled["spec"]["replicas"] = json!(3);
        track_update(deployments, "scaler", None, Some(&created), &mut scaled);
        let managers = scaled["metadata"]["managedFields"].as_array().expect("managers").clone();
        let owner_of = |field: &str| {
            managers
                .iter()
                .filter(|m| m["fieldsV1"]["f:spec"].get(format!("f:{field}")).is_some())
                .map(|m| m["manager"].clone())
                .collect::<Vec<_>>()
        };
        assert_eq!(owner_of("replicas"), vec![json!("scaler")]);
        assert_eq!(owner_of("paused"), vec![json!("creator")]);
        // Writing the same again changes no entry.
        let mut again = scaled.clone();
        track_update(deployments, "scaler", None, Some(&scaled), &mut again);
        assert_eq!(again["metadata"]["managedFields"], scaled["metadata"]["managedFields"]);
    }
}
