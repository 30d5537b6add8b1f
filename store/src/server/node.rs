//! A running member: Raft, the state, and the paths every request takes
//! (forwarding to the leader, group commit, ReadIndex, lease liveness).

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cairn_proto::cairnpb::{
    write_request, write_response, ProposeRequest, ProposeResponse, ReadIndexRequest, WriteRequest, WriteResponse,
};
use cairn_proto::etcdserverpb::alarm_request::AlarmAction;
use cairn_proto::etcdserverpb::{AlarmRequest, AlarmType};
use cairn_proto::etcdserverpb::{
    LeaseKeepAliveRequest, LeaseTimeToLiveRequest, LeaseTimeToLiveResponse, ResponseHeader,
};
use openraft::async_runtime::WatchReceiver;
use openraft::Instant as _;
use prost::Message;
use tokio::sync::watch;
use tokio::time::Instant;

use super::forward::Forwarder;
use super::proposer::{into_result, ProposeError, Proposer};
use super::read_index::ReadIndex;
use crate::apply::adds_data;
use crate::config::Config;
use crate::error::EtcdError;
use crate::lease::Lessor;
use crate::metrics::METRICS;
use crate::raft::network::{PeerClients, PeerLink};
use crate::raft::types::{Member, NodeId, Raft};
use crate::state::KvState;

/// Pause between attempts while there is no leader or it moved.
const RETRY_PAUSE: Duration = Duration::from_millis(50);

pub struct Node {
    pub config: Config,
    pub id: NodeId,
    pub cluster_id: u64,
    pub raft: Raft,
    pub state: Arc<KvState>,
    pub peers: Arc<PeerClients>,
    pub proposer: Proposer,
    pub reads: ReadIndex,
    /// Writes and read-index requests this member forwards while it follows.
    forwarded_writes: Forwarder<PeerLink, WriteRequest, ForwardedWrite>,
    forwarded_reads: Forwarder<PeerLink, (), u64>,
    pub lessor: Lessor,
    /// `--auth-token`: how this member issues and checks tokens.
    pub tokens: super::auth::Tokens,
    /// Multi-key reads that may run at once: one core fewer than the machine
    /// has, so that however many clients list, the write path keeps a core.
    pub range_slots: Arc<tokio::sync::Semaphore>,
    lease_id_suffix: AtomicU64,
    /// When this member last accepted a leader's heartbeat or entries.
    pub leader_contact: Contact,
    /// KV writes this member answered before applying them.
    answered_ahead: AnsweredAhead,
}

/// How far the leader had applied when it answered the last KV write this
/// member answered before applying it: what this member serves from its own
/// state waits until it has applied as far (`Node::local_read_barrier`).
#[derive(Default)]
struct AnsweredAhead(AtomicU64);

impl AnsweredAhead {
    /// Called before the write's answer leaves this member.
    fn raise(&self, leader_applied: u64) {
        self.0.fetch_max(leader_applied, Ordering::AcqRel);
    }

    /// Whether a member applied through `applied` owes no write answered here.
    fn covered_by(&self, applied: u64) -> bool {
        self.0.load(Ordering::Acquire) <= applied
    }

    /// Returns once `applied` covers every write answered here, or after
    /// `patience` without it: then those writes are forgotten, so that the
    /// next reads do not wait for a commit that a partition holds back.
    async fn wait(&self, mut applied: watch::Receiver<u64>, patience: Duration) -> Result<(), EtcdError> {
        let ahead = self.0.load(Ordering::Acquire);
        match applied_by(&mut applied, ahead, Instant::now() + patience).await {
            Err(EtcdError::Timeout) => {
                // Unless a newer write raised it meanwhile, which means the leader answers again.
                let _ = self.0.compare_exchange(ahead, 0, Ordering::AcqRel, Ordering::Acquire);
                let applied = *applied.borrow();
                tracing::warn!(
                    ahead,
                    applied,
                    "no commit from the leader for writes answered here; serving local reads without them"
                );
                Ok(())
            }
            waited => waited,
        }
    }
}

/// Waits until `applied` reaches `index`: a timeout once `deadline` passes,
/// "stopped" if the member stops first.
async fn applied_by(applied: &mut watch::Receiver<u64>, index: u64, deadline: Instant) -> Result<(), EtcdError> {
    let caught_up = tokio::time::timeout_at(deadline, applied.wait_for(|applied| *applied >= index))
        .await
        .map(|waited| waited.is_ok());
    match caught_up {
        Ok(true) => Ok(()),
        Ok(false) => Err(EtcdError::Stopped),
        Err(_) => Err(EtcdError::Timeout),
    }
}

