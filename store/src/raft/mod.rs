//! Raft: openraft wired to the engine (log and state machine) and to gRPC peers.

mod in_turn;
pub mod link;
pub mod log_store;
pub mod network;
pub mod state_machine;
pub mod types;

#[cfg(test)]
mod suite;
