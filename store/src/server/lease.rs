//! The etcd Lease service.

use std::sync::Arc;

use cairn_proto::cairnpb::{write_request, write_response, WriteRequest};
use cairn_proto::etcdserverpb::lease_server::Lease;
use cairn_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseGrantResponse, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseLeasesResponse, LeaseRevokeRequest, LeaseRevokeResponse, LeaseStatus, LeaseTimeToLiveRequest,
    LeaseTimeToLiveResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::node::Node;
use crate::error::EtcdError;

/// Keepalive responses queued for one stream.
const KEEPALIVE_DEPTH: usize = 64;

pub struct LeaseService {
    pub node: Arc<Node>,
}

fn unexpected() -> Status {
    EtcdError::Internal("unexpected response type".into()).into()
}

#[tonic::async_trait]
impl Lease for LeaseService {
    async fn lease_grant(&self, request: Request<LeaseGrantRequest>) -> Result<Response<LeaseGrantResponse>, Status> {
        // etcd checks no permission to grant, but a bad token is refused all the same.
        let who = self.node.client_identity(&request).await?;
        let mut request = request.into_inner();
        if request.id == 0 {
            request.id = self.node.next_lease_id();
        }
        let write = WriteRequest { request: Some(write_request::Request::LeaseGrant(request)), auth_info: Some(who) };
        let write_response::Response::LeaseGrant(mut response) = self.node.write(write).await? else {
            return Err(unexpected());
        };
        response.header = self.node.header(self.node.state.current_revision());
        Ok(Response::new(response))
    }

    async fn lease_revoke(
        &self,
        request: Request<LeaseRevokeRequest>,
    ) -> Result<Response<LeaseRevokeResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let revoke = write_request::Request::LeaseRevoke(request.into_inner());
        let write = WriteRequest { request: Some(revoke), auth_info: Some(who) };
        let write_response::Response::LeaseRevoke(mut response) = self.node.write(write).await? else {
            return Err(unexpected());
        };
        response.header = self.node.header(response.header.map_or(0, |header| header.revision));
        Ok(Response::new(response))
    }

    type LeaseKeepAliveStream = ReceiverStream<Result<LeaseKeepAliveResponse, Status>>;

    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let mut incoming = request.into_inner();
        let (out, responses) = mpsc::channel(KEEPALIVE_DEPTH);
        let node = self.node.clone();
        tokio::spawn(async move {
            while let Ok(Some(LeaseKeepAliveRequest { id })) = incoming.message().await {
                let response = node.lease_keep_alive(id).await.map(|ttl| LeaseKeepAliveResponse {
                    header: node.header(node.state.current_revision()),
                    id,
                    ttl,
                });
                let failed = response.is_err();
                if out.send(response).await.is_err() || failed {
                    break;
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(responses)))
    }

    async fn lease_time_to_live(
        &self,
        request: Request<LeaseTimeToLiveRequest>,
    ) -> Result<Response<LeaseTimeToLiveResponse>, Status> {
        let who = self.node.client_identity(&request).await?;
        let request = request.into_inner();
        // As etcd 3.5.13 and later: the keys a lease holds are only told to who may read them.
        let may_read = |keys: &[Vec<u8>]| keys.iter().try_for_each(|key| self.node.check_read(&who, key, &[]));
        if request.keys {
            if let Some(lease) = self.node.state.lease(request.id) {
                may_read(&lease.keys.iter().cloned().collect::<Vec<_>>())?;
            }
        }
        let mut response = self.node.lease_time_to_live(request).await?;
        // The leader's list, which may hold keys attached since this member's check.
        may_read(&response.keys)?;
        self.node.check_still_current(&who)?;
        response.header = self.node.header(self.node.state.current_revision());
        Ok(Response::new(response))
    }

    /// Linearizable, so that a lease granted through any member, before a
    /// leader change or after, is listed (etcd lists this member's leases).
    async fn lease_leases(&self, _: Request<LeaseLeasesRequest>) -> Result<Response<LeaseLeasesResponse>, Status> {
        self.node.linearizable_barrier().await?;
        let leases = self.node.state.lease_ttls().into_iter().map(|(id, _)| LeaseStatus { id }).collect();
        Ok(Response::new(LeaseLeasesResponse { header: self.node.header(self.node.state.current_revision()), leases }))
    }
}
