//! The openraft type configuration over cairn's domain types.

pub use crate::types::{decode, encode, Applied, LogId, Member, NodeId, Proposal, StoredMembership};

openraft::declare_raft_types!(
    pub TypeConfig:
        D = Proposal,
        R = Applied,
        NodeId = NodeId,
        Node = Member,
);

pub type Raft = openraft::Raft<TypeConfig, super::state_machine::StateMachine>;
pub type Entry = <TypeConfig as openraft::RaftTypeConfig>::Entry;
pub type Vote = openraft::type_config::alias::VoteOf<TypeConfig>;
pub type SnapshotMeta = openraft::type_config::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::type_config::alias::SnapshotOf<TypeConfig, tokio::fs::File>;
