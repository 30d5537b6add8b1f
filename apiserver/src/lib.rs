//! cairn-kube: a thin Kubernetes control plane on Cairn. This crate reaches
//! its store only through the etcd v3 API; it never links cairn-store.

pub mod apply;
pub mod cacher;
pub mod config;
pub mod error;
pub mod http;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod registry;
pub mod resources;
pub mod selector;
pub mod server;
pub mod storage;
pub mod table;
