//! The etcd Cluster service.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use cairn_proto::cairnpb::{membership_change, AddMember, MembershipChange, UpdateMember};
use cairn_proto::etcdserverpb::cluster_server::Cluster;
use cairn_proto::etcdserverpb::{
    Member as PbMember, MemberAddRequest, MemberAddResponse, MemberListRequest, MemberListResponse,
    MemberPromoteRequest, MemberPromoteResponse, MemberRemoveRequest, MemberRemoveResponse, MemberUpdateRequest,
    MemberUpdateResponse,
};
use tonic::{Request, Response, Status};

use super::node::Node;
use crate::cluster::member_id_at;

pub struct ClusterService {
    pub node: Arc<Node>,
}

impl ClusterService {
    async fn change(&self, change: membership_change::Change) -> Result<Vec<PbMember>, Status> {
        self.node.change_members(MembershipChange { change: Some(change) }).await?;
        Ok(self.node.member_list())
    }

    /// etcd's Cluster service answers with no revision in its headers.
    fn header(&self) -> Option<cairn_proto::etcdserverpb::ResponseHeader> {
        self.node.header(0)
    }
}

#[tonic::async_trait]
impl Cluster for ClusterService {
    async fn member_add(&self, request: Request<MemberAddRequest>) -> Result<Response<MemberAddResponse>, Status> {
        self.node.check_admin(&request).await?;
        let request = request.into_inner();
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |elapsed| elapsed.as_secs());
        // As etcd: a member added later gets an ID that also depends on the time.
        let id = member_id_at(&request.peer_ur_ls, &self.node.config.initial_cluster_token, Some(now));
        let add = AddMember { id, peer_urls: request.peer_ur_ls.clone(), is_learner: request.is_learner };
        let members = self.change(membership_change::Change::Add(add)).await?;
        let member = PbMember {
            id,
            name: String::new(),
            peer_ur_ls: request.peer_ur_ls,
            client_ur_ls: Vec::new(),
            is_learner: request.is_learner,
        };
        Ok(Response::new(MemberAddResponse { header: self.header(), member: Some(member), members }))
    }

    async fn member_remove(
        &self,
        request: Request<MemberRemoveRequest>,
    ) -> Result<Response<MemberRemoveResponse>, Status> {
        self.node.check_admin(&request).await?;
        let members = self.change(membership_change::Change::Remove(request.into_inner().id)).await?;
        Ok(Response::new(MemberRemoveResponse { header: self.header(), members }))
    }

    async fn member_update(
        &self,
        request: Request<MemberUpdateRequest>,
    ) -> Result<Response<MemberUpdateResponse>, Status> {
        self.node.check_admin(&request).await?;
        let request = request.into_inner();
        let update = UpdateMember { id: request.id, peer_urls: request.peer_ur_ls };
        let members = self.change(membership_change::Change::Update(update)).await?;
        Ok(Response::new(MemberUpdateResponse { header: self.header(), members }))
    }

    async fn member_list(&self, request: Request<MemberListRequest>) -> Result<Response<MemberListResponse>, Status> {
        if request.into_inner().linearizable {
            self.node.linearizable_barrier().await?;
        }
        Ok(Response::new(MemberListResponse { header: self.header(), members: self.node.member_list() }))
    }

    async fn member_promote(
        &self,
        request: Request<MemberPromoteRequest>,
    ) -> Result<Response<MemberPromoteResponse>, Status> {
        self.node.check_admin(&request).await?;
        let members = self.change(membership_change::Change::Promote(request.into_inner().id)).await?;
        Ok(Response::new(MemberPromoteResponse { header: self.header(), members }))
    }
}
