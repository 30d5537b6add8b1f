//! The etcd Maintenance service.

use std::io::{Read, Seek, SeekFrom};
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{write_request, write_response, WriteRequest};
use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::downgrade_request::DowngradeAction;
use cairn_proto::etcdserverpb::maintenance_server::Maintenance;
use cairn_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmResponse, AlarmType, DefragmentRequest, DefragmentResponse, DowngradeRequest,
    DowngradeResponse, HashKvRequest, HashKvResponse, HashRequest, HashResponse, MoveLeaderRequest, MoveLeaderResponse,
    SnapshotRequest, SnapshotResponse, StatusRequest, StatusResponse,
};
use openraft::async_runtime::WatchReceiver;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tonic::{Request, Response, Status};

use super::node::Node;
use crate::error::{EtcdError, StoreError};
use crate::snapshot::{write_etcd_snapshot, SnapshotError};

/// The etcd version cairn implements; clients gate features on it.
/// kube-apiserver sends watch progress requests only to 3.5.13 and later,
/// whose progress semantics cairn's watch follows.
pub const ETCD_API_VERSION: &str = "3.5.13";

pub struct MaintenanceService {
    pub node: Arc<Node>,
}

/// The cluster version cairn's members agree on, as etcd 3.5 reports it.
pub const CLUSTER_VERSION: &str = "3.5.0";

/// How etcd prints an alarm in `Status.errors`.
fn alarm_text(member: u64, alarm: AlarmType) -> String {
    format!("memberID:{member} alarm:{} ", alarm.as_str_name())
}

#[tonic::async_trait]
impl Maintenance for MaintenanceService {
    type SnapshotStream = tokio_stream::wrappers::ReceiverStream<Result<SnapshotResponse, Status>>;

    async fn alarm(&self, request: Request<AlarmRequest>) -> Result<Response<AlarmResponse>, Status> {
        let credentials = self.node.credentials(&request);
        let request = request.into_inner();
        let node = &self.node;
        if request.action == AlarmAction::Get as i32 {
            let alarms = node
                .state
                .alarms()
                .into_iter()
                .filter(|(_, alarm)| request.alarm == AlarmType::None as i32 || request.alarm == *alarm as i32)
                .map(|(member_id, alarm)| AlarmMember { member_id, alarm: alarm as i32 })
                .collect();
            return Ok(Response::new(AlarmResponse { header: node.header(node.state.current_revision()), alarms }));
        }
        // Stricter than etcd: raising or disarming an alarm stops or frees every writer.
        node.check_admin_of(&credentials).await?;
        let write = WriteRequest { request: Some(write_request::Request::Alarm(request)), auth_info: None };
        let write_response::Response::Alarm(mut response) = node.write(write).await? else {
            return Err(EtcdError::Internal("unexpected response type".into()).into());
        };
        response.header = node.header(node.state.current_revision());
        Ok(Response::new(response))
    }

    async fn status(&self, _: Request<StatusRequest>) -> Result<Response<StatusResponse>, Status> {
        let node = &self.node;
        let (raft_index, raft_term, is_learner) = {
            let metrics = node.raft.metrics();
            let metrics = metrics.borrow_watched();
            let voter = metrics.membership_config.membership().voter_ids().any(|id| id == node.id);
            (metrics.last_log_index.unwrap_or(0), metrics.current_term, !voter)
        };
        let leader = node.known_leader().unwrap_or(0);
        let applied = node.state.applied_state().last_applied.map_or(0, |log_id| log_id.index);
        let db_size = node.state.db_size() as i64;
        let errors = node.state.alarms().into_iter().map(|(member, alarm)| alarm_text(member, alarm)).collect();
        Ok(Response::new(StatusResponse {
            header: node.header(node.state.current_revision()),
            version: ETCD_API_VERSION.to_string(),
            db_size,
            leader,
            raft_index,
            raft_term,
            raft_applied_index: applied,
            errors,
            db_size_in_use: db_size,
            is_learner,
        }))
    }

    async fn defragment(&self, request: Request<DefragmentRequest>) -> Result<Response<DefragmentResponse>, Status> {
        self.node.check_admin(&request).await?;
        let state = self.node.state.clone();
        blocking(move || state.defragment()).await?;
        // etcd answers a defragment without a header.
        Ok(Response::new(DefragmentResponse { header: None }))
    }

