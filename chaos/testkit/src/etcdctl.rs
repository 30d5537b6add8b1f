//! The real etcdctl 3.5.1 (and 3.6's, for what only it has), bounded in time.

use std::io::Write;
use std::process::{Command, Output, Stdio};

use anyhow::{Context, Result};

use crate::binaries::{etcd36_bin_dir, etcd_tool};

/// Runs etcdctl against `endpoints`; every call ends within its command timeout.
pub fn etcdctl(endpoints: &[&str], args: &[&str]) -> Result<Output> {
    etcdctl_stdin(endpoints, args, "")
}

/// Runs etcdctl with `input` on its standard input (for `txn`).
pub fn etcdctl_stdin(endpoints: &[&str], args: &[&str], input: &str) -> Result<Output> {
    run(etcd_tool("etcdctl"), endpoints, args, input)
}

/// etcd 3.6's etcdctl (`.ci/etcd-3.6.sh` builds it).
pub fn etcdctl36(endpoints: &[&str], args: &[&str]) -> Result<Output> {
    run(etcd36_bin_dir().join("etcdctl"), endpoints, args, "")
}

fn run(binary: std::path::PathBuf, endpoints: &[&str], args: &[&str], input: &str) -> Result<Output> {
    let mut child = Command::new(&binary)
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={}", endpoints.join(",")))
        .arg("--command-timeout=10s")
        .arg("--dial-timeout=2s")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {} (`.ci/setup.sh --with-etcd` installs it)", binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input.as_bytes())?;
    }
    Ok(child.wait_with_output()?)
}

/// etcdctl that must succeed, for tests: returns stdout, or panics with both outputs.
pub fn etcdctl_ok(endpoints: &[&str], args: &[&str]) -> String {
    let out = match etcdctl(endpoints, args) {
        Ok(out) => out,
        Err(err) => panic!("etcdctl {args:?} did not run: {err:#}"),
    };
    assert!(
        out.status.success(),
        "etcdctl {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