/// A moment kept in an atomic, so that each message from the leader can stamp
/// it without a lock.
pub struct Contact {
    origin: Instant,
    /// Nanoseconds from `origin`, plus one; 0 is never.
    at: AtomicU64,
}

impl Contact {
    fn new() -> Self {
        Self { origin: Instant::now(), at: AtomicU64::new(0) }
    }

    pub fn touch(&self) {
        self.at.store(self.origin.elapsed().as_nanos() as u64 + 1, Ordering::Relaxed);
    }

    pub fn within(&self, window: Duration) -> bool {
        match self.at.load(Ordering::Relaxed) {
            0 => false,
            at => self.origin.elapsed().saturating_sub(Duration::from_nanos(at - 1)) < window,
        }
    }
}

fn range_slots() -> usize {
    let cores = std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get);
    cores.saturating_sub(1).max(1)
}

/// Where a request that only the leader may serve went.
enum Route {
    Local,
    Forward(PeerLink),
}

impl Node {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        config: Config,
        id: NodeId,
        cluster_id: u64,
        raft: Raft,
        state: Arc<KvState>,
        peers: Arc<PeerClients>,
        proposer: Proposer,
        reads: ReadIndex,
        tokens: super::auth::Tokens,
    ) -> Self {
        // As etcd's ID generator: the low bits start from the clock, so IDs stay unique across restarts.
        let timeout = request_timeout(&config);
        let (forward_peers, read_peers) = (peers.clone(), peers.clone());
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_millis() as u64);
        Self {
            config,
            id,
            cluster_id,
            raft,
            state,
            peers,
            proposer,
            reads,
            forwarded_writes: Forwarder::start(
                Arc::new(move |link, requests| {
                    Box::pin(forward_writes(forward_peers.clone(), link, cluster_id, requests, timeout))
                }),
                |request| request.encoded_len(),
                &METRICS.forwarded_writes,
            ),
            forwarded_reads: Forwarder::start(
                Arc::new(move |link, waiters: Vec<()>| {
                    Box::pin(forward_read_index(read_peers.clone(), link, cluster_id, waiters.len(), timeout))
                }),
                |_| 0,
                &METRICS.forwarded_reads,
            ),
            lessor: Lessor::default(),
            tokens,
            range_slots: Arc::new(tokio::sync::Semaphore::new(range_slots())),
            lease_id_suffix: AtomicU64::new(now_ms << 8),
            leader_contact: Contact::new(),
            answered_ahead: AnsweredAhead::default(),
        }
    }

    /// How long a request may wait for a leader and a commit, as etcd's
    /// request timeout: 5 s plus two election timeouts.
    pub fn request_timeout(&self) -> Duration {
        request_timeout(&self.config)
    }

    pub fn header(&self, revision: i64) -> Option<ResponseHeader> {
        Some(ResponseHeader {
            cluster_id: self.cluster_id,
            member_id: self.id,
            revision,
            raft_term: self.raft.metrics().borrow_watched().current_term,
        })
    }

    /// A new, positive lease ID: this member's low 16 ID bits, then a counter.
    pub fn next_lease_id(&self) -> i64 {
        let suffix = self.lease_id_suffix.fetch_add(1, Ordering::Relaxed) & ((1 << 48) - 1);
        let id = ((self.id & 0xffff) << 47) | suffix;
        (id & (i64::MAX as u64)).max(1) as i64
    }

    /// Whether the membership lists this member as a learner, which serves
    /// only what etcd's learners serve (`server::learner`).
    pub fn is_learner(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let membership = metrics.membership_config.membership();
        membership.get_node(&self.id).is_some() && !membership.voter_ids().any(|id| id == self.id)
    }

    /// The leader as etcd reports it (`/health`, `etcd_server_has_leader`,
    /// Status): none once this member has gone an election timeout without
    /// hearing from it, when etcd's follower would campaign, or, leading, without
    /// a quorum's answer, when etcd's CheckQuorum steps the leader down. openraft
    /// keeps the last leader until another is elected, which under PreVote a
    /// member cut off never sees.
    pub fn known_leader(&self) -> Option<NodeId> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = metrics.current_leader?;
        let window = self.config.election();
        let heard = if leader != self.id {
            self.leader_contact.within(window)
        } else if metrics.membership_config.membership().voter_ids().all(|voter| voter == self.id) {
            true
        } else {
            metrics.last_quorum_acked.as_ref().is_some_and(|acked| (**acked).elapsed() < window)
        };
        heard.then_some(leader)
    }

    pub fn is_leader(&self) -> bool {
        self.raft.metrics().borrow_watched().current_leader == Some(self.id)
    }

    fn route(&self) -> Result<Route, ProposeError> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow_watched();
        let leader = metrics.current_leader.ok_or(ProposeError::NotLeader(None))?;
        if leader == self.id {
            return Ok(Route::Local);
        }
        let member: Member =
            metrics.membership_config.membership().get_node(&leader).cloned().ok_or(ProposeError::NotLeader(None))?;
        let link = self
            .peers
            .link(leader, &member)
            .map_err(|err| ProposeError::Failed(EtcdError::Internal(err.to_string())))?;
        Ok(Route::Forward(link))
    }

    /// Serves a request on the leader, locally or by forwarding, retrying while
    /// there is no leader or it moved (only when nothing was done yet).
    pub(super) async fn on_leader<T, L, LF, F, FF>(&self, local: L, forward: F) -> Result<T, tonic::Status>
    where
        L: Fn() -> LF,
        LF: Future<Output = Result<T, ProposeError>>,
        F: Fn(PeerLink) -> FF,
        FF: Future<Output = Result<T, ProposeError>>,
    {
        let deadline = Instant::now() + self.request_timeout();
        let mut saw_leader = false;
        loop {
            let attempt = match self.route() {
                Ok(Route::Local) => {
                    saw_leader = true;
                    local().await
                }
                Ok(Route::Forward(link)) => {
                    saw_leader = true;
                    forward(link).await
                }
                Err(err) => Err(err),
            };
            match attempt {
                Ok(value) => return Ok(value),
                Err(ProposeError::Failed(err)) => return Err(err.into()),
                Err(ProposeError::NotLeader(_)) if Instant::now() + RETRY_PAUSE < deadline => {
                    tokio::time::sleep(RETRY_PAUSE).await;
                }
                Err(ProposeError::NotLeader(_)) => {
                    let err = if saw_leader { EtcdError::Timeout } else { EtcdError::NoLeader };
                    return Err(err.into());
                }
            }
        }
    }

    /// Commits a write through the leader and returns its response.
    pub async fn write(&self, request: WriteRequest) -> Result<write_response::Response, tonic::Status> {
        if adds_data(&request) && self.state.quota_size() > self.config.quota_backend_bytes() {
            self.raise_no_space().await;
            return Err(EtcdError::NoSpace.into());
        }
        let request = &request;
        let deadline = Instant::now() + self.request_timeout();
        let response = self
            .on_leader(
                || self.proposer.propose(request.clone()),
                |link| async move {
                    let forwarded = self.forwarded_writes.forward(link, request.clone()).await?;
                    // An error changed nothing: it is answered at once.
                    if matches!(forwarded.response.response, Some(write_response::Response::Error(_))) {
                        return Ok(forwarded.response);
                    }
                    // etcd answers a write on the member that took it once that member
                    // has applied it, so that what it serves next sees the write. A KV
                    // write is answered with the leader's response as soon as it comes,
                    // and this member's local reads wait for its apply instead: the
                    // commit reaches a follower in the leader's next AppendEntries, a
                    // round after the leader's answer. Other writes change what this
                    // member checks by itself (users, leases, alarms): they wait here.
                    if answered_before_applied(request) {
                        self.answered_ahead.raise(forwarded.applied_index);
                    } else {
                        let applied = self.wait_applied_until(forwarded.applied_index, deadline).await;
                        applied.map_err(ProposeError::Failed)?;
                    }
                    Ok(forwarded.response)
                },
            )
            .await?;
        into_result(response)
    }

    /// Raises the NOSPACE alarm for this member, as etcd does when its quota is exceeded.
    async fn raise_no_space(&self) {
        if self.state.alarms().iter().any(|(member, alarm)| *member == self.id && *alarm == AlarmType::Nospace) {
            return;
        }
        let alarm =
            AlarmRequest { action: AlarmAction::Activate as i32, member_id: self.id, alarm: AlarmType::Nospace as i32 };
        let request = WriteRequest { request: Some(write_request::Request::Alarm(alarm)), auth_info: None };
        if let Err(status) = Box::pin(self.write(request)).await {
            tracing::warn!(%status, "raising the NOSPACE alarm");
        }
    }

    /// Returns once this member has applied every write acknowledged before the call.
    pub async fn linearizable_barrier(&self) -> Result<(), tonic::Status> {
        if crate::failpoint::active("unsafe-local-reads") {
            return Ok(());
        }
        let index = self.on_leader(|| self.reads.read_index(), |link| self.forwarded_reads.forward(link, ())).await?;
        Ok(self.wait_applied(index).await?)
    }

    /// Returns once this member has applied every KV write it answered, so
    /// that what it serves from its own state (a serializable read, a new
    /// watch, a snapshot) sees them, as in etcd, whose follower answers a
    /// write once it has applied it. The commit comes a round after the
    /// leader's answer; a member that has not had it within an election
    /// timeout was cut off from the leader since, and serves what it has, as
    /// etcd's cut-off follower serves serializable reads: one read waits, not
    /// every read until the partition heals.
    pub async fn local_read_barrier(&self) -> Result<(), EtcdError> {
        // Nearly always nothing is owed: no subscription on the read path then.
        if self.answered_ahead.covered_by(self.state.applied_index()) {
            return Ok(());
        }
        self.answered_ahead.wait(self.state.subscribe_applied(), self.config.election()).await
    }

    /// Waits until this member has applied `index`.
    pub(super) async fn wait_applied(&self, index: u64) -> Result<(), EtcdError> {
        self.wait_applied_until(index, Instant::now() + self.request_timeout()).await
    }

    /// Waits until this member has applied `index`, or `deadline` passes.
    async fn wait_applied_until(&self, index: u64, deadline: Instant) -> Result<(), EtcdError> {
        applied_by(&mut self.state.subscribe_applied(), index, deadline).await
    }

    /// Renews a lease on the leader; an unknown lease gets TTL 0, as in etcd.
    pub async fn lease_keep_alive(&self, id: i64) -> Result<i64, tonic::Status> {
        self.on_leader(
            || self.keep_alive_here(id),
            |link| async move {
                link.into_client()
                    .lease_keep_alive(LeaseKeepAliveRequest { id })
                    .await
                    .map(|r| r.into_inner().ttl)
                    .map_err(retry_any)
            },
        )
        .await
    }

    /// The keepalive itself, on the leader. Leadership is confirmed by a
    /// ReadIndex round first (etcd's `ensureLeadership`): a leader cut off from
    /// the others must not renew a lease that the new leader is counting down.
    pub async fn keep_alive_here(&self, id: i64) -> Result<i64, ProposeError> {
        let index = self.reads.read_index().await?;
        self.wait_applied(index).await.map_err(ProposeError::Failed)?;
        Ok(match self.state.lease(id) {
            Some(lease) => self.lessor.renew(id, lease.ttl, std::time::Instant::now()),
            None => 0,
        })
    }

    pub async fn lease_time_to_live(
        &self,
        request: LeaseTimeToLiveRequest,
    ) -> Result<LeaseTimeToLiveResponse, tonic::Status> {
        self.on_leader(
            || async { Ok(self.time_to_live_here(&request)) },
            |link| async move {
                link.into_client().lease_time_to_live(request).await.map(|r| r.into_inner()).map_err(retry_any)
            },
        )
        .await
    }

    /// A lease's remaining TTL as the leader sees it; -1 for an unknown lease, as in etcd.
    pub fn time_to_live_here(&self, request: &LeaseTimeToLiveRequest) -> LeaseTimeToLiveResponse {
        let header = self.header(self.state.current_revision());
        match self.state.lease(request.id) {
            None => LeaseTimeToLiveResponse { header, id: request.id, ttl: -1, ..Default::default() },
            Some(lease) => LeaseTimeToLiveResponse {
                header,
                id: request.id,
                ttl: self.lessor.remaining(request.id, lease.ttl, std::time::Instant::now()),
                granted_ttl: lease.ttl,
                keys: if request.keys { lease.keys.into_iter().collect() } else { Vec::new() },
            },
        }
    }
}