    async fn hash(&self, request: Request<HashRequest>) -> Result<Response<HashResponse>, Status> {
        self.node.check_admin(&request).await?;
        self.node.local_read_barrier().await?;
        let state = self.node.state.clone();
        let hash = blocking(move || state.hash_all()).await?;
        Ok(Response::new(HashResponse { header: self.node.header(self.node.state.current_revision()), hash }))
    }

    async fn hash_kv(&self, request: Request<HashKvRequest>) -> Result<Response<HashKvResponse>, Status> {
        self.node.check_admin(&request).await?;
        self.node.local_read_barrier().await?;
        let revision = request.into_inner().revision;
        Ok(Response::new(super::corrupt::hash_kv_response(&self.node, revision).await?))
    }

    /// Streams a consistent copy of the whole store in etcd's format, ending
    /// with its SHA-256, as etcd does; read from a point-in-time engine view.
    async fn snapshot(&self, request: Request<SnapshotRequest>) -> Result<Response<Self::SnapshotStream>, Status> {
        self.node.check_admin(&request).await?;
        // A backup taken here holds every write answered here.
        self.node.local_read_barrier().await?;
        let (out, responses) = mpsc::channel(SNAPSHOT_CHUNKS_QUEUED);
        let node = self.node.clone();
        tokio::task::spawn_blocking(move || {
            let header = node.header(node.state.current_revision());
            if let Err(err) = stream_snapshot(&node, header, &out) {
                let _ = out.blocking_send(Err(EtcdError::Snapshot(err.to_string()).into()));
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(responses)))
    }

    /// etcd's MoveLeader through openraft's leadership transfer: the leader
    /// stops taking writes, the target campaigns once its log holds the
    /// leader's last entry, and this call returns when the target leads.
    async fn move_leader(&self, request: Request<MoveLeaderRequest>) -> Result<Response<MoveLeaderResponse>, Status> {
        self.node.check_admin(&request).await?;
        let target = request.into_inner().target_id;
        let node = &self.node;
        if !node.is_leader() {
            return Err(EtcdError::NotLeader.into());
        }
        let is_voter =
            node.raft.metrics().borrow_watched().membership_config.membership().voter_ids().any(|id| id == target);
        if !is_voter {
            return Err(EtcdError::BadLeaderTransferee.into());
        }
        // etcd answers a leader move without a header.
        let moved_response = || Ok(Response::new(MoveLeaderResponse { header: None }));
        if target == node.id {
            return moved_response();
        }
        let deadline = Instant::now() + 2 * node.config.election() + Duration::from_secs(1);
        // openraft has no way to call a transfer off, and a leader that hands
        // over to a member far behind stops writes until an election: start
        // only once the target is within one AppendEntries of the leader.
        wait_until(deadline, || target_caught_up(node, target)).await;
        if !target_caught_up(node, target) {
            return Err(EtcdError::LeaderTransferTimeout.into());
        }
        node.raft.trigger().transfer_leader(target).await.map_err(|err| EtcdError::Internal(err.to_string()))?;
        if wait_until(deadline, || node.raft.metrics().borrow_watched().current_leader == Some(target)).await {
            moved_response()
        } else {
            Err(EtcdError::LeaderTransferTimeout.into())
        }
    }

    /// etcd 3.5's checks, in its order. A downgrade exists to let etcd 3.4
    /// members join, and none can join cairn: the one target etcd would take
    /// is refused as invalid too, so no job is ever in flight to cancel.
    async fn downgrade(&self, request: Request<DowngradeRequest>) -> Result<Response<DowngradeResponse>, Status> {
        let request = request.into_inner();
        let action = DowngradeAction::try_from(request.action).map_err(|_| EtcdError::UnknownMethod)?;
        if action != DowngradeAction::Cancel {
            downgrade_target(&request.version)?;
        }
        self.node.linearizable_barrier().await?;
        let refused = match action {
            DowngradeAction::Cancel => EtcdError::NoInflightDowngrade,
            DowngradeAction::Validate | DowngradeAction::Enable => {
                tracing::warn!(target = %request.version, "refused a downgrade: etcd members cannot join a cairn cluster");
                EtcdError::InvalidDowngradeTargetVersion
            }
        };
        Err(refused.into())
    }
}

/// A downgrade target's major and minor, parsed as etcd does: a semantic
/// version, or one missing its patch; the rest is dropped.
fn downgrade_target(version: &str) -> Result<(i64, i64), EtcdError> {
    /// go-semver's identifiers: dot-separated runs of `[0-9A-Za-z-]`.
    fn identifiers(text: &str) -> bool {
        text.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'))
    }
    fn semver(version: &str) -> Option<(i64, i64)> {
        let (core, metadata) = version.split_once('+').unwrap_or((version, ""));
        let (core, prerelease) = core.split_once('-').unwrap_or((core, ""));
        if [metadata, prerelease].iter().any(|part| !part.is_empty() && !identifiers(part)) {
            return None;
        }
        let numbers: Vec<i64> = core
            .split('.')
            .map(|part| match !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()) {
                true => part.parse().ok(),
                false => None,
            })
            .collect::<Option<_>>()?;
        match numbers[..] {
            [major, minor, _patch] => Some((major, minor)),
            _ => None,
        }
    }
    semver(version).or_else(|| semver(&format!("{version}.0"))).ok_or(EtcdError::WrongDowngradeVersionFormat)
}

