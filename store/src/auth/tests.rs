use cairn_proto::authpb::permission::Type;

use super::*;

fn who(name: &str, revision: u64) -> AuthInfo {
    AuthInfo { username: name.to_string(), revision }
}

fn run(store: &mut AuthStore, request: auth_request::Request, as_user: Option<&AuthInfo>) -> Result<(), EtcdError> {
    store.apply(AuthRequest { request: Some(request) }, as_user).map(|_| ())
}

fn user_add(name: &str) -> auth_request::Request {
    let hashed_password = password::hash("pw", password::MIN_COST).expect("hash");
    auth_request::Request::UserAdd(AuthUserAddRequest { name: name.into(), hashed_password, ..Default::default() })
}

fn grant_role(user: &str, role: &str) -> auth_request::Request {
    auth_request::Request::UserGrantRole(AuthUserGrantRoleRequest { user: user.into(), role: role.into() })
}

fn grant(role: &str, key: &str, range_end: &str, kind: Type) -> auth_request::Request {
    let perm = Permission { perm_type: kind as i32, key: key.into(), range_end: range_end.into() };
    auth_request::Request::RoleGrantPermission(AuthRoleGrantPermissionRequest { name: role.into(), perm: Some(perm) })
}

/// root (with the root role) and alice (role "reader": read on foo*, write on foo1), auth on.
fn enabled_store() -> AuthStore {
    let mut store = AuthStore::default();
    for request in [
        user_add("root"),
        grant_role("root", "root"),
        user_add("alice"),
        auth_request::Request::RoleAdd(AuthRoleAddRequest { name: "reader".into() }),
        grant("reader", "foo", "fop", Type::Read),
        grant("reader", "foo1", "", Type::Write),
        grant_role("alice", "reader"),
        auth_request::Request::Enable(AuthEnableRequest {}),
    ] {
        run(&mut store, request, None).expect("setup");
    }
    store
}

#[test]
fn enabling_needs_root_with_the_root_role() {
    let mut store = AuthStore::default();
    let enable = || auth_request::Request::Enable(AuthEnableRequest {});
    assert_eq!(run(&mut store, enable(), None), Err(EtcdError::RootUserNotExist));
    run(&mut store, user_add("root"), None).expect("root");
    assert_eq!(run(&mut store, enable(), None), Err(EtcdError::RootRoleNotExist));
    run(&mut store, grant_role("root", "root"), None).expect("the root role needs no RoleAdd");
    let revision = store.revision();
    run(&mut store, enable(), None).expect("enable");
    assert!(store.is_enabled());
    assert_eq!(store.revision(), revision, "enabling does not move the revision, as in etcd 3.5");
}

#[test]
fn only_root_manages_and_a_user_reads_itself() {
    let mut store = enabled_store();
    let rev = store.revision();
    let list = || auth_request::Request::UserList(AuthUserListRequest {});
    assert_eq!(run(&mut store, list(), Some(&AuthInfo::default())), Err(EtcdError::UserEmpty));
    assert_eq!(run(&mut store, list(), Some(&who("alice", rev))), Err(EtcdError::PermissionDenied));
    assert_eq!(run(&mut store, list(), Some(&who("nobody", rev))), Err(EtcdError::UserNotFound));
    run(&mut store, list(), Some(&who("root", rev))).expect("root lists");
    let get = |name: &str| auth_request::Request::UserGet(AuthUserGetRequest { name: name.into() });
    run(&mut store, get("alice"), Some(&who("alice", rev))).expect("alice reads herself");
    assert_eq!(run(&mut store, get("root"), Some(&who("alice", rev))), Err(EtcdError::PermissionDenied));
    let role = |name: &str| auth_request::Request::RoleGet(AuthRoleGetRequest { role: name.into() });
    run(&mut store, role("reader"), Some(&who("alice", rev))).expect("alice reads her role");
}

#[test]
fn key_permissions_follow_the_merged_grants_and_the_revision() {
    let store = enabled_store();
    let alice = who("alice", store.revision());
    let check = |access, key: &str, end: &str| store.check(Some(&alice), access, key.as_bytes(), end.as_bytes());
    assert_eq!(check(Access::Read, "foo", "fop"), Ok(()));
    assert_eq!(check(Access::Read, "foo5", ""), Ok(()));
    assert_eq!(check(Access::Read, "fo", "fop"), Err(EtcdError::PermissionDenied));
    assert_eq!(check(Access::Write, "foo1", ""), Ok(()));
    assert_eq!(check(Access::Write, "foo2", ""), Err(EtcdError::PermissionDenied));
    let stale = who("alice", store.revision() - 1);
    assert_eq!(store.check(Some(&stale), Access::Read, b"foo", b""), Err(EtcdError::AuthOldRevision));
    assert_eq!(store.check(None, Access::Read, b"foo", b""), Err(EtcdError::UserEmpty));
    let root = who("root", store.revision());
    assert_eq!(store.check(Some(&root), Access::Write, b"\0", b"\0"), Ok(()), "root may do anything");
}

