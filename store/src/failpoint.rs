//! Failpoints for crash and chaos tests, left in production code (as TiKV
//! does). A failpoint is active only when `CAIRN_FAILPOINT` names it.
//!
//! - `snapshot-load-midway`: abort half way through loading a Raft snapshot.
//! - `unsafe-local-reads`: a deliberately broken member for the chaos harness
//!   to catch: linearizable reads skip ReadIndex and answer from local state.

use std::sync::OnceLock;

/// Whether `CAIRN_FAILPOINT` names this failpoint (read once: it sits on hot paths).
pub fn active(name: &str) -> bool {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    WANTED.get_or_init(|| std::env::var("CAIRN_FAILPOINT").ok()).as_deref() == Some(name)
}

/// Aborts the process, as a crash would, when this failpoint is active.
pub fn hit(name: &str) {
    if active(name) {
        eprintln!("cairn: failpoint {name} hit, aborting");
        std::process::abort();
    }
}