fn request_timeout(config: &Config) -> Duration {
    Duration::from_secs(5) + 2 * config.election()
}

/// Whether a forwarded write is answered before this member applies it: a
/// KV write, which only local reads can observe here (`local_read_barrier`).
fn answered_before_applied(request: &WriteRequest) -> bool {
    matches!(
        request.request,
        Some(write_request::Request::Put(_) | write_request::Request::DeleteRange(_) | write_request::Request::Txn(_))
    )
}

/// A write the leader answered, and how far the leader had applied then.
#[derive(Clone)]
struct ForwardedWrite {
    response: WriteResponse,
    applied_index: u64,
}

/// One `ProposeBatch` RPC for writes queued together; an answer for each.
async fn forward_writes(
    peers: Arc<PeerClients>,
    link: PeerLink,
    cluster_id: u64,
    requests: Vec<WriteRequest>,
    timeout: Duration,
) -> Vec<Result<ForwardedWrite, ProposeError>> {
    let count = requests.len();
    match tokio::time::timeout(timeout, peers.propose(&link, cluster_id, ProposeRequest { requests })).await {
        Ok(Ok(answer)) => {
            let ProposeResponse { responses, applied_index } = answer;
            let forwarded = |response| ForwardedWrite { response, applied_index };
            responses.into_iter().map(|response| not_leader_to_retry(response).map(forwarded)).collect()
        }
        // They may or may not have reached the leader: not safe to retry.
        Ok(Err(status)) => {
            tracing::debug!(%status, "forwarding writes failed");
            vec![Err(ProposeError::Failed(EtcdError::Timeout)); count]
        }
        Err(_) => vec![Err(ProposeError::Failed(EtcdError::Timeout)); count],
    }
}

