//! The upstream e2e tests (`e2e.test` of the same release, run by ginkgo's
//! CLI for parallel processes), against the cluster's admin kubeconfig.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use cairn_chaos::upstream::{parse_junit, Outcome};
use cairn_testkit::kube::kubectl_binary;
use cairn_testkit::upstream::{kube_tool, UpstreamCluster};

/// A bound on one whole e2e run; ginkgo stops the tests past it.
const GINKGO_TIMEOUT: &str = "90m";

pub fn run(
    cluster: &UpstreamCluster,
    dir: &Path,
    focus: &str,
    skip: &str,
    procs: usize,
) -> Result<BTreeMap<String, Outcome>> {
    std::fs::create_dir_all(dir)?;
    let (e2e, ginkgo) = (kube_tool("e2e.test"), kube_tool("ginkgo"));
    if !e2e.is_file() || !ginkgo.is_file() {
        bail!("{} or {} is missing: `.ci/kubernetes.sh` builds them", e2e.display(), ginkgo.display());
    }
    let log = std::fs::File::create(dir.join("e2e.log"))?;
    let status = Command::new(&ginkgo)
        .arg(format!("--procs={}", procs.max(1)))
        .arg(format!("--timeout={GINKGO_TIMEOUT}"))
        .arg("--no-color")
        .arg(format!("--output-dir={}", dir.display()))
        .arg("--junit-report=junit.xml")
        .arg(format!("--focus={focus}"))
        .arg(format!("--skip={skip}"))
        .arg(&e2e)
        .arg("--")
        .arg("--provider=skeleton")
        .arg(format!("--kubeconfig={}", cluster.admin_kubeconfig.display()))
        .arg(format!("--kubectl-path={}", kubectl_binary().display()))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running ginkgo")?;
    let report = std::fs::read_to_string(dir.join("junit.xml"))
        .with_context(|| format!("ginkgo ({status}) wrote no junit.xml; see {}", dir.join("e2e.log").display()))?;
    Ok(parse_junit(&report))
}
