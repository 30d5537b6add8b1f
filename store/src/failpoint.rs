//! Failpoints for crash and chaos tests, left in production code (as TiKV
//! does). A failpoint is active only when `CAIRN_FAILPOINT` names it, as
//! `name`, or as `name=N` to fire from its N-th pass on (so that a member can
//! start, and serve, before the fault).
//!
//! - `snapshot-load-midway`: abort half way through loading a Raft snapshot.
//! - `apply-abort`: abort with committed entries not yet applied.
//! - `unsafe-local-reads`: a deliberately broken member for the chaos harness
//!   to catch: linearizable reads skip ReadIndex and answer from local state.
//! - `wal-sync-error`: the Raft log's fdatasync fails, as on a failing disk.
//! - `compactor-write-error`: the compactor's engine write fails.
//! - `lessor-panic`: the lessor task panics, as a bug in a task would.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// The failpoint `CAIRN_FAILPOINT` names, and the pass it fires from (read
/// once: failpoints sit on hot paths).
fn wanted() -> Option<&'static (String, u64)> {
    static WANTED: OnceLock<Option<(String, u64)>> = OnceLock::new();
    WANTED.get_or_init(|| std::env::var("CAIRN_FAILPOINT").ok().map(|value| parse(&value))).as_ref()
}

/// `name` or `name=N`; an N that is not a number counts as 1.
fn parse(value: &str) -> (String, u64) {
    match value.split_once('=') {
        Some((name, from)) => (name.to_string(), from.parse().unwrap_or(1).max(1)),
        None => (value.to_string(), 1),
    }
}

/// Whether `CAIRN_FAILPOINT` names this failpoint.
pub fn active(name: &str) -> bool {
    wanted().is_some_and(|(wanted, _)| wanted == name)
}

/// Counts a pass through this failpoint; true from the pass `CAIRN_FAILPOINT` gives on.
pub fn fires(name: &str) -> bool {
    static PASSES: AtomicU64 = AtomicU64::new(0);
    match wanted() {
        Some((wanted, from)) if wanted == name => PASSES.fetch_add(1, Ordering::Relaxed) + 1 >= *from,
        _ => false,
    }
}

/// Aborts the process, as a crash would, when this failpoint fires.
pub fn hit(name: &str) {
    if fires(name) {
        eprintln!("cairn: failpoint {name} hit, aborting");
        std::process::abort();
    }
}

/// The error a failpoint stands in for a failed system call with.
pub fn io_error(name: &str) -> std::io::Error {
    std::io::Error::other(format!("failpoint {name}"))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn a_failpoint_fires_from_the_pass_it_names() {
        assert_eq!(parse("wal-sync-error"), ("wal-sync-error".to_string(), 1));
        assert_eq!(parse("wal-sync-error=40"), ("wal-sync-error".to_string(), 40));
        assert_eq!(parse("wal-sync-error=0"), ("wal-sync-error".to_string(), 1));
        assert_eq!(parse("wal-sync-error=x"), ("wal-sync-error".to_string(), 1));
    }
}
