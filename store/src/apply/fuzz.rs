//! What the fuzz targets (`store/fuzz`) check, kept here so that the unit
//! tests run the same checks on mutated inputs in every CI run.
//!
//! An input is a sequence of requests as a client or a peer sends them:
//! `tag: u8, who: u8, length: u16 (LE), protobuf bytes`. Each is decoded,
//! checked as the gRPC service checks it, and applied to an in-memory member.
//! Nothing may panic, and a request that is refused writes nothing. A second
//! member applies the same without reading previous values for events (as a
//! member without such watchers does), and must write and answer the same.

use cairn_proto::cairnpb::{write_request, write_response, AuthInfo, AuthRequest, WriteRequest};
use cairn_proto::etcdserverpb::{
    CompactionRequest, DeleteRangeRequest, LeaseGrantRequest, LeaseRevokeRequest, PutRequest, RangeRequest, TxnRequest,
};
use prost::Message;

use cairn_proto::mvccpb::event::EventType;
use cairn_proto::mvccpb::Event;

use super::memory::MemoryStore;
use super::validate;

/// What a request decodes as: the client RPCs, an auth change, and a whole
/// log entry as a peer forwards it (`RaftPeer.Propose`) or the log holds it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    Range = 0,
    Put = 1,
    DeleteRange = 2,
    Txn = 3,
    Compaction = 4,
    LeaseGrant = 5,
    LeaseRevoke = 6,
    Auth = 7,
    Entry = 8,
}

impl Tag {
    const ALL: [Tag; 9] = [
        Tag::Range,
        Tag::Put,
        Tag::DeleteRange,
        Tag::Txn,
        Tag::Compaction,
        Tag::LeaseGrant,
        Tag::LeaseRevoke,
        Tag::Auth,
        Tag::Entry,
    ];
}

/// One request of an input, encoded.
pub fn record(tag: Tag, who: u8, request: &impl Message) -> Vec<u8> {
    let bytes = request.encode_to_vec();
    let length = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    let mut out = vec![tag as u8, who];
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(&bytes[..usize::from(length)]);
    out
}

/// Runs one input; panics on a finding. Returns how many writes were applied
/// and how many of those were refused at apply.
pub fn write_requests(mut data: &[u8]) -> (usize, usize) {
    let (mut applied, mut refused) = (0, 0);
    let mut member = MemoryStore::default();
    let mut lean = MemoryStore { previous_in_events: false, ..MemoryStore::default() };
    let mut next_lease = 1000;
    while let [tag, who, low, high, rest @ ..] = data {
        let length = usize::from(u16::from_le_bytes([*low, *high])).min(rest.len());
        let (payload, tail) = rest.split_at(length);
        data = tail;
        let Some(tag) = Tag::ALL.get(usize::from(*tag)) else { continue };
        let mut who = identity(&member, *who);
        if *tag == Tag::Range {
            range(&member, payload);
            continue;
        }
        // Undecodable bytes are refused by the gRPC codec, before any handler.
        let mut request = if *tag == Tag::Entry {
            // A whole entry carries the identity its member gave it.
            let Some(WriteRequest { request: Some(request), auth_info }) = WriteRequest::decode(payload).ok() else {
                continue;
            };
            who = auth_info;
            request
        } else {
            let Some(request) = decode(*tag, payload) else { continue };
            request
        };
        if let write_request::Request::LeaseGrant(grant) = &mut request {
            if grant.id == 0 {
                next_lease += 1;
                grant.id = next_lease;
            }
        }
        // Refused by the service: never proposed.
        if *tag != Tag::Entry && checked(&request).is_err() {
            continue;
        }
        applied += 1;
        refused += usize::from(!apply(&mut member, &mut lean, request, who));
    }
    (applied, refused)
}

fn identity(member: &MemoryStore, who: u8) -> Option<AuthInfo> {
    let revision = member.auth.revision();
    match who % 5 {
        0 => None,
        1 => Some(AuthInfo::default()),
        2 => Some(AuthInfo { username: "root".into(), revision }),
        3 => Some(AuthInfo { username: "alice".into(), revision }),
        _ => Some(AuthInfo { username: "root".into(), revision: revision.saturating_sub(1) }),
    }
}

fn decode(tag: Tag, payload: &[u8]) -> Option<write_request::Request> {
    use write_request::Request as R;
    let request = match tag {
        Tag::Range | Tag::Entry => return None,
        Tag::Put => R::Put(PutRequest::decode(payload).ok()?),
        Tag::DeleteRange => R::DeleteRange(DeleteRangeRequest::decode(payload).ok()?),
        Tag::Txn => R::Txn(TxnRequest::decode(payload).ok()?),
        Tag::Compaction => R::Compaction(CompactionRequest::decode(payload).ok()?),
        Tag::LeaseGrant => R::LeaseGrant(LeaseGrantRequest::decode(payload).ok()?),
        Tag::LeaseRevoke => R::LeaseRevoke(LeaseRevokeRequest::decode(payload).ok()?),
        Tag::Auth => R::Auth(AuthRequest::decode(payload).ok()?),
    };
    Some(request)
}

