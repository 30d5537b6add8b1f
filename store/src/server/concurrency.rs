//! etcd's Lock and Election services, run in the member as etcd runs them:
//! the recipes of etcd's `clientv3/concurrency` over this member's own KV,
//! with the caller's identity. A holder is a key under `<name>/`, named by
//! the caller's lease and held through it; the oldest key holds the lock or
//! leads the election, and the others wait for every older key to go.

use std::sync::Arc;

use cairn_proto::cairnpb::{write_request, write_response, AuthInfo, WriteRequest};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::response_op::Response as OpResponse;
use cairn_proto::etcdserverpb::{
    Compare, DeleteRangeRequest, PutRequest, RangeRequest, RangeResponse, RequestOp, ResponseHeader, TxnRequest,
    TxnResponse,
};
use cairn_proto::mvccpb::KeyValue;
use cairn_proto::v3electionpb::election_server::Election;
use cairn_proto::v3electionpb::{
    CampaignRequest, CampaignResponse, LeaderKey, LeaderRequest, LeaderResponse, ProclaimRequest, ProclaimResponse,
    ResignRequest, ResignResponse,
};
use cairn_proto::v3lockpb::lock_server::Lock;
use cairn_proto::v3lockpb::{LockRequest, LockResponse, UnlockRequest, UnlockResponse};
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use super::node::Node;
use crate::apply::validate;
use crate::error::EtcdError;

pub struct LockService {
    pub node: Arc<Node>,
}

pub struct ElectionService {
    pub node: Arc<Node>,
}

/// One caller's KV requests, made in the member.
#[derive(Clone)]
struct Local {
    node: Arc<Node>,
    who: AuthInfo,
}

/// The end of the range of keys that start with `prefix` (clientv3's `GetPrefixRangeEnd`).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The oldest key under `prefix` (`WithFirstCreate`).
fn first_created(prefix: &[u8]) -> RangeRequest {
    RangeRequest {
        key: prefix.to_vec(),
        range_end: prefix_end(prefix),
        limit: 1,
        sort_order: SortOrder::Ascend as i32,
        sort_target: SortTarget::Create as i32,
        ..Default::default()
    }
}

fn get(key: &[u8]) -> RangeRequest {
    RangeRequest { key: key.to_vec(), ..Default::default() }
}

fn created_at(key: &[u8], revision: i64) -> Compare {
    Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Create as i32,
        key: key.to_vec(),
        target_union: Some(TargetUnion::CreateRevision(revision)),
        range_end: Vec::new(),
    }
}

fn put(key: &[u8], value: &[u8], lease: i64) -> RequestOp {
    RequestOp {
        request: Some(Op::RequestPut(PutRequest {
            key: key.to_vec(),
            value: value.to_vec(),
            lease,
            ..Default::default()
        })),
    }
}

fn range_op(range: RangeRequest) -> RequestOp {
    RequestOp { request: Some(Op::RequestRange(range)) }
}

/// The key-values of a Txn's `index`th response, if it is a range.
fn range_kvs(response: &TxnResponse, index: usize) -> &[KeyValue] {
    match response.responses.get(index).and_then(|op| op.response.as_ref()) {
        Some(OpResponse::ResponseRange(range)) => &range.kvs,
        _ => &[],
    }
}

fn revision_of(header: &Option<ResponseHeader>) -> i64 {
    header.as_ref().map_or(0, |header| header.revision)
}

impl Local {
    async fn of<T>(node: &Arc<Node>, request: &Request<T>) -> Result<Local, Status> {
        Ok(Local { node: node.clone(), who: node.client_identity(request).await? })
    }

    async fn write(&self, request: write_request::Request) -> Result<write_response::Response, Status> {
        self.node.write(WriteRequest { request: Some(request), auth_info: Some(self.who.clone()) }).await
    }

    async fn txn(&self, txn: TxnRequest) -> Result<TxnResponse, Status> {
        validate::check_txn(&txn)?;
        let write_response::Response::Txn(mut response) = self.write(write_request::Request::Txn(txn)).await? else {
            return Err(EtcdError::Internal("unexpected response type".into()).into());
        };
        response.header = self.node.header(revision_of(&response.header));
        Ok(response)
    }

