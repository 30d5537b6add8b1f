//! What the workloads record: one entry per client operation on a key.

/// Time in nanoseconds since the start of the run.
pub type Nanos = u64;

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Call {
    /// A linearizable get.
    Read,
    /// A put of a value unique in the history.
    Write(String),
    /// A txn that puts `new` only if the key holds `expected` (the workload turns
    /// a `mod_revision` compare into the value that revision wrote).
    Cas { expected: Option<String>, new: String },
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Outcome {
    /// A read's value (`None`: the key did not exist).
    Read(Option<String>),
    Written,
    Cas(bool),
    /// Timed out or failed in a way that leaves unknown whether it took effect.
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Operation {
    pub client: u32,
    pub key: String,
    pub call: Call,
    pub outcome: Outcome,
    pub invoked: Nanos,
    /// `None` when the outcome is unknown: it may take effect any time after `invoked`.
    pub completed: Option<Nanos>,
}
