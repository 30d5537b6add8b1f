//! `cairn-upstream`: real Kubernetes on each store. For every store asked for
//! (a 3-member Cairn, etcd 3.5.1, the newer etcd 3.6, each with mTLS on every
//! link, as kubeadm sets etcd up), it starts the upstream
//! kube-apiserver, kube-controller-manager and kube-scheduler with kubeadm's
//! flags and hollow nodes from `cairn-kube kubelet`, runs a kubectl smoke and
//! the chosen upstream e2e tests, and writes one page that compares them.
//! It fails if the smoke fails on Cairn, or if a test that passed on an etcd
//! failed on Cairn without a written-down reason.

mod e2e;
mod smoke;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use cairn_chaos::upstream::{parse_known, regressions, render, StoreRun};
use cairn_testkit::binaries::{etcd36_bin_dir, ETCD36_VERSION};
use cairn_testkit::pki::ClusterTls;
use cairn_testkit::upstream::UpstreamCluster;
use cairn_testkit::{net, Flavor, Options};
use clap::Parser;

/// The e2e tests `docs/kubernetes.md` reports: every `[sig-api-machinery]`
/// test (watch and list among them) except those that need a container to
/// really run (webhook and aggregated API servers, conversion webhooks), need
/// SSH to a control-plane machine (`[Disruptive]`), or test a feature gate.
pub const DEFAULT_FOCUS: &str = r"\[sig-api-machinery\]";
pub const DEFAULT_SKIP: &str = r"\[Disruptive\]|\[Flaky\]|\[Feature:|\[FeatureGate:|AdmissionWebhook|CustomResourceConversionWebhook|CustomResourceFieldSelectors|Aggregator|Aggregated APIServer";

#[derive(Parser)]
#[command(
    name = "cairn-upstream",
    about = "The upstream Kubernetes control plane and its e2e tests on Cairn and on etcd"
)]
struct Args {
    /// Stores to run on, in order: cairn, etcd-3.5.1, etcd-3.6.
    #[arg(long, value_delimiter = ',', default_value = "cairn,etcd-3.5.1,etcd-3.6")]
    stores: Vec<String>,
    /// Members of each store.
    #[arg(long, default_value_t = 3)]
    members: usize,
    /// Hollow nodes (one `cairn-kube kubelet` process each).
    #[arg(long, default_value_t = 3)]
    nodes: usize,
    #[arg(long, default_value = DEFAULT_FOCUS)]
    focus: String,
    #[arg(long, default_value = DEFAULT_SKIP)]
    skip: String,
    /// Parallel e2e processes (ginkgo --procs); [Serial] tests still run alone.
    #[arg(long, default_value_t = 4)]
    procs: usize,
    /// Leave the e2e tests out: the kubectl smoke only.
    #[arg(long)]
    no_e2e: bool,
    /// Tests that may pass on etcd and fail on Cairn: `name<TAB>reason` per line.
    #[arg(long)]
    known: Option<PathBuf>,
    /// Where the page (`report.md`), `runs.json`, logs and data go.
    #[arg(long, default_value = "upstream-out")]
    out: PathBuf,
    /// Writes the page again from a saved `runs.json` and runs nothing.
    #[arg(long)]
    render: Option<PathBuf>,
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = Args::parse();
    std::fs::create_dir_all(&args.out)?;
    // Kubeconfigs name their certificates, and kubectl reads a relative path
    // from the kubeconfig's folder: every path handed out is absolute.
    args.out = std::fs::canonicalize(&args.out)?;
    let known = match &args.known {
        Some(path) => {
            parse_known(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)
        }
        None => BTreeMap::new(),
    };
    if let Some(saved) = &args.render {
        let runs: Vec<StoreRun> = serde_json::from_str(&std::fs::read_to_string(saved)?)?;
        return report(&runs, &args, &known);
    }
    let mut runs = Vec::new();
    for store in &args.stores {
        let dir = args.out.join(store);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        eprintln!("cairn-upstream: {store}: starting {} members and the control plane", args.members);
        let run = run_on(store, &dir, &args).await.unwrap_or_else(|err| StoreRun {
            store: display_name(store),
            error: Some(format!("{err:#}")),
            ..Default::default()
        });
        eprintln!(
            "cairn-upstream: {store}: smoke {}, e2e {} passed, {} failed",
            if run.smoke_passed() { "passed" } else { "FAILED" },
            run.count(cairn_chaos::upstream::Outcome::Passed),
            run.count(cairn_chaos::upstream::Outcome::Failed)
        );
        runs.push(run);
    }
    std::fs::write(args.out.join("runs.json"), serde_json::to_string_pretty(&runs)?)?;
    report(&runs, &args, &known)
}