/// One read index from the leader, for `waiters` reads that all queued before it was asked.
async fn forward_read_index(
    peers: Arc<PeerClients>,
    link: PeerLink,
    cluster_id: u64,
    waiters: usize,
    timeout: Duration,
) -> Vec<Result<u64, ProposeError>> {
    let request = ReadIndexRequest { cluster_id };
    // A read index is safe to ask for again, whatever went wrong.
    let index = match tokio::time::timeout(timeout, peers.read_index(&link, request)).await {
        Ok(answer) => answer.map(|answer| answer.index).map_err(retry_any),
        Err(_) => Err(ProposeError::NotLeader(None)),
    };
    vec![index; waiters]
}

/// A leader that lost leadership answers "not leader": nothing was done, so retry.
fn not_leader_to_retry(response: WriteResponse) -> Result<WriteResponse, ProposeError> {
    match &response.response {
        Some(write_response::Response::Error(err)) if EtcdError::is_not_leader(err) => {
            Err(ProposeError::NotLeader(None))
        }
        _ => Ok(response),
    }
}

/// For idempotent forwarded requests: any failure means "try the leader again".
fn retry_any(status: tonic::Status) -> ProposeError {
    tracing::debug!(%status, "forwarded request failed");
    ProposeError::NotLeader(None)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use tokio::sync::watch;

    use super::AnsweredAhead;
    use crate::error::EtcdError;

    const PATIENCE: Duration = Duration::from_millis(300);

    #[tokio::test]
    async fn local_reads_wait_for_the_writes_answered_here() {
        let ahead = AnsweredAhead::default();
        let (applied, watching) = watch::channel(5);
        // Nothing answered ahead: no wait.
        assert_eq!(ahead.wait(watching.clone(), PATIENCE).await, Ok(()));
        ahead.raise(10);
        ahead.raise(8);
        let waiting = tokio::spawn(async move {
            let started = tokio::time::Instant::now();
            let waited = ahead.wait(watching, PATIENCE).await;
            (waited, started.elapsed(), ahead)
        });
        tokio::time::sleep(Duration::from_millis(10)).await;
        applied.send_replace(9);
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(!waiting.is_finished(), "answered through 10, applied 9");
        applied.send_replace(10);
        let (waited, took, ahead) = waiting.await.expect("task");
        assert_eq!(waited, Ok(()));
        assert!(took < PATIENCE);
        // Still owed to the next reads: nothing was forgotten.
        assert_eq!(ahead.0.load(std::sync::atomic::Ordering::Acquire), 10);
    }

    #[tokio::test]
    async fn a_member_cut_off_before_the_commit_waits_once() {
        let ahead = AnsweredAhead::default();
        let (applied, watching) = watch::channel(5);
        ahead.raise(10);
        let started = tokio::time::Instant::now();
        assert_eq!(ahead.wait(watching.clone(), PATIENCE).await, Ok(()));
        assert!(started.elapsed() >= PATIENCE);
        // The next read is served at once, from what the member has.
        let started = tokio::time::Instant::now();
        assert_eq!(ahead.wait(watching.clone(), PATIENCE).await, Ok(()));
        assert!(started.elapsed() < PATIENCE);
        // A member that stops ends the wait with an error.
        ahead.raise(20);
        drop(applied);
        assert_eq!(ahead.wait(watching, PATIENCE).await, Err(EtcdError::Stopped));
    }
}
