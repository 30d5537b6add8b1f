//! Mutated protobuf bytes on the KV and Lease RPCs, sent as they are to etcd
//! 3.5.1 and to Cairn: the same gRPC code for each, and the same revisions
//! after, so a request refused by both wrote nothing on either.

use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request as Op;
use cairn_proto::etcdserverpb::{
    CompactionRequest, CompactionResponse, Compare, DeleteRangeRequest, DeleteRangeResponse, LeaseGrantRequest,
    LeaseGrantResponse, LeaseRevokeRequest, LeaseRevokeResponse, PutRequest, PutResponse, RangeRequest, RangeResponse,
    RequestOp, ResponseHeader, TxnRequest, TxnResponse,
};
use cairn_testkit::assert_same_as_etcd;
use cairn_testkit::mutate::Mutator;
use prost::bytes::{Buf, BufMut};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;

/// Bytes in, bytes out: the request goes on the wire as the test made it.
#[derive(Clone, Copy, Default)]
struct Raw;

impl Codec for Raw {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl Encoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for Raw {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        let mut out = vec![0; src.remaining()];
        src.copy_to_slice(&mut out);
        Ok(Some(out))
    }
}

/// The RPCs, their valid requests, and how to read the header of the answer.
struct Rpc {
    path: &'static str,
    request: Vec<u8>,
    /// Whether prost decodes a request, as tonic will.
    decodes: fn(&[u8]) -> Result<(), prost::DecodeError>,
    header: fn(&[u8]) -> Option<ResponseHeader>,
}

fn decodes<M: Message + Default>(bytes: &[u8]) -> Result<(), prost::DecodeError> {
    M::decode(bytes).map(drop)
}

fn header_of<M: Message + Default>(bytes: &[u8], header: fn(M) -> Option<ResponseHeader>) -> Option<ResponseHeader> {
    M::decode(bytes).ok().and_then(header)
}

