//! etcd's gRPC-gateway: the v3 API as JSON over HTTP POSTs on the client port,
//! for clients that speak no gRPC (Patroni, lua-resty-etcd, curl).
//!
//! As in etcd, the gateway is a client of the member's own gRPC services, so a
//! JSON request meets the same checks, auth and errors as a gRPC one; here the
//! call stays in process instead of dialing a loopback socket. The mapping is
//! grpc-gateway v1's, as etcd 3.5 configures it: proto field names out, either
//! spelling in, int64 as strings, bytes as base64, enums by name, defaults
//! left out. A stream answers one `{"result":…}` line per message.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use cairn_proto::etcdserverpb as pb;
use cairn_proto::{v3electionpb as election, v3lockpb as lock};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::codegen::http::uri::PathAndQuery;
use tonic::service::Routes;
use tonic::Code;

use super::http::GrpcCounter;
use super::learner::LearnerGate;

/// The member's gRPC services as the gateway calls them: counted, timed and
/// gated on a learner like calls from the network, as etcd's gateway is a
/// real gRPC client.
pub type Services = GrpcCounter<LearnerGate<Routes>>;

/// The largest JSON body read: base64 makes values a third larger than the
/// gRPC message that `--max-request-bytes` bounds, and the gRPC service then
/// applies that bound itself.
pub fn body_limit(max_message: usize) -> usize {
    max_message * 2 + 64 * 1024
}

/// How a method's messages travel.
#[derive(Clone, Copy)]
enum Shape {
    Unary,
    /// One request, a stream of responses (Snapshot, Observe).
    ServerStream,
    /// A stream each way (Watch, LeaseKeepAlive): the body holds the requests, one JSON object after another.
    Bidi,
}

