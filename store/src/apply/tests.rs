//! The apply path against an in-memory value map: no disk, no sockets.

use cairn_proto::cairnpb::{write_request, write_response, AuthInfo, WriteRequest};
use cairn_proto::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use cairn_proto::etcdserverpb::request_op::Request;
use cairn_proto::etcdserverpb::response_op::Response;
use cairn_proto::etcdserverpb::{
    CompactionRequest, Compare, DeleteRangeRequest, DeleteRangeResponse, PutRequest, RangeRequest, RequestOp,
    TxnRequest,
};
use cairn_proto::mvccpb::KeyValue;

use super::memory::MemoryStore;
use super::Applier;
use crate::engine::{schema, WriteOp};
use crate::error::{EtcdError, StoreError};
use crate::mvcc::Revision;

type Store = MemoryStore;

/// What the tests ask of the store, with a storage fault as a failed test.
trait Helpers {
    fn new() -> Self;
    fn apply(&mut self, request: write_request::Request) -> write_response::Response;
    fn apply_as(&mut self, request: write_request::Request, who: Option<AuthInfo>) -> write_response::Response;
    fn put(&mut self, key: &str, value: &str) -> i64;
    fn delete(&mut self, key: &str, end: &str) -> (i64, i64);
    fn get(&self, key: &str, revision: i64) -> Option<KeyValue>;
}

impl Helpers for MemoryStore {
    fn new() -> Self {
        MemoryStore::default()
    }

    fn apply(&mut self, request: write_request::Request) -> write_response::Response {
        self.apply_as(request, None)
    }

    fn apply_as(&mut self, request: write_request::Request, who: Option<AuthInfo>) -> write_response::Response {
        self.apply_entry(request, who).expect("no storage fault").0
    }

    fn put(&mut self, key: &str, value: &str) -> i64 {
        let req = PutRequest { key: key.into(), value: value.into(), ..Default::default() };
        match self.apply(write_request::Request::Put(req)) {
            write_response::Response::Put(resp) => resp.header.expect("header").revision,
            other => panic!("unexpected {other:?}"),
        }
    }

    fn delete(&mut self, key: &str, end: &str) -> (i64, i64) {
        let req = DeleteRangeRequest { key: key.into(), range_end: end.into(), prev_kv: false };
        match self.apply(write_request::Request::DeleteRange(req)) {
            write_response::Response::DeleteRange(resp) => (resp.deleted, resp.header.expect("header").revision),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn get(&self, key: &str, revision: i64) -> Option<KeyValue> {
        let req = RangeRequest { key: key.into(), revision, ..Default::default() };
        self.range(&req).expect("range").kvs.pop()
    }
}

fn error_of(response: write_response::Response) -> String {
    match response {
        write_response::Response::Error(err) => err.message,
        other => panic!("expected an error, got {other:?}"),
    }
}

#[test]
fn revisions_start_at_one_and_rise_by_one_per_write() {
    let mut store = Store::new();
    assert_eq!(store.mvcc.current_rev, 1);
    assert_eq!(store.put("a", "1"), 2);
    assert_eq!(store.put("a", "2"), 3);
    let kv = store.get("a", 0).expect("present");
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 3, 2));
    assert_eq!(store.get("a", 2).expect("old").value, b"1");
}

#[test]
fn delete_writes_a_tombstone_and_missing_delete_keeps_the_revision() {
    let mut store = Store::new();
    store.put("a", "1");
    assert_eq!(store.delete("a", ""), (1, 3));
    assert_eq!(store.get("a", 0), None);
    assert_eq!(store.delete("a", ""), (0, 3), "nothing deleted, no new revision");
    assert_eq!(store.put("a", "again"), 4);
    let kv = store.get("a", 0).expect("recreated");
    assert_eq!((kv.create_revision, kv.version), (4, 1));
}

