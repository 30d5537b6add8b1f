//! Other people's tests: the test suites that ship with the `etcd-client`
//! crate (0.21.1, `tests/client.rs`) and python `etcd3` (0.12.0,
//! `tests/test_etcd3.py`), run as their authors run them against a
//! three-member etcd 3.5.1 and then a three-member cairn. Every test that
//! passes on etcd must pass on cairn, but for the reviewed list below.
//!
//! Both suites dial `localhost:2379`, so the first member listens there, and
//! the suites run one after the other. `.ci/setup.sh --with-etcd` fetches them
//! (from crates.io and PyPI) and builds the Rust one; `.ci/test.sh` runs this
//! module on its own, printing the results side by side.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use cairn_testkit::{client, etcd_tool, plan, Cluster, Flavor};

/// Tests that may fail on cairn while they pass on etcd, each with the
/// feature it waits for; empty since the Lock and Election services came. A
/// listed test that passes is an error, so that the list only shrinks.
const MAY_FAIL: &[(&str, &str)] = &[];

/// The longest a suite may run on one cluster.
const SUITE_TIMEOUT_SECONDS: &str = "900";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
}

/// One test's outcome on each, `None` where it did not run.
struct Row {
    name: String,
    etcd: Option<Outcome>,
    cairn: Option<Outcome>,
}

struct Suite {
    name: &'static str,
    /// Member names: the Python suite stops members by name (`pifpaf1`, `pifpaf2`).
    member_names: [&'static str; 3],
    /// Flags of the authors' servers: etcd-client's expire tokens after 2 s.
    member_args: &'static [&'static str],
    run: fn(&Path) -> BTreeMap<String, Outcome>,
}

const SUITES: [Suite; 2] = [
    Suite {
        name: "etcd-client",
        member_names: ["node1", "node2", "node3"],
        member_args: &["--auth-token-ttl", "2", "--initial-cluster-token", "etcd-client"],
        run: run_etcd_client,
    },
    Suite {
        name: "python-etcd3",
        member_names: ["pifpaf0", "pifpaf1", "pifpaf2"],
        member_args: &[],
        run: run_python_etcd3,
    },
];

fn suites_dir() -> PathBuf {
    std::env::var_os("CAIRN_CLIENT_SUITES").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
        PathBuf::from(home).join(".cache/cairn/client-suites")
    })
}

/// Runs a suite's command, bounded, and returns its standard output and error.
fn run_bounded(program: &str, args: &[&str], dir: &Path, env: &[(&str, String)]) -> String {
    let out = Command::new("timeout")
        .args(["--kill-after=10", SUITE_TIMEOUT_SECONDS, program])
        .args(args)
        .current_dir(dir)
        .envs(env.iter().map(|(key, value)| (*key, value)))
        .output()
        .unwrap_or_else(|err| panic!("running {program}: {err}"));
    // 124: timed out; 137: killed after the grace period.
    assert!(!matches!(out.status.code(), Some(124 | 137)), "{program} ran out of time");
    format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// `cargo test --test client`, as the crate's Justfile runs it, in parallel.
fn run_etcd_client(dir: &Path) -> BTreeMap<String, Outcome> {
    let crate_dir = dir.join("etcd-client-0.21.1");
    let target = dir.join("target").display().to_string();
    let output =
        run_bounded("cargo", &["test", "--locked", "--test", "client"], &crate_dir, &[("CARGO_TARGET_DIR", target)]);
    let mut outcomes = BTreeMap::new();
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("test ") else { continue };
        let Some((name, result)) = rest.split_once(" ... ") else { continue };
        let outcome = match result {
            "ok" => Outcome::Passed,
            "FAILED" => Outcome::Failed,
            _ => continue,
        };
        outcomes.insert(format!("etcd-client {name}"), outcome);
    }
    assert!(outcomes.len() >= 20, "etcd-client's suite did not run:\n{output}");
    assert_mostly_passed(&outcomes, 20, &output);
    outcomes
}

/// pytest over `tests/`, as tox runs it under pifpaf: the first member's URL
/// in `PYTHON_ETCD_HTTP_URL` and etcdctl on the PATH.
fn run_python_etcd3(dir: &Path) -> BTreeMap<String, Outcome> {
    let source = dir.join("etcd3-0.12.0");
    let etcdctl_dir = etcd_tool("etcdctl").parent().map(Path::to_path_buf).unwrap_or_default();
    let env = [
        ("PYTHONPATH", dir.join("python").display().to_string()),
        ("PYTHON_ETCD_HTTP_URL", "http://127.0.0.1:2379".to_string()),
        ("TEST_ETCD_VERSION", "v3.5.1".to_string()),
        ("PATH", format!("{}:{}", etcdctl_dir.display(), std::env::var("PATH").unwrap_or_default())),
    ];
    let output = run_bounded("python3", &["-m", "pytest", "-rA", "-p", "no:cacheprovider", "tests"], &source, &env);
    let mut outcomes = BTreeMap::new();
    for line in output.lines() {
        let (outcome, rest) = if let Some(rest) = line.strip_prefix("PASSED ") {
            (Outcome::Passed, rest)
        } else if let Some(rest) = line.strip_prefix("FAILED ").or(line.strip_prefix("ERROR ")) {
            (Outcome::Failed, rest)
        } else {
            continue;
        };
        let name = rest.split(" - ").next().unwrap_or(rest).trim().trim_start_matches("tests/test_etcd3.py::");
        // A teardown error after a pass is a failure.
        let entry = outcomes.entry(format!("python-etcd3 {name}")).or_insert(outcome);
        if outcome == Outcome::Failed {
            *entry = Outcome::Failed;
        }
    }
    assert!(outcomes.len() >= 70, "python-etcd3's suite did not run:\n{output}");
    assert_mostly_passed(&outcomes, 75, &output);
    outcomes
}

