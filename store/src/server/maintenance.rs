//! The etcd Maintenance service: Status for now; the rest arrives with the Maintenance issue.

use std::sync::Arc;

use cairn_proto::etcdserverpb::maintenance_server::Maintenance;
use cairn_proto::etcdserverpb::{
    AlarmRequest, AlarmResponse, DefragmentRequest, DefragmentResponse, DowngradeRequest, DowngradeResponse,
    HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse, SnapshotRequest,
    SnapshotResponse, StatusRequest, StatusResponse,
};
use tonic::{Request, Response, Status};

use super::node::Node;

/// The etcd API version cairn implements; clients gate features on it.
pub const ETCD_API_VERSION: &str = "3.5.0";

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

fn not_yet(method: &str) -> Status {
    Status::unimplemented(format!("cairn: {method} is not supported yet"))
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = tokio_stream::wrappers::ReceiverStream<Result<SnapshotResponse, Status>>;

    async fn alarm(&self, _: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        Err(not_yet("Alarm"))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let node = &self.node;
        let (leader, raft_index, raft_term, is_learner) = {
            let metrics = node.raft.metrics();
            let metrics = metrics.borrow();
            let voter = metrics.membership_config.membership().voter_ids().any(|id| id == node.id);
            (metrics.current_leader.unwrap_or(0), metrics.last_log_index.unwrap_or(0), metrics.current_term, !voter)
        };
        let applied = node.state.applied_state().last_applied.map_or(0, |log_id| log_id.index);
        let db_size = node.state.engine().size_bytes() as i64;
        Ok(Response::new(StatusResponse {
            header: node.header(node.state.current_revision()),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader,
            raft_index,
            raft_term,
            raft_applied_index: applied,
            errors: vec![],
            db_size_in_use: db_size,
            is_learner,
        }))
    }

    async fn defragment(&self, _: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        Err(not_yet("Defragment"))
    }

    async fn hash(&self, _: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        Err(not_yet("Hash"))
    }

    async fn hash_kv(&self, _: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        Err(not_yet("HashKV"))
    }

    async fn snapshot(&self, _: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        Err(not_yet("Snapshot"))
    }

    async fn move_leader(&self, _: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        Err(not_yet("MoveLeader"))
    }

    async fn downgrade(&self, _: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        Err(not_yet("Downgrade"))
    }
}