/// Builds the gateway's routes over the member's gRPC services.
pub fn router(services: Services, max_body: usize) -> axum::Router {
    let mut router = axum::Router::new();
    macro_rules! route {
        ($($shape:ident $path:literal => $grpc:literal, $request:ty, $response:ty;)*) => {$(
            router = add::<$request, $response>(router, $path, $grpc, Shape::$shape, services.clone(), max_body);
        )*};
    }
    route! {
        Unary "/v3/kv/range" => "/etcdserverpb.KV/Range", pb::RangeRequest, pb::RangeResponse;
        Unary "/v3/kv/put" => "/etcdserverpb.KV/Put", pb::PutRequest, pb::PutResponse;
        Unary "/v3/kv/deleterange" => "/etcdserverpb.KV/DeleteRange", pb::DeleteRangeRequest, pb::DeleteRangeResponse;
        Unary "/v3/kv/txn" => "/etcdserverpb.KV/Txn", pb::TxnRequest, pb::TxnResponse;
        Unary "/v3/kv/compaction" => "/etcdserverpb.KV/Compact", pb::CompactionRequest, pb::CompactionResponse;
        Bidi "/v3/watch" => "/etcdserverpb.Watch/Watch", pb::WatchRequest, pb::WatchResponse;
        Unary "/v3/lease/grant" => "/etcdserverpb.Lease/LeaseGrant", pb::LeaseGrantRequest, pb::LeaseGrantResponse;
        Unary "/v3/lease/revoke" => "/etcdserverpb.Lease/LeaseRevoke", pb::LeaseRevokeRequest, pb::LeaseRevokeResponse;
        Unary "/v3/kv/lease/revoke" => "/etcdserverpb.Lease/LeaseRevoke", pb::LeaseRevokeRequest, pb::LeaseRevokeResponse;
        Bidi "/v3/lease/keepalive" => "/etcdserverpb.Lease/LeaseKeepAlive", pb::LeaseKeepAliveRequest, pb::LeaseKeepAliveResponse;
        Unary "/v3/lease/timetolive" => "/etcdserverpb.Lease/LeaseTimeToLive", pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse;
        Unary "/v3/kv/lease/timetolive" => "/etcdserverpb.Lease/LeaseTimeToLive", pb::LeaseTimeToLiveRequest, pb::LeaseTimeToLiveResponse;
        Unary "/v3/lease/leases" => "/etcdserverpb.Lease/LeaseLeases", pb::LeaseLeasesRequest, pb::LeaseLeasesResponse;
        Unary "/v3/kv/lease/leases" => "/etcdserverpb.Lease/LeaseLeases", pb::LeaseLeasesRequest, pb::LeaseLeasesResponse;
        Unary "/v3/cluster/member/add" => "/etcdserverpb.Cluster/MemberAdd", pb::MemberAddRequest, pb::MemberAddResponse;
        Unary "/v3/cluster/member/remove" => "/etcdserverpb.Cluster/MemberRemove", pb::MemberRemoveRequest, pb::MemberRemoveResponse;
        Unary "/v3/cluster/member/update" => "/etcdserverpb.Cluster/MemberUpdate", pb::MemberUpdateRequest, pb::MemberUpdateResponse;
        Unary "/v3/cluster/member/list" => "/etcdserverpb.Cluster/MemberList", pb::MemberListRequest, pb::MemberListResponse;
        Unary "/v3/cluster/member/promote" => "/etcdserverpb.Cluster/MemberPromote", pb::MemberPromoteRequest, pb::MemberPromoteResponse;
        Unary "/v3/maintenance/alarm" => "/etcdserverpb.Maintenance/Alarm", pb::AlarmRequest, pb::AlarmResponse;
        Unary "/v3/maintenance/status" => "/etcdserverpb.Maintenance/Status", pb::StatusRequest, pb::StatusResponse;
        Unary "/v3/maintenance/defragment" => "/etcdserverpb.Maintenance/Defragment", pb::DefragmentRequest, pb::DefragmentResponse;
        // etcd's proto gives Hash and HashKV the same path; the gateway registers Hash last, and it wins.
        Unary "/v3/maintenance/hash" => "/etcdserverpb.Maintenance/Hash", pb::HashRequest, pb::HashResponse;
        ServerStream "/v3/maintenance/snapshot" => "/etcdserverpb.Maintenance/Snapshot", pb::SnapshotRequest, pb::SnapshotResponse;
        Unary "/v3/maintenance/transfer-leadership" => "/etcdserverpb.Maintenance/MoveLeader", pb::MoveLeaderRequest, pb::MoveLeaderResponse;
        Unary "/v3/maintenance/downgrade" => "/etcdserverpb.Maintenance/Downgrade", pb::DowngradeRequest, pb::DowngradeResponse;
        Unary "/v3/auth/enable" => "/etcdserverpb.Auth/AuthEnable", pb::AuthEnableRequest, pb::AuthEnableResponse;
        Unary "/v3/auth/disable" => "/etcdserverpb.Auth/AuthDisable", pb::AuthDisableRequest, pb::AuthDisableResponse;
        Unary "/v3/auth/status" => "/etcdserverpb.Auth/AuthStatus", pb::AuthStatusRequest, pb::AuthStatusResponse;
        Unary "/v3/auth/authenticate" => "/etcdserverpb.Auth/Authenticate", pb::AuthenticateRequest, pb::AuthenticateResponse;
        Unary "/v3/auth/user/add" => "/etcdserverpb.Auth/UserAdd", pb::AuthUserAddRequest, pb::AuthUserAddResponse;
        Unary "/v3/auth/user/get" => "/etcdserverpb.Auth/UserGet", pb::AuthUserGetRequest, pb::AuthUserGetResponse;
        Unary "/v3/auth/user/list" => "/etcdserverpb.Auth/UserList", pb::AuthUserListRequest, pb::AuthUserListResponse;
        Unary "/v3/auth/user/delete" => "/etcdserverpb.Auth/UserDelete", pb::AuthUserDeleteRequest, pb::AuthUserDeleteResponse;
        Unary "/v3/auth/user/changepw" => "/etcdserverpb.Auth/UserChangePassword", pb::AuthUserChangePasswordRequest, pb::AuthUserChangePasswordResponse;
        Unary "/v3/auth/user/grant" => "/etcdserverpb.Auth/UserGrantRole", pb::AuthUserGrantRoleRequest, pb::AuthUserGrantRoleResponse;
        Unary "/v3/auth/user/revoke" => "/etcdserverpb.Auth/UserRevokeRole", pb::AuthUserRevokeRoleRequest, pb::AuthUserRevokeRoleResponse;
        Unary "/v3/auth/role/add" => "/etcdserverpb.Auth/RoleAdd", pb::AuthRoleAddRequest, pb::AuthRoleAddResponse;
        Unary "/v3/auth/role/get" => "/etcdserverpb.Auth/RoleGet", pb::AuthRoleGetRequest, pb::AuthRoleGetResponse;
        Unary "/v3/auth/role/list" => "/etcdserverpb.Auth/RoleList", pb::AuthRoleListRequest, pb::AuthRoleListResponse;
        Unary "/v3/auth/role/delete" => "/etcdserverpb.Auth/RoleDelete", pb::AuthRoleDeleteRequest, pb::AuthRoleDeleteResponse;
        Unary "/v3/auth/role/grant" => "/etcdserverpb.Auth/RoleGrantPermission", pb::AuthRoleGrantPermissionRequest, pb::AuthRoleGrantPermissionResponse;
        Unary "/v3/auth/role/revoke" => "/etcdserverpb.Auth/RoleRevokePermission", pb::AuthRoleRevokePermissionRequest, pb::AuthRoleRevokePermissionResponse;
        Unary "/v3/lock/lock" => "/v3lockpb.Lock/Lock", lock::LockRequest, lock::LockResponse;
        Unary "/v3/lock/unlock" => "/v3lockpb.Lock/Unlock", lock::UnlockRequest, lock::UnlockResponse;
        Unary "/v3/election/campaign" => "/v3electionpb.Election/Campaign", election::CampaignRequest, election::CampaignResponse;
        Unary "/v3/election/proclaim" => "/v3electionpb.Election/Proclaim", election::ProclaimRequest, election::ProclaimResponse;
        Unary "/v3/election/leader" => "/v3electionpb.Election/Leader", election::LeaderRequest, election::LeaderResponse;
        ServerStream "/v3/election/observe" => "/v3electionpb.Election/Observe", election::LeaderRequest, election::LeaderResponse;
        Unary "/v3/election/resign" => "/v3electionpb.Election/Resign", election::ResignRequest, election::ResignResponse;
    }
    // Paths under /v3/ that name no method, as etcd's gateway answers them.
    let unknown = || async { (StatusCode::NOT_FOUND, "Not Found\n") };
    router
        .route("/v3/{*rest}", axum::routing::any(unknown))
        .route("/v3beta/{*rest}", axum::routing::any(unknown))
        .method_not_allowed_fallback(|| async {
            let text = [("content-type", "text/plain; charset=utf-8")];
            (StatusCode::METHOD_NOT_ALLOWED, text, "Method Not Allowed\n")
        })
}