fn rpcs() -> Vec<Rpc> {
    let put = |key: &str, lease: i64| PutRequest { key: key.into(), value: b"v".to_vec(), lease, ..Default::default() };
    let op = |request: Op| RequestOp { request: Some(request) };
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Version as i32,
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            target_union: Some(TargetUnion::Version(0)),
        }],
        success: vec![
            op(Op::RequestPut(put("t", 0))),
            op(Op::RequestTxn(TxnRequest {
                success: vec![op(Op::RequestRange(RangeRequest { key: b"a".to_vec(), ..Default::default() }))],
                ..Default::default()
            })),
        ],
        failure: vec![op(Op::RequestDeleteRange(DeleteRangeRequest { key: b"t".to_vec(), ..Default::default() }))],
    };
    let range = RangeRequest { key: b"a".to_vec(), range_end: vec![0], limit: 2, sort_order: 1, ..Default::default() };
    vec![
        Rpc {
            path: "/etcdserverpb.Lease/LeaseGrant",
            request: LeaseGrantRequest { ttl: 60, id: 7 }.encode_to_vec(),
            decodes: decodes::<LeaseGrantRequest>,
            header: |b| header_of(b, |r: LeaseGrantResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.KV/Put",
            request: put("a", 7).encode_to_vec(),
            decodes: decodes::<PutRequest>,
            header: |b| header_of(b, |r: PutResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.KV/Put",
            request: PutRequest { prev_kv: true, ..put("ab", 0) }.encode_to_vec(),
            decodes: decodes::<PutRequest>,
            header: |b| header_of(b, |r: PutResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.KV/Txn",
            request: txn.encode_to_vec(),
            decodes: decodes::<TxnRequest>,
            header: |b| header_of(b, |r: TxnResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.KV/Range",
            request: range.encode_to_vec(),
            decodes: decodes::<RangeRequest>,
            header: |b| header_of(b, |r: RangeResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.KV/DeleteRange",
            request: DeleteRangeRequest { key: b"ab".to_vec(), range_end: b"ac".to_vec(), prev_kv: true }
                .encode_to_vec(),
            decodes: decodes::<DeleteRangeRequest>,
            header: |b| header_of(b, |r: DeleteRangeResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.KV/Compact",
            request: CompactionRequest { revision: 3, physical: false }.encode_to_vec(),
            decodes: decodes::<CompactionRequest>,
            header: |b| header_of(b, |r: CompactionResponse| r.header),
        },
        Rpc {
            path: "/etcdserverpb.Lease/LeaseRevoke",
            request: LeaseRevokeRequest { id: 7 }.encode_to_vec(),
            decodes: decodes::<LeaseRevokeRequest>,
            header: |b| header_of(b, |r: LeaseRevokeResponse| r.header),
        },
    ]
}

/// One line per request: its RPC, the gRPC code and, when it succeeded, the revision.
async fn send_all(endpoint: String, requests: Vec<(usize, Vec<u8>)>) -> Vec<String> {
    let rpcs = rpcs();
    let channel = match tonic::transport::Endpoint::from_shared(endpoint.clone()) {
        Ok(endpoint) => endpoint.connect().await,
        Err(err) => panic!("{endpoint}: {err}"),
    };
    let mut grpc = tonic::client::Grpc::new(channel.expect("connect"));
    let mut out = Vec::new();
    for (i, (rpc, bytes)) in requests.into_iter().enumerate() {
        let rpc = &rpcs[rpc];
        grpc.ready().await.expect("the channel is ready");
        let path = http::uri::PathAndQuery::from_static(rpc.path);
        let outcome =
            tokio::time::timeout(std::time::Duration::from_secs(10), grpc.unary(tonic::Request::new(bytes), path, Raw))
                .await
                .expect("an answer within 10 s");
        out.push(match outcome {
            Ok(response) => {
                let revision = (rpc.header)(response.get_ref()).map_or(-1, |h| h.revision);
                format!("{i} {}: OK rev={revision}", rpc.path)
            }
            // Go's and prost's words for a broken message differ; the code does not.
            Err(status) if status.code() == tonic::Code::Internal => format!("{i} {}: Internal", rpc.path),
            Err(status) => format!("{i} {}: {:?} {}", rpc.path, status.code(), status.message()),
        });
    }
    out
}

#[tokio::test]
async fn t165_mutated_protobuf_requests_get_etcds_codes_and_write_nothing_when_refused() {
    let rpcs = rpcs();
    let mut mutator = Mutator::new(0xc0ffee);
    let requests: Vec<(usize, Vec<u8>)> = (0..2000)
        .map(|round| {
            let rpc = round % rpcs.len();
            let valid = rpcs[rpc].request.clone();
            // A quarter are sent whole, so that keys, leases and revisions keep moving.
            (rpc, if mutator.below(4) == 0 { valid } else { mutator.mutate(valid) })
        })
        // etcd's gogoproto decoder skips a malformed group in an unknown field
        // (a field number 0 in it, or an end tag of another field) that prost
        // refuses: etcd may take such a request where Cairn answers Internal.
        // Those are left out; every other malformed message is sent.
        .filter(|(rpc, bytes)| match (rpcs[*rpc].decodes)(bytes) {
            Err(err) => {
                !["invalid tag value: 0", "unexpected end group tag"].iter().any(|e| err.to_string().contains(e))
            }
            Ok(()) => true,
        })
        .collect();
    assert!(requests.len() >= 1700, "{} of 2000 requests left out", 2000 - requests.len());
    let lines = assert_same_as_etcd(&[], move |endpoint| send_all(endpoint, requests.clone())).await;
    let outcomes: std::collections::BTreeMap<&str, usize> = lines
        .iter()
        .filter_map(|line| line.split(": ").nth(1)?.split(' ').next())
        .fold(Default::default(), |mut m, o| {
            *m.entry(o).or_default() += 1;
            m
        });
    // Accepted and refused requests, and refusals of several kinds: the mutations reach past the decoder.
    let ok = outcomes.get("OK").copied().unwrap_or(0);
    assert!(ok >= 300 && lines.len() - ok >= 1000 && outcomes.len() >= 5, "{outcomes:?}");
}
