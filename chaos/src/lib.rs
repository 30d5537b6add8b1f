//! Checkers for histories recorded while members are killed, paused and
//! partitioned. Pure: they read a history and return a verdict. A checker that
//! cannot decide within its budget says so; it never passes by default.
//!
//! The fault harness and workloads that record histories are still to come
//! (issue "Chaos"); these checkers are the part they will feed.

pub mod history;
pub mod linearizable;
pub mod revisions;
pub mod watch;

/// A checker's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub enum Verdict {
    Pass,
    Fail(String),
    /// The budget ran out before an answer: a run must treat this as a failure.
    Unknown(String),
}

impl Verdict {
    pub fn is_pass(&self) -> bool {
        matches!(self, Verdict::Pass)
    }
}