/// The checks the KV service makes before it proposes.
fn checked(request: &write_request::Request) -> Result<(), crate::error::EtcdError> {
    match request {
        write_request::Request::Put(put) => validate::check_put(put),
        write_request::Request::DeleteRange(delete) => validate::check_delete(delete),
        write_request::Request::Txn(txn) => validate::check_txn(txn),
        _ => Ok(()),
    }
}

fn range(member: &MemoryStore, payload: &[u8]) {
    let Ok(request) = RangeRequest::decode(payload) else { return };
    if validate::check_range(&request).is_err() {
        return;
    }
    if let Ok(response) = member.range(&request) {
        if request.limit > 0 {
            assert!(response.kvs.len() as i64 <= request.limit, "a range returned more than its limit");
        }
        assert!(response.count >= response.kvs.len() as i64, "a range counted fewer keys than it returned");
    }
}

/// Applies a write and checks what it did, and that `lean` (the same write
/// applied without previous values for events) did the same; false when it
/// was refused.
fn apply(
    member: &mut MemoryStore,
    lean: &mut MemoryStore,
    request: write_request::Request,
    who: Option<AuthInfo>,
) -> bool {
    let before = (member.mvcc.clone(), member.values.clone(), member.leases.clone(), member.auth.clone());
    let (response, applied) = match member.apply_entry(request.clone(), who.clone()) {
        Ok(outcome) => outcome,
        Err(fault) => panic!("a storage fault from an in-memory engine: {fault} for {request:?}"),
    };
    let Ok((lean_response, lean_applied)) = lean.apply_entry(request.clone(), who) else {
        panic!("a storage fault from an in-memory engine without previous values")
    };
    assert!(lean.leases == member.leases, "the lease tables parted without previous values: {request:?}");
    assert_eq!(lean_response, response, "answered otherwise without previous values: {request:?}");
    assert_eq!(lean_applied.ops, applied.ops, "wrote otherwise without previous values: {request:?}");
    let without_put_prev = |events: &[Event]| -> Vec<Event> {
        let strip = |mut event: Event| {
            if event.r#type == EventType::Put as i32 {
                event.prev_kv = None;
            }
            event
        };
        events.iter().cloned().map(strip).collect()
    };
    assert_eq!(without_put_prev(&lean_applied.events), without_put_prev(&applied.events), "{request:?}");
    // Without the previous value, a put takes its key's creation and version from the index.
    for event in applied.events.iter().filter(|event| event.r#type == EventType::Put as i32) {
        let Some(kv) = &event.kv else { continue };
        let expected =
            event.prev_kv.as_ref().map_or((kv.mod_revision, 1), |prev| (prev.create_revision, prev.version + 1));
        assert_eq!((kv.create_revision, kv.version), expected, "{request:?}");
    }
    let revision = member.mvcc.current_rev;
    if let write_response::Response::Error(error) = response {
        assert!(applied.ops.is_empty(), "refused ({}) but wrote {:?}", error.message, applied.ops);
        assert!(applied.events.is_empty(), "refused ({}) but changed", error.message);
        let after = (member.mvcc.clone(), member.values.clone(), member.leases.clone(), member.auth.clone());
        assert!(before == after, "refused ({}) but the state changed: {request:?}", error.message);
        return false;
    }
    assert!(revision >= before.0.current_rev, "the revision went back");
    assert!(member.mvcc.compact_rev <= revision, "compacted past the current revision");
    if member.mvcc.compact_rev != before.0.compact_rev {
        // At once on `member`; `lean` never walks its index, as a member whose
        // compactor has not got to it yet, and must answer alike.
        member.walk_compacted_index();
    }
    for event in &applied.events {
        let modified = event.kv.as_ref().map_or(0, |kv| kv.mod_revision);
        assert_eq!(modified, revision, "an event at another revision than the write's");
    }
    true
}