#[test]
fn txn_changes_share_one_revision_with_sub_revisions() {
    let mut store = Store::new();
    store.put("x", "0");
    let put = |key: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })),
    };
    let compare = Compare {
        result: CompareResult::Equal as i32,
        target: CompareTarget::Value as i32,
        key: b"x".to_vec(),
        target_union: Some(TargetUnion::Value(b"0".to_vec())),
        range_end: vec![],
    };
    let range_x =
        RequestOp { request: Some(Request::RequestRange(RangeRequest { key: b"a".to_vec(), ..Default::default() })) };
    let txn =
        TxnRequest { compare: vec![compare.clone()], success: vec![put("a"), put("b"), range_x], failure: vec![] };
    let write_response::Response::Txn(resp) = store.apply(write_request::Request::Txn(txn)) else { panic!("txn") };
    assert!(resp.succeeded);
    assert_eq!(resp.header.expect("header").revision, 3);
    let Some(Response::ResponseRange(range)) = &resp.responses[2].response else { panic!("range") };
    assert_eq!(range.kvs.len(), 1, "a txn reads its own writes");
    assert_eq!(store.get("a", 0).expect("a").mod_revision, 3);
    assert_eq!(store.get("b", 0).expect("b").mod_revision, 3);

    // A failed compare is a result: the failure branch (empty) runs and nothing changes.
    let txn = TxnRequest { compare: vec![compare], success: vec![put("c")], failure: vec![] };
    store.put("x", "1");
    let write_response::Response::Txn(resp) = store.apply(write_request::Request::Txn(txn)) else { panic!("txn") };
    assert!(!resp.succeeded);
    assert_eq!(resp.header.expect("header").revision, 4);
    assert_eq!(store.get("c", 0), None);
}

#[test]
fn compare_on_a_missing_key() {
    let mut store = Store::new();
    let compare = |target: CompareTarget, union: TargetUnion| Compare {
        result: CompareResult::Equal as i32,
        target: target as i32,
        key: b"nope".to_vec(),
        target_union: Some(union),
        range_end: vec![],
    };
    for (cmp, expected) in [
        (compare(CompareTarget::Version, TargetUnion::Version(0)), true),
        (compare(CompareTarget::Create, TargetUnion::CreateRevision(0)), true),
        (compare(CompareTarget::Value, TargetUnion::Value(vec![])), false),
    ] {
        let txn = TxnRequest { compare: vec![cmp], success: vec![], failure: vec![] };
        let write_response::Response::Txn(resp) = store.apply(write_request::Request::Txn(txn)) else { panic!() };
        assert_eq!(resp.succeeded, expected);
    }
}

#[test]
fn put_options_and_their_errors() {
    let mut store = Store::new();
    let ignore = PutRequest { key: b"k".to_vec(), ignore_value: true, ..Default::default() };
    assert_eq!(error_of(store.apply(write_request::Request::Put(ignore.clone()))), "etcdserver: key not found");
    let leased = PutRequest { key: b"k".to_vec(), lease: 7, ..Default::default() };
    assert_eq!(error_of(store.apply(write_request::Request::Put(leased))), "etcdserver: requested lease not found");
    assert_eq!(store.mvcc.current_rev, 1, "failed writes do not raise the revision");

    store.put("k", "old");
    let with_prev = PutRequest { prev_kv: true, ..ignore };
    let write_response::Response::Put(resp) = store.apply(write_request::Request::Put(with_prev)) else { panic!() };
    assert_eq!(resp.prev_kv.expect("prev").value, b"old");
    assert_eq!(store.get("k", 0).expect("k").value, b"old", "ignore_value keeps the value");
}

#[test]
fn compaction_removes_superseded_revisions() {
    let mut store = Store::new();
    store.put("a", "1"); // 2
    store.put("a", "2"); // 3
    store.put("b", "1"); // 4
    store.delete("b", ""); // 5
    let compact = |revision| write_request::Request::Compaction(CompactionRequest { revision, physical: true });
    assert_eq!(error_of(store.apply(compact(9))), "etcdserver: mvcc: required revision is a future revision");
    assert!(matches!(store.apply(compact(5)), write_response::Response::Compaction(_)));
    assert_eq!(error_of(store.apply(compact(5))), "etcdserver: mvcc: required revision has been compacted");
    let err = store.range(&RangeRequest { key: b"a".to_vec(), revision: 4, ..Default::default() });
    assert!(matches!(err, Err(StoreError::Etcd(EtcdError::Compacted))));
    assert_eq!(store.get("a", 5).expect("a").value, b"2");
    assert_eq!(store.get("b", 5), None, "deleted at 5, whether or not the index was walked");
    // Apply deletes nothing and leaves the index whole: both are the compactor's.
    assert_eq!(store.values.0.len(), 4);
    let uncompacted = store.mvcc.index.clone();
    let mut garbage = store.mvcc.index.compact(5);
    assert_ne!(store.mvcc.index, uncompacted, "apply left the index walk to the compactor");
    garbage.sort_unstable();
    let expected = [Revision::new(2, 0), Revision::new(4, 0), Revision::new(5, 0)];
    assert_eq!(garbage, expected, "a's old value and both b revisions");
    for rev in garbage {
        store.values.0.remove(&rev.to_key(false));
    }
    // Reads at or after the compact revision never needed them.
    assert_eq!(store.get("a", 0).expect("a").value, b"2");
    assert_eq!(store.get("b", 5), None);
}

