//! HTTPS serving: TLS (with optional client certificates), authentication,
//! routing, and the non-resource endpoints (health, metrics, version,
//! discovery, OpenAPI). Resource verbs are in `handlers`, watches in `watch`.

pub mod auth;
pub mod authz;
mod discovery;
pub(crate) mod handlers;
mod metrics;
pub mod request;
pub mod tls;
mod watch;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use self::auth::{Authenticator, User};
use self::metrics::{Labels, Metrics};
use self::request::{Output, Route};
use crate::error::ApiError;
use crate::openapi;
use crate::rbac;
use crate::registry::Registry;

/// kube-apiserver's limit on a request body.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// The version this server reports, and that its OpenAPI documents describe.
pub const KUBERNETES_VERSION: (&str, &str, &str) = ("1", "33", "v1.33.7+cairn");

pub struct Server {
    pub registry: Arc<Registry>,
    pub auth: Authenticator,
    pub authorizer: authz::Authorizer,
    pub metrics: Metrics,
    /// host:port clients reach this server at, for `/api`.
    pub address: String,
}

/// A response in the making: a JSON value or a stream, with warnings.
pub struct Reply {
    status: StatusCode,
    value: Option<Value>,
    stream: Option<Body>,
    warnings: Vec<String>,
    content_type: &'static str,
}

pub fn respond(status: StatusCode, value: Value) -> Reply {
    Reply { status, value: Some(value), stream: None, warnings: Vec::new(), content_type: "application/json" }
}

impl Reply {
    pub fn stream(body: Body) -> Reply {
        Reply {
            status: StatusCode::OK,
            value: None,
            stream: Some(body),
            warnings: Vec::new(),
            content_type: "application/json",
        }
    }

    fn text(status: StatusCode, text: String) -> Reply {
        Reply {
            status,
            value: None,
            stream: Some(Body::from(text)),
            warnings: Vec::new(),
            content_type: "text/plain; charset=utf-8",
        }
    }

    fn raw_json(text: &'static str) -> Reply {
        Reply {
            status: StatusCode::OK,
            value: None,
            stream: Some(Body::from(text)),
            warnings: Vec::new(),
            content_type: "application/json",
        }
    }

    pub fn with_warnings(mut self, warnings: Vec<String>) -> Reply {
        self.warnings = warnings;
        self
    }

    fn with_warning(mut self, warning: &str) -> Reply {
        self.warnings.push(warning.to_string());
        self
    }

    fn with_content_type(mut self, content_type: &'static str) -> Reply {
        self.content_type = content_type;
        self
    }

    fn into_response(self, pretty: bool) -> Response<Body> {
        let body = match (self.value, self.stream) {
            (_, Some(stream)) => stream,
            (Some(value), None) => {
                let mut text =
                    if pretty { serde_json::to_string_pretty(&value) } else { serde_json::to_string(&value) }
                        .unwrap_or_default();
                text.push('\n');
                Body::from(text)
            }
            (None, None) => Body::empty(),
        };
        let mut response = Response::new(body);
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static(self.content_type));
        headers.insert(http::header::CACHE_CONTROL, HeaderValue::from_static("no-cache, private"));
        for warning in self.warnings {
            let value = format!("299 - {:?}", warning);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.append("Warning", value);
            }
        }
        response
    }
}

fn error_reply(err: &ApiError) -> Reply {
    respond(StatusCode::from_u16(err.code()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), err.status())
}

/// Accepts TLS connections until the listener fails.
pub async fn serve(server: Arc<Server>, listener: TcpListener, tls: TlsAcceptor) -> std::io::Result<()> {
    loop {
        let (stream, peer) = listener.accept().await?;
        let server = server.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            let stream = match tls.accept(stream).await {
                Ok(stream) => stream,
                Err(err) => {
                    tracing::debug!(%peer, %err, "TLS handshake failed");
                    return;
                }
            };
            let certificate_user = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| auth::certificate_user(der));
            let service = hyper::service::service_fn(move |req| {
                let server = server.clone();
                let user = certificate_user.clone();
                async move { Ok::<_, Infallible>(handle(server, user, peer, req).await) }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(err) = builder.serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%peer, %err, "connection ended with an error");
            }
        });
    }
}

fn metric_labels(method: &Method, route: &Route, query: &HashMap<String, String>) -> Labels {
    let mut labels = Labels {
        verb: method.as_str().to_string(),
        group: String::new(),
        version: String::new(),
        resource: String::new(),
        subresource: String::new(),
        scope: String::new(),
    };
    if let Route::Resource(r) = route {
        labels.group = r.resource.group.into();
        labels.version = r.resource.version.into();
        labels.resource = r.resource.plural.into();
        labels.subresource = r.subresource.map(|s| s.name().to_string()).unwrap_or_default();
        labels.scope = if r.name.is_some() {
            "resource"
        } else if r.namespace.is_empty() {
            "cluster"
        } else {
            "namespace"
        }
        .into();
        let watching = r.watch_path || request::flag(query, "watch");
        labels.verb = match (method.as_str(), r.name.is_some()) {
            ("GET", _) if watching => "WATCH",
            ("GET", false) => "LIST",
            ("DELETE", false) => "DELETECOLLECTION",
            (other, _) => other,
        }
        .to_string();
    }
    labels
}

