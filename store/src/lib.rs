//! Cairn: an etcd-v3-compatible key-value store on Raft (openraft) and RocksDB.
//!
//! See `docs/ARCHITECTURE.md` for the map of this crate.

pub mod apply;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod error;
pub mod mvcc;
pub mod raft;
pub mod server;
pub mod state;