fn is_grpc(request: &Request) -> bool {
    let content_type = request.headers().get(http::header::CONTENT_TYPE);
    content_type.is_some_and(|value| value.as_bytes().starts_with(b"application/grpc"))
}

/// A path nothing serves: gRPC's Unimplemented to a gRPC client, Go's
/// `404 page not found` to anyone else, as etcd's HTTP mux answers.
pub async fn not_found(request: Request) -> Response {
    if is_grpc(&request) {
        let (parts, ()) = tonic::Status::unimplemented("").into_http::<()>().into_parts();
        return Response::from_parts(parts, Body::empty());
    }
    super::health::go_http_error(StatusCode::NOT_FOUND, "404 page not found")
}

/// Serves a method on its path and on its old `/v3beta/` spelling, which etcd 3.5 still rewrites.
fn add<Q, R>(
    router: axum::Router,
    path: &'static str,
    grpc_path: &'static str,
    shape: Shape,
    services: Services,
    max_body: usize,
) -> axum::Router
where
    Q: prost::Message + DeserializeOwned + Default + Send + Sync + 'static,
    R: prost::Message + Serialize + Default + Send + Sync + 'static,
{
    let handler = move |request: Request| {
        let services = services.clone();
        async move {
            let (parts, body) = request.into_parts();
            // As grpc-gateway, the timeout is read before the body.
            let deadline = match deadline(&parts.headers) {
                Ok(deadline) => deadline,
                Err(message) => return unary_error(Code::InvalidArgument, &message),
            };
            let body = match axum::body::to_bytes(body, max_body).await {
                Ok(body) => body,
                // What etcd's gRPC server says of a message over its limit.
                Err(_) => {
                    let message = format!("grpc: received message larger than max (over {max_body} bytes)");
                    return unary_error(Code::ResourceExhausted, &message);
                }
            };
            call::<Q, R>(services, grpc_path, shape, &parts.headers, deadline, body).await
        }
    };
    let beta = path.replacen("/v3/", "/v3beta/", 1);
    router.route(path, post(handler.clone())).route(&beta, post(handler))
}

