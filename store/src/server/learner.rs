//! What a learner serves: as etcd's gRPC interceptors have it, only Status,
//! Snapshot and serializable Range; every other call gets "rpc not supported
//! for learner" (Unavailable), and the client tries another member.

use std::sync::Arc;
use std::task::{Context, Poll};

use futures::future::{Either, Ready};

use super::http::CLIENT_SERVICES;
use super::node::Node;
use crate::error::EtcdError;

/// Served on a learner whatever the request; Range is too when serializable,
/// which `server::kv` checks, since only it sees the request.
const SERVED_BY_LEARNERS: [&str; 3] =
    ["/etcdserverpb.Maintenance/Status", "/etcdserverpb.Maintenance/Snapshot", "/etcdserverpb.KV/Range"];

/// Whether a learner passes a call of this gRPC path on to its service.
fn served_by_learners(path: &str) -> bool {
    let client_call = CLIENT_SERVICES.iter().any(|prefix| path.starts_with(prefix));
    !client_call || SERVED_BY_LEARNERS.contains(&path)
}

/// Refuses, on a learner, the calls that etcd refuses there.
#[derive(Clone)]
pub struct LearnerGateLayer {
    pub node: Arc<Node>,
}

impl<S> tower::Layer<S> for LearnerGateLayer {
    type Service = LearnerGate<S>;

    fn layer(&self, inner: S) -> Self::Service {
        LearnerGate { inner, node: self.node.clone() }
    }
}

#[derive(Clone)]
pub struct LearnerGate<S> {
    inner: S,
    node: Arc<Node>,
}

impl<S, B, R> tower::Service<http::Request<B>> for LearnerGate<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    R: Default,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Either<Ready<Result<Self::Response, Self::Error>>, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // The path first: Range and Status, the calls most made, pass without
        // a look at the membership.
        if !served_by_learners(request.uri().path()) && self.node.is_learner() {
            let refused = tonic::Status::from(EtcdError::NotSupportedForLearner).into_http();
            return Either::Left(futures::future::ready(Ok(refused)));
        }
        Either::Right(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_learner_serves_status_snapshot_and_range_and_refuses_the_rest() {
        for path in SERVED_BY_LEARNERS {
            assert!(served_by_learners(path), "{path}");
        }
        for path in [
            "/etcdserverpb.KV/Put",
            "/etcdserverpb.KV/Txn",
            "/etcdserverpb.Watch/Watch",
            "/etcdserverpb.Lease/LeaseGrant",
            "/etcdserverpb.Cluster/MemberList",
            "/etcdserverpb.Maintenance/Defragment",
            "/etcdserverpb.Auth/AuthStatus",
            "/v3lockpb.Lock/Lock",
            "/v3electionpb.Election/Campaign",
            "/grpc.health.v1.Health/Check",
        ] {
            assert!(!served_by_learners(path), "{path}");
        }
        // Not a client gRPC call (/metrics, /health, the gateway's JSON paths
        // are gated where they reach the services).
        assert!(served_by_learners("/metrics"));
    }
}
