//! What a request asks for, read from its path, query and headers, as
//! kube-apiserver's RequestInfoFactory reads it. Pure.

use std::collections::HashMap;

use crate::error::ApiError;
use crate::resources::{self, Resource, Subresource};

#[derive(Debug)]
pub struct ResourceRequest {
    pub resource: &'static Resource,
    pub namespace: String,
    pub name: Option<String>,
    pub subresource: Option<Subresource>,
    /// The deprecated `/watch/` path prefix.
    pub watch_path: bool,
}

/// Where a path leads.
#[derive(Debug)]
pub enum Route {
    Health(&'static str),
    Metrics,
    Version,
    /// `/api` or `/apis`.
    GroupList {
        legacy: bool,
    },
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`.
    ResourceList {
        group: String,
        version: String,
    },
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String),
    /// `kubectl auth whoami`: who the server takes the caller for.
    SelfSubjectReview,
    /// `kubectl auth can-i`: whether the caller may do something.
    SelfSubjectAccessReview,
    /// Whether a given user may do something: the CSR approver asks.
    SubjectAccessReview,
    Resource(ResourceRequest),
    NotFound,
}

pub fn route(path: &str) -> Result<Route, ApiError> {
    let trimmed = path.trim_end_matches('/');
    let parts: Vec<&str> = trimmed.split('/').filter(|p| !p.is_empty()).collect();
    Ok(match parts.as_slice() {
        ["healthz", ..] => Route::Health("healthz"),
        ["livez", ..] => Route::Health("livez"),
        ["readyz", ..] => Route::Health("readyz"),
        ["metrics"] => Route::Metrics,
        ["version"] => Route::Version,
        ["api"] => Route::GroupList { legacy: true },
        ["apis"] => Route::GroupList { legacy: false },
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", rest @ ..] => Route::OpenApiV3(rest.join("/")),
        ["apis", "authentication.k8s.io", "v1", "selfsubjectreviews"] => Route::SelfSubjectReview,
        ["apis", "authorization.k8s.io", "v1", "selfsubjectaccessreviews"] => Route::SelfSubjectAccessReview,
        ["apis", "authorization.k8s.io", "v1", "subjectaccessreviews"] => Route::SubjectAccessReview,
        ["api", "v1"] => Route::ResourceList { group: String::new(), version: "v1".into() },
        ["api", "v1", rest @ ..] => resource_route("", "v1", rest)?,
        ["apis", group] => Route::Group(group.to_string()),
        ["apis", group, version] => Route::ResourceList { group: group.to_string(), version: version.to_string() },
        ["apis", group, version, rest @ ..] => resource_route(group, version, rest)?,
        _ => Route::NotFound,
    })
}

fn resource_route(group: &str, version: &str, parts: &[&str]) -> Result<Route, ApiError> {
    let mut parts = parts.to_vec();
    let watch_path = parts.first() == Some(&"watch");
    if watch_path {
        parts.remove(0);
    }
    let mut namespace = String::new();
    // `namespaces/<ns>/<resource>...`, but `namespaces/<name>` and
    // `namespaces/<name>/status` are the namespace itself.
    if parts.len() >= 3 && parts[0] == "namespaces" && parts[2] != "status" && parts[2] != "finalize" {
        namespace = parts[1].to_string();
        parts.drain(..2);
    }
    let Some(plural) = parts.first() else { return Ok(Route::NotFound) };
    let Some(resource) = resources::lookup(group, version, plural) else { return Ok(Route::NotFound) };
    if !resource.namespaced && !namespace.is_empty() {
        return Ok(Route::NotFound);
    }
    let name = parts.get(1).map(|n| n.to_string());
    let subresource = match parts.get(2) {
        None => None,
        Some(sub) => match Subresource::parse(sub).filter(|s| resource.has(*s)) {
            Some(s) => Some(s),
            None => return Ok(Route::NotFound),
        },
    };
    if parts.len() > 3 {
        return Ok(Route::NotFound);
    }
    Ok(Route::Resource(ResourceRequest { resource, namespace, name, subresource, watch_path }))
}

/// Query parameters, percent-decoded; the last value of a repeated key wins.
pub fn query(raw: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(raw.unwrap_or("").as_bytes()).into_owned().collect()
}

/// A boolean parameter, read as Go's strconv.ParseBool reads it.
pub fn flag(query: &HashMap<String, String>, key: &str) -> bool {
    matches!(query.get(key).map(String::as_str), Some("1" | "t" | "T" | "true" | "TRUE" | "True"))
}

/// What the client accepts back, from its Accept header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Json,
    Table,
    Metadata,
    AggregatedV2,
    AggregatedV2Beta1,
}

pub fn output(accept: &str) -> Result<Output, ApiError> {
    let mut json_ok = accept.trim().is_empty();
    for clause in accept.split(',') {
        let mut pieces = clause.split(';').map(str::trim);
        let media = pieces.next().unwrap_or("");
        let params: HashMap<&str, &str> = pieces.filter_map(|p| p.split_once('=')).collect();
        let json_like = matches!(media, "application/json" | "*/*" | "application/*" | "application/yaml");
        if !json_like {
            continue;
        }
        match (params.get("as").copied(), params.get("g").copied(), params.get("v").copied()) {
            (Some("Table"), Some("meta.k8s.io"), Some("v1" | "v1beta1")) => return Ok(Output::Table),
            (
                Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                Some("meta.k8s.io"),
                Some("v1" | "v1beta1"),
            ) => return Ok(Output::Metadata),
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2")) => {
                return Ok(Output::AggregatedV2)
            }
            (Some("APIGroupDiscoveryList"), Some("apidiscovery.k8s.io"), Some("v2beta1")) => {
                return Ok(Output::AggregatedV2Beta1)
            }
            (None, _, _) => json_ok = true,
            _ => {}
        }
    }
    if json_ok {
        Ok(Output::Json)
    } else {
        Err(ApiError::NotAcceptable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(path: &str) -> ResourceRequest {
        match route(path).expect("test data") {
            Route::Resource(r) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn paths_as_kube_apiserver_reads_them() {
        let r = resource("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(
            (r.resource.plural, r.namespace.as_str(), r.name.as_deref(), r.subresource),
            ("pods", "default", Some("web"), Some(Subresource::Status))
        );
        let r = resource("/api/v1/namespaces/kube-system");
        assert_eq!(
            (r.resource.plural, r.namespace.as_str(), r.name.as_deref()),
            ("namespaces", "", Some("kube-system"))
        );
        let r = resource("/api/v1/namespaces/x/status");
        assert_eq!(
            (r.resource.plural, r.name.as_deref(), r.subresource),
            ("namespaces", Some("x"), Some(Subresource::Status))
        );
        let r = resource("/apis/apps/v1/watch/namespaces/a/deployments");
        assert!(r.watch_path);
        assert_eq!(r.resource.plural, "deployments");
        let r = resource("/api/v1/pods");
        assert_eq!(r.namespace, "");
        assert!(matches!(route("/api/v1/namespaces/a/nodes").expect("test data"), Route::NotFound));
        assert!(matches!(route("/api/v1/namespaces/a/configmaps/c/scale").expect("test data"), Route::NotFound));
        assert!(matches!(route("/apis/apps/v1").expect("test data"), Route::ResourceList { .. }));
    }

    #[test]
    fn booleans_as_go_reads_them() {
        let q = query(Some("watch=True&pretty=0&a=t"));
        assert!(flag(&q, "watch") && flag(&q, "a"));
        assert!(!flag(&q, "pretty") && !flag(&q, "missing"));
    }

    #[test]
    fn accept_headers() {
        assert_eq!(
            output("application/json;as=Table;v=v1;g=meta.k8s.io,application/json").expect("test data"),
            Output::Table
        );
        assert_eq!(output("application/vnd.kubernetes.protobuf, */*").expect("test data"), Output::Json);
        assert_eq!(
            output("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json")
                .expect("test data"),
            Output::AggregatedV2
        );
        assert!(output("application/vnd.kubernetes.protobuf").is_err());
    }
}