    async fn delete(&self, key: &[u8]) -> Result<Option<ResponseHeader>, Status> {
        let delete = DeleteRangeRequest { key: key.to_vec(), ..Default::default() };
        let write_response::Response::DeleteRange(response) =
            self.write(write_request::Request::DeleteRange(delete)).await?
        else {
            return Err(EtcdError::Internal("unexpected response type".into()).into());
        };
        Ok(self.node.header(revision_of(&response.header)))
    }

    /// A linearizable read, checked against the caller's permissions.
    async fn range(&self, range: RangeRequest) -> Result<RangeResponse, Status> {
        self.node.linearizable_barrier().await?;
        self.node.check_read(&self.who, &range.key, &range.range_end)?;
        let mut response = self.node.state.range(&range)?;
        response.header = self.node.header(revision_of(&response.header));
        Ok(response)
    }

    /// The create revision of `key` as this member has applied it.
    fn applied_create_revision(&self, key: &[u8]) -> Result<Option<i64>, Status> {
        let response = self.node.state.range(&get(key))?;
        Ok(response.kvs.first().map(|kv| kv.create_revision))
    }

    /// etcd's `waitDeletes`: returns once no key under `prefix` created at or
    /// before `max_create` is left, or as soon as `own` (the waiter's key at its
    /// create revision) is gone: its lease expired, so it will never hold.
    async fn wait_deletes(&self, prefix: &[u8], max_create: i64, own: (&[u8], i64)) -> Result<(), Status> {
        let mut applied = self.node.state.subscribe_applied();
        loop {
            let older = RangeRequest {
                max_create_revision: max_create,
                sort_order: SortOrder::Descend as i32,
                ..first_created(prefix)
            };
            let Some(kv) = self.range(older).await?.kvs.into_iter().next() else { return Ok(()) };
            // Each applied entry may have deleted it; the state only moves forward.
            loop {
                if self.applied_create_revision(own.0)? != Some(own.1) {
                    return Ok(());
                }
                if self.applied_create_revision(&kv.key)? != Some(kv.create_revision) {
                    break;
                }
                applied.changed().await.map_err(|_| EtcdError::Stopped)?;
            }
        }
    }
}

/// Deletes a waiter's key if its call ends before it holds (the client went
/// away): etcd's mutex does the same, so that the next waiter is not held up.
struct Abandoned {
    local: Option<Local>,
    key: Vec<u8>,
}

impl Abandoned {
    fn keep(mut self) {
        self.local = None;
    }
}

impl Drop for Abandoned {
    fn drop(&mut self) {
        if let Some(local) = self.local.take() {
            let key = std::mem::take(&mut self.key);
            tokio::spawn(async move {
                if let Err(status) = local.delete(&key).await {
                    tracing::debug!(%status, "deleting an abandoned lock or election key");
                }
            });
        }
    }
}

/// A holder's key: `<prefix><lease in hex>`.
fn holder_key(prefix: &[u8], lease: i64) -> Vec<u8> {
    [prefix, format!("{lease:x}").as_bytes()].concat()
}

/// etcd's Lock and Election servers return their client's errors as they
/// are, which gRPC sends as code Unknown with the same message.
fn as_etcd_answers(status: Status) -> Status {
    Status::unknown(status.message())
}

#[tonic::async_trait]
impl Lock for LockService {
    async fn lock(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        self.lock_held(request).await.map_err(as_etcd_answers)
    }

    async fn unlock(&self, request: Request<UnlockRequest>) -> Result<Response<UnlockResponse>, Status> {
        let local = Local::of(&self.node, &request).await.map_err(as_etcd_answers)?;
        let header = local.delete(&request.into_inner().key).await.map_err(as_etcd_answers)?;
        Ok(Response::new(UnlockResponse { header }))
    }
}

