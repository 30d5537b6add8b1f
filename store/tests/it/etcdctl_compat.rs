//! The real etcdctl 3.5.1 against cairn, with its output compared to what the
//! same commands print against a real etcd 3.5.1.

use cairn_testkit::{etcdctl_stdin, Cluster, Flavor};

const TXN: &str = "mod(\"k1\") > \"0\"\n\nput k1 \"from-txn\"\nget k1\n\nput k9 \"else\"\n";

/// Commands and the input each reads; outputs must match etcd's byte for byte,
/// apart from the member and cluster IDs.
fn commands() -> Vec<(Vec<&'static str>, &'static str)> {
    let plain = |args: &[&'static str]| (args.to_vec(), "");
    vec![
        plain(&["put", "k1", "v1"]),
        plain(&["put", "k2", "v2"]),
        plain(&["put", "k1", "v1b", "--prev-kv"]),
        plain(&["get", "k1"]),
        plain(&["get", "k", "--prefix"]),
        plain(&["get", "k", "--prefix", "--keys-only"]),
        plain(&["get", "k", "--prefix", "--count-only", "-w", "fields"]),
        plain(&["get", "k1", "--rev", "2"]),
        plain(&["get", "k", "--prefix", "--limit", "1", "-w", "fields"]),
        plain(&["get", "k", "--from-key", "--order", "DESCEND", "--sort-by", "MODIFY"]),
        plain(&["get", "k1", "--rev", "100"]),
        plain(&["get", "k1", "-w", "fields"]),
        plain(&["put", "k3", "--ignore-value"]),
        plain(&["put", "k1", "x", "--lease", "1234"]),
        (vec!["txn"], TXN),
        plain(&["get", "k1", "-w", "fields"]),
        plain(&["del", "k2", "--prev-kv"]),
        plain(&["del", "nothing"]),
        plain(&["compact", "3"]),
        plain(&["get", "k1", "--rev", "2"]),
        plain(&["compact", "2"]),
        plain(&["del", "k", "--from-key"]),
        plain(&["get", "", "--from-key", "-w", "fields"]),
    ]
}

/// Drops the lines that name IDs or terms, which differ between any two clusters.
fn normalize(text: &str) -> String {
    text.lines()
        .filter(|line| !line.starts_with("\"ClusterID\"") && !line.starts_with("\"MemberID\""))
        .filter(|line| !line.starts_with("\"RaftTerm\""))
        // Client-side retry logs carry timestamps and addresses.
        .filter(|line| !line.starts_with("{\"level\""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn run_all(cluster: &Cluster) -> Vec<String> {
    let endpoint = cluster.members[0].endpoint();
    commands()
        .into_iter()
        .map(|(args, input)| {
            let out = etcdctl_stdin(&[endpoint], &args, input).expect("etcdctl runs");
            format!(
                "$ etcdctl {}\nexit={:?}\n{}\n{}",
                args.join(" "),
                out.status.code(),
                normalize(&String::from_utf8_lossy(&out.stdout)),
                normalize(&String::from_utf8_lossy(&out.stderr))
            )
        })
        .collect()
}

#[tokio::test]
async fn t20_etcdctl_output_matches_etcd() {
    let etcd = Cluster::start(Flavor::Etcd, 1).await.expect("etcd starts");
    let cairn = Cluster::start(Flavor::Cairn, 1).await.expect("cairn starts");
    let expected = run_all(&etcd);
    let actual = run_all(&cairn);
    let diffs: Vec<String> = expected
        .iter()
        .zip(&actual)
        .filter(|(expected, actual)| expected != actual)
        .map(|(expected, actual)| format!("--- etcd\n{expected}\n--- cairn\n{actual}"))
        .collect();
    assert!(diffs.is_empty(), "{} commands differ:\n{}", diffs.len(), diffs.join("\n"));
    // The comparison must have exercised errors, not only successes.
    assert!(actual.iter().any(|out| out.contains("required revision has been compacted")));
    assert!(actual.iter().any(|out| out.contains("requested lease not found")));
}
