//! TLS on every link, against etcd 3.5.1 with the same certificates and the
//! same etcdctl, openssl and curl commands: who gets in, who is refused, a
//! rotated server certificate, TLS 1.1, the HTTP endpoints on the TLS port,
//! and Kubernetes' reference backup command followed by a restore.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use cairn_testkit::pki::{Ca, ClusterTls, Issued, Validity};
use cairn_testkit::{cairn_binary, etcdctl, net, plan_https, Cluster, Flavor, Options};

/// What each case showed: accepted, or refused.
fn outcome(ok: bool) -> &'static str {
    if ok {
        "accepted"
    } else {
        "refused"
    }
}

fn tls_args(ca: &Path, cert: Option<&Issued>) -> Vec<String> {
    let mut args = vec![format!("--cacert={}", ca.display())];
    if let Some(cert) = cert {
        args.push(format!("--cert={}", cert.cert.display()));
        args.push(format!("--key={}", cert.key.display()));
    }
    args
}

/// `etcdctl get` with these TLS flags: did the server let it in?
fn get_with(endpoint: &str, tls: &[String]) -> bool {
    let mut args: Vec<&str> = tls.iter().map(String::as_str).collect();
    args.extend(["get", "tls-key", "--print-value-only"]);
    etcdctl(&[endpoint], &args)
        .is_ok_and(|out| out.status.success() && String::from_utf8_lossy(&out.stdout).contains("v1"))
}