async fn call<Q, R>(
    services: Services,
    grpc_path: &'static str,
    shape: Shape,
    headers: &HeaderMap,
    deadline: Option<Instant>,
    body: Bytes,
) -> Response
where
    Q: prost::Message + DeserializeOwned + Default + Send + Sync + 'static,
    R: prost::Message + Serialize + Default + Send + Sync + 'static,
{
    // etcd's gateway takes answers of any size from its gRPC server.
    let mut grpc = tonic::client::Grpc::new(services).max_decoding_message_size(usize::MAX);
    let path = PathAndQuery::from_static(grpc_path);
    let codec = tonic_prost::ProstCodec::<Q, R>::default();
    if grpc.ready().await.is_err() {
        return unary_error(Code::Unavailable, "the member's services are not ready");
    }
    match shape {
        Shape::Unary | Shape::ServerStream => {
            let message = match decode_one::<Q>(&body) {
                Ok(message) => message,
                Err(err) => return unary_error(Code::InvalidArgument, &err.to_string()),
            };
            let request = with_metadata(tonic::Request::new(message), headers);
            if let Shape::Unary = shape {
                return match before(deadline, grpc.unary(request, path, codec)).await {
                    None => deadline_exceeded(),
                    Some(Ok(response)) => json(StatusCode::OK, &response.into_inner()),
                    Some(Err(status)) => unary_error(status.code(), status.message()),
                };
            }
            respond_stream(deadline, grpc.server_streaming(request, path, codec)).await
        }
        Shape::Bidi => {
            // grpc-gateway opens the stream before it reads the requests.
            if passed(deadline) {
                return deadline_exceeded();
            }
            // As grpc-gateway: a first request that does not decode fails the
            // call (as code Unknown); a later one ends the requests.
            let mut messages = serde_json::Deserializer::from_slice(&body).into_iter::<Q>();
            let first = match messages.next() {
                None => None,
                Some(Ok(message)) => Some(message),
                Some(Err(err)) => return unary_error(Code::Unknown, &err.to_string()),
            };
            let requests: Vec<Q> = first.into_iter().chain(messages.map_while(Result::ok)).collect();
            let request = with_metadata(tonic::Request::new(futures::stream::iter(requests)), headers);
            respond_stream(deadline, grpc.streaming(request, path, codec)).await
        }
    }
}

/// A request body as Go's JSON decoder reads it: its first value, where
/// nothing or `null` is an empty message and what follows is not read.
fn decode_one<Q: DeserializeOwned + Default>(body: &[u8]) -> Result<Q, serde_json::Error> {
    match serde_json::Deserializer::from_slice(body).into_iter::<Option<Q>>().next() {
        None | Some(Ok(None)) => Ok(Q::default()),
        Some(Ok(Some(message))) => Ok(message),
        Some(Err(err)) => Err(err),
    }
}

/// The headers grpc-gateway passes on: `Authorization` (the token), and every
/// `Grpc-Metadata-*` under its own name. `Grpc-Timeout` bounds the call
/// itself (`deadline`).
fn with_metadata<T>(mut request: tonic::Request<T>, headers: &HeaderMap) -> tonic::Request<T> {
    for (name, value) in headers {
        let key = match name.as_str() {
            "authorization" => "authorization",
            other => match other.strip_prefix("grpc-metadata-") {
                Some(key) if !key.is_empty() => key,
                _ => continue,
            },
        };
        let (Ok(key), Ok(value)) = (
            tonic::metadata::MetadataKey::from_bytes(key.as_bytes()),
            tonic::metadata::MetadataValue::try_from(value.as_bytes()),
        ) else {
            continue;
        };
        request.metadata_mut().insert(key, value);
    }
    request
}

/// The `Grpc-Timeout` header's deadline, or etcd's error for a bad one. An
/// empty header, or a timeout of zero, is none, as in grpc-gateway.
fn deadline(headers: &HeaderMap) -> Result<Option<Instant>, String> {
    let Some(value) = headers.get("grpc-timeout").filter(|value| !value.is_empty()) else { return Ok(None) };
    let invalid = || format!("invalid grpc-timeout: {}", String::from_utf8_lossy(value.as_bytes()));
    let nanos = grpc_timeout_nanos(value.as_bytes()).ok_or_else(invalid)?;
    if nanos == 0 {
        return Ok(None);
    }
    // Go's deadline of a negative timeout has passed already.
    let timeout = Duration::from_nanos(u64::try_from(nanos).unwrap_or(0));
    Ok(Instant::now().checked_add(timeout))
}

