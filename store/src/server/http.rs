//! HTTP on the client port, beside gRPC, as etcd serves it: health (in
//! `server::health`), version and Prometheus metrics. Also the layer that
//! counts gRPC calls.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use futures::future::BoxFuture;

use super::maintenance::{CLUSTER_VERSION, ETCD_API_VERSION};
use super::node::Node;
use crate::metrics::{grpc_type, ProcessStats, Snapshot, METRICS};

pub fn router(node: Arc<Node>) -> axum::Router {
    let router = axum::Router::new().route("/version", get(version)).route("/metrics", get(metrics));
    super::health::routes(router).with_state(node)
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
    S: tower::Service<http::Request<CountedRequest<B>>, Response = http::Response<R>> + Send,
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
        let counted = CLIENT_SERVICES.iter().any(|service| uri.path().starts_with(service));
        if counted {
            METRICS.start_grpc(uri.path());
        }
        // Only a client that streams sends more than one message.
        let client_stream = counted && grpc_type(uri.path()) == "bidi_stream";
        let watcher = client_stream.then(|| ClientMessages { uri: uri.clone(), frames: MessageFrames::default() });
        let (started, slow) = (Instant::now(), self.slow);
        let future = self.inner.call(request.map(|inner| Observed { inner, watcher }));
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
            let stream = match (counted, stream, code) {
                (false, ..) => None,
                (true, true, None) => Some(OpenStream { uri, frames: MessageFrames::default(), handled: false }),
                (true, _, code) => {
                    METRICS.count_grpc(path, go_code_name(code.unwrap_or(tonic::Code::Ok)));
                    None
                }
            };
            Ok(response.map(|inner| Observed { inner, watcher: stream }))
        })
    }
}

/// Counts the gRPC messages in a body's bytes, however they are split: each
/// is a 5-byte prefix (a flag, then a big-endian length) and that many bytes.
#[derive(Debug, Default)]
pub struct MessageFrames {
    prefix: [u8; 5],
    prefix_len: usize,
    /// Bytes of the current message still to come, once its prefix is read.
    left: usize,
}

impl MessageFrames {
    /// How many messages `bytes` completes.
    pub fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut completed = 0;
        while !bytes.is_empty() {
            if self.prefix_len < self.prefix.len() {
                let take = (self.prefix.len() - self.prefix_len).min(bytes.len());
                self.prefix[self.prefix_len..self.prefix_len + take].copy_from_slice(&bytes[..take]);
                self.prefix_len += take;
                bytes = &bytes[take..];
                if self.prefix_len < self.prefix.len() {
                    break;
                }
                let [_, length @ ..] = self.prefix;
                self.left = u32::from_be_bytes(length) as usize;
            }
            let take = self.left.min(bytes.len());
            self.left -= take;
            bytes = &bytes[take..];
            if self.left == 0 {
                completed += 1;
                self.prefix_len = 0;
            }
        }
        completed
    }
}

/// A body passed on unchanged, each frame shown to `watcher` on its way.
pub struct Observed<B, W> {
    inner: B,
    watcher: W,
}

pub trait FrameWatcher {
    fn see(&mut self, frame: &http_body::Frame<Bytes>);
}

impl<B, W> http_body::Body for Observed<B, W>
where
    B: http_body::Body<Data = Bytes> + Unpin,
    W: FrameWatcher + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let frame = std::task::ready!(Pin::new(&mut self.inner).poll_frame(cx));
        if let Some(Ok(frame)) = &frame {
            self.watcher.see(frame);
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

/// A request body; a client that streams has each message counted in
/// `grpc_server_msg_received_total`.
pub type CountedRequest<B> = Observed<B, Option<ClientMessages>>;

/// A response body; a stream has its messages counted as they are sent, and
/// itself in `grpc_server_handled_total` when it ends (see [`OpenStream`]).
pub type CountedBody<B> = Observed<B, Option<OpenStream>>;

pub struct ClientMessages {
    uri: http::Uri,
    frames: MessageFrames,
}

impl FrameWatcher for Option<ClientMessages> {
    fn see(&mut self, frame: &http_body::Frame<Bytes>) {
        if let (Some(messages), Some(data)) = (self, frame.data_ref()) {
            let received = messages.frames.feed(data);
            if received > 0 {
                METRICS.count_grpc_messages(messages.uri.path(), received, 0);
            }
        }
    }
}

/// A stream being answered. It is counted as handled when it ends, as etcd
/// counts it: with the code of its trailers, or, when it is dropped first
/// (its client went away), with the code etcd's handler returns then.
pub struct OpenStream {
    uri: http::Uri,
    frames: MessageFrames,
    handled: bool,
}

impl OpenStream {
    fn end(&mut self, code: tonic::Code) {
        if !self.handled {
            self.handled = true;
            METRICS.count_grpc(self.uri.path(), go_code_name(code));
        }
    }
}

impl FrameWatcher for Option<OpenStream> {
    fn see(&mut self, frame: &http_body::Frame<Bytes>) {
        let Some(stream) = self else { return };
        if let Some(data) = frame.data_ref() {
            let sent = stream.frames.feed(data);
            if sent > 0 {
                METRICS.count_grpc_messages(stream.uri.path(), 0, sent);
            }
        }
        if let Some(status) = frame.trailers_ref().and_then(|trailers| trailers.get("grpc-status")) {
            stream.end(tonic::Code::from_bytes(status.as_bytes()));
        }
    }
}

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.end(abandoned_call_code(self.uri.path()));
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

/// The gRPC services of etcd's client port, whose calls are counted and
/// which a learner gates, as etcd's server-wide interceptors do.
pub const CLIENT_SERVICES: [&str; 4] = ["/etcdserverpb.", "/v3lockpb.", "/v3electionpb.", "/grpc.health.v1."];

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

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(messages: &[&[u8]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for message in messages {
            bytes.push(0);
            bytes.extend_from_slice(&(message.len() as u32).to_be_bytes());
            bytes.extend_from_slice(message);
        }
        bytes
    }

    #[test]
    fn messages_are_counted_however_the_bytes_are_split() {
        let bytes = framed(&[b"first", b"", b"third message"]);
        assert_eq!(MessageFrames::default().feed(&bytes), 3);
        // One byte at a time: each message counts once, when its last byte comes.
        let mut frames = MessageFrames::default();
        let counts: Vec<u64> = bytes.iter().map(|byte| frames.feed(std::slice::from_ref(byte))).collect();
        assert_eq!(counts.iter().sum::<u64>(), 3);
        assert_eq!(counts[9], 1, "the first message ends at its tenth byte");
        assert_eq!(counts[14], 1, "the empty message ends with its prefix");
        // Split inside a prefix.
        let mut frames = MessageFrames::default();
        assert_eq!(frames.feed(&bytes[..12]), 1);
        assert_eq!(frames.feed(&bytes[12..]), 2);
    }
}