const SNAPSHOT_CHUNK_BYTES: u64 = 1 << 20;
/// A leadership transfer starts when the target lags by at most this many
/// entries: about one AppendEntries (`max_payload_entries`).
const MAX_TRANSFER_LAG: u64 = 256;
const SNAPSHOT_CHUNKS_QUEUED: usize = 4;

/// The file goes to an unnamed temporary file in the data dir first: bbolt's
/// meta pages, at its start, name pages written last.
fn stream_snapshot(
    node: &Node,
    header: Option<cairn_proto::etcdserverpb::ResponseHeader>,
    out: &mpsc::Sender<Result<SnapshotResponse, Status>>,
) -> Result<(), SnapshotError> {
    let file = tempfile::tempfile_in(node.config.data_dir())?;
    // Read before the engine view is taken: it only grows.
    let physically_compacted = node.state.physically_compacted_through();
    let (mut file, total) = write_etcd_snapshot(node.state.engine(), physically_compacted, file)?;
    file.seek(SeekFrom::Start(0))?;
    let mut sent = 0u64;
    while sent < total {
        let mut blob = vec![0u8; (total - sent).min(SNAPSHOT_CHUNK_BYTES) as usize];
        file.read_exact(&mut blob)?;
        sent += blob.len() as u64;
        let response = SnapshotResponse { header, remaining_bytes: total - sent, blob };
        out.blocking_send(Ok(response)).map_err(|_| std::io::Error::other("the client went away"))?;
    }
    Ok(())
}

/// Runs a storage scan off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    let joined = tokio::task::spawn_blocking(work).await;
    joined.map_err(|err| EtcdError::Internal(err.to_string()))?.map_err(Status::from)
}

/// Whether the target's log is within one AppendEntries of this leader's.
fn target_caught_up(node: &Node, target: u64) -> bool {
    let metrics = node.raft.metrics();
    let metrics = metrics.borrow_watched();
    let last = metrics.last_log_index.unwrap_or(0);
    let matched = metrics.replication.as_ref().and_then(|replication| replication.get(&target).cloned().flatten());
    matched.is_some_and(|matched| matched.index + MAX_TRANSFER_LAG >= last)
}

/// Polls `done` until it holds or the deadline passes; says whether it held.
async fn wait_until(deadline: Instant, mut done: impl FnMut() -> bool) -> bool {
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The answers of go-semver 0.3.0, as etcd 3.5 parses the target.
    #[test]
    fn downgrade_target_parses_as_etcd() {
        for (version, parsed) in [("3.4", (3, 4)), ("3.4.0", (3, 4)), ("3.4.9", (3, 4)), ("03.04", (3, 4))] {
            assert_eq!(downgrade_target(version).ok(), Some(parsed), "{version}");
        }
        for version in ["3.4.0-rc.1", "3.4.0+meta", "3.6", "3.4.0-"] {
            assert!(downgrade_target(version).is_ok(), "{version}");
        }
        for version in [
            "v3.4",
            "",
            "3",
            "3.4.x",
            "garbage",
            " 3.4",
            "3.4.0.1",
            "3.4-rc.1",
            "+3.4",
            "3..4",
            "3.4.0-rc_1",
            "3.4.0+a+b",
            "9223372036854775808.4",
        ] {
            assert!(
                matches!(downgrade_target(version), Err(EtcdError::WrongDowngradeVersionFormat)),
                "{version:?} must be refused"
            );
        }
    }
}
