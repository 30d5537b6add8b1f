//! The resource verbs over HTTP: decoding requests, calling the registry,
//! and shaping responses (objects, lists, Tables, Status).

use std::collections::HashMap;

use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};

use super::request::{flag, Output, ResourceRequest};
use super::{respond, Reply, Server};
use crate::error::ApiError;
use crate::meta;
use crate::patch::PatchType;
use crate::registry::{DeleteOptions, FieldValidation, ListOptions, Propagation, WriteOptions};
use crate::resources::{Kind, Resource, Subresource};
use crate::selector::{FieldSelector, LabelSelector};
use crate::table::{self, IncludeObject};

/// Decodes the body of a create or update of `resource`; a body that is no
/// object at all names the kind expected, as kube-apiserver's decoder does.
fn decode_object(headers: &HeaderMap, body: &[u8], resource: &Resource) -> Result<Value, ApiError> {
    decode_body(headers, body).map_err(|err| match err {
        ApiError::BadRequest(message) if message.starts_with("couldn't get version/kind") => ApiError::BadRequest(
            format!("the object provided is unrecognized (must be of type {}): {message}", resource.kind_name),
        ),
        other => other,
    })
}

/// Decodes a JSON or YAML request body.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let content_type =
        headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("application/json");
    let media = content_type.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}"))),
        "application/yaml" => serde_yaml_ng::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: yaml: {e}"))),
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "application/json, application/yaml, {}",
            crate::protobuf::MEDIA_TYPE
        ))),
    }
}

pub fn list_options(query: &HashMap<String, String>, kind: Kind) -> Result<ListOptions, ApiError> {
    let labels = LabelSelector::parse(query.get("labelSelector").map(String::as_str).unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(query.get("fieldSelector").map(String::as_str).unwrap_or(""))
        .map_err(ApiError::BadRequest)?;
    fields.validate(kind).map_err(ApiError::BadRequest)?;
    let limit = match query.get("limit").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text.parse::<i64>().map_err(|_| ApiError::BadRequest(format!("invalid limit: {text:?}")))?.max(0),
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: query.get("continue").cloned().unwrap_or_default(),
        resource_version: query.get("resourceVersion").cloned().unwrap_or_default(),
        resource_version_match: query.get("resourceVersionMatch").cloned().unwrap_or_default(),
    })
}

/// The field manager: the `fieldManager` parameter, else the client's name
/// from its User-Agent, as kube-apiserver takes it.
fn field_manager(query: &HashMap<String, String>, headers: &HeaderMap) -> String {
    match query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(manager) => manager.chars().take(128).collect(),
        None => {
            let agent = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or("unknown");
            agent.split('/').next().unwrap_or("unknown").chars().take(128).collect()
        }
    }
}

fn write_options(
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    user: &super::auth::User,
) -> Result<WriteOptions, ApiError> {
    let dry_run = match query.get("dryRun").map(String::as_str) {
        None | Some("") => false,
        Some("All") => true,
        Some(other) => {
            return Err(ApiError::BadRequest(format!("Invalid dry run value: {other:?}, supported values: All")))
        }
    };
    Ok(WriteOptions {
        field_validation: FieldValidation::parse(query.get("fieldValidation").map(String::as_str).unwrap_or(""))?,
        dry_run,
        field_manager: field_manager(query, headers),
        force: flag(query, "force"),
        applying: false,
        requester: json!({"username": user.name, "uid": user.uid, "groups": super::authz::groups_of(user)}),
    })
}