impl LockService {
    async fn lock_held(&self, request: Request<LockRequest>) -> Result<Response<LockResponse>, Status> {
        let local = Local::of(&self.node, &request).await?;
        let LockRequest { name, lease } = request.into_inner();
        let prefix = [name.as_slice(), b"/"].concat();
        let key = holder_key(&prefix, lease);
        // Take a place in the queue, or find the one this lease already has.
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put(&key, b"", lease), range_op(first_created(&prefix))],
            failure: vec![range_op(get(&key)), range_op(first_created(&prefix))],
        };
        let placed = local.txn(txn).await?;
        let mine = match placed.succeeded {
            true => revision_of(&placed.header),
            false => range_kvs(&placed, 0).first().map_or(0, |kv| kv.create_revision),
        };
        let owner = range_kvs(&placed, 1).first().map(|kv| kv.create_revision);
        if owner == Some(mine) {
            return Ok(Response::new(LockResponse { header: placed.header, key }));
        }
        let abandoned = Abandoned { local: Some(local.clone()), key: key.clone() };
        local.wait_deletes(&prefix, mine - 1, (&key, mine)).await?;
        // Jepsen's etcd 3.4.3 finding: the lease may have expired while waiting.
        let check = local.range(get(&key)).await?;
        abandoned.keep();
        if check.kvs.first().map(|kv| kv.create_revision) != Some(mine) {
            return Err(EtcdError::SessionExpired.into());
        }
        Ok(Response::new(LockResponse { header: check.header, key }))
    }
}

/// The leader of an election: the oldest key under `<name>/`. A linearizable
/// read, or (for observers, woken by each applied entry) this member's state.
async fn leader(local: &Local, name: &[u8], linearizable: bool) -> Result<(Option<ResponseHeader>, KeyValue), Status> {
    let range = first_created(&[name, b"/"].concat());
    let found = if linearizable {
        local.range(range).await?
    } else {
        local.node.check_read(&local.who, &range.key, &range.range_end)?;
        let found = local.node.state.range(&range)?;
        RangeResponse { header: local.node.header(revision_of(&found.header)), ..found }
    };
    let kv = found.kvs.into_iter().next().ok_or(EtcdError::ElectionNoLeader)?;
    Ok((found.header, kv))
}

/// Makes `then` if `leader`'s key is still the one it created (etcd's `ResumeElection`).
async fn if_still_leader(local: &Local, leader: &Option<LeaderKey>, then: RequestOp) -> Result<TxnResponse, Status> {
    let leader = leader.as_ref().ok_or(EtcdError::MissingLeaderKey)?;
    let txn =
        TxnRequest { compare: vec![created_at(&leader.key, leader.rev)], success: vec![then], failure: Vec::new() };
    local.txn(txn).await
}

async fn proclaim(local: &Local, leader: &Option<LeaderKey>, value: &[u8]) -> Result<Option<ResponseHeader>, Status> {
    let then = leader.as_ref().map(|leader| put(&leader.key, value, leader.lease)).unwrap_or_default();
    let response = if_still_leader(local, leader, then).await?;
    if !response.succeeded {
        return Err(EtcdError::ElectionNotLeader.into());
    }
    Ok(response.header)
}

type ObserveStream = tokio_stream::wrappers::ReceiverStream<Result<LeaderResponse, Status>>;

