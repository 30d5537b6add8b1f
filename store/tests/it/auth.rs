//! etcd's Auth API: the same etcdctl 3.5.1 commands against etcd 3.5.1,
//! etcd 3.6 and Cairn, and tokens across the members of a cluster.

use std::time::Duration;

use cairn_proto::etcdserverpb::auth_client::AuthClient;
use cairn_proto::etcdserverpb::kv_client::KvClient;
use cairn_proto::etcdserverpb::{AuthenticateRequest, RangeRequest};
use cairn_testkit::binaries::{etcd36_bin_dir, require};
use cairn_testkit::pki::{ClusterTls, Validity};
use cairn_testkit::{etcdctl, etcdctl_ok, etcdctl_stdin, Cluster, Flavor, Options};
use tokio_stream::StreamExt;
use tonic::transport::Channel;
use tonic::Code;

/// About 80 etcdctl steps: users, roles, grants, range permissions, the
/// admin-only RPCs, the root rules and every error string on the way.
/// `""` stands for an empty argument.
const STEPS: &str = r#"
auth enable
user add root --new-user-password=rootpw
user add root --new-user-password=x
user grant-role root root
role add ""
role add reader
role add reader
role grant-permission reader read foo
role grant-permission reader --prefix readwrite pre/
role grant-permission reader --from-key write z
role grant-permission reader read a c
role grant-permission nosuch read a
role get reader
role list
user add alice --new-user-password=alicepw
user grant-role alice reader
user grant-role alice nosuch
user grant-role bob reader
user get alice
user get alice --detail
user list
auth status
auth enable
auth status
get foo
put foo v0
--user root:wrong get foo
--user nobody:pw get foo
--user root:rootpw auth status
--user root:rootpw put foo v1
--user alice:alicepw get foo
--user alice:alicepw put foo v2
--user alice:alicepw put pre/a 1
--user alice:alicepw get pre/ --prefix
--user alice:alicepw get a c
--user alice:alicepw get a d
--user alice:alicepw get "" --prefix
--user alice:alicepw put zz 1
--user alice:alicepw get zz
--user alice:alicepw put zz 2 --prev-kv
--user alice:alicepw del pre/a
--user alice:alicepw del zz --prev-kv
--user alice:alicepw del zz
--user alice:alicepw user list
--user alice:alicepw user get alice
--user alice:alicepw user get root
--user alice:alicepw role get reader
--user alice:alicepw role get root
--user alice:alicepw role list
--user alice:alicepw user add eve --new-user-password=x
--user alice:alicepw auth disable
--user alice:alicepw defrag
--user alice:alicepw endpoint hashkv
--user alice:alicepw member add x --peer-urls=http://127.0.0.1:1
--user alice:alicepw alarm list
--user root:rootpw user delete root
--user root:rootpw user revoke-role root root
--user root:rootpw role delete root
--user root:rootpw user revoke-role alice nosuch
--user root:rootpw user revoke-role nobody reader
--user root:rootpw role revoke-permission reader nokey
--user root:rootpw role revoke-permission nosuch foo
--user root:rootpw role revoke-permission reader foo
--user alice:alicepw get foo
--user root:rootpw user add nopw --no-password
--user nopw: get foo
--user root:rootpw user grant-role nopw reader
--user root:rootpw role get reader
--user root:rootpw user passwd alice --interactive=false
--user alice:alicepw get pre/ --prefix
--user alice:newpw get pre/ --prefix
--user root:rootpw user delete nosuch
--user root:rootpw role delete nosuch
--user root:rootpw role delete reader
--user root:rootpw user get alice
--user root:rootpw user delete alice
--user alice:newpw get foo
--user root:rootpw user list
--user root:rootpw auth status
--user root:rootpw auth disable
auth status
get foo
user list
role list
"#;

/// etcd 3.5 answers a refused maintenance RPC with the auth package's error,
/// unmapped (code Unknown); etcd 3.6 maps it to gRPC's PermissionDenied with
/// etcd's message, and so does Cairn.
const ETCD35_ADMIN_DENIED: &str = "rpc error: code = Unknown desc = auth: permission denied";
const ADMIN_DENIED: &str = "etcdserver: permission denied";
/// A refused watch's cancel reason: etcd prints the gRPC status whole.
const WATCH_DENIED: &str = "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