fn delete_options(
    query: &HashMap<String, String>,
    body: &[u8],
    headers: &HeaderMap,
) -> Result<DeleteOptions, ApiError> {
    let mut options = if body.iter().all(u8::is_ascii_whitespace) {
        DeleteOptions::default()
    } else {
        DeleteOptions::from_body(&decode_body(headers, body)?)
    };
    if let Some(grace) = query.get("gracePeriodSeconds") {
        options.grace_period_seconds =
            Some(grace.parse().map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds: {grace:?}")))?);
    }
    if query.get("dryRun").map(String::as_str) == Some("All") {
        options.dry_run = true;
    }
    let orphan = query.get("orphanDependents").map(|v| v == "true");
    if let Some(policy) =
        Propagation::parse(query.get("propagationPolicy").map(String::as_str), orphan).map_err(ApiError::BadRequest)?
    {
        options.propagation = Some(policy);
    }
    Ok(options)
}

/// An object or a list as the client asked for it: JSON, Table or metadata only.
fn shaped(
    request: &ResourceRequest,
    output: Output,
    query: &HashMap<String, String>,
    value: Value,
    is_list: bool,
) -> Value {
    match output {
        Output::Table => {
            let include = IncludeObject::parse(query.get("includeObject").map(String::as_str).unwrap_or(""));
            if is_list {
                let items = value["items"].as_array().cloned().unwrap_or_default();
                table::table(request.resource, &items, value["metadata"].clone(), include)
            } else {
                let metadata = json!({"resourceVersion": meta::resource_version(&value)});
                table::table(request.resource, &[value], metadata, include)
            }
        }
        Output::Metadata => {
            let partial = |o: &Value| json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"].clone()});
            if is_list {
                let items: Vec<Value> = value["items"].as_array().into_iter().flatten().map(partial).collect();
                json!({"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": value["metadata"].clone(), "items": items})
            } else {
                partial(&value)
            }
        }
        _ => value,
    }
}

fn status_success(request: &ResourceRequest, name: &str, uid: &str, code: u16) -> Value {
    let mut details = json!({"name": name, "kind": request.resource.plural, "uid": uid});
    if !request.resource.group.is_empty() {
        details["group"] = json!(request.resource.group);
    }
    let mut status =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details});
    if code != 200 {
        status["code"] = json!(code);
    }
    status
}

/// kube's CertificateApproval and CertificateSigning admission: approving a
/// request takes `approve`, issuing it `sign`, on its signer (by name, or
/// `<domain>/*`) in `signers.certificates.k8s.io`.
async fn authorize_signer(
    server: &Server,
    user: &super::auth::User,
    resource: &'static Resource,
    name: &str,
    subresource: Option<Subresource>,
) -> Result<(), ApiError> {
    let verb = match subresource {
        Some(Subresource::Approval) => "approve",
        Some(Subresource::Status) => "sign",
        _ => return Ok(()),
    };
    let current = server.registry.get(resource, "", name, "").await?;
    let signer = meta::str_at(&current, &["spec", "signerName"]).unwrap_or_default().to_string();
    let domain = signer.split('/').next().unwrap_or_default();
    for signer_name in [signer.clone(), format!("{domain}/*")] {
        let attributes = crate::rbac::Attributes {
            user: user.name.clone(),
            groups: super::authz::groups_of(user),
            verb: verb.to_string(),
            target: crate::rbac::Target::Resource {
                group: crate::resources::CERTIFICATES_GROUP.into(),
                resource: "signers".into(),
                subresource: String::new(),
                namespace: String::new(),
                name: signer_name,
            },
            field_selector: String::new(),
        };
        if let crate::rbac::Decision::Allow(_) = server.authorizer.decide(&server.registry, &attributes).await {
            return Ok(());
        }
    }
    let acting = if verb == "approve" { "approve" } else { "sign" };
    Err(ApiError::Forbidden {
        resource: crate::error::GroupResource::of(resource),
        name: name.to_string(),
        detail: format!("user not permitted to {acting} requests with signerName {signer:?}"),
    })
}

/// One request's parts as the handlers read them.
pub struct Call<'a> {
    pub user: &'a super::auth::User,
    pub method: &'a Method,
    pub query: &'a HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