/// Writes `report.md`, prints it, and fails as the run must fail.
fn report(runs: &[StoreRun], args: &Args, known: &BTreeMap<String, String>) -> Result<()> {
    let Some(cairn) = runs.iter().find(|run| run.store == "cairn") else {
        std::fs::write(args.out.join("report.md"), render(runs, &[], &args.focus, &args.skip))?;
        return Ok(());
    };
    let references: Vec<StoreRun> = runs.iter().filter(|run| run.store != "cairn").cloned().collect();
    let found = regressions(cairn, &references, known);
    let page = render(runs, &found, &args.focus, &args.skip);
    std::fs::write(args.out.join("report.md"), &page)?;
    println!("{page}");
    if let Some(error) = &cairn.error {
        bail!("the cluster on Cairn did not come up: {error}");
    }
    if !cairn.smoke_passed() {
        bail!("the kubectl smoke failed on Cairn");
    }
    let unexplained = found.iter().filter(|r| r.known.is_none()).count();
    if unexplained > 0 {
        bail!("{unexplained} tests passed on etcd and not on Cairn, with no reason written down");
    }
    Ok(())
}

/// The store as the page names it: with the newer etcd's exact version.
fn display_name(store: &str) -> String {
    if store == "etcd-3.6" {
        format!("etcd-{ETCD36_VERSION}")
    } else {
        store.to_string()
    }
}

/// One store: its members, the control plane on it, the smoke, the e2e tests.
async fn run_on(store: &str, dir: &std::path::Path, args: &Args) -> Result<StoreRun> {
    let mut options = match store {
        "cairn" => Options::new(Flavor::Cairn, args.members),
        "etcd-3.5.1" => Options::new(Flavor::Etcd, args.members),
        "etcd-3.6" => {
            let mut options = Options::new(Flavor::Etcd, args.members);
            options.binary = Some(etcd36_bin_dir().join("etcd"));
            options
        }
        other => bail!("unknown store {other:?}: cairn, etcd-3.5.1 or etcd-3.6"),
    };
    options.dir = Some(dir.join("store"));
    // kubeadm's etcd: mTLS for clients and peers, with its other flags, which
    // every one of the three takes.
    let (_ca, tls) = ClusterTls::new(&dir.join("store-pki"), &net::loopback_ip()).context("store certificates")?;
    options = options.tls(tls.clone());
    options = options.args(&["--snapshot-count=10000", "--experimental-initial-corrupt-check=true"]);
    options = options.args(&[if store == "etcd-3.6" {
        "--watch-progress-notify-interval=5s"
    } else {
        "--experimental-watch-progress-notify-interval=5s"
    }]);
    let members = options.start().await.context("starting the store")?;
    let cluster = UpstreamCluster::start(&members.endpoints(), Some(&tls), dir, args.nodes)
        .await
        .context("starting the control plane")?;
    let mut run = StoreRun { store: display_name(store), ..Default::default() };
    run.smoke = smoke::run(&cluster).await;
    if !args.no_e2e {
        let started = Instant::now();
        run.e2e = e2e::run(&cluster, &dir.join("e2e"), &args.focus, &args.skip, args.procs)?;
        run.e2e_seconds = started.elapsed().as_secs_f64();
    }
    if !run.smoke_passed() {
        std::fs::write(dir.join("components.log"), cluster.logs(60))?;
    }
    Ok(run)
}