/// gRPC's timeout notation, a signed integer and a unit (H, M, S, m, u, n),
/// in nanoseconds that wrap on overflow, as Go's `time.Duration` product.
fn grpc_timeout_nanos(text: &[u8]) -> Option<i64> {
    let (unit, digits) = text.split_last()?;
    let nanos_per_unit: i64 = match unit {
        b'H' => 3_600_000_000_000,
        b'M' => 60_000_000_000,
        b'S' => 1_000_000_000,
        b'm' => 1_000_000,
        b'u' => 1_000,
        b'n' => 1,
        _ => return None,
    };
    let amount: i64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(amount.wrapping_mul(nanos_per_unit))
}

/// What `call` gives, or nothing if `deadline` passes first. As Go's client,
/// a call does not start once its deadline has passed.
async fn before<T>(deadline: Option<Instant>, call: impl std::future::Future<Output = T>) -> Option<T> {
    match deadline {
        None => Some(call.await),
        Some(_) if passed(deadline) => None,
        Some(deadline) => tokio::time::timeout_at(deadline.into(), call).await.ok(),
    }
}

fn passed(deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|deadline| deadline <= Instant::now())
}

/// What Go's context says when its deadline passes.
const DEADLINE_EXCEEDED: &str = "context deadline exceeded";

fn deadline_exceeded() -> Response {
    unary_error(Code::DeadlineExceeded, DEADLINE_EXCEEDED)
}

fn json(status: StatusCode, message: &impl Serialize) -> Response {
    match serde_json::to_vec(message) {
        Ok(body) => (status, [GRPC_CONTENT_TYPE, JSON], body).into_response(),
        Err(err) => unary_error(Code::Internal, &err.to_string()),
    }
}

const JSON: (&str, &str) = ("content-type", "application/json");
/// grpc-gateway passes the gRPC response's headers on under this prefix.
const GRPC_CONTENT_TYPE: (&str, &str) = ("grpc-metadata-content-type", "application/grpc");

/// A failed unary call, as grpc-gateway v1 writes it (in its field order).
#[derive(Serialize)]
struct UnaryError<'a> {
    error: &'a str,
    code: i32,
    message: &'a str,
}

/// A failed stream's last line.
#[derive(Serialize)]
struct StreamError<'a> {
    grpc_code: i32,
    http_code: u16,
    message: &'a str,
    http_status: &'a str,
}

fn unary_error(code: Code, message: &str) -> Response {
    let body = UnaryError { error: message, code: code as i32, message };
    let body = serde_json::to_string(&body).unwrap_or_default();
    (http_status(code), [JSON], body).into_response()
}

/// A failed stream: the error is its last line, with no newline after it as
/// grpc-gateway writes it, and sets the HTTP status when no message came before.
fn stream_error_line(code: Code, message: &str) -> Bytes {
    let status = http_status(code);
    let error = StreamError {
        grpc_code: code as i32,
        http_code: status.as_u16(),
        message,
        http_status: status.canonical_reason().unwrap_or_default(),
    };
    let error = serde_json::to_string(&error).unwrap_or_default();
    Bytes::from(format!("{{\"error\":{error}}}"))
}

fn result_line(message: &impl Serialize) -> Bytes {
    match serde_json::to_string(message) {
        Ok(json) => Bytes::from(format!("{{\"result\":{json}}}\n")),
        Err(err) => stream_error_line(Code::Internal, &err.to_string()),
    }
}

/// A streaming call's answer; a deadline that passes before the stream opens
/// fails it as a unary call, as grpc-gateway does.
async fn respond_stream<R>(
    deadline: Option<Instant>,
    call: impl std::future::Future<Output = Result<tonic::Response<tonic::Streaming<R>>, tonic::Status>>,
) -> Response
where
    R: Serialize + Send + 'static,
{
    let mut responses = match before(deadline, call).await {
        None => return deadline_exceeded(),
        Some(Ok(response)) => until(deadline, response.into_inner()),
        Some(Err(status)) => return stream_failed_at_once(&status),
    };
    // The status goes out with the first message or error, as grpc-gateway writes it.
    let first = match responses.next().await {
        Some(Ok(message)) => result_line(&message),
        Some(Err(status)) => return stream_failed_at_once(&status),
        None => Bytes::new(),
    };
    let rest = lines(responses);
    let body = Body::from_stream(futures::stream::iter([Ok::<_, Infallible>(first)]).chain(rest));
    (StatusCode::OK, [GRPC_CONTENT_TYPE, JSON], body).into_response()
}

fn stream_failed_at_once(status: &tonic::Status) -> Response {
    (http_status(status.code()), [JSON], stream_error_line(status.code(), status.message())).into_response()
}