#[test]
fn a_txn_needs_its_compares_and_both_branches_nested_ones_too() {
    let store = enabled_store();
    let alice = who("alice", store.revision());
    let put = |key: &str| RequestOp {
        request: Some(Request::RequestPut(PutRequest { key: key.into(), ..Default::default() })),
    };
    let allowed = TxnRequest { success: vec![put("foo1")], ..Default::default() };
    assert_eq!(store.check_txn(Some(&alice), &allowed), Ok(()));
    let failure_branch = TxnRequest { success: vec![put("foo1")], failure: vec![put("bar")], ..Default::default() };
    assert_eq!(store.check_txn(Some(&alice), &failure_branch), Err(EtcdError::PermissionDenied));
    let nested = TxnRequest {
        success: vec![RequestOp { request: Some(Request::RequestTxn(failure_branch)) }],
        ..Default::default()
    };
    assert_eq!(store.check_txn(Some(&alice), &nested), Err(EtcdError::PermissionDenied));
    let compare =
        TxnRequest { compare: vec![Compare { key: b"secret".to_vec(), ..Default::default() }], ..Default::default() };
    assert_eq!(store.check_txn(Some(&alice), &compare), Err(EtcdError::PermissionDenied));
}

#[test]
fn root_rules_hold_while_auth_is_on() {
    let mut store = enabled_store();
    let root = who("root", store.revision());
    let delete_root = auth_request::Request::UserDelete(AuthUserDeleteRequest { name: "root".into() });
    assert_eq!(run(&mut store, delete_root, Some(&root)), Err(EtcdError::InvalidAuthMgmt));
    let revoke =
        auth_request::Request::UserRevokeRole(AuthUserRevokeRoleRequest { name: "root".into(), role: "root".into() });
    assert_eq!(run(&mut store, revoke, Some(&root)), Err(EtcdError::InvalidAuthMgmt));
    let delete_role = auth_request::Request::RoleDelete(AuthRoleDeleteRequest { role: "root".into() });
    assert_eq!(run(&mut store, delete_role, Some(&root)), Err(EtcdError::InvalidAuthMgmt));
}

#[test]
fn deleting_a_role_takes_it_from_every_user() {
    let mut store = enabled_store();
    let root = who("root", store.revision());
    let delete = auth_request::Request::RoleDelete(AuthRoleDeleteRequest { role: "reader".into() });
    run(&mut store, delete, Some(&root)).expect("delete");
    assert!(!store.has_role("alice", "reader"));
    let alice = who("alice", store.revision());
    assert_eq!(store.check(Some(&alice), Access::Read, b"foo", b""), Err(EtcdError::PermissionDenied));
}

#[test]
fn granting_a_range_again_changes_its_type_and_permissions_stay_sorted() {
    let mut store = AuthStore::default();
    run(&mut store, auth_request::Request::RoleAdd(AuthRoleAddRequest { name: "r".into() }), None).expect("role");
    run(&mut store, grant("r", "b", "", Type::Read), None).expect("b");
    run(&mut store, grant("r", "a", "c", Type::Read), None).expect("a");
    run(&mut store, grant("r", "b", "", Type::Readwrite), None).expect("b again");
    let role = &store.roles["r"];
    let keys: Vec<(&[u8], i32)> = role.key_permission.iter().map(|p| (p.key.as_slice(), p.perm_type)).collect();
    assert_eq!(keys, vec![(&b"a"[..], Type::Read as i32), (&b"b"[..], Type::Readwrite as i32)]);
}

#[test]
fn the_store_survives_its_record() {
    let store = enabled_store();
    let restored = AuthStore::from_state(store.to_state());
    assert_eq!(restored, store);
}

#[test]
fn authenticating_needs_auth_on_and_a_password() {
    let mut store = AuthStore::default();
    let login = || {
        auth_request::Request::Authenticate(cairn_proto::cairnpb::Authenticate {
            name: "root".into(),
            simple_token_prefix: "p".into(),
        })
    };
    assert_eq!(run(&mut store, login(), None), Err(EtcdError::AuthNotEnabled));
    let mut store = enabled_store();
    let (_, effect) = store.apply(AuthRequest { request: Some(login()) }, None).expect("login");
    assert_eq!(effect, Some(TokenEffect::Issued { name: "root".into(), simple_token_prefix: "p".into() }));
    assert_eq!(store.password_hash("nobody"), Err(EtcdError::AuthFailed));
}