impl ElectionService {
    async fn run_campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        let local = Local::of(&self.node, &request).await?;
        let CampaignRequest { name, lease, value } = request.into_inner();
        let prefix = [name.as_slice(), b"/"].concat();
        let key = holder_key(&prefix, lease);
        let txn = TxnRequest {
            compare: vec![created_at(&key, 0)],
            success: vec![put(&key, &value, lease)],
            failure: vec![range_op(get(&key))],
        };
        let placed = local.txn(txn).await?;
        let mut rev = revision_of(&placed.header);
        if !placed.succeeded {
            // This lease already campaigns: keep its place, with the new value.
            let existing = range_kvs(&placed, 0).first().cloned().unwrap_or_default();
            rev = existing.create_revision;
            if existing.value != value {
                let leader = LeaderKey { name: name.clone(), key: key.clone(), rev, lease };
                proclaim(&local, &Some(leader), &value).await?;
            }
        }
        let abandoned = Abandoned { local: Some(local.clone()), key: key.clone() };
        local.wait_deletes(&prefix, rev - 1, (&key, rev)).await?;
        abandoned.keep();
        // As for a lock: a lease that expired during the wait leads nothing.
        if local.applied_create_revision(&key)? != Some(rev) {
            return Err(EtcdError::SessionExpired.into());
        }
        let leader = LeaderKey { name, key, rev, lease };
        Ok(Response::new(CampaignResponse { header: placed.header, leader: Some(leader) }))
    }

    async fn run_proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        let local = Local::of(&self.node, &request).await?;
        let ProclaimRequest { leader, value } = request.into_inner();
        let header = proclaim(&local, &leader, &value).await?;
        Ok(Response::new(ProclaimResponse { header }))
    }

    async fn run_leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        let local = Local::of(&self.node, &request).await?;
        let (header, kv) = leader(&local, &request.into_inner().name, true).await?;
        Ok(Response::new(LeaderResponse { header, kv: Some(kv) }))
    }

    /// Each leader, and each value it proclaims, as this member applies them.
    /// Values proclaimed between two looks may reach the observer as the last one only.
    async fn run_observe(&self, request: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        let local = Local::of(&self.node, &request).await?;
        // The first leader sent is as new as every write answered here.
        local.node.local_read_barrier().await?;
        let name = request.into_inner().name;
        let (out, responses) = mpsc::channel(16);
        tokio::spawn(async move {
            let mut applied = local.node.state.subscribe_applied();
            let mut last: Option<(Vec<u8>, i64)> = None;
            loop {
                match leader(&local, &name, false).await {
                    Ok((header, kv)) if last.as_ref() != Some(&(kv.key.clone(), kv.mod_revision)) => {
                        last = Some((kv.key.clone(), kv.mod_revision));
                        if out.send(Ok(LeaderResponse { header, kv: Some(kv) })).await.is_err() {
                            return;
                        }
                    }
                    Ok(_) => {}
                    Err(status) if status.message() == EtcdError::ElectionNoLeader.to_string() => {}
                    Err(status) => {
                        let _ = out.send(Err(as_etcd_answers(status))).await;
                        return;
                    }
                }
                tokio::select! {
                    changed = applied.changed() => if changed.is_err() { return },
                    () = out.closed() => return,
                }
            }
        });
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(responses)))
    }

    async fn run_resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        let local = Local::of(&self.node, &request).await?;
        let leader = request.into_inner().leader;
        let key = leader.as_ref().map(|leader| leader.key.clone()).unwrap_or_default();
        let delete =
            RequestOp { request: Some(Op::RequestDeleteRange(DeleteRangeRequest { key, ..Default::default() })) };
        // As etcd's: a key that no longer leads is not an error.
        let header = if_still_leader(&local, &leader, delete).await?.header;
        Ok(Response::new(ResignResponse { header }))
    }
}

#[tonic::async_trait]
impl Election for ElectionService {
    type ObserveStream = ObserveStream;

    async fn campaign(&self, request: Request<CampaignRequest>) -> Result<Response<CampaignResponse>, Status> {
        self.run_campaign(request).await.map_err(as_etcd_answers)
    }

    async fn proclaim(&self, request: Request<ProclaimRequest>) -> Result<Response<ProclaimResponse>, Status> {
        self.run_proclaim(request).await.map_err(as_etcd_answers)
    }

    async fn leader(&self, request: Request<LeaderRequest>) -> Result<Response<LeaderResponse>, Status> {
        self.run_leader(request).await.map_err(as_etcd_answers)
    }

    async fn observe(&self, request: Request<LeaderRequest>) -> Result<Response<ObserveStream>, Status> {
        self.run_observe(request).await.map_err(as_etcd_answers)
    }

    async fn resign(&self, request: Request<ResignRequest>) -> Result<Response<ResignResponse>, Status> {
        self.run_resign(request).await.map_err(as_etcd_answers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends_as_clientv3_computes_them() {
        assert_eq!(prefix_end(b"lock/"), b"lock0");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
        assert_eq!(holder_key(b"l/", 0x694d7a1b), b"l/694d7a1b");
    }
}
