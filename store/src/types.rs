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

// Log payloads travel as protobuf bytes (a `WriteBatch`), so the log format is
// the wire format. Encoded and decoded on every append, send and apply: the
// requests are not cloned into a `WriteBatch` first, and the bytes are read
// whole, not one by one as serde reads a `Vec<u8>`.
impl Serialize for Proposal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&encode_batch(&self.0))
    }
}

/// `WriteBatch { requests }`'s encoding: each request as field 1.
fn encode_batch(requests: &[WriteRequest]) -> Vec<u8> {
    let len = requests.iter().map(|request| prost::encoding::message::encoded_len(1, request)).sum();
    let mut encoded = Vec::with_capacity(len);
    for request in requests {
        prost::encoding::message::encode(1, request, &mut encoded);
    }
    encoded
}

impl<'de> Deserialize<'de> for Proposal {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(ProposalVisitor)
    }
}

struct ProposalVisitor;

impl ProposalVisitor {
    fn decode<E: serde::de::Error>(bytes: &[u8]) -> Result<Proposal, E> {
        WriteBatch::decode(bytes).map(|batch| Proposal(batch.requests)).map_err(E::custom)
    }
}

impl<'de> serde::de::Visitor<'de> for ProposalVisitor {
    type Value = Proposal;

    fn expecting(&self, formatter: &mut fmt::Formatter) -> fmt::Result {
        formatter.write_str("the bytes of a protobuf WriteBatch")
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Proposal, E> {
        Self::decode(bytes)
    }

    /// Formats without a bytes type (JSON) give them as a sequence.
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Proposal, A::Error> {
        let mut bytes = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(byte) = seq.next_element::<u8>()? {
            bytes.push(byte);
        }
        Self::decode(&bytes)
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

#[cfg(test)]
mod tests {
    use cairn_proto::cairnpb::write_request::Request;
    use cairn_proto::etcdserverpb::{DeleteRangeRequest, PutRequest};

    use super::*;

    fn proposal() -> Proposal {
        let put = PutRequest { key: b"k".to_vec(), value: vec![7; 300], lease: 5, ..Default::default() };
        let delete = DeleteRangeRequest { key: b"a".to_vec(), range_end: b"b".to_vec(), ..Default::default() };
        Proposal(vec![
            WriteRequest { request: Some(Request::Put(put)), auth_info: None },
            WriteRequest { request: Some(Request::DeleteRange(delete)), auth_info: None },
            WriteRequest::default(),
        ])
    }

    #[test]
    fn a_proposal_encodes_as_a_write_batch_in_bincode_bytes() {
        let proposal = proposal();
        let batch = WriteBatch { requests: proposal.0.clone() }.encode_to_vec();
        assert_eq!(encode_batch(&proposal.0), batch);
        // bincode's bytes: a u64 length, then the bytes, as a Vec<u8> of them was.
        let encoded = encode(&proposal).expect("encodes");
        assert_eq!(encoded, encode(&batch).expect("encodes"));
        assert_eq!(decode::<Proposal>(&encoded).expect("decodes"), proposal);
    }

    #[test]
    fn a_proposal_reads_back_from_json_and_refuses_what_is_not_a_batch() {
        let proposal = proposal();
        let json = serde_json::to_string(&proposal).expect("encodes");
        assert_eq!(serde_json::from_str::<Proposal>(&json).expect("decodes"), proposal);
        let garbage = encode(&vec![0xffu8; 3]).expect("encodes");
        assert!(decode::<Proposal>(&garbage).is_err());
    }
}
