//! HTTP on the client port, beside gRPC, as etcd serves it: health, version
//! and Prometheus metrics. Also the layer that counts handled gRPC calls.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;
use openraft::async_runtime::WatchReceiver;

use super::maintenance::{CLUSTER_VERSION, ETCD_API_VERSION};
use super::node::Node;
use crate::metrics::{grpc_type, ProcessStats, Snapshot, METRICS};

pub fn router(node: Arc<Node>) -> axum::Router {
    axum::Router::new()
        .route("/health", get(health))
        .route("/livez", get(live))
        .route("/readyz", get(health))
        .route("/version", get(version))
        .route("/metrics", get(metrics))
        .with_state(node)
}

/// etcd's health: a leader, and no alarm.
async fn health(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let reason = if node.raft.metrics().borrow_watched().current_leader.is_none() {
        Some("RAFT NO LEADER".to_string())
    } else {
        node.state.alarms().first().map(|alarm| format!("ALARM {}", alarm.1.as_str_name()))
    };
    let (status, healthy, reason) = match reason {
        None => (StatusCode::OK, "true", String::new()),
        Some(reason) => (StatusCode::SERVICE_UNAVAILABLE, "false", reason),
    };
    let body = serde_json::json!({ "health": healthy, "reason": reason });
    (status, [("content-type", "application/json")], body.to_string())
}

async fn live() -> impl IntoResponse {
    "ok"
}

async fn version() -> impl IntoResponse {
    let body = serde_json::json!({ "etcdserver": ETCD_API_VERSION, "etcdcluster": CLUSTER_VERSION });
    ([("content-type", "application/json")], body.to_string())
}

async fn metrics(State(node): State<Arc<Node>>) -> impl IntoResponse {
    let snapshot =
        Snapshot { db_size_bytes: node.state.db_size(), keys: node.state.key_count() as u64, process: process_stats() };
    ([("content-type", "text/plain; version=0.0.4")], METRICS.render(&snapshot))
}

/// This process's figures from /proc; none where there is no /proc.
fn process_stats() -> Option<ProcessStats> {
    let read = |path: &str| std::fs::read_to_string(path).ok();
    let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    ProcessStats::parse(&read("/proc/self/stat")?, &read("/proc/stat")?, &read("/proc/self/limits")?, open_fds)
}

/// Counts every gRPC call of etcd's services by service and method when it
/// starts, and by status code when it ends: a unary call when it answers, a
/// stream when its body ends or is dropped (see [`CountedBody`]).
/// Also logs a unary call slower than `slow` (`--warning-unary-request-duration`).
#[derive(Clone)]
pub struct GrpcCounterLayer {
    pub slow: Duration,
}

impl<S> tower::Layer<S> for GrpcCounterLayer {
    type Service = GrpcCounter<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcCounter { inner, slow: self.slow }
    }
}

#[derive(Clone)]
pub struct GrpcCounter<S> {
    inner: S,
    slow: Duration,
}

impl<S, B, R> tower::Service<http::Request<B>> for GrpcCounter<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>> + Send,
    S::Future: Send + 'static,
{
    type Response = http::Response<CountedBody<R>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // A Uri clone shares its buffer: no allocation per call.
        let uri = request.uri().clone();
        let counted = COUNTED_SERVICES.iter().any(|service| uri.path().starts_with(service));
        if counted {
            METRICS.start_grpc(uri.path());
        }
        let (started, slow) = (Instant::now(), self.slow);
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut unanswered = CancelledUnlessAnswered { path: counted.then_some(&uri) };
            let response = future.await;
            unanswered.path = None;
            drop(unanswered);
            let response = response?;
            let path = uri.path();
            let stream = grpc_type(path) != "unary";
            // A stream's time to its first response says nothing; a lock or a campaign waits by design.
            if path.starts_with("/etcdserverpb.") && !stream {
                let took = started.elapsed();
                if took > slow {
                    tracing::warn!(method = path, ?took, expected = ?slow, "request stats: a unary request took too long");
                }
            }
            // Errors travel in the headers (trailers-only); a unary success in the trailers.
            let code = response.headers().get("grpc-status").map(|value| tonic::Code::from_bytes(value.as_bytes()));
            let open_stream = match (counted, stream, code) {
                (false, ..) => None,
                (true, true, None) => Some(uri),
                (true, _, code) => {
                    METRICS.count_grpc(path, go_code_name(code.unwrap_or(tonic::Code::Ok)));
                    None
                }
            };
            Ok(response.map(|body| CountedBody { inner: body, open_stream }))
        })
    }
}