/// The messages until `deadline`, then the deadline's error.
fn until<R: Send + 'static>(
    deadline: Option<Instant>,
    responses: tonic::Streaming<R>,
) -> BoxStream<'static, Result<R, tonic::Status>> {
    let Some(deadline) = deadline else { return responses.boxed() };
    let expiry = Box::pin(tokio::time::sleep_until(deadline.into()));
    futures::stream::unfold(Some((responses, expiry)), |state| async move {
        let (mut responses, mut expiry) = state?;
        tokio::select! {
            next = responses.next() => next.map(|next| (next, Some((responses, expiry)))),
            () = &mut expiry => Some((Err(tonic::Status::deadline_exceeded(DEADLINE_EXCEEDED)), None)),
        }
    })
    .boxed()
}

/// One line per message; an error is the last line.
fn lines<R: Serialize + Send + 'static>(
    responses: BoxStream<'static, Result<R, tonic::Status>>,
) -> impl Stream<Item = Result<Bytes, Infallible>> + Send {
    futures::stream::unfold(Some(responses), |responses| async move {
        let mut responses = responses?;
        match responses.next().await? {
            Ok(message) => Some((Ok(result_line(&message)), Some(responses))),
            Err(status) => Some((Ok(stream_error_line(status.code(), status.message())), None)),
        }
    })
}

/// grpc-gateway v1's `HTTPStatusFromCode`.
fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
        Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

/// etcd's CORS with its default `--cors=*`, on every HTTP answer of the client
/// port; a preflight `OPTIONS` is answered here. gRPC passes untouched.
pub async fn cors(request: Request, next: Next) -> Response {
    if is_grpc(&request) {
        return next.run(request).await;
    }
    let mut response =
        if request.method() == Method::OPTIONS { StatusCode::OK.into_response() } else { next.run(request).await };
    let headers = response.headers_mut();
    headers.insert("access-control-allow-methods", HeaderValue::from_static("POST, GET, OPTIONS, PUT, DELETE"));
    headers.insert("access-control-allow-origin", HeaderValue::from_static("*"));
    headers.insert("access-control-allow-headers", HeaderValue::from_static("accept, content-type, authorization"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_proto::etcdserverpb::RangeRequest;

    #[test]
    fn bodies_decode_as_go_reads_them() {
        let range = |body: &str| decode_one::<RangeRequest>(body.as_bytes()).map(|request| request.key);
        assert_eq!(range("").ok(), Some(vec![]));
        assert_eq!(range(" null ").ok(), Some(vec![]));
        assert_eq!(range(r#"{"key":"YQ=="} trailing"#).ok(), Some(b"a".to_vec()));
        assert_eq!(range(r#"{"key":"YQ","rangeEnd":"Yg=="}"#).ok(), Some(b"a".to_vec()));
        assert!(range("{bad").is_err());
        assert!(range(r#"{"key":"!!"}"#).is_err());
    }

    #[test]
    fn grpc_timeouts_parse_as_go_parses_them() {
        let nanos = |text: &str| grpc_timeout_nanos(text.as_bytes());
        assert_eq!(nanos("1n"), Some(1));
        assert_eq!(nanos("10S"), Some(10_000_000_000));
        assert_eq!(nanos("2M"), Some(120_000_000_000));
        assert_eq!(nanos("+3m"), Some(3_000_000));
        assert_eq!(nanos("-1S"), Some(-1_000_000_000), "a deadline already passed");
        assert!(nanos("99999999999H").is_some_and(|nanos| nanos < 0), "wraps as Go's product does");
        for bad in ["5", "", "H", "xS", "5x", "1.5S", "5\u{e9}"] {
            assert_eq!(nanos(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_bad_or_spent_grpc_timeout_is_refused_before_the_call() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert("grpc-timeout", HeaderValue::from_str(value).expect("header"));
            headers
        };
        assert_eq!(deadline(&HeaderMap::new()), Ok(None));
        assert_eq!(deadline(&headers("")), Ok(None), "empty is none, as in grpc-gateway");
        assert_eq!(deadline(&headers("0S")), Ok(None), "zero too");
        assert_eq!(deadline(&headers("2251799813685248H")), Ok(None), "and a product that wraps to zero");
        assert_eq!(deadline(&headers("zz")), Err("invalid grpc-timeout: zz".to_string()));
        let now = Instant::now();
        assert!(deadline(&headers("-1S")).expect("valid").is_some_and(|deadline| deadline <= Instant::now()));
        assert!(deadline(&headers("10S")).expect("valid").is_some_and(|deadline| deadline > now));
    }
}
