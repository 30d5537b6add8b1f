//! cairn-kube's integration tests: real store members (Cairn, or etcd
//! 3.5.1), real `cairn-kube apiserver` processes on loopback, and the real
//! kubectl, etcdctl and kube-rs clients. One binary, as the store's.

mod bad_input;
mod certificates;
mod clients;
mod cluster;
mod differential;
mod http_differential;
mod kubectl;
mod python;
mod rbac;
mod replicas;
mod storage;
mod watch;

use std::time::Duration;

use anyhow::Result;
use cairn_testkit::kube::ApiServer;
use cairn_testkit::{Cluster, Flavor, Options};

/// The Deployment both kubectl sessions apply.
pub const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: t
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports: [{containerPort: 80}]
";

/// A store of `size` members and one API server on it.
pub async fn cluster_and_apiserver(flavor: Flavor, size: usize, flags: &[&str]) -> Result<(Cluster, ApiServer)> {
    let cluster = Options::new(flavor, size).start().await?;
    let api = ApiServer::start(&cluster.endpoints(), flags).await?;
    Ok((cluster, api))
}

/// A kube-rs client of the API server, through its kubeconfig.
pub async fn kube_client(api: &ApiServer) -> Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(&api.kubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// Polls `check` every 100 ms until it holds or `limit` passes.
pub async fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + limit;
    while std::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    check()
}

/// The stdout of a successful kubectl run; panics with stderr otherwise.
#[track_caller]
pub fn ok(api: &ApiServer, args: &[&str]) -> String {
    let out = api.kubectl(args);
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The stderr of a failing kubectl run; panics if it succeeded.
#[track_caller]
pub fn fails(api: &ApiServer, args: &[&str], input: Option<&str>) -> String {
    let out = api.kubectl_stdin(args, input);
    assert!(!out.status.success(), "kubectl {args:?} should fail: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[track_caller]
pub fn ok_stdin(api: &ApiServer, args: &[&str], input: &str) -> String {
    let out = api.kubectl_stdin(args, Some(input));
    assert!(out.status.success(), "kubectl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}