/// The serial of the certificate the server presents now, by openssl.
fn served_serial(endpoint: &str, ca: &Path, client: &Issued) -> String {
    let addr = endpoint.trim_start_matches("https://");
    let script = format!(
        "openssl s_client -connect {addr} -CAfile {} -cert {} -key {} </dev/null 2>/dev/null | openssl x509 -noout -serial",
        ca.display(),
        client.cert.display(),
        client.key.display()
    );
    let out = Command::new("timeout").args(["10", "bash", "-c", &script]).output().expect("openssl");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// An openssl handshake at one TLS version; whether it completed.
fn handshake_at(endpoint: &str, version_flag: &str, ca: &Path, client: &Issued) -> bool {
    let addr = endpoint.trim_start_matches("https://");
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect", addr, version_flag, "-cipher", "DEFAULT:@SECLEVEL=0"])
        .arg("-CAfile")
        .arg(ca)
        .arg("-cert")
        .arg(&client.cert)
        .arg("-key")
        .arg(&client.key)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("openssl");
    let text = String::from_utf8_lossy(&out.stdout);
    out.status.success() && text.contains("Verify return code: 0 (ok)") && !text.contains("Cipher is (NONE)")
}

fn curl(endpoint: &str, path: &str, ca: &Path, client: &Issued) -> String {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "--cacert"])
        .arg(ca)
        .arg("--cert")
        .arg(&client.cert)
        .arg("--key")
        .arg(&client.key)
        .arg(format!("{endpoint}{path}"))
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every case on one flavor; the same certificates for both.
async fn matrix(flavor: Flavor, dir: &Path) -> Vec<(&'static str, String)> {
    let ip = net::loopback_ip();
    let (ca, tls) = ClusterTls::new(&dir.join("pki"), &ip).expect("pki");
    let other_ca = Ca::new(&dir.join("other"), "other-ca").expect("other CA");
    let stranger = other_ca.issue("stranger", "client", &[], Validity::Days(7)).expect("stranger");
    let expired = ca.issue("expired", "client", &[], Validity::Expired).expect("expired");
    let revoked = ca.issue("revoked", "client", &[], Validity::Days(7)).expect("revoked");
    let crl = ca.revoke("clients", &[&revoked]).expect("crl");
    let crl_flag = format!("--client-crl-file={}", crl.display());
    let cluster = Options::new(flavor, 3).tls(tls.clone()).args(&[&crl_flag]).start().await.expect("starts");
    let endpoint = cluster.members[0].endpoint().to_string();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let mut client = cluster.connect(&endpoint, Duration::from_secs(5)).await.expect("client");
    client.put("tls-key", "v1", None).await.expect("a put over mTLS");

    let plain = endpoint.replacen("https://", "http://", 1);
    let health = curl(&endpoint, "/health", &tls.ca, &tls.client);
    let seen = [
        ("client certificate from the CA", get_with(&endpoint, &tls_args(&tls.ca, Some(&tls.client)))),
        ("no client certificate", get_with(&endpoint, &tls_args(&tls.ca, None))),
        ("certificate from another CA", get_with(&endpoint, &tls_args(&tls.ca, Some(&stranger)))),
        ("expired certificate", get_with(&endpoint, &tls_args(&tls.ca, Some(&expired)))),
        ("revoked certificate", get_with(&endpoint, &tls_args(&tls.ca, Some(&revoked)))),
        ("plain HTTP to the TLS port", etcdctl(&[&plain], &["get", "tls-key"]).is_ok_and(|o| o.status.success())),
        ("TLS 1.2", handshake_at(&endpoint, "-tls1_2", &tls.ca, &tls.client)),
        ("TLS 1.1", handshake_at(&endpoint, "-tls1_1", &tls.ca, &tls.client)),
        ("/health on the TLS port", health.contains("\"health\":\"true\"")),
    ];
    let mut outcomes: Vec<(&'static str, String)> =
        seen.into_iter().map(|(case, ok)| (case, outcome(ok).to_string())).collect();

    // A rotated server certificate: new connections get it, with no restart.
    let before = served_serial(&endpoint, &tls.ca, &tls.client);
    let rotated = ca.issue("rotated", "member", &[&ip, "localhost"], Validity::Days(7)).expect("rotated");
    std::fs::copy(&rotated.key, &tls.member.key).expect("key");
    std::fs::copy(&rotated.cert, &tls.member.cert).expect("cert");
    let want = format!("serial={:02X}", rotated.serial);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut after = served_serial(&endpoint, &tls.ca, &tls.client);
    while after != want && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = served_serial(&endpoint, &tls.ca, &tls.client);
    }
    assert_ne!(before, after, "{flavor:?}: the served certificate did not change");
    outcomes.push(("rotated server certificate served", outcome(after == want).to_string()));
    outcomes
        .push(("old connection after the rotation", outcome(client.get("tls-key", None).await.is_ok()).to_string()));

    // Kubernetes' reference backup command.
    let snapshot = dir.join("snapshot.db");
    let mut args: Vec<String> = vec!["snapshot".into(), "save".into(), snapshot.display().to_string()];
    args.extend(tls.etcdctl_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let saved = etcdctl(&[&endpoint], &args).expect("etcdctl");
    assert!(saved.status.success(), "{flavor:?}: {}", String::from_utf8_lossy(&saved.stderr));
    outcomes.push(("reference backup command", outcome(snapshot.is_file()).to_string()));
    outcomes
}

/// A peer whose certificate has a CN the others do not allow is refused:
/// the member added with it never joins, and the members log why.
async fn disallowed_peer(flavor: Flavor, dir: &Path) -> (&'static str, bool) {
    let ip = net::loopback_ip();
    let (ca, tls) = ClusterTls::new(&dir.join("pki"), &ip).expect("pki");
    let intruder = ca.issue("intruder", "intruder", &[&ip, "localhost"], Validity::Days(7)).expect("intruder");
    let mut cluster = Options::new(flavor, 3)
        .tls(tls.clone())
        .args(&["--peer-cert-allowed-cn=member"])
        .start()
        .await
        .expect("starts");
    let (client_url, peer_url) = cluster.new_member_urls();
    let mut add: Vec<String> =
        vec!["member".into(), "add".into(), "intruder".into(), format!("--peer-urls={peer_url}")];
    add.extend(tls.etcdctl_args());
    let add: Vec<&str> = add.iter().map(String::as_str).collect();
    // etcd refuses a member add until every member has been connected for 5 s.
    let deadline = Instant::now() + Duration::from_secs(20);
    let added = loop {
        let added = etcdctl(&[cluster.members[0].endpoint()], &add).expect("etcdctl");
        if added.status.success() || Instant::now() > deadline {
            break added;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    let initial = format!("{},intruder={peer_url}", cluster.members[0].spec.initial_cluster);
    let env = vec![
        ("ETCD_PEER_CERT_FILE".to_string(), intruder.cert.display().to_string()),
        ("ETCD_PEER_KEY_FILE".to_string(), intruder.key.display().to_string()),
    ];
    let index = cluster
        .start_added_with_env("intruder", (client_url, peer_url), &initial, env)
        .expect("the intruder's process starts");
    // Given time to join, it must not serve: nobody takes its peer connections.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let endpoint = cluster.members[index].endpoint().to_string();
    let mut args = vec!["endpoint".to_string(), "health".to_string()];
    args.extend(tls.etcdctl_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let healthy = etcdctl(&[&endpoint], &args).is_ok_and(|out| out.status.success());
    let logged = cluster.members[..3].iter().any(|member| member.log_mentions("rejected connection") > 0);
    (outcome(healthy), logged)
}

#[tokio::test]
async fn t150_tls_matrix_matches_etcd_3_5_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = matrix(Flavor::Etcd, &dir.path().join("etcd")).await;
    let cairn = matrix(Flavor::Cairn, &dir.path().join("cairn")).await;
    let expected = [
        ("client certificate from the CA", "accepted"),
        ("no client certificate", "refused"),
        ("certificate from another CA", "refused"),
        ("expired certificate", "refused"),
        ("revoked certificate", "refused"),
        ("plain HTTP to the TLS port", "refused"),
        ("TLS 1.2", "accepted"),
        ("TLS 1.1", "refused"),
        ("/health on the TLS port", "accepted"),
        ("rotated server certificate served", "accepted"),
        ("old connection after the rotation", "accepted"),
        ("reference backup command", "accepted"),
    ];
    let expected: Vec<(&str, String)> = expected.iter().map(|(case, seen)| (*case, seen.to_string())).collect();
    assert_eq!(etcd, expected, "etcd 3.5.1 did not behave as the test expects");
    assert_eq!(cairn, etcd, "cairn differs from etcd 3.5.1");
}

#[tokio::test]
async fn t151_a_peer_with_a_disallowed_cn_is_refused_as_by_etcd() {
    let dir = tempfile::tempdir().expect("tempdir");
    let etcd = disallowed_peer(Flavor::Etcd, &dir.path().join("etcd")).await;
    let cairn = disallowed_peer(Flavor::Cairn, &dir.path().join("cairn")).await;
    assert_eq!(etcd, ("refused", true), "etcd 3.5.1 let the intruder in, or did not log it");
    assert_eq!(cairn, etcd);
}

/// The reference backup, restored into a new 3-member cluster with TLS on every link.
#[tokio::test]
async fn t152_backup_over_mtls_restores_into_a_tls_cluster() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ip = net::loopback_ip();
    let (_ca, tls) = ClusterTls::new(&dir.path().join("pki"), &ip).expect("pki");
    let old = Options::new(Flavor::Cairn, 3).tls(tls.clone()).start().await.expect("starts");
    let mut client = old.connect(old.members[1].endpoint(), Duration::from_secs(5)).await.expect("client");
    for i in 0..100 {
        client.put(format!("backup/{i:03}"), format!("v{i}"), None).await.expect("put");
    }
    let snapshot = dir.path().join("snapshot.db");
    let mut args: Vec<String> = vec!["snapshot".into(), "save".into(), snapshot.display().to_string()];
    args.extend(tls.etcdctl_args());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let saved = etcdctl(&[old.members[1].endpoint()], &args).expect("etcdctl");
    assert!(saved.status.success(), "{}", String::from_utf8_lossy(&saved.stderr));
    drop(old);

    let (restored_dir, specs) = plan_https(3).expect("plan");
    for spec in &specs {
        let out = Command::new(cairn_binary())
            .args(["snapshot", "restore"])
            .arg(&snapshot)
            .args(["--name", &spec.name, "--initial-cluster", &spec.initial_cluster])
            .args(["--initial-advertise-peer-urls", &spec.peer_url, "--initial-cluster-token", "restored"])
            .arg("--data-dir")
            .arg(&spec.data_dir)
            .output()
            .expect("cairn snapshot restore");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let options = Options::new(Flavor::Cairn, 0).tls(tls.clone()).args(&["--initial-cluster-token", "restored"]);
    let restored =
        Cluster::launch_with(options, restored_dir, specs).await.expect("the restored cluster starts with TLS");
    let mut client = restored.connect(restored.members[2].endpoint(), Duration::from_secs(5)).await.expect("client");
    let found =
        client.get("backup/", Some(etcd_client::GetOptions::new().with_prefix().with_count_only())).await.expect("get");
    assert_eq!(found.count(), 100);
    // Replication, forwarded writes and read-index requests travel on links
    // over TLS too (`raft::link`).
    let metric = |member: usize, name: &str| -> u64 {
        let metrics = Command::new("curl")
            .args(["-s", "--max-time", "5", "--cacert"])
            .arg(&tls.ca)
            .arg("--cert")
            .arg(&tls.client.cert)
            .arg("--key")
            .arg(&tls.client.key)
            .arg(format!("{}/metrics", restored.members[member].endpoint()))
            .output()
            .expect("curl");
        let metrics = String::from_utf8_lossy(&metrics.stdout);
        let value = metrics.lines().find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok());
        value.unwrap_or_else(|| panic!("member {member} counts {name}"))
    };
    let leader = restored.leader_index().await.expect("a leader");
    let links = metric(leader, "cairn_link_streams_opened_total");
    assert!(links >= 2, "a link to each follower: {links}");
    let follower = (leader + 1) % restored.members.len();
    let mut through_follower =
        restored.connect(restored.members[follower].endpoint(), Duration::from_secs(5)).await.expect("client");
    through_follower.put("backup/forwarded", "v", None).await.expect("a put forwarded over TLS");
    let got = through_follower.get("backup/forwarded", None).await.expect("a linearizable get through a follower");
    assert_eq!(got.kvs().len(), 1);
    for kind in ["forward", "read_index"] {
        let links = metric(follower, &format!("cairn_{kind}_link_streams_opened_total"));
        assert!(links >= 1, "{kind}: the follower opened {links} links");
    }
}