#[test]
fn range_limit_count_sort_and_filters() {
    use cairn_proto::etcdserverpb::range_request::{SortOrder, SortTarget};
    let mut store = Store::new();
    for (key, value) in [("k1", "c"), ("k2", "a"), ("k3", "b")] {
        store.put(key, value);
    }
    let all = RangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), ..Default::default() };
    let resp = store.range(&RangeRequest { limit: 2, ..all.clone() }).expect("range");
    assert_eq!((resp.kvs.len(), resp.more, resp.count), (2, true, 3));
    let resp = store.range(&RangeRequest { count_only: true, ..all.clone() }).expect("range");
    assert_eq!((resp.kvs.len(), resp.count), (0, 3));
    let by_value =
        RangeRequest { sort_target: SortTarget::Value as i32, sort_order: SortOrder::Descend as i32, ..all.clone() };
    let values: Vec<_> = store.range(&by_value).expect("range").kvs.into_iter().map(|kv| kv.value).collect();
    assert_eq!(values, vec![b"c".to_vec(), b"b".to_vec(), b"a".to_vec()]);
    let filtered = store.range(&RangeRequest { min_mod_revision: 3, keys_only: true, ..all }).expect("range");
    assert_eq!(filtered.kvs.len(), 2);
    assert!(filtered.kvs.iter().all(|kv| kv.value.is_empty()));
    assert_eq!(filtered.count, 3, "count ignores revision filters, as etcd's does");
}

#[test]
fn revoking_a_lease_deletes_its_keys_in_one_revision() {
    use cairn_proto::etcdserverpb::{LeaseGrantRequest, LeaseRevokeRequest};
    let mut store = Store::new();
    let grant = |id, ttl| write_request::Request::LeaseGrant(LeaseGrantRequest { id, ttl });
    let write_response::Response::LeaseGrant(granted) = store.apply(grant(7, 1)) else { panic!("grant") };
    assert_eq!(granted.ttl, 2, "raised to the minimum TTL");
    assert_eq!(error_of(store.apply(grant(7, 10))), "etcdserver: lease already exists");
    assert_eq!(error_of(store.apply(grant(8, 9_000_000_001))), "etcdserver: too large lease TTL");
    for key in ["a", "b", "c"] {
        let put = PutRequest { key: key.into(), value: b"v".to_vec(), lease: 7, ..Default::default() };
        store.apply(write_request::Request::Put(put));
    }
    store.put("c", "detached"); // a put without the lease detaches c
    assert_eq!(store.leases.get(7).map(|lease| lease.keys.len()), Some(2));
    let before = store.mvcc.current_rev;
    let revoke = write_request::Request::LeaseRevoke(LeaseRevokeRequest { id: 7 });
    let write_response::Response::LeaseRevoke(resp) = store.apply(revoke.clone()) else { panic!("revoke") };
    assert_eq!(resp.header.expect("header").revision, before + 1, "one revision for all deletes");
    assert_eq!((store.get("a", 0), store.get("b", 0)), (None, None));
    assert_eq!(store.get("c", 0).expect("c stays").value, b"detached");
    assert_eq!(error_of(store.apply(revoke)), "etcdserver: requested lease not found");
}

/// More keys than one chunk of reads; every 1000th on lease 7.
fn store_for_a_large_delete() -> Store {
    use cairn_proto::etcdserverpb::LeaseGrantRequest;
    let mut store = Store::new();
    store.apply(write_request::Request::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 }));
    for i in 0..super::DELETE_READ_CHUNK + 904 {
        let lease = if i % 1000 == 0 { 7 } else { 0 };
        let put =
            PutRequest { key: format!("k{i:05}").into(), value: format!("v{i}").into(), lease, ..Default::default() };
        store.apply(write_request::Request::Put(put));
    }
    store
}

