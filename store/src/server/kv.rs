//! The etcd KV service.

use std::sync::Arc;

use cairn_proto::cairnpb::{write_request, write_response, AuthInfo, WriteRequest};
use cairn_proto::etcdserverpb::kv_server::Kv;
use cairn_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse, ResponseHeader, TxnRequest, TxnResponse,
};
use prost::Message;
use tonic::{Request, Response, Status};

use super::node::Node;
use crate::apply::validate;
use crate::error::EtcdError;

pub struct KvService {
    pub node: Arc<Node>,
}

impl KvService {
    /// etcd refuses a request whose Raft entry would exceed `--max-request-bytes`.
    fn check_size(&self, request: &impl Message) -> Result<(), Status> {
        if request.encoded_len() as u64 > self.node.config.max_request_bytes {
            return Err(EtcdError::RequestTooLarge.into());
        }
        Ok(())
    }

    async fn write(&self, who: AuthInfo, request: write_request::Request) -> Result<write_response::Response, Status> {
        let request = WriteRequest { request: Some(request), auth_info: Some(who) };
        self.check_size(&request)?;
        self.node.write(request).await
    }

    /// Replaces the apply-time header with the full one.
    fn header(&self, header: &Option<ResponseHeader>) -> Option<ResponseHeader> {
        self.node.header(header.as_ref().map_or(0, |header| header.revision))
    }
}

fn unexpected() -> Status {
    EtcdError::Internal("unexpected response type".into()).into()
}

#[tonic::async_trait]
impl Kv for KvService {
    async fn range(&self, request: Request<RangeRequest>) -> Result<Response<RangeResponse>, Status> {
        // The rest of what a learner refuses is refused before the services.
        if !request.get_ref().serializable && self.node.is_learner() {
            return Err(EtcdError::NotSupportedForLearner.into());
        }
        validate::check_range(request.get_ref())?;
        if request.get_ref().serializable {
            self.node.local_read_barrier().await?;
        } else {
            self.node.linearizable_barrier().await?;
        }
        // After the barrier, as etcd's doSerialize: an auth change it waited for is seen.
        let who = self.node.client_identity(&request).await?;
        let request = request.into_inner();
        self.node.check_read(&who, &request.key, &request.range_end)?;
        let mut response = if request.range_end.is_empty() {
            // One key: cheaper to read here than to hand to another thread.
            self.node.state.range(&request)?
        } else {
            // A range may read many values: off the async workers, and a bounded
            // number at once, so that the write path keeps the CPU it needs.
            // The slot goes with the read: a client that gives up does not free it early.
            let slot = self.node.range_slots.clone().acquire_owned().await.map_err(|_| EtcdError::Stopped)?;
            let state = self.node.state.clone();
            let read = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                state.range(&request)
            })
            .await;
            read.map_err(|err| EtcdError::Internal(err.to_string()))??
        };
        self.node.check_still_current(&who)?;
        response.header = self.header(&response.header);
        Ok(Response::new(response))
    }

    async fn put(&self, request: Request<PutRequest>) -> Result<Response<PutResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let request = request.into_inner();
        validate::check_put(&request)?;
        let write_response::Response::Put(mut response) = self.write(who, write_request::Request::Put(request)).await?
        else {
            return Err(unexpected());
        };
        response.header = self.header(&response.header);
        Ok(Response::new(response))
    }

    async fn delete_range(
        &self,
        request: Request<DeleteRangeRequest>,
    ) -> Result<Response<DeleteRangeResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let request = request.into_inner();
        validate::check_delete(&request)?;
        let write_response::Response::DeleteRange(mut response) =
            self.write(who, write_request::Request::DeleteRange(request)).await?
        else {
            return Err(unexpected());
        };
        response.header = self.header(&response.header);
        Ok(Response::new(response))
    }

    async fn txn(&self, request: Request<TxnRequest>) -> Result<Response<TxnResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let request = request.into_inner();
        validate::check_txn(&request)?;
        let write_response::Response::Txn(mut response) = self.write(who, write_request::Request::Txn(request)).await?
        else {
            return Err(unexpected());
        };
        response.header = self.header(&response.header);
        Ok(Response::new(response))
    }

    async fn compact(&self, request: Request<CompactionRequest>) -> Result<Response<CompactionResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let request = request.into_inner();
        let (revision, physical) = (request.revision, request.physical);
        let write_response::Response::Compaction(mut response) =
            self.write(who, write_request::Request::Compaction(request)).await?
        else {
            return Err(unexpected());
        };
        if physical {
            self.node.state.physically_compacted(revision).await.map_err(Status::from)?;
        }
        response.header = self.header(&response.header);
        Ok(Response::new(response))
    }
}
