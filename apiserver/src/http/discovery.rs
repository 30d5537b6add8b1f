//! Discovery documents: legacy (`/api`, `/apis`, per group version) and
//! aggregated (apidiscovery.k8s.io v2 and v2beta1), built from the resource table.

use serde_json::{json, Value};

use crate::resources::{group_versions, Kind, Resource, Subresource, RESOURCES};

const VERBS: &[&str] = &["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"];

/// A resource's verbs: namespaces cannot be deleted as a collection.
fn verbs(resource: &Resource) -> Vec<&'static str> {
    VERBS.iter().copied().filter(|verb| !(resource.kind == Kind::Namespace && *verb == "deletecollection")).collect()
}

fn scope(resource: &Resource) -> &'static str {
    if resource.namespaced {
        "Namespaced"
    } else {
        "Cluster"
    }
}

/// The group, version and kind a subresource answers with, and its verbs.
fn subresource_shape(
    resource: &Resource,
    sub: Subresource,
) -> (&'static str, &'static str, &'static str, &'static [&'static str]) {
    match sub {
        Subresource::Status => (resource.group, resource.version, resource.kind_name, &["get", "patch", "update"]),
        Subresource::Scale => ("autoscaling", "v1", "Scale", &["get", "patch", "update"]),
        Subresource::Binding => ("", "v1", "Binding", &["create"]),
        Subresource::Eviction => ("policy", "v1", "Eviction", &["create"]),
        Subresource::Finalize => ("", "v1", "Namespace", &["update"]),
        Subresource::Approval => (resource.group, resource.version, resource.kind_name, &["get", "patch", "update"]),
    }
}

fn in_group_version<'a>(group: &'a str, version: &'a str) -> impl Iterator<Item = &'static Resource> + 'a {
    RESOURCES.iter().filter(move |r| r.group == group && r.version == version)
}

pub fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_document(group: &str) -> Value {
    let versions: Vec<Value> = group_versions()
        .into_iter()
        .filter(|(g, _)| *g == group)
        .map(|(g, v)| json!({"groupVersion": format!("{g}/{v}"), "version": v}))
        .collect();
    json!({"name": group, "versions": versions, "preferredVersion": versions.first().cloned().unwrap_or(Value::Null)})
}

pub fn group_list() -> Value {
    let mut groups: Vec<&str> = group_versions().into_iter().map(|(g, _)| g).filter(|g| !g.is_empty()).collect();
    groups.dedup();
    let groups: Vec<Value> = groups.into_iter().map(group_document).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    if name.is_empty() || !RESOURCES.iter().any(|r| r.group == name) {
        return None;
    }
    let mut document = group_document(name);
    document["kind"] = json!("APIGroup");
    document["apiVersion"] = json!("v1");
    Some(document)
}

pub fn resource_list(group: &str, version: &str) -> Option<Value> {
    let mut resources = Vec::new();
    for r in in_group_version(group, version) {
        let mut entry = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind_name,
            "verbs": verbs(r),
        });
        // Empty lists are left out, as Go's omitempty leaves them.
        if !r.short_names.is_empty() {
            entry["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            entry["categories"] = json!(r.categories);
        }
        resources.push(entry);
        for sub in r.subresources {
            let (g, v, kind, verbs) = subresource_shape(r, *sub);
            let mut entry = json!({
                "name": format!("{}/{}", r.plural, sub.name()),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": kind,
                "verbs": verbs,
            });
            if (g, v) != (r.group, r.version) {
                entry["group"] = json!(g);
                entry["version"] = json!(v);
            }
            resources.push(entry);
        }
    }
    if resources.is_empty() {
        return None;
    }
    let group_version = if group.is_empty() { version.to_string() } else { format!("{group}/{version}") };
    Some(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version, "resources": resources}))
}

/// The aggregated discovery document of `/api` (legacy) or `/apis`.
pub fn aggregated(legacy: bool, api_version: &str) -> Value {
    let mut items = Vec::new();
    let mut groups: Vec<&str> =
        group_versions().into_iter().map(|(g, _)| g).filter(|g| g.is_empty() == legacy).collect();
    groups.dedup();
    for group in groups {
        let versions: Vec<Value> = group_versions()
            .into_iter()
            .filter(|(g, _)| *g == group)
            .map(|(g, v)| {
                let resources: Vec<Value> = in_group_version(g, v)
                    .map(|r| {
                        let subresources: Vec<Value> = r
                            .subresources
                            .iter()
                            .map(|sub| {
                                let (sg, sv, kind, verbs) = subresource_shape(r, *sub);
                                json!({"subresource": sub.name(), "responseKind": {"group": sg, "version": sv, "kind": kind}, "verbs": verbs})
                            })
                            .collect();
                        let mut entry = json!({
                            "resource": r.plural,
                            "responseKind": {"group": r.group, "version": r.version, "kind": r.kind_name},
                            "scope": scope(r),
                            "singularResource": r.singular,
                            "verbs": verbs(r),
                        });
                        if !r.short_names.is_empty() {
                            entry["shortNames"] = json!(r.short_names);
                        }
                        if !r.categories.is_empty() {
                            entry["categories"] = json!(r.categories);
                        }
                        if !subresources.is_empty() {
                            entry["subresources"] = json!(subresources);
                        }
                        entry
                    })
                    .collect();
                json!({"version": v, "resources": resources, "freshness": "Current"})
            })
            .collect();
        let metadata = if group.is_empty() {
            json!({"creationTimestamp": null})
        } else {
            json!({"name": group, "creationTimestamp": null})
        };
        items.push(json!({"metadata": metadata, "versions": versions}));
    }
    json!({"kind": "APIGroupDiscoveryList", "apiVersion": api_version, "metadata": {}, "items": items})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documents_list_every_resource() {
        let core = resource_list("", "v1").expect("test data");
        let names: Vec<&str> =
            core["resources"].as_array().expect("test data").iter().filter_map(|r| r["name"].as_str()).collect();
        assert!(names.contains(&"pods/binding") && names.contains(&"nodes") && names.contains(&"pods/eviction"));
        let apps = aggregated(false, "apidiscovery.k8s.io/v2");
        let groups: Vec<&str> = apps["items"]
            .as_array()
            .expect("test data")
            .iter()
            .filter_map(|g| g["metadata"]["name"].as_str())
            .collect();
        let expected = [
            "apps",
            "batch",
            "coordination.k8s.io",
            "discovery.k8s.io",
            "scheduling.k8s.io",
            "rbac.authorization.k8s.io",
            "certificates.k8s.io",
        ];
        assert_eq!(groups, expected);
        assert_eq!(aggregated(true, "apidiscovery.k8s.io/v2")["items"].as_array().expect("test data").len(), 1);
        assert!(group("nope").is_none());
    }
}