fn delete_all_then_put(store: &mut Store, event_limit: usize) -> (DeleteRangeResponse, super::Applied) {
    let mut applier = Applier::new(&mut store.mvcc, &store.values, &mut store.leases, &mut store.auth);
    applier.limit_events(event_limit);
    let delete = DeleteRangeRequest { key: b"k".to_vec(), range_end: b"l".to_vec(), prev_kv: true };
    let request = |request| WriteRequest { request: Some(request), auth_info: None };
    let response = applier.apply(request(write_request::Request::DeleteRange(delete))).expect("delete");
    let Some(write_response::Response::DeleteRange(deleted)) = response.response else { panic!("{response:?}") };
    let put = PutRequest { key: b"after".to_vec(), value: b"v".to_vec(), ..Default::default() };
    applier.apply(request(write_request::Request::Put(put))).expect("put");
    (deleted, applier.finish())
}

#[test]
fn a_delete_within_the_event_limit_keeps_every_event_with_its_previous_value() {
    let mut store = store_for_a_large_delete();
    let keys = super::DELETE_READ_CHUNK + 904;
    let (deleted, applied) = delete_all_then_put(&mut store, keys);
    assert_eq!((deleted.deleted, deleted.prev_kvs.len()), (keys as i64, keys));
    assert!(!applied.events_dropped);
    assert_eq!(applied.events.len(), keys + 1, "the deletes and the put");
    for (i, event) in applied.events[..keys].iter().enumerate() {
        let prev = event.prev_kv.as_ref().expect("a delete event carries the last value");
        assert_eq!(
            (prev.key.clone(), prev.value.clone()),
            (format!("k{i:05}").into_bytes(), format!("v{i}").into_bytes())
        );
        assert_eq!(deleted.prev_kvs[i], *prev);
    }
    assert_eq!(store.leases.get(7).map(|lease| lease.keys.len()), Some(0), "deleted keys leave their lease");
}

#[test]
fn a_delete_beyond_the_event_limit_keeps_no_events_but_answers_in_full() {
    let mut store = store_for_a_large_delete();
    let keys = super::DELETE_READ_CHUNK + 904;
    let (deleted, applied) = delete_all_then_put(&mut store, keys - 1);
    assert_eq!((deleted.deleted, deleted.prev_kvs.len()), (keys as i64, keys));
    assert_eq!(deleted.prev_kvs[keys - 1].value, format!("v{}", keys - 1).into_bytes(), "the last chunk too");
    assert!(applied.events_dropped, "watchers read this batch from storage");
    assert!(applied.events.is_empty(), "neither the deletes nor the put after them");
    let tombstones = applied.ops.iter().filter(|op| matches!(op, WriteOp::Put { cf: schema::CF_KV, .. })).count();
    assert_eq!(tombstones, keys + 1, "a tombstone per key and the put");
    assert_eq!(store.leases.get(7).map(|lease| lease.keys.len()), Some(0), "deleted keys leave their lease");
    assert_eq!(store.mvcc.index.live_keys(crate::mvcc::KeyRange::new(b"k", b"l"), store.mvcc.current_rev).len(), 0);
}

mod auth {
    use cairn_proto::authpb::{permission::Type, Permission};
    use cairn_proto::cairnpb::{auth_request, AuthRequest};
    use cairn_proto::etcdserverpb::{
        AuthEnableRequest, AuthRoleAddRequest, AuthRoleGrantPermissionRequest, AuthUserAddRequest,
        AuthUserGrantRoleRequest, LeaseGrantRequest, LeaseRevokeRequest,
    };

    use super::*;

    fn auth(request: auth_request::Request) -> write_request::Request {
        write_request::Request::Auth(AuthRequest { request: Some(request) })
    }

    fn error(response: write_response::Response) -> Option<String> {
        match response {
            write_response::Response::Error(err) => Some(err.message),
            _ => None,
        }
    }