async fn handle(
    server: Arc<Server>,
    certificate_user: Option<User>,
    peer: SocketAddr,
    req: Request<Incoming>,
) -> Response<Body> {
    let started = Instant::now();
    let (parts, body) = req.into_parts();
    let query = request::query(parts.uri.query());
    let pretty = request::flag(&query, "pretty");
    let route = match request::route(parts.uri.path()) {
        Ok(route) => route,
        Err(err) => return error_reply(&err).into_response(pretty),
    };
    let labels = metric_labels(&parts.method, &route, &query);
    let authorization = parts.headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let reply = match authenticate(&server, authorization, certificate_user.as_ref()) {
        Err(err) => error_reply(&err),
        Ok(user) => {
            tracing::debug!(user = %user.name, %peer, method = %parts.method, path = %parts.uri.path(), "request");
            let attributes = authz::attributes(&user, &route, &parts.method, &query, parts.uri.path());
            let body = read_body(body).await;
            let allowed = match &body {
                Ok(body) => {
                    let created = created_name(&attributes, &parts.headers, body);
                    server.authorizer.check(&server.registry, &attributes, &created).await
                }
                Err(_) => Ok(()),
            };
            match (allowed, body) {
                (Err(err), _) | (_, Err(err)) => error_reply(&err),
                (Ok(()), Ok(body)) => dispatch(&server, &user, route, &parts.method, &parts.headers, &query, &body)
                    .await
                    .unwrap_or_else(|e| error_reply(&e)),
            }
        }
    };
    server.metrics.observe(labels, reply.status.as_u16(), started.elapsed());
    reply.into_response(pretty)
}

/// The request's user: a bootstrap token held in a kube-system Secret, else
/// what the authenticator makes of the token or certificate.
fn authenticate(server: &Server, authorization: Option<&str>, certificate: Option<&User>) -> Result<User, ApiError> {
    if let Some(token) = server.auth.bootstrap_token(authorization) {
        let secrets = crate::resources::of(crate::resources::Kind::Secret);
        let id = token.split('.').next().unwrap_or_default();
        let key = server.registry.keys.object(secrets, "kube-system", &auth::bootstrap_secret_name(id));
        let secret = server.registry.cacher(crate::resources::Kind::Secret).get(&key);
        let user = secret.and_then(|s| auth::bootstrap_user(token, &s, jiff::Timestamp::now()));
        return user.ok_or(ApiError::Unauthorized);
    }
    server.auth.authenticate(authorization, certificate)
}

/// How much of a too-large body is read and thrown away before answering, so
/// that the client, still sending, gets the 413 rather than a reset connection.
const DRAIN_BYTES: usize = 4 * MAX_BODY_BYTES;

async fn read_body(mut body: Incoming) -> Result<bytes::Bytes, ApiError> {
    let mut kept = bytes::BytesMut::new();
    let mut seen = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { break };
        let Ok(data) = frame.into_data() else { continue };
        seen += data.len();
        if seen > DRAIN_BYTES {
            break;
        }
        if seen <= MAX_BODY_BYTES {
            kept.extend_from_slice(&data);
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(format!("limit is {MAX_BODY_BYTES}")));
    }
    Ok(kept.freeze())
}

/// The name a kubelet's create gives its object in the body (JSON, YAML or
/// protobuf): NodeRestriction judges by it.
fn created_name(attributes: &rbac::Attributes, headers: &http::HeaderMap, body: &[u8]) -> String {
    if attributes.verb != "create" || rbac::node_of(attributes).is_none() {
        return String::new();
    }
    let object = handlers::decode_body(headers, body).unwrap_or_default();
    crate::meta::name(&object).to_string()
}