/// Valid inputs for a corpus to start from: auth with root and alice, a
/// lease with keys, transactions, a compaction, and ranges.
pub fn seeds() -> Vec<Vec<u8>> {
    use cairn_proto::authpb::{permission::Type, Permission, UserAddOptions};
    use cairn_proto::cairnpb::auth_request::Request as A;
    use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
    use cairn_proto::etcdserverpb::request_op::Request as Op;
    use cairn_proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest, Compare, RequestOp,
    };

    let put = |key: &str, lease: i64| PutRequest { key: key.into(), value: b"v".to_vec(), lease, ..Default::default() };
    let auth = |request: A| AuthRequest { request: Some(request) };
    let no_password = Some(UserAddOptions { no_password: true });
    let op = |request: Op| RequestOp { request: Some(request) };
    let txn = TxnRequest {
        compare: vec![Compare {
            result: CompareResult::Greater as i32,
            target: CompareTarget::Mod as i32,
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            target_union: Some(TargetUnion::ModRevision(1)),
        }],
        success: vec![
            op(Op::RequestPut(put("t", 0))),
            op(Op::RequestTxn(TxnRequest {
                success: vec![op(Op::RequestDeleteRange(DeleteRangeRequest {
                    key: b"ab".to_vec(),
                    range_end: b"ac".to_vec(),
                    prev_kv: true,
                }))],
                ..Default::default()
            })),
        ],
        failure: vec![op(Op::RequestRange(RangeRequest { key: b"a".to_vec(), ..Default::default() }))],
    };
    let kv = [
        record(Tag::LeaseGrant, 0, &LeaseGrantRequest { ttl: 60, id: 7 }),
        record(Tag::Put, 0, &put("a", 7)),
        record(Tag::Put, 0, &put("ab", 0)),
        record(Tag::Txn, 0, &txn),
        record(Tag::Range, 0, &RangeRequest { key: b"a".to_vec(), range_end: vec![0], limit: 1, ..Default::default() }),
        record(Tag::Compaction, 0, &CompactionRequest { revision: 3, physical: false }),
        record(Tag::LeaseRevoke, 0, &LeaseRevokeRequest { id: 7 }),
        record(
            Tag::Entry,
            0,
            &WriteRequest { request: Some(write_request::Request::Put(put("e", 0))), auth_info: None },
        ),
    ];
    let access = [
        record(
            Tag::Auth,
            1,
            &auth(A::UserAdd(AuthUserAddRequest { name: "root".into(), options: no_password, ..Default::default() })),
        ),
        record(
            Tag::Auth,
            1,
            &auth(A::UserGrantRole(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() })),
        ),
        record(
            Tag::Auth,
            1,
            &auth(A::UserAdd(AuthUserAddRequest { name: "alice".into(), options: no_password, ..Default::default() })),
        ),
        record(Tag::Auth, 1, &auth(A::RoleAdd(AuthRoleAddRequest { name: "w".into() }))),
        record(
            Tag::Auth,
            1,
            &auth(A::RoleGrantPermission(AuthRoleGrantPermissionRequest {
                name: "w".into(),
                perm: Some(Permission {
                    perm_type: Type::Readwrite as i32,
                    key: b"a".to_vec(),
                    range_end: b"b".to_vec(),
                }),
            })),
        ),
        record(
            Tag::Auth,
            1,
            &auth(A::UserGrantRole(AuthUserGrantRoleRequest { user: "alice".into(), role: "w".into() })),
        ),
        record(Tag::Auth, 1, &auth(A::Enable(AuthEnableRequest {}))),
        record(Tag::Put, 3, &put("a", 0)),
        record(Tag::Put, 3, &put("z", 0)),
        record(Tag::Compaction, 2, &CompactionRequest { revision: 2, physical: false }),
    ];
    vec![kv.concat(), access.concat(), [access.concat(), kv.concat()].concat()]
}

#[cfg(test)]
mod tests {
    use cairn_testkit::mutate::Mutator;

    use super::*;

    #[test]
    fn seeds_apply_and_the_refused_write_nothing() {
        for seed in seeds() {
            let (applied, _) = write_requests(&seed);
            assert!(applied >= 7, "a seed applied only {applied} writes");
        }
    }

    #[test]
    fn mutated_inputs_neither_panic_nor_write_when_refused() {
        let (mut applied, mut refused) = (0, 0);
        for input in Mutator::new(0x9e37_79b9_7f4a_7c15).inputs(&seeds(), 3000) {
            let (a, r) = write_requests(&input);
            applied += a;
            refused += r;
        }
        // Both outcomes must be common for the checks on each to mean something.
        assert!(refused >= 1000 && applied - refused >= 1000, "{applied} applied, {refused} of them refused");
    }

    #[test]
    fn a_refusal_is_seen_and_checked() {
        // A put on a lease that does not exist is refused at apply.
        let missing_lease = PutRequest { key: b"k".to_vec(), lease: 99, ..Default::default() };
        let (mut member, mut lean) = (MemoryStore::default(), MemoryStore::default());
        assert!(!apply(&mut member, &mut lean, write_request::Request::Put(missing_lease), None));
        assert_eq!(member.mvcc.current_rev, 1);
        let put = PutRequest { key: b"k".to_vec(), ..Default::default() };
        assert!(apply(&mut member, &mut lean, write_request::Request::Put(put), None));
        assert_eq!(member.mvcc.current_rev, 2);
    }
}
