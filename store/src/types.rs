//! The domain types that the replicated state, the cluster and Raft share:
//! members, the payload of a log entry and its responses, log positions, and
//! the encoding of Raft's own records. A module of its own, so that `state`
//! does not depend on `raft`, which depends on `state`.

use std::fmt;

use cairn_proto::cairnpb::{WriteBatch, WriteRequest, WriteResponse};
use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub type NodeId = u64;

/// A member as Raft knows it. Client URLs are published separately, through the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub name: String,
    pub peer_urls: Vec<String>,
}

impl fmt::Display for Member {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// One log entry's client writes: many requests share one append and one fsync.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proposal(pub Vec<WriteRequest>);

impl fmt::Display for Proposal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "proposal of {} requests", self.0.len())
    }
}

/// The responses to a [`Proposal`], in order.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied(pub Vec<WriteResponse>);

// Log payloads travel as protobuf bytes, so the log format is the wire format.
impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let batch = WriteBatch { requests: self.0.clone() };
        serializer.serialize_bytes(&batch.encode_to_vec())
    }
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let bytes: Vec<u8> = serde::de::Deserialize::deserialize(deserializer)?;
        let batch = WriteBatch::decode(bytes.as_slice()).map_err(serde::de::Error::custom)?;
        Ok(Proposal(batch.requests))
    }
}

// Responses never leave the member that applied them; serde is only a bound of openraft's.
impl Serialize for Applied {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let encoded: Vec<Vec<u8>> = self.0.iter().map(Message::encode_to_vec).collect();
        encoded.serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Applied {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let encoded: Vec<Vec<u8>> = Deserialize::deserialize(deserializer)?;
        encoded
            .iter()
            .map(|bytes| WriteResponse::decode(bytes.as_slice()).map_err(serde::de::Error::custom))
            .collect::<Result<_, _>>()
            .map(Applied)
    }
}

/// The leader id of log positions: openraft 0.9's `leader_id_adv`, whose layout the log on disk has.
pub type CommittedLeaderId = openraft::vote::leader_id_adv::CommittedLeaderId<u64, NodeId>;
pub type LogId = openraft::LogId<CommittedLeaderId>;
pub type StoredMembership = openraft::StoredMembership<CommittedLeaderId, NodeId, Member>;

/// bincode, the encoding of Raft's own records on disk and on the peer wire.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, bincode::Error> {
    bincode::serialize(value)
}

pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, bincode::Error> {
    bincode::deserialize(bytes)
}