pub async fn handle(
    server: &Server,
    request: ResourceRequest,
    call: Call<'_>,
    output: Output,
) -> Result<Reply, ApiError> {
    let Call { user, method, query, headers, body } = call;
    let registry = &server.registry;
    let resource = request.resource;
    let namespace = request.namespace.clone();
    let watching = request.watch_path || flag(query, "watch");
    let ok = |value: Value| Ok(respond(StatusCode::OK, value));
    match (method.as_str(), request.name.clone(), request.subresource) {
        ("GET", _, None) if watching => {
            let mut options = list_options(query, resource.kind)?;
            if let Some(name) = &request.name {
                options.fields.0.push(("metadata.name".into(), true, name.clone()));
            }
            super::watch::serve(server, &request, options, query, output).await
        }
        ("GET", None, None) => {
            let options = list_options(query, resource.kind)?;
            if output == Output::Json && !flag(query, "pretty") {
                if let Some(cached) = registry.list_cached(resource, &namespace, &options).await? {
                    return Ok(Reply::stream(cached.to_json().into()));
                }
            }
            let list = registry.list(resource, &namespace, &options).await?;
            ok(shaped(&request, output, query, list, true))
        }
        ("GET", Some(name), None | Some(Subresource::Status) | Some(Subresource::Approval)) => {
            let rv = query.get("resourceVersion").map(String::as_str).unwrap_or("");
            let object = registry.get(resource, &namespace, &name, rv).await?;
            ok(shaped(&request, output, query, object, false))
        }
        ("GET", Some(name), Some(Subresource::Scale)) => ok(registry.get_scale(resource, &namespace, &name).await?),
        ("POST", None, None) => {
            let object = decode_object(headers, body, resource)?;
            let written = registry.create(resource, &namespace, object, &write_options(query, headers, user)?).await?;
            Ok(respond(StatusCode::CREATED, written.object).with_warnings(written.warnings))
        }
        ("POST", Some(name), Some(Subresource::Binding)) => {
            registry.bind(&namespace, &name, &decode_body(headers, body)?).await?;
            Ok(respond(StatusCode::CREATED, status_success(&request, &name, "", 201)))
        }
        ("POST", Some(name), Some(Subresource::Eviction)) => {
            let eviction = decode_body(headers, body)?;
            let options = DeleteOptions::from_body(eviction.get("deleteOptions").unwrap_or(&Value::Null));
            registry.delete(resource, &namespace, &name, &options).await?;
            Ok(respond(StatusCode::CREATED, status_success(&request, &name, "", 201)))
        }
        ("PUT", Some(name), None | Some(Subresource::Status | Subresource::Finalize | Subresource::Approval)) => {
            if resource.kind == Kind::CertificateSigningRequest {
                authorize_signer(server, user, resource, &name, request.subresource).await?;
            }
            let written = registry
                .update(
                    resource,
                    &namespace,
                    &name,
                    request.subresource,
                    decode_object(headers, body, resource)?,
                    &write_options(query, headers, user)?,
                )
                .await?;
            let code = if written.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond(code, written.object).with_warnings(written.warnings))
        }
        ("PUT", Some(name), Some(Subresource::Scale)) => ok(registry
            .set_scale(resource, &namespace, &name, None, body, &write_options(query, headers, user)?)
            .await?),
        ("PATCH", Some(name), sub) => {
            let content_type = headers.get(http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
            let kind = PatchType::from_content_type(content_type)?;
            let options = write_options(query, headers, user)?;
            if sub == Some(Subresource::Scale) {
                return ok(registry.set_scale(resource, &namespace, &name, Some(kind), body, &options).await?);
            }
            if !matches!(sub, None | Some(Subresource::Status | Subresource::Approval)) {
                return Err(ApiError::MethodNotAllowed);
            }
            if resource.kind == Kind::CertificateSigningRequest {
                authorize_signer(server, user, resource, &name, sub).await?;
            }
            let written = registry.patch(resource, &namespace, &name, sub, (kind, body), &options).await?;
            let code = if written.created { StatusCode::CREATED } else { StatusCode::OK };
            Ok(respond(code, written.object).with_warnings(written.warnings))
        }
        ("DELETE", Some(name), None) => {
            let options = delete_options(query, body, headers)?;
            let deleted = registry.delete(resource, &namespace, &name, &options).await?;
            let returns_object = !deleted.removed || matches!(resource.kind, Kind::Pod | Kind::Namespace);
            if returns_object {
                ok(deleted.object)
            } else {
                ok(status_success(&request, &name, meta::uid(&deleted.object), 200))
            }
        }
        ("DELETE", None, None) => {
            let options = delete_options(query, body, headers)?;
            let list_options = list_options(query, resource.kind)?;
            ok(registry.delete_collection(resource, &namespace, &list_options, &options).await?)
        }
        _ => Err(ApiError::MethodNotAllowed),
    }
}