/// A response body that counts its stream in `grpc_server_handled_total`
/// when the stream ends, as etcd does: with the code of its trailers, or,
/// when it is dropped first (its client went away), with the code etcd's
/// handler returns then.
pub struct CountedBody<B> {
    inner: B,
    /// The stream's path until it is counted; unary calls are counted already.
    open_stream: Option<http::Uri>,
}

impl<B> CountedBody<B> {
    fn count(&mut self, code: tonic::Code) {
        if let Some(uri) = self.open_stream.take() {
            METRICS.count_grpc(uri.path(), go_code_name(code));
        }
    }
}

impl<B: http_body::Body + Unpin> http_body::Body for CountedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            let status = frame.trailers_ref().and_then(|trailers| trailers.get("grpc-status"));
            if let Some(status) = status {
                self.count(tonic::Code::from_bytes(status.as_bytes()));
            }
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

impl<B> Drop for CountedBody<B> {
    fn drop(&mut self) {
        if let Some(uri) = &self.open_stream {
            let code = abandoned_call_code(uri.path());
            self.count(code);
        }
    }
}

/// The code etcd's handler returns when its client goes away (or the call's
/// `grpc-timeout` passes and tonic answers in its place): Canceled, but
/// LeaseKeepAlive answers "no leader" (Unavailable), and Observe returns the
/// context's own error, which gRPC counts as Unknown.
fn abandoned_call_code(path: &str) -> tonic::Code {
    match path {
        "/etcdserverpb.Lease/LeaseKeepAlive" => tonic::Code::Unavailable,
        "/v3electionpb.Election/Observe" => tonic::Code::Unknown,
        _ => tonic::Code::Cancelled,
    }
}

/// The services whose calls are counted, as etcd's gRPC server counts them.
const COUNTED_SERVICES: [&str; 3] = ["/etcdserverpb.", "/v3lockpb.", "/v3electionpb."];

/// Counts a call dropped before it answered: its client went away, or its
/// `grpc-timeout` passed and tonic answered `Cancelled` in its place.
struct CancelledUnlessAnswered<'a> {
    path: Option<&'a http::Uri>,
}

impl Drop for CancelledUnlessAnswered<'_> {
    fn drop(&mut self) {
        if let Some(uri) = self.path {
            METRICS.count_grpc(uri.path(), go_code_name(abandoned_call_code(uri.path())));
        }
    }
}

/// gRPC code names as Go spells them, which dashboards match on.
fn go_code_name(code: tonic::Code) -> &'static str {
    use tonic::Code::*;
    match code {
        Ok => "OK",
        Cancelled => "Canceled",
        Unknown => "Unknown",
        InvalidArgument => "InvalidArgument",
        DeadlineExceeded => "DeadlineExceeded",
        NotFound => "NotFound",
        AlreadyExists => "AlreadyExists",
        PermissionDenied => "PermissionDenied",
        ResourceExhausted => "ResourceExhausted",
        FailedPrecondition => "FailedPrecondition",
        Aborted => "Aborted",
        OutOfRange => "OutOfRange",
        Unimplemented => "Unimplemented",
        Internal => "Internal",
        Unavailable => "Unavailable",
        DataLoss => "DataLoss",
        Unauthenticated => "Unauthenticated",
    }
}
