//! The kubectl smoke: a namespace, a Deployment that becomes Available on the
//! hollow nodes, a scale, a rollout and its undo, and the namespace's deletion.
//! Each step says what kubectl printed; a failed step stops the smoke.

use std::time::{Duration, Instant};

use cairn_chaos::upstream::Step;
use cairn_testkit::upstream::UpstreamCluster;

const NS: &str = "cairn-smoke";

fn kubectl(cluster: &UpstreamCluster, args: &[&str]) -> Result<String, String> {
    let out = cluster.kubectl(args, None);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!("kubectl {}: {} {}", args.join(" "), stdout, String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Polls `get` until `want` holds of its output, for at most `limit`.
async fn until(
    cluster: &UpstreamCluster,
    get: &[&str],
    limit: Duration,
    want: impl Fn(&str) -> bool,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        let last = kubectl(cluster, get);
        match &last {
            Ok(text) if want(text) => return last,
            _ if Instant::now() > deadline => return Err(format!("after {limit:?}: {last:?}")),
            _ => tokio::time::sleep(Duration::from_millis(500)).await,
        }
    }
}

pub async fn run(cluster: &UpstreamCluster) -> Vec<Step> {
    let rollout = ["rollout", "status", "deployment/web", "-n", NS, "--timeout=120s"];
    let available = r#"jsonpath={.status.conditions[?(@.type=="Available")].status} {.status.readyReplicas}"#;
    let pod_nodes = "jsonpath={range .items[*]}{.spec.nodeName} {.status.phase}{\"\\n\"}{end}";
    let mut steps = Vec::new();
    let mut record = |name: &str, started: Instant, outcome: Result<String, String>| {
        let ok = outcome.is_ok();
        let detail = outcome.unwrap_or_else(|err| err);
        steps.push(Step { name: name.to_string(), ok, detail, seconds: started.elapsed().as_secs_f64() });
        ok
    };
    let started = Instant::now();
    if !record("create namespace", started, kubectl(cluster, &["create", "namespace", NS])) {
        return steps;
    }
    let started = Instant::now();
    let created = kubectl(
        cluster,
        &["create", "deployment", "web", "-n", NS, "--image=registry.k8s.io/pause:3.10", "--replicas=3"],
    );
    if !record("create deployment (3 replicas)", started, created) {
        return steps;
    }
    let started = Instant::now();
    let outcome = match kubectl(cluster, &rollout) {
        Ok(_) => {
            until(cluster, &["get", "deployment", "web", "-n", NS, "-o", available], Duration::from_secs(60), |s| {
                s == "True 3"
            })
            .await
        }
        Err(err) => Err(err),
    };
    if !record("deployment Available", started, outcome) {
        return steps;
    }
    let started = Instant::now();
    let on_nodes = until(cluster, &["get", "pods", "-n", NS, "-o", pod_nodes], Duration::from_secs(30), |s| {
        s.lines().count() == 3 && s.lines().all(|line| line.starts_with("hollow-node-") && line.ends_with(" Running"))
    })
    .await;
    if !record("pods Running on hollow nodes", started, on_nodes) {
        return steps;
    }
    let started = Instant::now();
    let scaled = kubectl(cluster, &["scale", "deployment", "web", "-n", NS, "--replicas=5"]);
    let scaled = match scaled {
        Ok(_) => {
            until(cluster, &["get", "deployment", "web", "-n", NS, "-o", available], Duration::from_secs(90), |s| {
                s == "True 5"
            })
            .await
        }
        Err(err) => Err(err),
    };
    if !record("scale to 5", started, scaled) {
        return steps;
    }
    let started = Instant::now();
    let rolled = kubectl(cluster, &["set", "image", "deployment/web", "-n", NS, "pause=registry.k8s.io/pause:3.9"])
        .and_then(|_| kubectl(cluster, &rollout));
    let replica_sets =
        "jsonpath={range .items[*]}{.spec.template.spec.containers[0].image}={.status.replicas}{\"\\n\"}{end}";
    let rolled = match rolled {
        Ok(_) => {
            until(cluster, &["get", "rs", "-n", NS, "-o", replica_sets], Duration::from_secs(60), |s| {
                let mut lines: Vec<&str> = s.lines().collect();
                lines.sort();
                lines == ["registry.k8s.io/pause:3.10=0", "registry.k8s.io/pause:3.9=5"]
            })
            .await
        }
        Err(err) => Err(err),
    };
    if !record("rollout to a new image", started, rolled) {
        return steps;
    }
    let started = Instant::now();
    let undone =
        kubectl(cluster, &["rollout", "undo", "deployment/web", "-n", NS]).and_then(|_| kubectl(cluster, &rollout));
    let undone = match undone {
        Ok(_) => {
            until(
                cluster,
                &[
                    "get",
                    "deployment",
                    "web",
                    "-n",
                    NS,
                    "-o",
                    "jsonpath={.spec.template.spec.containers[0].image} {.status.updatedReplicas}",
                ],
                Duration::from_secs(60),
                |s| s == "registry.k8s.io/pause:3.10 5",
            )
            .await
        }
        Err(err) => Err(err),
    };
    if !record("rollout undo", started, undone) {
        return steps;
    }
    let started = Instant::now();
    let deleted = kubectl(cluster, &["delete", "namespace", NS, "--timeout=120s"]).and_then(|_| {
        match kubectl(cluster, &["get", "namespace", NS]) {
            Err(err) if err.contains("NotFound") => Ok("namespace gone".to_string()),
            other => Err(format!("namespace still there: {other:?}")),
        }
    });
    record("delete namespace", started, deleted);
    steps
}