/// A suite must mostly pass, on etcd as on cairn: a broken environment must
/// not pass the comparison by failing everywhere.
fn assert_mostly_passed(outcomes: &BTreeMap<String, Outcome>, at_least: usize, output: &str) {
    let passed = outcomes.values().filter(|outcome| **outcome == Outcome::Passed).count();
    assert!(passed >= at_least, "only {passed} tests passed, fewer than {at_least}:\n{output}");
}

/// Three members on fixed loopback ports, the first on 127.0.0.1:2379.
async fn start(flavor: Flavor, suite: &Suite) -> Cluster {
    let (dir, mut specs) = plan(3).expect("plan");
    for (spec, (name, port)) in specs.iter_mut().zip(suite.member_names.iter().zip([2379, 22379, 32379])) {
        spec.name = name.to_string();
        spec.client_url = format!("http://127.0.0.1:{port}");
        spec.peer_url = format!("http://127.0.0.1:{}", port + 1);
    }
    let initial = specs.iter().map(|spec| format!("{}={}", spec.name, spec.peer_url)).collect::<Vec<_>>().join(",");
    for spec in &mut specs {
        spec.initial_cluster = initial.clone();
    }
    let cluster = Cluster::launch(flavor, dir, specs, suite.member_args).await.unwrap_or_else(|err| {
        panic!("{flavor:?} did not start on 127.0.0.1:2379 (is something else listening there?): {err}")
    });
    // The authors' servers have the user the auth tests log in as.
    let mut c = client("http://127.0.0.1:2379").await;
    c.user_add("root", "rootpwd", None).await.expect("user add root");
    c.user_grant_role("root", "root").await.expect("grant root");
    cluster
}

#[tokio::test]
async fn t170_client_test_suites_pass_on_cairn_as_on_etcd() {
    let dir = suites_dir();
    assert!(dir.join(".complete").exists(), "{} is missing: run .ci/setup.sh --with-etcd", dir.display());
    let mut table = Vec::new();
    for suite in &SUITES {
        let mut results = Vec::new();
        for flavor in [Flavor::Etcd, Flavor::Cairn] {
            let cluster = start(flavor, suite).await;
            eprintln!("client suites: {} against a three-member {flavor:?}", suite.name);
            results.push((suite.run)(&dir));
            drop(cluster);
        }
        let (on_etcd, on_cairn) = (&results[0], &results[1]);
        for name in on_etcd.keys().chain(on_cairn.keys()).collect::<std::collections::BTreeSet<_>>() {
            table.push(Row {
                name: name.clone(),
                etcd: on_etcd.get(name).copied(),
                cairn: on_cairn.get(name).copied(),
            });
        }
    }
    let show = |outcome: Option<Outcome>| match outcome {
        Some(Outcome::Passed) => "passed",
        Some(Outcome::Failed) => "FAILED",
        None => "-",
    };
    println!("{:<72} {:<8} {:<8}", "test", "etcd", "cairn");
    let mut problems = Vec::new();
    for Row { name, etcd, cairn } in &table {
        let allowed = MAY_FAIL.iter().find(|(listed, _)| listed == name).map(|(_, why)| *why);
        println!("{name:<72} {:<8} {:<8} {}", show(*etcd), show(*cairn), allowed.unwrap_or_default());
        match (etcd, cairn, allowed) {
            (Some(Outcome::Passed), Some(Outcome::Passed), Some(_)) => {
                problems.push(format!("{name} passes now: take it off MAY_FAIL"))
            }
            (Some(Outcome::Passed), cairn, None) if *cairn != Some(Outcome::Passed) => {
                problems.push(format!("{name} passes on etcd, not on cairn"))
            }
            _ => {}
        }
    }
    for (listed, _) in MAY_FAIL {
        if !table.iter().any(|row| row.name == *listed) {
            problems.push(format!("{listed} is on MAY_FAIL but did not run"));
        }
    }
    for suite in &SUITES {
        let rows: Vec<&Row> = table.iter().filter(|row| row.name.starts_with(suite.name)).collect();
        let passed = |outcome: fn(&Row) -> Option<Outcome>| {
            rows.iter().filter(|row| outcome(row) == Some(Outcome::Passed)).count()
        };
        let (on_etcd, on_cairn) = (passed(|row| row.etcd), passed(|row| row.cairn));
        println!("{}: etcd passed {on_etcd} of {}, cairn {on_cairn}", suite.name, rows.len());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
