//! Where the binaries are: this workspace's own, etcd 3.5.1's, the newer
//! etcd's, and Debian's etcd 3.4.

use std::path::PathBuf;

/// Overrides the folder of this workspace's binaries.
pub const BIN_DIR_ENV: &str = "CAIRN_BIN_DIR";
/// Overrides the member binary alone: `.ci/test.sh` points it at the `dist` build.
pub const MEMBER_BIN_ENV: &str = "CAIRN_MEMBER_BIN";
/// Overrides the folder of etcd 3.5.1's binaries.
pub const ETCD_BIN_DIR_ENV: &str = "CAIRN_ETCD_BIN_DIR";
/// Overrides the folder of the newer etcd's (3.6.16) binaries.
pub const ETCD36_BIN_DIR_ENV: &str = "CAIRN_ETCD36_BIN_DIR";
/// Overrides the folder of Debian's etcd 3.4 server.
pub const ETCD34_BIN_DIR_ENV: &str = "CAIRN_ETCD34_BIN_DIR";
/// The newer etcd that `.ci/etcd-3.6.sh` builds.
pub const ETCD36_VERSION: &str = "3.6.16";

/// A binary of this workspace (`cairn`, `cairn-chaos`, …): in `$CAIRN_BIN_DIR`,
/// else beside the running executable or one folder up from it (cargo puts
/// test binaries in `target/<profile>/deps`).
pub fn workspace_tool(name: &str) -> PathBuf {
    if let Ok(dir) = std::env::var(BIN_DIR_ENV) {
        return PathBuf::from(dir).join(name);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|dir| dir.join(name)).collect();
    candidates.iter().find(|path| path.is_file()).cloned().unwrap_or_else(|| {
        let target = std::env::var("CARGO_TARGET_DIR").unwrap_or_else(|_| "target".into());
        PathBuf::from(target).join("release").join(name)
    })
}

/// The cairn member binary: `$CAIRN_MEMBER_BIN`, else [`workspace_tool`]'s.
pub fn cairn() -> PathBuf {
    match std::env::var_os(MEMBER_BIN_ENV) {
        Some(path) => PathBuf::from(path),
        None => workspace_tool("cairn"),
    }
}

/// Where etcd 3.5.1's etcd, etcdctl and etcdutl are (`.ci/setup.sh --with-etcd` installs them).
pub fn etcd_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var(ETCD_BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/cairn/etcd-v3.5.1")
}

/// Where Debian's etcd 3.4 server is: `.ci/setup.sh --with-etcd` unpacks
/// the package there rather than install it, which would start a service on 2379.
pub fn etcd34_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var(ETCD34_BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(".cache/cairn/etcd-v3.4")
}

/// Where the newer etcd's etcd and etcdctl are (`.ci/etcd-3.6.sh` builds them).
pub fn etcd36_bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var(ETCD36_BIN_DIR_ENV) {
        return PathBuf::from(dir);
    }
    let home = std::env::var("HOME").unwrap_or_else(|_| "/root".into());
    PathBuf::from(home).join(format!(".cache/cairn/etcd-v{ETCD36_VERSION}"))
}

/// One of etcd 3.5.1's binaries.
pub fn etcd_tool(name: &str) -> PathBuf {
    etcd_bin_dir().join(name)
}

/// A clear error for a binary that is not there, naming what installs it.
pub fn require(path: PathBuf) -> anyhow::Result<PathBuf> {
    if !path.is_file() {
        anyhow::bail!(
            "{} is missing: `cargo build --release --workspace` builds cairn's, `.ci/setup.sh --with-etcd` installs etcd's",
            path.display()
        );
    }
    Ok(path)
}