fn args(step: &str) -> Vec<String> {
    step.split_whitespace().map(|arg| if arg == "\"\"" { String::new() } else { arg.to_string() }).collect()
}

/// Each step's command, exit code and output, with the endpoint named alike on every system.
fn run_steps(endpoint: &str) -> Vec<String> {
    STEPS
        .lines()
        .filter(|line| !line.is_empty())
        .map(|step| {
            let args = args(step);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            // `user passwd --interactive=false` reads the new password from stdin.
            let input = if step.contains("user passwd") { "newpw\n" } else { "" };
            let out = etcdctl_stdin(&[endpoint], &args, input).expect("etcdctl runs");
            let host = endpoint.trim_start_matches("http://");
            let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
            let text: Vec<String> = text
                .lines()
                .filter(|line| !line.is_empty() && !line.starts_with("{\"level\""))
                .map(|line| line.replace(endpoint, "EP").replace(host, "EP"))
                .collect();
            format!("$ etcdctl {step}\nexit={:?}\n{}", out.status.code(), text.join("\n"))
        })
        .collect()
}

fn differences(expected: &[String], actual: &[String]) -> Vec<String> {
    expected
        .iter()
        .zip(actual)
        .filter(|(expected, actual)| expected != actual)
        .map(|(expected, actual)| format!("--- etcd\n{expected}\n--- cairn\n{actual}"))
        .collect()
}

#[tokio::test]
async fn t160_auth_commands_match_etcd() {
    let mut etcd36 = Options::new(Flavor::Etcd, 1);
    etcd36.binary = Some(require(etcd36_bin_dir().join("etcd")).expect("`.ci/etcd-3.6.sh` builds etcd 3.6"));
    let etcd36 = etcd36.start().await.expect("etcd 3.6 starts");
    let etcd35 = Cluster::start(Flavor::Etcd, 1).await.expect("etcd 3.5.1 starts");
    let cairn = Cluster::start(Flavor::Cairn, 1).await.expect("cairn starts");
    let on_etcd35 = run_steps(etcd35.members[0].endpoint());
    let on_etcd36 = run_steps(etcd36.members[0].endpoint());
    let on_cairn = run_steps(cairn.members[0].endpoint());
    assert_eq!(on_cairn.len(), on_etcd35.len());

    let diffs = differences(&on_etcd36, &on_cairn);
    assert!(diffs.is_empty(), "{} steps differ from etcd 3.6:\n{}", diffs.len(), diffs.join("\n"));
    // Against 3.5.1, only the form of the maintenance refusals may differ.
    let as_36: Vec<String> = on_etcd35.iter().map(|step| step.replace(ETCD35_ADMIN_DENIED, ADMIN_DENIED)).collect();
    let diffs = differences(&as_36, &on_cairn);
    assert!(diffs.is_empty(), "{} steps differ from etcd 3.5.1:\n{}", diffs.len(), diffs.join("\n"));
    let refused_maintenance = on_etcd35.iter().filter(|step| step.contains(ETCD35_ADMIN_DENIED)).count();
    assert_eq!(refused_maintenance, 2, "defrag and hashkv are refused to a user without the root role");

    // The steps must have gone through errors and successes alike.
    let all = on_cairn.join("\n");
    for expected in [
        "Error: etcdserver: user name is empty",
        "Error: etcdserver: permission denied",
        "Error: etcdserver: authentication failed, invalid user ID or password",
        "Error: etcdserver: role name not found",
        "Error: etcdserver: user name not found",
        "Error: etcdserver: invalid auth management",
        "Error: etcdserver: role is not granted to the user",
        "Error: etcdserver: permission is not granted to the role",
        "Error: etcdserver: user name already exists",
        "Error: etcdserver: role name already exists",
        "Error: etcdserver: role name is empty",
        "Authentication Enabled",
        "Authentication Disabled",
        "pre/a",
    ] {
        assert!(all.contains(expected), "no step printed {expected:?}:\n{all}");
    }
}

