//! Watch: the recent-event log fed by the apply path, and the pure rules that
//! decide what a watcher sees.
//!
//! Watchers pull: each one remembers the next revision it owes its client and
//! reads events from [`EventLog`] (recent revisions, in memory) or, when it has
//! fallen behind the log, from storage. Writers never wait for a watcher.

mod event_log;
mod filter;

pub use event_log::{EventLog, DEFAULT_CAPACITY};
pub use filter::{fragment, WatchFilter};