async fn dispatch(
    server: &Server,
    user: &User,
    route: Route,
    method: &Method,
    headers: &http::HeaderMap,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<Reply, ApiError> {
    let accept = headers.get(http::header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    let read_only = |reply: Reply| if method == Method::GET { Ok(reply) } else { Err(ApiError::MethodNotAllowed) };
    match route {
        Route::Health(which) => {
            if which == "readyz" {
                if let Err(err) = server.registry.storage.current_revision().await {
                    return Ok(Reply::text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        format!("[-]etcd failed: {err}\nreadyz check failed\n"),
                    ));
                }
                if !server.registry.caches_ready() {
                    return Ok(Reply::text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "[-]informer-sync failed\nreadyz check failed\n".into(),
                    ));
                }
            }
            read_only(Reply::text(StatusCode::OK, "ok".into()))
        }
        Route::Metrics => read_only(
            Reply::text(StatusCode::OK, server.metrics.render()).with_content_type("text/plain; version=0.0.4"),
        ),
        Route::Version => {
            let (major, minor, git) = KUBERNETES_VERSION;
            read_only(respond(
                StatusCode::OK,
                json!({
                    "major": major, "minor": minor, "gitVersion": git, "gitCommit": env!("CARGO_PKG_VERSION"),
                    "gitTreeState": "clean", "buildDate": "1970-01-01T00:00:00Z", "goVersion": "rust",
                    "compiler": "rustc", "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else { std::env::consts::ARCH }),
                }),
            ))
        }
        Route::GroupList { legacy } => {
            let output = request::output(accept)?;
            let reply = match output {
                Output::AggregatedV2 => {
                    respond(StatusCode::OK, discovery::aggregated(legacy, "apidiscovery.k8s.io/v2"))
                        .with_content_type("application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList")
                }
                Output::AggregatedV2Beta1 => {
                    respond(StatusCode::OK, discovery::aggregated(legacy, "apidiscovery.k8s.io/v2beta1"))
                        .with_content_type("application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList")
                }
                _ if legacy => respond(StatusCode::OK, discovery::api_versions(&server.address)),
                _ => respond(StatusCode::OK, discovery::group_list()),
            };
            read_only(reply)
        }
        Route::Group(name) => read_only(respond(StatusCode::OK, discovery::group(&name).ok_or(ApiError::NoRoute)?)),
        Route::ResourceList { group, version } => {
            read_only(respond(StatusCode::OK, discovery::resource_list(&group, &version).ok_or(ApiError::NoRoute)?))
        }
        Route::OpenApiV2 => {
            if accept.contains("protobuf") && !accept.contains("json") && !accept.contains("*/*") {
                return Err(ApiError::NotAcceptable);
            }
            read_only(Reply::raw_json(openapi::V2))
        }
        Route::OpenApiV3Index => read_only(respond(StatusCode::OK, openapi::v3_index())),
        Route::OpenApiV3(path) => read_only(Reply::raw_json(openapi::v3_document(&path).ok_or(ApiError::NoRoute)?)),
        Route::SelfSubjectReview if method == Method::POST => {
            let mut groups = user.groups.clone();
            if user.name != "system:anonymous" {
                groups.push("system:authenticated".into());
            }
            Ok(respond(
                StatusCode::CREATED,
                json!({
                    "kind": "SelfSubjectReview",
                    "apiVersion": "authentication.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "status": {"userInfo": {"username": user.name, "uid": user.uid, "groups": groups}},
                }),
            ))
        }
        Route::SelfSubjectReview => Err(ApiError::MethodNotAllowed),
        Route::SelfSubjectAccessReview | Route::SubjectAccessReview if method == Method::POST => {
            let review = handlers::decode_body(headers, body)?;
            let spec = review.get("spec").cloned().unwrap_or_default();
            let (kind, attributes) = if matches!(route, Route::SubjectAccessReview) {
                // The subject is the one the spec names, with exactly its groups.
                let groups = spec["groups"].as_array().into_iter().flatten();
                let groups = groups.filter_map(|g| g.as_str().map(String::from)).collect();
                let subject = spec["user"].as_str().unwrap_or_default();
                ("SubjectAccessReview", authz::review_attributes("SubjectAccessReview", subject, groups, &spec)?)
            } else {
                let kind = "SelfSubjectAccessReview";
                (kind, authz::review_attributes(kind, &user.name, authz::groups_of(user), &spec)?)
            };
            let (allowed, reason) = match server.authorizer.decide(&server.registry, &attributes).await {
                rbac::Decision::Allow(reason) => (true, reason),
                rbac::Decision::Deny(reason) => (false, reason),
            };
            let mut status = json!({"allowed": allowed});
            if !reason.is_empty() {
                status["reason"] = json!(reason);
            }
            Ok(respond(
                StatusCode::CREATED,
                json!({
                    "kind": kind,
                    "apiVersion": "authorization.k8s.io/v1",
                    "metadata": {"creationTimestamp": null},
                    "spec": spec,
                    "status": status,
                }),
            ))
        }
        Route::SelfSubjectAccessReview | Route::SubjectAccessReview => Err(ApiError::MethodNotAllowed),
        Route::Resource(resource_request) => {
            let output = request::output(accept)?;
            let endpoints = resource_request.resource.kind == crate::resources::Kind::Endpoints;
            let reply = handlers::handle(
                server,
                resource_request,
                handlers::Call { user, method, query, headers, body },
                output,
            )
            .await;
            if endpoints {
                // kube-apiserver 1.33 warns on every use of v1 Endpoints.
                return reply.map(|r| {
                    r.with_warning("v1 Endpoints is deprecated in v1.33+; use discovery.k8s.io/v1 EndpointSlice")
                });
            }
            reply
        }
        Route::NotFound => Err(ApiError::NoRoute),
    }
}
