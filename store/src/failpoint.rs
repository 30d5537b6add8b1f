//! Failpoints for crash tests, left in production code (as TiKV does). A
//! failpoint fires only when `CAIRN_FAILPOINT` names it, and then aborts the
//! process as a crash would.

pub fn hit(name: &str) {
    if std::env::var("CAIRN_FAILPOINT").is_ok_and(|wanted| wanted == name) {
        eprintln!("cairn: failpoint {name} hit, aborting");
        std::process::abort();
    }
}