async fn channel(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string()).expect("url").connect().await.expect("connects")
}

async fn login(endpoint: &str, name: &str, password: &str) -> Result<String, tonic::Status> {
    let request = AuthenticateRequest { name: name.into(), password: password.into() };
    Ok(AuthClient::new(channel(endpoint).await).authenticate(request).await?.into_inner().token)
}

async fn get_with(endpoint: &str, token: &str, key: &str) -> Result<usize, tonic::Status> {
    let mut request = tonic::Request::new(RangeRequest { key: key.into(), ..Default::default() });
    request.metadata_mut().insert("token", token.parse().expect("ascii token"));
    Ok(KvClient::new(channel(endpoint).await).range(request).await?.into_inner().kvs.len())
}

/// Root with a password, alice with read on "k", auth on.
const USERS: [&str; 7] = [
    "user add root --new-user-password=rootpw",
    "user grant-role root root",
    "user add alice --new-user-password=alicepw",
    "role add reader",
    "role grant-permission reader read k",
    "user grant-role alice reader",
    "auth enable",
];

fn set_up_users(endpoint: &str) {
    for step in USERS {
        etcdctl_ok(&[endpoint], &args(step).iter().map(String::as_str).collect::<Vec<_>>());
    }
    etcdctl_ok(&[endpoint], &["--user", "root:rootpw", "put", "k", "v"]);
}

#[tokio::test]
async fn t161_a_simple_token_from_one_member_serves_on_every_member_until_it_expires() {
    let cairn = Cluster::start_with(Flavor::Cairn, 3, &["--auth-token-ttl", "3"]).await.expect("cairn starts");
    let endpoints = cairn.endpoints();
    set_up_users(&endpoints[0]);
    let token = login(&endpoints[2], "alice", "alicepw").await.expect("alice logs in on a member");
    assert_eq!(token.split('.').count(), 2, "a simple token: prefix and index");
    for endpoint in &endpoints {
        assert_eq!(get_with(endpoint, &token, "k").await.expect("the token serves on every member"), 1);
    }
    let denied = get_with(&endpoints[1], &token, "other").await.expect_err("no grant on other");
    assert_eq!((denied.code(), denied.message()), (Code::PermissionDenied, "etcdserver: permission denied"));
    // Each use renews the token; left alone past its TTL, it is gone.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(get_with(&endpoints[0], &token, "k").await.expect("renewed by the last use"), 1);
    tokio::time::sleep(Duration::from_millis(4_500)).await;
    let expired = get_with(&endpoints[0], &token, "k").await.expect_err("expired");
    assert_eq!((expired.code(), expired.message()), (Code::Unauthenticated, "etcdserver: invalid auth token"));
    // A password change ends the user's tokens at once.
    let token = login(&endpoints[0], "alice", "alicepw").await.expect("logs in again");
    let passwd = ["--user", "root:rootpw", "user", "passwd", "alice", "--interactive=false"];
    let changed = etcdctl_stdin(&[&endpoints[1]], &passwd, "x\n").expect("etcdctl runs");
    assert!(changed.status.success(), "{}", String::from_utf8_lossy(&changed.stderr));
    let revoked = get_with(&endpoints[0], &token, "k").await.expect_err("revoked with the old password");
    assert_eq!(revoked.code(), Code::Unauthenticated);
    let bad = get_with(&endpoints[0], "not-a-token", "k").await.expect_err("garbage");
    assert_eq!(bad.message(), "etcdserver: invalid auth token");
}

