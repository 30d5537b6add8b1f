//! The pure half of the chaos harness: the fault schedule, the record of a
//! run, the checkers and the report. The `cairn-chaos` binary does the I/O
//! (processes through `cairn-testkit`, workloads) and feeds these. A checker
//! that cannot decide within its budget says so; it never passes by default.
//! [`upstream`] is the pure half of `cairn-upstream` (real Kubernetes on each store).

pub mod check;
pub mod history;
pub mod kube;
pub mod linearizable;
pub mod record;
pub mod report;
pub mod revisions;
pub mod schedule;
pub mod upstream;
pub mod watch;

/// A checker's answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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