    /// Auth on; alice may write "a" only.
    fn store_with_alice() -> (Store, AuthInfo) {
        let mut store = Store::new();
        let no_password = Some(cairn_proto::authpb::UserAddOptions { no_password: true });
        for request in [
            auth_request::Request::UserAdd(AuthUserAddRequest {
                name: "root".into(),
                options: no_password,
                ..Default::default()
            }),
            auth_request::Request::UserGrantRole(AuthUserGrantRoleRequest { user: "root".into(), role: "root".into() }),
            auth_request::Request::UserAdd(AuthUserAddRequest {
                name: "alice".into(),
                options: no_password,
                ..Default::default()
            }),
            auth_request::Request::RoleAdd(AuthRoleAddRequest { name: "w".into() }),
            auth_request::Request::RoleGrantPermission(AuthRoleGrantPermissionRequest {
                name: "w".into(),
                perm: Some(Permission { perm_type: Type::Write as i32, key: b"a".to_vec(), range_end: Vec::new() }),
            }),
            auth_request::Request::UserGrantRole(AuthUserGrantRoleRequest { user: "alice".into(), role: "w".into() }),
            auth_request::Request::Enable(AuthEnableRequest {}),
        ] {
            assert_eq!(error(store.apply(auth(request))), None);
        }
        let alice = AuthInfo { username: "alice".into(), revision: store.auth.revision() };
        (store, alice)
    }

    fn put(key: &str) -> write_request::Request {
        write_request::Request::Put(PutRequest { key: key.into(), value: b"v".to_vec(), ..Default::default() })
    }

    #[test]
    fn a_write_is_checked_against_its_senders_permissions_at_apply() {
        let (mut store, alice) = store_with_alice();
        assert_eq!(error(store.apply_as(put("a"), Some(alice.clone()))), None);
        let revision = store.mvcc.current_rev;
        let denied = error(store.apply_as(put("b"), Some(alice.clone())));
        assert_eq!(denied.as_deref(), Some("etcdserver: permission denied"));
        assert_eq!(store.mvcc.current_rev, revision, "a refused write changes nothing");
        let anonymous = error(store.apply_as(put("a"), Some(AuthInfo::default())));
        assert_eq!(anonymous.as_deref(), Some("etcdserver: user name is empty"));
        let stale = AuthInfo { revision: alice.revision - 1, ..alice.clone() };
        assert_eq!(
            error(store.apply_as(put("a"), Some(stale))).as_deref(),
            Some("etcdserver: revision of auth store is old")
        );
        let compact = write_request::Request::Compaction(CompactionRequest { revision: 1, physical: false });
        assert_eq!(error(store.apply_as(compact, Some(alice))).as_deref(), Some("etcdserver: permission denied"));
    }

    #[test]
    fn revoking_a_lease_needs_write_access_to_its_keys_but_the_leader_may_always() {
        let (mut store, alice) = store_with_alice();
        assert_eq!(error(store.apply(write_request::Request::LeaseGrant(LeaseGrantRequest { id: 7, ttl: 60 }))), None);
        let on_lease = PutRequest { key: b"b".to_vec(), lease: 7, ..Default::default() };
        let root = AuthInfo { username: "root".into(), revision: alice.revision };
        assert_eq!(error(store.apply_as(write_request::Request::Put(on_lease.clone()), Some(root))), None);
        let anonymous = error(store.apply(write_request::Request::Put(on_lease)));
        assert_eq!(anonymous.as_deref(), Some("etcdserver: user name is empty"), "only a revoke may come without one");
        let revoke = || write_request::Request::LeaseRevoke(LeaseRevokeRequest { id: 7 });
        assert_eq!(error(store.apply_as(revoke(), Some(alice))).as_deref(), Some("etcdserver: permission denied"));
        assert_eq!(error(store.apply(revoke())), None, "an expiry from the leader carries no identity");
    }

    #[test]
    fn an_auth_change_is_written_with_the_batch() {
        let mut store = Store::new();
        let mut applier = Applier::new(&mut store.mvcc, &store.values, &mut store.leases, &mut store.auth);
        let add = auth(auth_request::Request::RoleAdd(AuthRoleAddRequest { name: "r".into() }));
        applier.apply(WriteRequest { request: Some(add), auth_info: None }).expect("apply");
        let ops = applier.finish().ops;
        let is_auth_record = |op: &WriteOp| matches!(op, WriteOp::Put { key, .. } if key == schema::meta::SM_AUTH);
        assert!(ops.iter().any(is_auth_record));
    }
}