#[tokio::test]
async fn t162_jwt_tokens_are_signed_and_carry_the_auth_revision() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (private, public) = (dir.path().join("jwt.key"), dir.path().join("jwt.pub"));
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl").args(args).output().expect("openssl runs");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    };
    openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", &private.to_string_lossy()]);
    openssl(&["pkey", "-in", &private.to_string_lossy(), "-pubout", "-out", &public.to_string_lossy()]);
    let flag = format!("jwt,pub-key={},priv-key={},sign-method=RS256,ttl=10m", public.display(), private.display());
    // etcd 3.5.1 answers a stale token with the auth package's error, unmapped;
    // 3.5.5 and later map it to etcd's message, as Cairn does.
    let mut etcd = Options::new(Flavor::Etcd, 1).args(&["--auth-token", &flag]);
    etcd.binary = Some(require(etcd36_bin_dir().join("etcd")).expect("`.ci/etcd-3.6.sh` builds etcd 3.6"));
    let etcd = etcd.start().await.expect("etcd starts");
    let cairn = Cluster::start_with(Flavor::Cairn, 3, &["--auth-token", &flag]).await.expect("cairn starts");
    let mut outcomes = Vec::new();
    for endpoints in [etcd.endpoints(), cairn.endpoints()] {
        set_up_users(&endpoints[0]);
        let token = login(&endpoints[0], "alice", "alicepw").await.expect("alice logs in");
        assert_eq!(token.split('.').count(), 3, "a JWT: header, claims, signature");
        let last = endpoints.last().expect("a member");
        let read = get_with(last, &token, "k").await.map_err(|status| status.message().to_string());
        // Any change to the auth store makes older tokens stale.
        etcdctl_ok(&[&endpoints[0]], &["--user", "root:rootpw", "role", "add", "another"]);
        let stale = get_with(last, &token, "k").await.map_err(|status| (status.code(), status.message().to_string()));
        let forged = format!("{}x", token);
        let forged = get_with(last, &forged, "k").await.map_err(|status| status.message().to_string());
        outcomes.push(format!("{read:?} / {stale:?} / {forged:?}"));
    }
    assert_eq!(outcomes[0], outcomes[1], "etcd, then cairn");
    assert!(outcomes[1].contains("revision of auth store is old"), "{}", outcomes[1]);
}

/// What alice's certificate (CN alice, no token) may do on `flavor`.
async fn certificate_identity(flavor: Flavor) -> Vec<String> {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = cairn_testkit::net::loopback_ip();
    let (ca, tls) = ClusterTls::new(dir.path(), &ip).expect("certificates");
    let alice = ca.issue("alice", "alice", &[], Validity::Days(7)).expect("alice's certificate");
    let cluster = Options::new(flavor, 1).tls(tls.clone()).start().await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    let mut as_root = tls.etcdctl_args();
    as_root.extend(["--user".to_string(), "root:rootpw".to_string()]);
    let run = |extra: &[String], step: &str| {
        let mut all: Vec<String> = extra.to_vec();
        all.extend(args(step));
        let out = etcdctl(&[&endpoint], &all.iter().map(String::as_str).collect::<Vec<_>>()).expect("etcdctl runs");
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        // The client's retry log names the address and the time.
        let text: Vec<&str> = text.lines().filter(|line| !line.starts_with("{\"level\"")).collect();
        format!("{:?} {}", out.status.code(), text.join("\n"))
    };
    for step in USERS {
        run(&tls.etcdctl_args(), step);
    }
    run(&as_root, "put k v");
    let alice_args = vec![
        format!("--cacert={}", tls.ca.display()),
        format!("--cert={}", alice.cert.display()),
        format!("--key={}", alice.key.display()),
    ];
    // The CN "client" of the other certificate names no user.
    ["get k", "put k w", "user list"]
        .iter()
        .map(|step| run(&alice_args, step))
        .chain(["get k"].iter().map(|step| run(&tls.etcdctl_args(), step)))
        .collect()
}

#[tokio::test]
async fn t163_a_client_certificate_names_the_user_when_no_token_is_sent() {
    let on_etcd = certificate_identity(Flavor::Etcd).await;
    let on_cairn = certificate_identity(Flavor::Cairn).await;
    assert_eq!(on_cairn, on_etcd);
    assert_eq!(on_cairn[0], "Some(0) k\nv", "the CN alice reads what alice may");
    assert!(on_cairn[1].contains("etcdserver: permission denied"), "{}", on_cairn[1]);
}

/// Saves a snapshot as root and restores it into a new one-member cluster.
async fn save_and_restore(endpoint: &str, dir: &std::path::Path) -> Cluster {
    let file = dir.join("snapshot.db");
    let file_arg = file.to_string_lossy().into_owned();
    let saved = etcdctl(&[endpoint], &["--user", "root:rootpw", "snapshot", "save", &file_arg]).expect("runs");
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    let (dir2, specs) = cairn_testkit::plan(1).expect("plan");
    let out = std::process::Command::new(cairn_testkit::cairn_binary())
        .args(["snapshot", "restore", &file_arg, "--name", "m0"])
        .args(["--initial-cluster", &specs[0].initial_cluster, "--initial-advertise-peer-urls", &specs[0].peer_url])
        .arg("--data-dir")
        .arg(&specs[0].data_dir)
        .output()
        .expect("cairn runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Cluster::launch(Flavor::Cairn, dir2, specs, &[]).await.expect("the restored member starts")
}

#[tokio::test]
async fn t164_a_snapshot_keeps_users_and_roles_and_watches_are_checked() {
    // A store with users and auth on but not one key yet keeps them too.
    let empty = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    for step in USERS {
        etcdctl_ok(&[empty.members[0].endpoint()], &args(step).iter().map(String::as_str).collect::<Vec<_>>());
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let restored = save_and_restore(empty.members[0].endpoint(), dir.path()).await;
    let status = etcdctl_ok(&[restored.members[0].endpoint()], &["--user", "root:rootpw", "auth", "status"]);
    assert!(status.starts_with("Authentication Status: true"), "without keys: {status}");
    drop((empty, restored));

    let cluster = Cluster::start(Flavor::Cairn, 1).await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    set_up_users(&endpoint);

    // A watch needs read access to its whole range, as etcd's isWatchPermitted.
    let token = login(&endpoint, "alice", "alicepw").await.expect("login");
    assert_eq!(watch_with(&endpoint, &token, "k").await, (true, false, String::new()));
    assert_eq!(watch_with(&endpoint, &token, "other").await, (true, true, WATCH_DENIED.into()));

    let dir = tempfile::tempdir().expect("tempdir");
    let file_arg = dir.path().join("anonymous.db").to_string_lossy().into_owned();
    let anonymous = etcdctl(&[&endpoint], &["snapshot", "save", &file_arg]).expect("runs");
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("user name is empty"), "only root saves");
    let restored = save_and_restore(&endpoint, dir.path()).await;
    drop(cluster);
    let restored = restored.members[0].endpoint().to_string();
    assert_eq!(etcdctl_ok(&[&restored], &["--user", "alice:alicepw", "get", "k", "--print-value-only"]), "v\n");
    let status = etcdctl_ok(&[&restored], &["--user", "root:rootpw", "auth", "status"]);
    assert!(status.starts_with("Authentication Status: true"), "{status}");
    let anonymous = etcdctl(&[&restored], &["get", "k"]).expect("runs");
    assert!(String::from_utf8_lossy(&anonymous.stderr).contains("user name is empty"));
}

/// Creates one watch with `token` and returns (created, canceled, cancel reason).
async fn watch_with(endpoint: &str, token: &str, key: &str) -> (bool, bool, String) {
    use cairn_proto::etcdserverpb::watch_client::WatchClient;
    use cairn_proto::etcdserverpb::watch_request::RequestUnion;
    use cairn_proto::etcdserverpb::{WatchCreateRequest, WatchRequest};
    let create = WatchRequest {
        request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest { key: key.into(), ..Default::default() })),
    };
    let mut request = tonic::Request::new(tokio_stream::iter(vec![create]).chain(tokio_stream::pending()));
    request.metadata_mut().insert("token", token.parse().expect("ascii token"));
    let mut responses = WatchClient::new(channel(endpoint).await).watch(request).await.expect("stream").into_inner();
    let first = tokio::time::timeout(Duration::from_secs(5), responses.message()).await;
    let first = first.expect("an answer in time").expect("no stream error").expect("a response");
    (first.created, first.canceled, first.cancel_reason)
}
